"""Build the course site: every notebook as a web page with its stored outputs, offline.

    python scripts/notebooks.py site --out DIR      (or: python scripts/course_site.py --out DIR)

What it builds (Sphinx + MyST-NB; why not Jupyter Book: docs/site.md):

* a page per notebook (``notebooks/NN_*.ipynb``) with the outputs stored in it — nothing is executed
  (``nb_execution_mode = "off"``): the figures and numbers are the ones nbval checks in CI;
* math rendered by MathJax 3 from an installed package (PyPI ``django-static-mathjax``, MathJax 3.2.2,
  its single file ``es5/tex-svg-full.js`` copied into the site) — no CDN, so the site works offline;
* widgets as their stored state: each widget output becomes static HTML (its figure, its controls drawn
  disabled, at the values they had when the notebook was executed) under a banner saying how to run the
  notebook live — no widget JavaScript, no require.js from a CDN;
* a table of contents by family (:data:`FAMILIES`), and README.md, RESULTS.md, notebooks/README.md and
  docs/*.md as pages. A link from those pages to a repository file that is not a page (a ``.py``
  source, say) becomes plain text: the site holds no dead links.

The build works in a temporary staging folder and writes HTML to ``DIR``; it needs
requirements-dev.txt (sphinx, myst-nb, django-static-mathjax) and no network.
"""
from __future__ import annotations

import argparse
import base64
import copy
import html
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]

# the table of contents: (family, notebook numbers) — the three families of the README's table
FAMILIES = [
    ("Start here", ["00", "01"]),
    ("Optimisation-based meta-learning", ["02", "03", "06", "10"]),
    ("Few-shot image data", ["04", "07"]),
    ("Metric-based meta-learning", ["05", "09"]),
    ("Model-based meta-learning", ["11"]),
    ("Generative meta-learning", ["12"]),
    ("Meta-reinforcement learning", ["13"]),
    ("Comparing everything", ["08"]),
]
# the Markdown pages besides the notebooks: (repository path, title in the table of contents)
PAGES = [("README.md", "About metalib"), ("notebooks/README.md", "The notebooks: sequence and CPU times"),
         ("RESULTS.md", "Results"), ("docs/architecture.md", None), ("docs/notebooks.md", None),
         ("docs/data.md", None), ("docs/references.md", None), ("docs/threads.md", None), ("docs/site.md", None),
         ("binder/README.md", "Run on Binder or Colab")]
WIDGET = "application/vnd.jupyter.widget-view+json"
MATHJAX_FILE = "tex-svg-full.js"


class SiteError(Exception):
    """A problem building the site, said in one line."""


def mathjax_source() -> Path:
    """MathJax 3's self-contained SVG build from the installed ``django-static-mathjax`` package."""
    try:
        import mathjax  # PyPI: django-static-mathjax (MathJax 3.2.2 as static files; no Django needed)
    except ImportError as err:
        raise SiteError("MathJax is not installed: pip install -r requirements-dev.txt "
                        "(django-static-mathjax)") from err
    path = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5" / MATHJAX_FILE
    if not path.is_file():
        raise SiteError(f"{path} is missing: reinstall django-static-mathjax")
    return path


# ----------------------------------------------------------------------------- widgets as static HTML
def _image(model: dict) -> str:
    buf = next((b for b in model.get("buffers", []) if b.get("path") == ["value"]), None)
    if buf is None:
        return ""
    data = buf["data"] if buf.get("encoding") == "base64" else base64.b64encode(buf["data"].encode()).decode()
    fmt = model["state"].get("format", "png")
    return f'<img class="widget-image" alt="figure (stored widget state)" src="data:image/{fmt};base64,{data}"/>'


