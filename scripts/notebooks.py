#!/usr/bin/env python
"""The notebooks' sources and their build: one command.

The sources are the jupytext "percent" scripts in ``course/`` (plain Python: ``# %%`` starts a
code cell, ``# %% [markdown]`` a Markdown cell), paired with the executed notebooks in
``notebooks/`` (what students open, committed with their outputs; ``jupytext.toml`` sets the
pairing). Edit the script, then:

    python scripts/notebooks.py sync [NAMES]      # copy the sources' cells into the notebooks (outputs of unchanged cells kept)
    python scripts/notebooks.py execute [NAMES]   # re-run the notebooks in place (their default mode), storing the outputs
    python scripts/notebooks.py build [NAMES]     # sync, then execute
    python scripts/notebooks.py check             # every pair in sync, every source lints clean (what CI runs)

NAMES: notebook numbers or names (``05``, ``05_prototypical_networks``); default all.
``execute`` needs the data for 04-08 (see docs/data.md) and runs with ``MPLBACKEND=Agg``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Sequence

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
        print(f"synced {s.relative_to(ROOT)} -> {target.relative_to(ROOT)}")


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


def check(sources: Sequence[Path]) -> List[str]:
    """Every source has its notebook and vice versa, each pair in sync, the sources lint clean."""
    problems = []
    stems = {s.stem for s in pairs()}
    for nb in sorted(NOTEBOOKS.glob("*.ipynb")):
        if nb.stem not in stems:
            problems.append(f"{nb.relative_to(ROOT)} has no source in course/ (notebooks are built from course/*.py)")
    for s in sources:
        problems += [f"{s.relative_to(ROOT)}: {p}" for p in out_of_sync(s)]
    problems += lint(sources)
    return problems


def main(argv: Sequence[str] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("command", choices=["sync", "execute", "build", "check"], help="what to do")
    p.add_argument("names", nargs="*", help="notebook numbers or names (default: all)")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per cell when executing (default 1800)")
    a = p.parse_args(argv)
    try:
        sources = pairs(a.names)
        if a.command in ("sync", "build"):
            sync(sources)
        if a.command in ("execute", "build"):
            execute(sources, a.timeout)
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
