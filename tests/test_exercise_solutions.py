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
def test_an_unwritten_stub_is_told_to_run_solution_where_the_notebook_has_it(name, monkeypatch):
    def not_written(*args):
        raise NotImplementedError

    main = sys.modules["__main__"]
    monkeypatch.setattr(main, "solution", exercises.solution, raising=False)   # the repository's notebooks import it
    fb = exercises.REGISTRY[name].check(not_written)
    assert not fb and "not written yet" in fb.message
    hint = re.search(r"solution\('(\w+)'\)", fb.message)
    assert hint and hint.group(1) == name, fb.message   # the hint names this exercise, which solution() knows
    assert exercises.solution(name, show=False).lstrip().startswith("def ")
    monkeypatch.delattr(main, "solution")                                        # the student version does not
    fb = exercises.REGISTRY[name].check(not_written)
    assert not fb and "not written yet" in fb.message and "solution" not in fb.message, fb.message
    assert exercises.STUDENT_HINT in fb.message


def test_solution_knows_every_exercise_whatever_was_imported_first():
    """``solution('matching_attention')`` in a fresh interpreter that imported only the exercises package."""
    import subprocess

    code = ("from metalib.course.exercises import solution, REGISTRY\n"
            "print(sorted(REGISTRY))\n"
            "for name in ('matching_attention', 'metasgd_step', 'lrua_write'):\n"
            "    assert solution(name, show=False).startswith('def ' + name), name\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert "matching_attention" in proc.stdout and "metasgd_step" in proc.stdout


def _float32(x):
    """``x`` with its float64 tensors (also inside a dict) made float32."""
    import torch

    if isinstance(x, torch.Tensor) and x.dtype == torch.float64:
        return x.float()
    if isinstance(x, dict):
        return {k: _float32(v) for k, v in x.items()}
    return x


@pytest.mark.parametrize("name", list(exercises.REGISTRY))
def test_a_solution_computed_in_float32_is_accepted(name):
    """The checks pass float64 tensors; the reference solution run on their float32 copies (what a
    notebook's network gives) passes too — no misleading "differs by 1e-8"."""
    e = exercises.REGISTRY[name]

    def in_float32(*args):
        return e.solution(*map(_float32, args))

    fb = e.check(in_float32)
    assert fb, fb.message


def test_mixing_float32_into_the_checks_float64_says_which_dtype_in_one_line():
    import torch.nn.functional as F

    def copied_from_section_2(z_s, y_s, z_q, n_way):   # 09's own float32 line, `F.one_hot(y_s, 5).float()`
        cos = F.normalize(z_q, dim=-1) @ F.normalize(z_s, dim=-1).T
        return cos.softmax(dim=1) @ F.one_hot(y_s, n_way).float()

    fb = exercises.check_matching_attention(copied_from_section_2)
    assert not fb and "\n" not in fb.message
    assert "float64 tensors" in fb.message and ".to(z.dtype)" in fb.message, fb.message


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