def widget_html(model_id: str, state: Dict[str, dict], depth: int = 0) -> str:
    """Static HTML of widget ``model_id`` and its children, from a notebook's saved widget state."""
    model = state.get(model_id)
    if model is None or depth > 20:
        return ""
    name, s = model["model_name"], model["state"]
    desc = html.escape(str(s.get("description", "")))
    label = f'<span class="widget-label">{desc}</span> ' if desc else ""
    if name in ("HBoxModel", "VBoxModel", "BoxModel", "GridBoxModel", "AccordionModel", "TabModel"):
        kids = "".join(widget_html(c.replace("IPY_MODEL_", ""), state, depth + 1) for c in s.get("children", []))
        return f'<div class="widget-{"hbox" if name == "HBoxModel" else "vbox"}">{kids}</div>'
    if name == "ImageModel":
        return _image(model)
    if name in ("HTMLModel", "HTMLMathModel"):
        return f'<div class="widget-html">{label}{s.get("value", "")}</div>'  # the notebook's own HTML
    if name == "LabelModel":
        return f'<div class="widget-html">{label}{html.escape(str(s.get("value", "")))}</div>'
    if name in ("DropdownModel", "SelectModel", "SelectMultipleModel", "SelectionSliderModel", "ToggleButtonsModel",
                "RadioButtonsModel"):
        labels = s.get("_options_labels", [])
        chosen = s.get("index")
        chosen = set(chosen if isinstance(chosen, list) else [chosen])
        opts = "".join(f'<option{" selected" if i in chosen else ""}>{html.escape(str(v))}</option>'
                       for i, v in enumerate(labels))
        multiple = " multiple" if name == "SelectMultipleModel" else ""
        return f'<div class="widget-control">{label}<select disabled{multiple}>{opts}</select></div>'
    if name in ("IntSliderModel", "FloatSliderModel", "FloatLogSliderModel", "IntRangeSliderModel",
                "FloatRangeSliderModel", "BoundedIntTextModel", "BoundedFloatTextModel", "IntTextModel",
                "FloatTextModel", "CheckboxModel", "TextModel"):
        return (f'<div class="widget-control">{label}<span class="widget-value">'
                f'{html.escape(str(s.get("value", "")))}</span></div>')
    if name == "ButtonModel":
        return f'<div class="widget-control"><button disabled>{desc or "button"}</button></div>'
    if name in ("FloatProgressModel", "IntProgressModel"):
        return (f'<div class="widget-control"><progress max="{s.get("max", 100)}" value="{s.get("value", 0)}">'
                f'</progress></div>')
    if name == "OutputModel":
        return "".join(_output_html(o) for o in s.get("outputs", []))
    return ""


def _output_html(out: dict) -> str:
    data = out.get("data", {})
    if "image/png" in data:
        return f'<img class="widget-image" alt="figure" src="data:image/png;base64,{data["image/png"]}"/>'
    if "text/html" in data:
        return "".join(data["text/html"])
    text = out.get("text") or data.get("text/plain", "")
    return f"<pre>{html.escape(''.join(text))}</pre>" if text else ""


BANNER = ('<div class="static-widget-note">Interactive widget, shown as it stood when the notebook was executed '
          '(its controls are inactive here). To use it, run the notebook live: <a href="{live}">how to run the '
          'notebooks</a>.</div>')


def static_widgets(nb: dict, live: str) -> int:
    """Replace every widget output of ``nb`` by static HTML of its saved state; returns how many."""
    state = nb.get("metadata", {}).get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}) \
        .get("state", {})
    n = 0
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET not in data:
                continue
            body = widget_html(data[WIDGET]["model_id"], state)
            out["data"] = {"text/html": BANNER.format(live=live) + f'<div class="static-widget">{body}</div>'}
            n += 1
    nb.get("metadata", {}).pop("widgets", None)  # nothing left to hydrate: no widget JavaScript on the page
    return n


# ----------------------------------------------------------------------------- Markdown pages
LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


def fix_links(text: str, page: str, pages: set) -> str:
    """Links of a Markdown page at repository path ``page``: to another page or notebook of the site they
    stay (MyST turns them into links between pages); to a repository file that is not in the site they
    become the link text (plain); web links stay."""
    here = Path(page).parent

    def one(m: re.Match) -> str:
        bang, label, target = m.groups()
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            return m.group(0)
        path, _, anchor = target.partition("#")
        resolved = Path(_normal(here / path))
        if str(resolved) in pages:
            return m.group(0)
        return label if not bang else f"*(figure: {label})*"

    return LINK.sub(one, text)


def _normal(p: Path) -> str:
    parts: List[str] = []
    for part in p.parts:
        if part == "..":
            if parts:
                parts.pop()
        elif part not in (".", ""):
            parts.append(part)
    return "/".join(parts)


def notebook_family(number: str) -> Optional[str]:
    return next((fam for fam, nums in FAMILIES if number in nums), None)


