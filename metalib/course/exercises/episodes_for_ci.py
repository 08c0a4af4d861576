"""Exercise of ``07_miniimagenet``: how many test episodes a 95% interval of a given width needs."""
from __future__ import annotations

import math
from typing import Callable

from .base import CheckFailed, Exercise, Feedback, Mistake, call_checked, run_check


def episodes_for_ci(std, half_width):
    """The fewest episodes n with 1.96·σ/√n ≤ h: n ≥ (1.96·σ/h)², rounded up."""
    return math.ceil((1.96 * std / half_width) ** 2)


def _half_width(std: float, n: int) -> float:
    return 1.96 * std / math.sqrt(n)


def check_episodes_for_ci(fn: Callable) -> Feedback:
    """``episodes_for_ci(std, half_width) -> int``: the fewest episodes n with
    ``1.96 * std / sqrt(n) <= half_width`` (std > 0). Checked against that definition directly: n
    must reach the width, and n - 1 must not."""

    def body() -> str:
        for std, h in ((17.0, 1.0), (17.0, 0.5), (5.0, 0.4), (9.9, 2.0), (1.96, 1.0)):
            n = call_checked("episodes_for_ci", fn, std, h)
            if isinstance(n, float) and n.is_integer():
                n = int(n)
            if isinstance(n, bool) or not isinstance(n, int):
                raise CheckFailed(f"return a whole number of episodes (an int); with sigma = {std} and half-width "
                                  f"{h} yours returned {n!r}.")
            if n < 1:
                raise CheckFailed(f"with sigma = {std} and half-width {h} you returned {n} episodes; an evaluation "
                                  "needs at least one.")
            x = (1.96 * std / h) ** 2
            enough = _half_width(std, n) <= h * (1 + 1e-9)
            fewest = n == 1 or _half_width(std, n - 1) > h * (1 - 1e-9)
            if enough and fewest:
                continue
            if n == math.ceil(1.96 * std / h):
                raise CheckFailed(f"with sigma = {std} and half-width {h} you returned {n} = 1.96·sigma/h rounded up: "
                                  "square it — from 1.96·sigma/sqrt(n) <= h, n >= (1.96·sigma/h)².")
            if n == math.ceil((std / h) ** 2):
                raise CheckFailed(f"with sigma = {std} and half-width {h} you returned {n} = (sigma/h)² rounded up: "
                                  "the 95% interval is 1.96 standard errors wide, n >= (1.96·sigma/h)².")
            if n == math.ceil((2 * std / h) ** 2) or n == math.ceil((2 * std / h) ** 2) - 1:
                raise CheckFailed(f"with sigma = {std} and half-width {h} you returned {n} = (2·sigma/h)²: the "
                                  "factor is 1.96, not 2 — yours asks for more episodes than needed.")
            if not enough:
                msg = (f"with sigma = {std} and half-width {h}, {n} episodes give a CI of "
                       f"±{_half_width(std, n):.4f}, wider than {h}")
                if n == math.floor(x):
                    msg += f": (1.96·sigma/h)² = {x:.2f} is not a whole number — round *up*, not down."
                raise CheckFailed(msg + ".")
            raise CheckFailed(f"with sigma = {std} and half-width {h}, {n} episodes are more than needed: {n - 1} "
                              f"already give ±{_half_width(std, n - 1):.4f} <= {h}.")
        return "the fewest episodes that reach each width (n reaches it, n − 1 does not), for five (sigma, h) pairs."

    return run_check("episodes_for_ci", body)


# ---------------------------------------------------------------------------- common mistakes
def _floor(std, half_width):
    return int((1.96 * std / half_width) ** 2)


def _no_square(std, half_width):
    return math.ceil(1.96 * std / half_width)


def _no_196(std, half_width):
    return math.ceil((std / half_width) ** 2)


def _two_sigma(std, half_width):
    return math.ceil((2 * std / half_width) ** 2)


def _float(std, half_width):
    return (1.96 * std / half_width) ** 2


EXERCISE = Exercise(
    name="episodes_for_ci", notebook="07_miniimagenet", solution=episodes_for_ci, check=check_episodes_for_ci,
    mistakes=(
        Mistake("rounded down", _floor, "round *up*"),
        Mistake("the square forgotten", _no_square, "square it"),
        Mistake("the 1.96 forgotten", _no_196, "1.96 standard errors"),
        Mistake("2 instead of 1.96", _two_sigma, "not 2"),
        Mistake("not rounded at all (a float)", _float, "whole number"),
    ),
)
