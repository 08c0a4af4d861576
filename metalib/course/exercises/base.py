"""What every exercise is made of: a verdict (:class:`Feedback`), the helpers its check uses, and the
record that keeps an exercise's solution, check and common mistakes together (:class:`Exercise`)."""
from __future__ import annotations

import ast
import inspect
import re
import sys
import textwrap
from dataclasses import dataclass, field
from typing import Callable, Tuple

import torch
from torch import Tensor

__all__ = ["Feedback", "CheckFailed", "call_checked", "stuck_hint", "STUDENT_HINT", "run_check", "close", "as_float", "Mistake", "Exercise"]


@dataclass
class Feedback:
    """The verdict of a check: ``ok`` and a message that names the problem (or the success)."""

    ok: bool
    exercise: str
    message: str

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        mark = "✓" if self.ok else "✗"
        return f"{mark} {self.exercise}: {self.message}"

    __str__ = __repr__


class CheckFailed(Exception):
    """Raised inside a check to stop at the first problem found."""


#: the "Stuck?" hint where the notebook has no ``solution`` (the student version): no pointer to a solution
STUDENT_HINT = "(Stuck? Re-read the cell above the exercise: it says what to compute, step by step.)"

# PyTorch's messages when float32 and float64 tensors meet in one operation
_DTYPE_CLASH = re.compile(r"dtype|scalar type|Double|Float|float32|float64")


def stuck_hint(exercise: str) -> str:
    """The hint after "not written yet": ``solution('name')`` where the notebook imported ``solution``
    (the repository's notebooks, the instructor's), :data:`STUDENT_HINT` where it did not (the student
    version, which ``scripts/notebooks.py release --student`` writes without that import)."""
    main = sys.modules.get("__main__")   # a notebook's namespace: IPython installs it as __main__
    if callable(getattr(main, "solution", None)):
        return f"(Stuck? Run `solution({exercise!r})`.)"
    return STUDENT_HINT


def _float_tensors(args) -> list:
    return [a for a in args if isinstance(a, Tensor) and a.is_floating_point()]


def call_checked(exercise: str, fn: Callable, *args):
    """Call the student's function; turn exceptions into a readable failure (one line). A function that
    mixes float32 into the check's float64 tensors is told which dtype the check passes and how to follow it."""
    if not callable(fn):
        raise CheckFailed(f"expected a function, got {type(fn).__name__}.")
    try:
        return fn(*args)
    except NotImplementedError:
        raise CheckFailed(
            "not written yet — the function still raises NotImplementedError. Replace the `raise` "
            f"with your code, then run this cell again. {stuck_hint(exercise)}"
        ) from None
    except Exception as e:  # the student's bug: report it, don't crash the notebook
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        dtypes = sorted({str(a.dtype).replace("torch.", "") for a in _float_tensors(args)})
        if isinstance(e, RuntimeError) and dtypes and _DTYPE_CLASH.search(first):
            raise CheckFailed(
                f"your function mixed dtypes ({first}). The check passes {' and '.join(dtypes)} tensors, to compare "
                "to 1e-6; a notebook's network gives float32: make every new tensor in the inputs' dtype — e.g. "
                "`F.one_hot(y, n).to(z.dtype)`, not `.float()` — and the function works for both.") from None
        raise CheckFailed(f"your function raised {type(e).__name__}: {first}") from None


def run_check(exercise: str, body: Callable[[], str]) -> Feedback:
    """Run a check's ``body`` (which returns the success message or raises :class:`CheckFailed`)."""
    try:
        return Feedback(True, exercise, body())
    except CheckFailed as f:
        return Feedback(False, exercise, str(f))


def close(a: Tensor, b: Tensor, tol: float = 1e-6) -> bool:
    """Same shape and equal within ``tol`` (relative and absolute), compared in float64."""
    return a.shape == b.shape and bool(torch.allclose(a.double(), b.double(), rtol=tol, atol=tol))


def as_float(t: Tensor) -> Tensor:
    return t.detach().double()


@dataclass(frozen=True)
class Mistake:
    """A common wrong answer to an exercise and the words the check's message must name it with."""

    what: str                 # the mistake, in a few words ("the sample std (n - 1)")
    answer: Callable          # a function that makes it
    names: str                # a phrase the check's message contains when it meets this answer


@dataclass(frozen=True)
class Exercise:
    """One exercise, in one place: its notebook, its reference solution (the function whose source
    the notebook's Solution block shows), its automatic check and its common mistakes."""

    name: str
    notebook: str
    solution: Callable
    check: Callable
    mistakes: Tuple[Mistake, ...] = field(default_factory=tuple)

    def source(self) -> str:
        """The reference solution's source code."""
        return inspect.getsource(self.solution)

    def code(self) -> str:
        """The reference solution's source without its docstring: what the notebook's Solution block shows."""
        src = textwrap.dedent(self.source())
        fn = ast.parse(src).body[0]
        first = fn.body[0]
        if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant) \
                and isinstance(first.value.value, str):
            lines = src.splitlines()
            del lines[first.lineno - 1:first.end_lineno]
            src = "\n".join(lines)
        return src.strip() + "\n"
