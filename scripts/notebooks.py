#!/usr/bin/env python
"""The notebooks' sources and their build: one command.

The sources are the jupytext "percent" scripts in ``course/`` (plain Python: ``# %%`` starts a
code cell, ``# %% [markdown]`` a Markdown cell), paired with the executed notebooks in
``notebooks/`` (what students open, committed with their outputs; ``jupytext.toml`` sets the
pairing). Edit the script, then:

    python scripts/notebooks.py sync [NAMES]      # copy the sources' cells into the notebooks (outputs of unchanged cells kept)
    python scripts/notebooks.py execute [NAMES]   # re-run the notebooks in place (their default mode), storing the outputs
    python scripts/notebooks.py build [NAMES]     # sync, then execute
    python scripts/notebooks.py check             # every pair in sync, every source lints clean, every
                                                  # Solution block is its exercise's registered solution (what CI runs)
    python scripts/notebooks.py release --student DIR [--instructor DIR] [NAMES]
                                                  # the two versions of the executed notebooks (+ README.md):
                                                  # the student's without the Solution blocks or solution(), the instructor's
                                                  # with every Solution block open
    python scripts/notebooks.py slides --out DIR [NAMES]   # lecture slides (jupyter nbconvert --to slides), offline:
                                                  # reveal.js and MathJax copied into DIR/_assets from packages
    python scripts/notebooks.py site --out DIR    # the course site, offline (scripts/course_site.py, docs/site.md)
    python scripts/notebooks.py live              # the notebooks that train, adapt or evaluate a model live
    python scripts/notebooks.py generic [NAMES]   # strict nbval on those (or NAMES) under generic CPU kernels:
                                                  # the outputs must not depend on the CPU (docs/notebooks.md; CI runs it)

NAMES: notebook numbers or names (``05``, ``05_prototypical_networks``); default all.
``execute`` needs the data for 04-08 (see docs/data.md) and runs with ``MPLBACKEND=Agg``.

**Lecture mode.** Every cell carries Jupyter's slideshow metadata (``slide_type``), which RISE and
``jupyter nbconvert --to slides`` read: a source may set it in the cell header
(``# %% [markdown] slideshow={"slide_type": "slide"}``); ``sync`` gives every cell without one the
default of :func:`default_slide_type` (a ``#``/``##`` heading opens a slide, a ``###`` heading a
sub-slide, a Solution block is a fragment, anything else continues the current slide).

**Solutions.** A Solution block is a Markdown cell tagged ``solution`` (``# %% [markdown]
tags=["solution"]``; a cell whose text opens with ``<details><summary><b>Solution`` counts too) holding
a ``python`` code fence. ``check`` compares that code with the registered exercise's reference
solution (``metalib.course.exercises``, matched by the function's name).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
SOURCES, NOTEBOOKS = ROOT / "course", ROOT / "notebooks"


class Error(Exception):
    """A problem the command reports in one line (exit 2)."""


def pairs(names: Sequence[str] = ()) -> List[Path]:
    """The sources ``course/NN_*.py`` selected by ``names`` (all if empty)."""
    sources = sorted(SOURCES.glob("[0-9][0-9]_*.py"))
    if not names:
        return sources
    out = []
    for name in names:
        hit = [s for s in sources if s.stem == name or s.stem.split("_")[0] == name]
        if not hit:
            raise Error(f"no notebook source {name!r} in course/ (have {', '.join(s.stem for s in sources)})")
        out += hit
    return out


def notebook_of(source: Path) -> Path:
    return NOTEBOOKS / f"{source.stem}.ipynb"


# PyTorch's plain C++ kernels instead of AVX2/AVX-512, and oneDNN's SSE4.1 convolutions: floating-point results
# differ from the machine's own kernels in their last bits, as they do between CPUs (docs/notebooks.md)
GENERIC_KERNELS = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"}

# a code cell that calls one of these computes with floating-point kernels at run time: it trains a model
# (fit_live, lab.train, train_live), adapts one by gradient steps (adaptation_path, mse_per_step, inner_loop,
# .adapt) or evaluates one (evaluate, evaluate_metasgd, agreement, instance_curves)
LIVE_CALLS = re.compile(r"\b(fit_live|train_live|adaptation_path|mse_per_step|inner_loop|evaluate|evaluate_metasgd|"
                        r"agreement|instance_curves|calibration|inner_step)\(|\blab\.train\(|\.adapt\(")


def computes_live(source: Path) -> bool:
    """Whether a notebook source has a code cell that trains, adapts or evaluates a model (:data:`LIVE_CALLS`)."""
    import jupytext

    nb = jupytext.read(source)
    return any(c.cell_type == "code" and LIVE_CALLS.search(c.source) for c in nb.cells)


def generic(sources: Sequence[Path]) -> int:
    """Strict nbval on the notebooks of ``sources`` under :data:`GENERIC_KERNELS`; pytest's exit code."""
    env = dict(os.environ, MPLBACKEND="Agg", **GENERIC_KERNELS)
    env.pop("METALIB_FULL", None)
    targets = [str(notebook_of(s).relative_to(ROOT)) for s in sources]
    print(f"strict nbval under generic kernels ({' '.join(f'{k}={v}' for k, v in GENERIC_KERNELS.items())}): "
          + " ".join(t.split("/")[-1] for t in targets), flush=True)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *targets], cwd=ROOT,
                          env=env).returncode