def stage(source: Path) -> List[str]:
    """Write the Sphinx project into ``source``; returns the notebook pages' names."""
    if source.exists():
        shutil.rmtree(source)
    (source / "notebooks").mkdir(parents=True)
    (source / "docs").mkdir()
    (source / "_static" / "mathjax").mkdir(parents=True)
    shutil.copy2(mathjax_source(), source / "_static" / "mathjax" / MATHJAX_FILE)
    notebooks = sorted(ROOT.glob("notebooks/[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise SiteError(f"no notebooks in {ROOT / 'notebooks'}")
    missing = [nb.name for nb in notebooks if notebook_family(nb.name[:2]) is None]
    if missing:
        raise SiteError(f"notebooks with no family in scripts/course_site.py FAMILIES: {', '.join(missing)}")
    pages = {f"notebooks/{nb.name}" for nb in notebooks} | {p for p, _ in PAGES if (ROOT / p).is_file()}
    for nb_path in notebooks:
        nb = json.loads(nb_path.read_text())
        nb = copy.deepcopy(nb)
        static_widgets(nb, live="README.html#running-them")
        nb["cells"].insert(1, {"cell_type": "markdown", "id": "site-run-it-live", "metadata": {}, "source": [
            "```{note}\n",
            "This page shows the notebook with the outputs stored in it (not re-run). To run it yourself — "
            "live widgets, your own settings — see [running the notebooks](README.md#running-them): "
            f"`jupyter lab notebooks/{nb_path.name}` in a checkout, or [Binder / Colab](../binder/README.md).\n",
            "```\n"]})
        (source / "notebooks" / nb_path.name).write_text(json.dumps(nb))
    for page, _title in PAGES:
        src = ROOT / page
        if src.is_file():
            (source / page).parent.mkdir(parents=True, exist_ok=True)
            (source / page).write_text(fix_links(src.read_text(), page, pages))
    index = ["# metalib: learning to learn — the course", "",
             "The notebooks of metalib, rendered with the outputs stored in them: read them here, run them "
             "in Jupyter ([how](notebooks/README.md#running-them)).", ""]
    for fam, nums in FAMILIES:
        names = [f"notebooks/{nb.stem}" for nb in notebooks if nb.name[:2] in nums]
        index += ["```{toctree}", f":caption: {fam}", ":maxdepth: 1", "", *names, "```", ""]
    index += ["```{toctree}", ":caption: About the suite", ":maxdepth: 1", ""]
    index += [(f"{title} <{Path(p).with_suffix('')}>" if title else str(Path(p).with_suffix("")))
              for p, title in PAGES if (ROOT / p).is_file()]
    index += ["```", ""]
    (source / "index.md").write_text("\n".join(index))
    (source / "conf.py").write_text(CONF)
    (source / "_static" / "site.css").write_text(CSS)
    return [nb.stem for nb in notebooks]


CONF = '''# generated by scripts/course_site.py: the course site (Sphinx + MyST-NB), built offline
project = "metalib"
extensions = ["myst_nb", "sphinx.ext.mathjax"]
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
nb_execution_mode = "off"            # the stored outputs, never re-executed
nb_ipywidgets_js = {}                # widgets are static HTML (scripts/course_site.py): no require.js / CDN
nb_render_markdown_format = "myst"
html_theme = "alabaster"
html_static_path = ["_static"]
html_css_files = ["site.css"]
html_theme_options = {"fixed_sidebar": True, "show_powered_by": False}
mathjax_path = "mathjax/tex-svg-full.js"   # MathJax 3.2.2 from django-static-mathjax, in _static/
mathjax3_config = {"tex": {"inlineMath": [["\\\\(", "\\\\)"]], "displayMath": [["\\\\[", "\\\\]"]]},
                   "svg": {"fontCache": "global"}}
exclude_patterns = ["_build"]
suppress_warnings = ["mystnb.unknown_mime_type", "myst.header"]
html_show_sourcelink = False
'''

CSS = '''div.body { max-width: 1100px; }
.static-widget-note { background: #fff6d6; border-left: 4px solid #e0a800; padding: .4em .8em; margin: .5em 0;
  font-size: 90%; }
.static-widget .widget-hbox { display: flex; flex-wrap: wrap; gap: .6em; align-items: center; }
.static-widget .widget-image { max-width: 100%; }
.static-widget .widget-control { display: inline-block; margin: .2em .4em .2em 0; }
.static-widget .widget-label { font-weight: bold; margin-right: .3em; }
'''


def build(out: Path, quiet: bool = True) -> Path:
    """Build the site into ``out`` (HTML; ``out/index.html``); returns ``out``."""
    try:
        from sphinx.cmd.build import build_main
    except ImportError as err:
        raise SiteError("Sphinx is not installed: pip install -r requirements-dev.txt (sphinx, myst-nb)") from err
    out = Path(out).resolve()
    if out == ROOT or ROOT in out.parents and out.parent == ROOT and out.name in ("notebooks", "docs", "course"):
        raise SiteError(f"--out {out} would overwrite the repository's own files: choose another folder")
    import tempfile

    with tempfile.TemporaryDirectory(prefix="metalib-site-") as tmp:
        source = Path(tmp) / "source"
        stage(source)
        args = ["-b", "html", "-E", "-j", "1", str(source), str(out), "-d", str(Path(tmp) / "doctrees")]
        if quiet:
            args.insert(0, "-q")
        code = build_main(args)
    if code != 0:
        raise SiteError(f"sphinx-build failed (exit {code}); run again without --quiet to see why")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="the folder the HTML goes into (its index.html)")
    p.add_argument("--verbose", action="store_true", help="show Sphinx's output (default: warnings only)")
    args = p.parse_args(argv)
    try:
        out = build(args.out, quiet=not args.verbose)
    except SiteError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"site written to {out / 'index.html'} (open it in a browser; no network needed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
