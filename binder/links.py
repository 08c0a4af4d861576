"""The Binder and Colab links, generated from ONE setting: ``[tool.metalib] repository`` in pyproject.toml.

The launch links name the public GitHub repository that Binder builds and Colab opens
(``https://mybinder.org/v2/gh/<owner>/<name>/HEAD?...``). This copy cannot know that address (a clone
may have no remote, or a fork's), so it is a setting, written once::

    [tool.metalib]
    repository = "owner/name"     # "" while the project is not published: the docs then say so, no link
    branch = "main"               # the branch Colab opens binder/colab.ipynb from

and everything that names it is generated from it:

- the block between the ``launch links`` markers in binder/README.md;
- the ``REPO = ...`` line of binder/colab.ipynb's first cell (the clone address on Colab).

Whoever publishes: set ``repository``, run ``python binder/links.py --write`` and commit the three files.
``python binder/links.py`` (no option) checks them and exits 1 with one line per file that disagrees;
tests/test_launch_files.py runs the same check, so a link can neither drift from the setting nor be a
placeholder that looks real.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as tomli (or pip's vendored copy)
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        from pip._vendor import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
README = Path("binder/README.md")
COLAB = Path("binder/colab.ipynb")
BEGIN = ("<!-- launch links: generated from pyproject.toml [tool.metalib] by `python binder/links.py --write`; "
         "edit the setting, not this block -->")
END = "<!-- /launch links -->"
# GitHub's rules: owner 1-39 letters, digits or single hyphens; a repository name letters, digits, . _ -
ADDRESS = re.compile(r"(?P<owner>[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38})/(?P<name>[A-Za-z0-9._-]{1,100})")
BRANCH = re.compile(r"[A-Za-z0-9._/-]{1,200}")
PLACEHOLDERS = {"owner/repo", "owner/name", "user/repo", "username/repo", "org/repo"}
REPO_LINE = re.compile(r"^REPO = .*$", re.MULTILINE)


class LinkError(Exception):
    """A bad setting or a file that cannot be updated, said in one line."""


def setting(root: Path = ROOT) -> tuple[str, str]:
    """``(repository, branch)`` from ``root/pyproject.toml``; repository is ``""`` while unpublished."""
    with open(root / "pyproject.toml", "rb") as f:
        table = tomllib.load(f).get("tool", {}).get("metalib")
    if table is None:
        raise LinkError("pyproject.toml has no [tool.metalib] table (repository = \"owner/name\" or \"\")")
    repo, branch = table.get("repository"), table.get("branch", "main")
    if isinstance(repo, str) and repo.lower() in PLACEHOLDERS:
        raise LinkError(f"[tool.metalib] repository is a placeholder ({repo!r}): the real \"owner/name\", or \"\"")
    if not isinstance(repo, str) or (repo and not ADDRESS.fullmatch(repo)):
        raise LinkError(f"[tool.metalib] repository must be \"owner/name\" (GitHub) or \"\" (not published), "
                        f"got {repo!r}")
    if not isinstance(branch, str) or not BRANCH.fullmatch(branch):
        raise LinkError(f"[tool.metalib] branch must be a branch name, got {branch!r}")
    return repo, branch


def urls(repo: str, branch: str = "main") -> dict[str, str]:
    """The launch addresses for a published ``owner/name``."""
    if not ADDRESS.fullmatch(repo):
        raise LinkError(f"not a GitHub owner/name: {repo!r}")
    return {"clone": f"https://github.com/{repo}",
            "binder": f"https://mybinder.org/v2/gh/{repo}/HEAD?labpath=notebooks",
            "colab": f"https://colab.research.google.com/github/{repo}/blob/{branch}/binder/colab.ipynb"}


def readme_block(repo: str, branch: str = "main") -> str:
    """binder/README.md's generated block, markers included."""
    if repo:
        u = urls(repo, branch)
        body = (f"**Links** (for `{repo}`): [launch on Binder]({u['binder']}) · "
                f"[open `binder/colab.ipynb` on Colab]({u['colab']}).")
    else:
        body = ("**Links: none yet.** This copy of metalib does not know where it is published: the setting "
                "`repository` in `[tool.metalib]` of `pyproject.toml` is empty, so no Binder or Colab link is "
                "shown (a made-up one would look real and lead nowhere). If you have the repository's GitHub "
                "address: paste it into [mybinder.org](https://mybinder.org) (path `notebooks`), or in Colab use "
                "*File → Open notebook → GitHub* and open `binder/colab.ipynb`, then set `REPO` in its first cell "
                "to that address. Whoever publishes the project: set `repository = \"owner/name\"` there and run "
                "`python binder/links.py --write`.")
    return f"{BEGIN}\n{textwrap.fill(body, 110, break_long_words=False, break_on_hyphens=False)}\n{END}"


def repo_line(repo: str) -> str:
    """The ``REPO = ...`` line of colab.ipynb's first cell."""
    if repo:
        return f'REPO = "{urls(repo)["clone"]}"   # generated from pyproject.toml [tool.metalib] (binder/links.py)'
    return ("REPO = None   # not published yet: pyproject.toml [tool.metalib] repository is empty "
            "(binder/links.py); on Colab, set the GitHub address here")


def _read(root: Path, rel: Path) -> str:
    try:
        return (root / rel).read_text(encoding="utf-8")
    except OSError as e:
        raise LinkError(f"cannot read {rel}: {e.strerror}") from None


def expected(root: Path = ROOT) -> dict[Path, str]:
    """What binder/README.md and binder/colab.ipynb must hold for the current setting (whole files)."""
    repo, branch = setting(root)
    text = _read(root, README)
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise LinkError(f"{README} must hold the launch-links markers once each (begin, then end)")
    head, rest = text.split(BEGIN)
    readme = head + readme_block(repo, branch) + rest.split(END, 1)[1]

    nb = json.loads(_read(root, COLAB))
    cell = nb["cells"][0]
    src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
    if len(REPO_LINE.findall(src)) != 1:
        raise LinkError(f"{COLAB}: its first cell must have exactly one line starting `REPO = `")
    cell["source"] = REPO_LINE.sub(lambda _: repo_line(repo), src)
    colab = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    return {README: readme, COLAB: colab}


def differing(root: Path = ROOT) -> list[Path]:
    """The files whose launch links disagree with the setting (empty: all agree)."""
    return [rel for rel, want in expected(root).items() if _read(root, rel) != want]


def write(root: Path = ROOT) -> list[Path]:
    """Rewrite the files that disagree, atomically; returns them."""
    changed = []
    for rel, want in expected(root).items():
        if _read(root, rel) != want:
            tmp = (root / rel).with_suffix(".tmp-links")
            tmp.write_text(want, encoding="utf-8")
            tmp.replace(root / rel)
            changed.append(rel)
    return changed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--write", action="store_true", help="rewrite the links from the setting (default: only check)")
    args = p.parse_args(argv)
    try:
        repo, _ = setting()
        if args.write:
            changed = write()
            print(f"links for {repo or '(not published)'}: " + (", ".join(map(str, changed)) or "already up to date"))
            return 0
        bad = differing()
    except LinkError as e:
        print(f"links: {e}", file=sys.stderr)
        return 1
    for rel in bad:
        print(f"links: {rel} disagrees with pyproject.toml [tool.metalib]; run python binder/links.py --write",
              file=sys.stderr)
    if not bad:
        print(f"links for {repo or '(not published)'}: up to date")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