def _cells(nb) -> list:
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def out_of_sync(source: Path) -> List[str]:
    """What differs between a source and its notebook (empty: in sync)."""
    import jupytext

    target = notebook_of(source)
    if not target.exists():
        return [f"{target.relative_to(ROOT)} does not exist (run: python scripts/notebooks.py build {source.stem[:2]})"]
    a, b = _cells(jupytext.read(source)), _cells(jupytext.read(target))
    problems = []
    if len(a) != len(b):
        problems.append(f"{len(a)} cells in the source, {len(b)} in the notebook")
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            problems.append(f"cell {i} differs ({x[0]}: {x[1][:60]!r}... vs {y[1][:60]!r}...)")
            break
    return problems


def sync(sources: Sequence[Path]) -> None:
    for s in sources:
        target = notebook_of(s)
        cmd = [sys.executable, "-m", "jupytext", "--quiet", "--to", "ipynb", "--output", str(target)]
        if target.exists():
            cmd.append("--update")  # keep the outputs (and ids) of the cells whose source is unchanged
        subprocess.run(cmd + [str(s)], check=True)
        added = add_slide_metadata(target)
        print(f"synced {s.relative_to(ROOT)} -> {target.relative_to(ROOT)}"
              + (f" ({added} cells given their default slide type)" if added else ""))


def execute(sources: Sequence[Path], timeout: int = 1800) -> None:
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONHASHSEED="0", METALIB_PROGRESS="0")  # no bar in stored outputs
    env.pop("METALIB_FULL", None)  # committed outputs are the default mode's
    for s in sources:
        target = notebook_of(s)
        print(f"executing {target.relative_to(ROOT)} ...", flush=True)
        subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--inplace",
                        f"--ExecutePreprocessor.timeout={timeout}", "--ExecutePreprocessor.kernel_name=python3",
                        str(target)], check=True, cwd=NOTEBOOKS, env=env)


def lint(sources: Sequence[Path]) -> List[str]:
    """Problems ``ruff`` finds in the sources (configured in pyproject.toml); compile errors without it."""
    if shutil.which("ruff") or _has_module("ruff"):
        proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--quiet", *map(str, sources)],
                              capture_output=True, text=True, cwd=ROOT)
        return [line for line in proc.stdout.splitlines() if line.strip()] if proc.returncode else []
    problems = []
    for s in sources:
        try:
            compile(s.read_text(), str(s), "exec")
        except SyntaxError as err:
            problems.append(f"{s.relative_to(ROOT)}:{err.lineno}: {err.msg}")
    return problems


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


# ============================================================================ lecture mode: slide types
SOLUTION_TAG = "solution"
_SOLUTION_OPENING = re.compile(r"^\s*<details[^>]*>\s*<summary>\s*<b>\s*Solution", re.IGNORECASE)


