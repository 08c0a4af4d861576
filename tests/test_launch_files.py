"""Binder and Colab launch files (binder/), checked as far as they can be offline.

Binder: the files parse, the environment they describe is the student requirements (requirements.txt),
with torch's CPU index, on a Python the project accepts. Colab: binder/colab.ipynb is a valid notebook
whose first cell installs what Colab lacks (metalib from the repository) and fetches Omniglot on Colab,
and does nothing (no install, no download) elsewhere. The launch links: generated from the one setting
``[tool.metalib] repository`` (binder/links.py), no placeholder address, and while it is empty no link at
all. Not checked: a real Binder build or Colab session.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"


def _lines(path: Path) -> list:
    return [ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines() if ln.split("#", 1)[0].strip()]


def test_binder_environment_is_the_student_requirements_with_cpu_torch():
    lines = _lines(BINDER / "requirements.txt")
    assert "-r ../requirements.txt" in lines  # pip resolves it relative to binder/requirements.txt
    assert (BINDER / ".." / "requirements.txt").resolve() == ROOT / "requirements.txt"
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines
    # nothing else: the student requirements are the environment, not a copy that could drift
    assert set(lines) == {"-r ../requirements.txt", "--extra-index-url https://download.pytorch.org/whl/cpu"}


def test_binder_runtime_is_a_python_the_project_accepts():
    runtime = (BINDER / "runtime.txt").read_text().strip()
    m = re.fullmatch(r"python-(3)\.(\d+)", runtime)
    assert m, runtime
    need = re.search(r'requires-python = ">=(\d+)\.(\d+)"', (ROOT / "pyproject.toml").read_text())
    assert (int(m[1]), int(m[2])) >= (int(need[1]), int(need[2]))


def test_binder_requirements_parse_with_pip():
    """pip's own parser reads the file (and the student file it includes)."""
    pytest.importorskip("pip")
    from pip._internal.network.session import PipSession
    from pip._internal.req.req_file import parse_requirements

    names = {re.split(r"[<>=!~ ;\[]", r.requirement)[0].lower()
             for r in parse_requirements(str(BINDER / "requirements.txt"), session=PipSession())}
    student = {re.split(r"[<>=!~ ;\[]", r.requirement)[0].lower()
               for r in parse_requirements(str(ROOT / "requirements.txt"), session=PipSession())}
    assert names == student and "torch" in names


def _colab():
    nb = nbformat.read(BINDER / "colab.ipynb", as_version=4)
    nbformat.validate(nb)
    return nb


def test_colab_first_cell_installs_what_colab_lacks_and_fetches_the_data():
    first = _colab().cells[0]
    assert first.cell_type == "code"
    src = first.source
    assert '"google.colab" in sys.modules' in src
    assert re.search(r'"pip", "install", "-q", "-e", "/content/metalib"', src)  # metalib, with its requirements
    assert "git\", \"clone\"" in src and "enable_custom_widget_manager" in src
    assert 'fetch_if_missing("omniglot")' in src


def test_colab_cells_do_nothing_outside_colab(monkeypatch, capsys):
    """Run the notebook's code here: no clone, no pip, no download — one line says so."""
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a))
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    ns = {"get_ipython": lambda: types.SimpleNamespace(run_line_magic=lambda *a: calls.append(a))}
    for cell in _colab().cells:
        if cell.cell_type == "code":
            exec(compile(cell.source, "colab.ipynb", "exec"), ns)
    assert calls == [] and ns["ON_COLAB"] is False
    assert "not on Colab: nothing to install" in capsys.readouterr().out


def test_colab_runs_a_notebook_that_exists():
    run = _colab().cells[-1].source
    name = re.search(r'NOTEBOOK = "([^"]+)"', run)[1]
    assert (ROOT / "notebooks" / f"{name}.ipynb").is_file()


# --- the launch links: one setting, [tool.metalib] repository in pyproject.toml (binder/links.py) ---------

