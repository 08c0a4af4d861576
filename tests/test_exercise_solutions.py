"""Each exercise in one place, and the notebooks agree with it.

For every exercise of ``metalib.course.exercises`` (its solution, check and common mistakes live in one
module): the reference solution passes its check; every listed common mistake fails it with a message
that names the mistake; every notebook's Solution block *is* that solution (the same code, docstring
aside) and, run with the notebook's own imports, passes the check too; every notebook that calls a
check imports ``solution`` (which the checks' "Stuck?" hint tells the student to run).
"""
import ast
import importlib
import re
import sys
from pathlib import Path

import jupytext
import pytest

from metalib.course import exercises

ROOT = Path(__file__).resolve().parents[1]
# every course module, imported here, registers its exercises: the tests below see all of them, whatever ran before
for _module in sorted((ROOT / "metalib" / "course").glob("*.py")):
    if _module.stem != "__init__":
        importlib.import_module(f"metalib.course.{_module.stem}")
sys.path.insert(0, str(ROOT / "scripts"))
import notebooks as nbs  # noqa: E402  (scripts/notebooks.py: what a Solution block is)

SOURCES = sorted((ROOT / "course").glob("[0-9][0-9]_*.py"))
BUILT_IN = ["split_task", "sample_sinusoid", "inner_step", "reptile_update", "mean_ci95", "proto_logits",
            "adapt_ce", "episodes_for_ci", "anil_adapt"]
MISTAKES = [(e, m) for e in exercises.REGISTRY.values() for m in e.mistakes]


def _solution_blocks():
    """``(source, code)`` of every Solution block of every notebook source."""
    for source in SOURCES:
        for cell in jupytext.read(source).cells:
            if nbs.is_solution(cell):
                yield source, nbs.solution_code(cell)


def _notebook_imports(source: Path) -> dict:
    """A namespace holding what the notebook's module-level import statements import."""
    tree = ast.parse(source.read_text())
    imports = ast.Module(body=[n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))], type_ignores=[])
    namespace: dict = {}
    exec(compile(imports, str(source), "exec"), namespace)
    return namespace


@pytest.mark.parametrize("name", list(exercises.REGISTRY))
def test_the_reference_solution_passes_its_check(name):
    e = exercises.REGISTRY[name]
    fb = e.check(e.solution)
    assert fb, fb.message
    assert repr(fb).startswith("✓")


@pytest.mark.parametrize("exercise, mistake", MISTAKES, ids=[f"{e.name}: {m.what}" for e, m in MISTAKES])
def test_every_common_mistake_is_named(exercise, mistake):
    fb = exercise.check(mistake.answer)
    assert not fb, f"the check accepted a known mistake ({mistake.what})"
    assert mistake.names in fb.message, f"{mistake.what!r} answered with: {fb.message}"


def test_every_built_in_exercise_lists_its_common_mistakes():
    assert list(exercises.REGISTRY)[: len(BUILT_IN)] == BUILT_IN
    for name in BUILT_IN:
        assert len(exercises.REGISTRY[name].mistakes) >= 4, name


@pytest.mark.parametrize("name", list(exercises.REGISTRY))
def test_an_unwritten_stub_is_told_to_run_solution(name):
    def not_written(*args):
        raise NotImplementedError

    fb = exercises.REGISTRY[name].check(not_written)
    assert not fb and "not written yet" in fb.message
    hint = re.search(r"solution\('(\w+)'\)", fb.message)
    assert hint and hint.group(1) == name, fb.message   # the hint names this exercise, which solution() knows
    assert exercises.solution(name, show=False).lstrip().startswith("def ")


def test_every_notebook_solution_block_is_its_exercise_solution_and_passes_the_check():
    seen = set()
    by_function = {e.solution.__name__: e for e in exercises.REGISTRY.values()}
    for source, code in _solution_blocks():
        assert code is not None, f"{source.name}: a Solution block without a python code fence"
        name = re.match(r"def (\w+)", code).group(1)
        e = by_function.get(name)
        if e is None:
            continue  # a later notebook's exercise that registers elsewhere
        assert e.notebook == source.stem, (e.name, source.name)
        assert code == e.code(), f"{source.name}: the Solution block of {e.name!r} is not its registered solution"
        namespace = _notebook_imports(source)
        exec(compile(code, f"{source.name}: Solution block", "exec"), namespace)   # the block, as the notebook runs it
        fb = e.check(namespace[name])
        assert fb, f"{source.name}: its own Solution block fails its check: {fb.message}"
        seen.add(e.name)
    assert seen >= set(BUILT_IN), sorted(set(BUILT_IN) - seen)


@pytest.mark.parametrize("source", SOURCES, ids=[s.stem for s in SOURCES])
def test_a_notebook_that_calls_a_check_imports_solution(source):
    text = source.read_text()
    if not re.search(r"^check_\w+\(", text, re.M):
        pytest.skip("no exercise check in this notebook")
    namespace = _notebook_imports(source)
    assert callable(namespace.get("solution")), f"{source.name} does not import solution (its hint says to run it)"