def is_solution(cell) -> bool:
    """A Solution block: a Markdown cell tagged ``solution`` (or opening with ``<details><summary><b>Solution``)."""
    return cell.get("cell_type") == "markdown" and (
        SOLUTION_TAG in cell.get("metadata", {}).get("tags", []) or bool(_SOLUTION_OPENING.match(_text(cell))))


def _text(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def default_slide_type(cell) -> str:
    """The slide type a cell gets when its source sets none: ``"slide"`` for a Markdown cell opening
    with a ``#`` or ``##`` heading, ``"subslide"`` for ``###``, ``"fragment"`` for a Solution block
    (revealed on the next click), ``"-"`` (continue the slide) for everything else."""
    if cell.get("cell_type") != "markdown":
        return "-"
    if is_solution(cell):
        return "fragment"
    first = _text(cell).lstrip().split("\n", 1)[0]
    if re.match(r"^#{1,2} ", first):
        return "slide"
    if first.startswith("### "):
        return "subslide"
    return "-"


def add_slide_metadata(path: Path) -> int:
    """Give every cell of the notebook at ``path`` without slideshow metadata its default slide type;
    the first cell always opens a slide. Returns how many cells changed (the file is rewritten only then)."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    changed = 0
    for i, cell in enumerate(nb.cells):
        show = cell.metadata.get("slideshow") or {}
        if "slide_type" not in show:
            cell.metadata["slideshow"] = {**show, "slide_type": "slide" if i == 0 else default_slide_type(cell)}
            changed += 1
    if changed:
        nbformat.write(nb, str(path))
    return changed


# the slides' template (scripts/slides_template/metalib_reveal) and the offline copies of what it loads, as
# ``(package, folder inside it, folder under DIR/_assets, what to copy)``: reveal.js 5 from sphinx-revealjs,
# MathJax 3 (its one-file TeX build and the fonts it loads) from django-static-mathjax (module ``mathjax``)
SLIDES_TEMPLATE = Path(__file__).resolve().parent / "slides_template"
SLIDE_ASSETS = (
    ("sphinx_revealjs", "_static/revealjs", "revealjs", ("dist", "plugin/notes")),
    ("mathjax", "static/mathjax/es5", "mathjax", ("tex-chtml-full.js", "output/chtml", "ui", "a11y", "input/mml")),
)
MATHJAX_URL = "_assets/mathjax/tex-chtml-full.js"


def slide_assets(out: Path) -> Path:
    """Copy reveal.js and MathJax from their installed packages into ``out/_assets`` (what the slides load,
    relative to the HTML: they work from a file:// folder, offline)."""
    import importlib.util

    assets = out / "_assets"
    for package, inside, name, parts in SLIDE_ASSETS:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise Error(f"the offline slides need the package that ships {name} ({package}): "
                        "pip install -r requirements-dev.txt")
        root = Path(list(spec.submodule_search_locations)[0]) / inside
        for part in parts:
            src, dst = root / part, assets / name / part
            if not src.exists():
                raise Error(f"{src} is missing: reinstall the package {package}")
            if src.is_dir():
                shutil.copytree(src, dst, dirs_exist_ok=True)
            else:
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
    return assets


SLIDE_BUDGET_PX = 560   # of a slide's 720 px, what its cells may fill by the estimate below (it runs low: margins, spacing)


def _png_size(b64: str):
    """``(width, height)`` of a base64 PNG, from its header."""
    import base64
    import struct

    head = base64.b64decode(b64[:64])
    return struct.unpack(">II", head[16:24]) if head[1:4] == b"PNG" else (0, 0)


def cell_height_px(cell) -> int:
    """A rough height of a cell on a 1280-px slide (the template's fonts): text lines, code lines, figures at
    their size (at most 600 px tall, 1250 wide) — enough to tell a cell that fills a slide from one that doesn't."""
    text = _text(cell)
    if cell.get("cell_type") == "markdown":
        h = 0
        for line in text.splitlines():
            if line.startswith("#"):
                h += 56
            elif line.startswith("$$") or line.startswith("|"):
                h += 34
            else:
                h += 27 * max(1, -(-len(line) // 120))
        return h + 16
    if cell.get("cell_type") != "code":
        return 0
    h = 20 * len(text.splitlines()) + 24
    for o in cell.get("outputs", []):
        data = o.get("data", {})
        if "image/png" in data:
            w, ih = _png_size(_text({"source": data["image/png"]}))
            h += int(min(600, ih * min(1.0, 1250 / w))) if w else 300
        elif "text/html" in data:
            h += 30 * _text({"source": data["text/html"]}).count("<tr")
        elif "text/markdown" in data:
            h += 30 * len(_text({"source": data["text/markdown"]}).splitlines())
        elif "text" in o or "text/plain" in data:
            h += 18 * len(_text({"source": o.get("text") or data.get("text/plain", "")}).splitlines())
    return h + 8


def _split_markdown(cell, budget: int) -> list:
    """A Markdown cell taller than ``budget`` px as several cells, cut between paragraphs (blank lines outside a
    ``$$`` block or a code fence); the later parts continue it (type ``-``). A Solution block stays whole."""
    import nbformat

    if cell.get("cell_type") != "markdown" or is_solution(cell) or cell_height_px(cell) <= budget:
        return [cell]
    blocks, current, fence = [], [], False
    for line in _text(cell).split("\n"):
        if line.strip().startswith(("```", "$$")) and line.strip().count("$$") != 2:
            fence = not fence
        if not line.strip() and not fence and current:
            blocks.append("\n".join(current))
            current = []
        elif line.strip() or current:
            current.append(line)
    if current:
        blocks.append("\n".join(current))
    parts, text = [], ""
    for block in blocks:
        trial = f"{text}\n\n{block}" if text else block
        if text and cell_height_px({"cell_type": "markdown", "source": trial}) > budget:
            parts.append(text)
            text = block
        else:
            text = trial
    parts.append(text)
    cells = []
    for i, part in enumerate(parts):
        c = nbformat.from_dict(json.loads(json.dumps(cell))) if i == 0 else nbformat.v4.new_markdown_cell(part)
        c.source = part
        if i:
            c.metadata["slideshow"] = {"slide_type": "-"}
        cells.append(c)
    return cells


def split_long_slides(nb, budget: int = SLIDE_BUDGET_PX) -> int:
    """Make a cell that would run a slide past ``budget`` px (:func:`cell_height_px`) open a sub-slide instead of
    continuing the slide (only cells of type ``-``; a fragment stays with its slide), a Markdown cell taller
    than that cut between its paragraphs first (:func:`_split_markdown`). Returns how many cells moved."""
    nb.cells = [part for cell in nb.cells for part in _split_markdown(cell, budget)]
    used, changed = 0, 0
    for cell in nb.cells:
        show = cell.metadata.setdefault("slideshow", {})
        kind = show.get("slide_type", "-")
        if kind in ("skip", "notes"):
            continue
        h = cell_height_px(cell)
        if kind in ("slide", "subslide"):
            used = h
        elif kind == "-" and used > 0 and used + h > budget:
            show["slide_type"] = "subslide"
            used, changed = h, changed + 1
        else:
            used += h
    return changed


def slides(sources: Sequence[Path], out: Path) -> List[Path]:
    """``jupyter nbconvert --to slides`` of each notebook into ``out`` (reveal.js HTML, stored outputs), with the
    template ``scripts/slides_template/metalib_reveal``: 1280x720 slides, reveal.js and MathJax served from
    ``out/_assets`` (:func:`slide_assets`), nothing from a CDN; a slide longer than the screen continues on a
    sub-slide (:func:`split_long_slides`), a single cell taller than the screen scrolls in its box."""
    import tempfile

    import nbformat

    out.mkdir(parents=True, exist_ok=True)
    slide_assets(out)
    made = []
    for s in sources:
        book = nbformat.read(str(notebook_of(s)), as_version=4)
        split = split_long_slides(book)              # on a copy: the notebook's own slide types stay as they are
        tmp = Path(tempfile.mkdtemp(prefix="slides-"))
        nb = tmp / f"{s.stem}.ipynb"
        nbformat.write(book, str(nb))
        if split:
            print(f"{s.stem}: {split} long slide(s) continued on a sub-slide")
        subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "slides", "--output-dir", str(out),
                        f"--TemplateExporter.extra_template_basedirs={SLIDES_TEMPLATE}", "--template", "metalib_reveal",
                        "--SlidesExporter.reveal_url_prefix=_assets/revealjs", f"--SlidesExporter.mathjax_url={MATHJAX_URL}",
                        "--SlidesExporter.reveal_theme=white",   # its font ships in dist/theme/fonts ("simple" fetches two)
                        "--log-level", "WARN", str(nb)], check=True)
        shutil.rmtree(tmp, ignore_errors=True)
        made.append(out / f"{nb.stem}.slides.html")
        print(f"slides: {made[-1]}")
    return made


# ============================================================================ student and instructor versions
def solution_code(cell) -> Optional[str]:
    """The code in a Solution block's ```python fence (None if it has none)."""
    m = re.search(r"```python\n(.*?)```", _text(cell), re.DOTALL)
    return m.group(1).strip() + "\n" if m else None


# the import of solution() (the checks' "Stuck?" hint) and the hint itself, as the repository's notebooks have them
_SOLUTION_IMPORT = re.compile(r"^(from metalib\.course\.exercises import )(.*?)\s*(#.*)?$", re.MULTILINE)
_SOLUTION_HINT = re.compile(r"\(Stuck\? Run `solution\('\w+'\)`\.\)")


def student_cell(cell):
    """A cell as the student version holds it: no ``solution`` in the exercises' import (so that a check's
    "Stuck?" hint, which names ``solution()`` only where the notebook imported it, gives
    ``metalib.course.exercises.STUDENT_HINT`` instead), and the stored hints rewritten the same way."""
    if cell.get("cell_type") != "code":
        return cell
    sys.path.insert(0, str(ROOT))
    from metalib.course.exercises import STUDENT_HINT

    def drop(m: re.Match) -> str:
        names = [n.strip() for n in m.group(2).split(",") if n.strip() and n.strip() != "solution"]
        if names == [n.strip() for n in m.group(2).split(",") if n.strip()]:
            return m.group(0)                          # no solution here: the line as it was
        return m.group(1) + ", ".join(names) if names else "\0"

    text = _SOLUTION_IMPORT.sub(drop, _text(cell))
    cell.source = "\n".join(line for line in text.split("\n") if line != "\0")
    for out in cell.get("outputs", []):
        if "text" in out:
            out["text"] = _SOLUTION_HINT.sub(STUDENT_HINT, _text({"source": out["text"]}))
        for key in ("text/plain", "text/html", "text/markdown"):
            if key in out.get("data", {}):
                out["data"][key] = _SOLUTION_HINT.sub(STUDENT_HINT, _text({"source": out["data"][key]}))
    return cell


def release(sources: Sequence[Path], student: Optional[Path] = None, instructor: Optional[Path] = None) -> Dict[str, int]:
    """Write the student version (every Solution block removed, no ``solution()`` import or hint: :func:`student_cell`) and/or the instructor version (every
    Solution block kept and opened) of the executed notebooks, plus ``notebooks/README.md``, into the
    given folders. Returns ``{notebook: number of Solution blocks}``."""
    import nbformat

    if student is None and instructor is None:
        raise Error("say where to write: --student DIR and/or --instructor DIR")
    counts = {}
    for folder in (student, instructor):
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(NOTEBOOKS / "README.md", folder / "README.md")
    if student is not None:   # the student's README without its <!-- instructor --> ... <!-- /instructor --> parts
        readme = (NOTEBOOKS / "README.md").read_text()
        (student / "README.md").write_text(re.sub(r"<!-- instructor\b.*?<!-- /instructor -->\n?", "", readme, flags=re.S))
    for s in sources:
        path = notebook_of(s)
        if not path.exists():
            raise Error(f"{path.relative_to(ROOT)} does not exist (run: python scripts/notebooks.py build {s.stem[:2]})")
        nb = nbformat.read(str(path), as_version=4)
        counts[path.stem] = sum(map(is_solution, nb.cells))
        if student is not None:
            mine = nbformat.from_dict(json.loads(json.dumps(nb)))
            mine.cells = [student_cell(c) for c in mine.cells if not is_solution(c)]
            nbformat.validate(mine)
            nbformat.write(mine, str(student / path.name))
        if instructor is not None:
            theirs = nbformat.from_dict(json.loads(json.dumps(nb)))
            for c in theirs.cells:
                if is_solution(c):
                    c.source = re.sub(r"<details(?![^>]*\bopen\b)", "<details open", _text(c), count=1)
            nbformat.validate(theirs)
            nbformat.write(theirs, str(instructor / path.name))
    for folder, label in ((student, "student"), (instructor, "instructor")):
        if folder is not None:
            print(f"{label} version: {len(counts)} notebooks + README.md in {folder}")
    return counts


def solution_problems(sources: Sequence[Path]) -> List[str]:
    """Solution blocks whose code is not the registered reference solution of their exercise."""
    import jupytext

    sys.path.insert(0, str(ROOT))
    from metalib.course import exercises

    by_function = {e.solution.__name__: e for e in exercises.REGISTRY.values()}
    problems = []
    for s in sources:
        for cell in jupytext.read(s).cells:
            if not is_solution(cell):
                continue
            code = solution_code(cell)
            name = re.match(r"def (\w+)", code or "")
            if code is None or name is None:
                problems.append(f"{s.relative_to(ROOT)}: a Solution block without a ```python def ...``` fence")
                continue
            e = by_function.get(name.group(1))
            if e is not None and code != e.code():
                problems.append(f"{s.relative_to(ROOT)}: the Solution block of {e.name!r} differs from its registered "
                                f"solution (metalib/course/exercises/{e.solution.__module__.rsplit('.', 1)[-1]}.py)")
    return problems


def check(sources: Sequence[Path]) -> List[str]:
    """Every source has its notebook and vice versa, each pair in sync, the sources lint clean, the
    Solution blocks are the registered solutions."""
    problems = []
    stems = {s.stem for s in pairs()}
    for nb in sorted(NOTEBOOKS.glob("*.ipynb")):
        if nb.stem not in stems:
            problems.append(f"{nb.relative_to(ROOT)} has no source in course/ (notebooks are built from course/*.py)")
    for s in sources:
        problems += [f"{s.relative_to(ROOT)}: {p}" for p in out_of_sync(s)]
    problems += lint(sources)
    problems += solution_problems(sources)
    return problems


def main(argv: Sequence[str] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("command", choices=["sync", "execute", "build", "check", "release", "slides", "live", "generic",
                                       "site"],
                   help="what to do")
    p.add_argument("names", nargs="*", help="notebook numbers or names (default: all)")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per cell when executing (default 1800)")
    p.add_argument("--student", type=Path, default=None, help="release: write the student version here")
    p.add_argument("--instructor", type=Path, default=None, help="release: write the instructor version here")
    p.add_argument("--out", type=Path, default=None, help="slides, site: write the HTML here")
    a = p.parse_intermixed_args(argv)   # NAMES before or after the options (`slides --out DIR 09`)
    if a.command == "site":  # the course site: its own module (scripts/course_site.py, docs/site.md)
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import course_site

        return course_site.main(["--out", str(a.out)] if a.out is not None else [])
    try:
        sources = pairs(a.names)
        if a.command in ("sync", "build"):
            sync(sources)
        if a.command in ("execute", "build"):
            execute(sources, a.timeout)
        if a.command == "live":
            for src in sources:
                if computes_live(src):
                    print(src.stem)
        if a.command == "generic":
            return generic(sources if a.names else [src for src in sources if computes_live(src)])
        if a.command == "release":
            release(sources, a.student, a.instructor)
        if a.command == "slides":
            if a.out is None:
                raise Error("say where to write the slides: --out DIR")
            slides(sources, a.out)
        if a.command == "check":
            problems = check(sources)
            for line in problems:
                print(line)
            print(f"{len(sources)} notebook sources: " + ("all in sync and clean" if not problems
                                                          else f"{len(problems)} problem(s)"))
            return 1 if problems else 0
    except Error as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as err:
        print(f"error: {' '.join(map(str, err.cmd[:6]))} ... failed with exit code {err.returncode}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