def _links():
    spec = importlib.util.spec_from_file_location("binder_links", BINDER / "links.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _copy(tmp_path: Path, repository: str) -> Path:
    """The three files links.py reads and writes, in a throw-away root, with ``repository`` set."""
    (tmp_path / "binder").mkdir()
    for rel in ("binder/README.md", "binder/colab.ipynb"):
        shutil.copy(ROOT / rel, tmp_path / rel)
    text = (ROOT / "pyproject.toml").read_text()
    text, n = re.subn(r'(?m)^repository = ".*"$', f'repository = "{repository}"', text)
    assert n == 1
    (tmp_path / "pyproject.toml").write_text(text)
    return tmp_path


def test_launch_links_agree_with_the_setting():
    links = _links()
    repo, branch = links.setting()
    assert links.differing() == [], "run python binder/links.py --write"
    readme = (BINDER / "README.md").read_text()
    assert links.readme_block(repo, branch) in readme
    assert links.repo_line(repo) in _colab().cells[0].source


def test_no_placeholder_or_made_up_launch_address():
    """No OWNER/REPO anywhere; while the setting is empty, no Binder/Colab/GitHub address of this project."""
    repo, _ = _links().setting()
    files = [ROOT / "README.md", BINDER / "README.md", BINDER / "colab.ipynb", *sorted((ROOT / "docs").glob("*.md"))]
    for f in files:
        text = f.read_text()
        assert not re.search(r"OWNER/REPO|<owner>/<name>", text, re.IGNORECASE), f
        # launch addresses anywhere; a GitHub address only in the launch files (docs may cite others' code)
        hosts = r"mybinder\.org/v2/gh|colab\.research\.google\.com/github" + (r"|github\.com" if f.parent == BINDER else "")
        addresses = re.findall(rf"(?:{hosts})/([\w.-]+/[\w.-]+)", text)
        assert all(a.removesuffix(".git") == repo for a in addresses), (f, addresses, repo)
    if not repo:
        assert "**Links: none yet.**" in (BINDER / "README.md").read_text()
        assert "REPO = None" in _colab().cells[0].source


def test_publishing_writes_every_link_from_the_one_setting(tmp_path):
    links = _links()
    root = _copy(tmp_path, "someone/metalib")
    assert links.differing(root) == [Path("binder/README.md"), Path("binder/colab.ipynb")]  # the check can fail
    assert links.write(root) == [Path("binder/README.md"), Path("binder/colab.ipynb")]
    assert links.differing(root) == [] and links.write(root) == []
    readme = (root / "binder/README.md").read_text()
    assert "(https://mybinder.org/v2/gh/someone/metalib/HEAD?labpath=notebooks)" in readme
    assert "(https://colab.research.google.com/github/someone/metalib/blob/main/binder/colab.ipynb)" in readme
    assert "none yet" not in readme
    nb = nbformat.read(root / "binder/colab.ipynb", as_version=4)
    nbformat.validate(nb)
    assert 'REPO = "https://github.com/someone/metalib"' in nb.cells[0].source
    # everything outside the generated block and the REPO line is left as it was
    assert readme.split(links.BEGIN)[0] == (BINDER / "README.md").read_text().split(links.BEGIN)[0]
    assert readme.split(links.END)[1] == (BINDER / "README.md").read_text().split(links.END)[1]
    assert [c.source for c in nb.cells[1:]] == [c.source for c in _colab().cells[1:]]


@pytest.mark.parametrize("bad", ["OWNER/REPO", "https://github.com/a/b", "metalib", "a/b/c", "-a/b"])
def test_a_bad_repository_setting_is_one_clear_line(tmp_path, bad):
    links = _links()
    with pytest.raises(links.LinkError, match=r"\[tool\.metalib\] repository") as e:
        links.setting(_copy(tmp_path, bad))
    assert "\n" not in str(e.value)


def _run_first_cell_on_colab(source: str, monkeypatch):
    """Execute colab.ipynb's first cell as if on Colab, with nothing real run: returns the calls made."""
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **k: calls.append(cmd))
    colab = types.ModuleType("google.colab")
    colab.output = types.SimpleNamespace(enable_custom_widget_manager=lambda: calls.append("widgets"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(os.path, "isdir", lambda p: False)
    monkeypatch.setattr(os, "chdir", lambda p: calls.append(("chdir", p)))
    import metalib.data
    monkeypatch.setattr(metalib.data, "fetch_if_missing", lambda name: calls.append(("fetch", name)))
    exec(compile(source, "colab.ipynb", "exec"), {})
    return calls


def test_colab_cell_stops_with_one_line_when_no_repository_is_set(monkeypatch):
    links = _links()
    src = _colab().cells[0].source.replace(links.repo_line(links.setting()[0]), links.repo_line(""))
    with pytest.raises(SystemExit, match="set REPO in this cell") as e:
        _run_first_cell_on_colab(src, monkeypatch)
    assert "\n" not in str(e.value)


def test_colab_cell_clones_the_published_repository(tmp_path, monkeypatch):
    links = _links()
    root = _copy(tmp_path, "someone/metalib")
    links.write(root)
    src = nbformat.read(root / "binder/colab.ipynb", as_version=4).cells[0].source
    calls = _run_first_cell_on_colab(src, monkeypatch)
    assert calls[0] == ["git", "clone", "--depth", "1", "https://github.com/someone/metalib", "/content/metalib"]
    assert calls[1][-2:] == ["-e", "/content/metalib"]
    assert calls[2:] == ["widgets", ("chdir", "/content/metalib/notebooks"), ("fetch", "omniglot")]
