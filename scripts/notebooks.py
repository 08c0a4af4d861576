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
                                                  # the student's without the Solution blocks, the instructor's
                                                  # with every Solution block open
    python scripts/notebooks.py slides --out DIR [NAMES]   # lecture slides (jupyter nbconvert --to slides)
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
                        r"agreement|instance_curves|calibration)\(|\blab\.train\(|\.adapt\(")


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
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONHASHSEED="0")
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


def slides(sources: Sequence[Path], out: Path) -> List[Path]:
    """``jupyter nbconvert --to slides`` of each notebook into ``out`` (reveal.js HTML, stored outputs)."""
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for s in sources:
        nb = notebook_of(s)
        subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "slides", "--output-dir", str(out),
                        "--log-level", "WARN", str(nb)], check=True)
        made.append(out / f"{nb.stem}.slides.html")
        print(f"slides: {made[-1]}")
    return made


# ============================================================================ student and instructor versions
def solution_code(cell) -> Optional[str]:
    """The code in a Solution block's ```python fence (None if it has none)."""
    m = re.search(r"```python\n(.*?)```", _text(cell), re.DOTALL)
    return m.group(1).strip() + "\n" if m else None


def release(sources: Sequence[Path], student: Optional[Path] = None, instructor: Optional[Path] = None) -> Dict[str, int]:
    """Write the student version (every Solution block removed) and/or the instructor version (every
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
    for s in sources:
        path = notebook_of(s)
        if not path.exists():
            raise Error(f"{path.relative_to(ROOT)} does not exist (run: python scripts/notebooks.py build {s.stem[:2]})")
        nb = nbformat.read(str(path), as_version=4)
        counts[path.stem] = sum(map(is_solution, nb.cells))
        if student is not None:
            mine = nbformat.from_dict(json.loads(json.dumps(nb)))
            mine.cells = [c for c in mine.cells if not is_solution(c)]
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
    p.add_argument("command", choices=["sync", "execute", "build", "check", "release", "slides", "live", "generic"],
                   help="what to do")
    p.add_argument("names", nargs="*", help="notebook numbers or names (default: all)")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per cell when executing (default 1800)")
    p.add_argument("--student", type=Path, default=None, help="release: write the student version here")
    p.add_argument("--instructor", type=Path, default=None, help="release: write the instructor version here")
    p.add_argument("--out", type=Path, default=None, help="slides: write the HTML slides here")
    a = p.parse_args(argv)
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
