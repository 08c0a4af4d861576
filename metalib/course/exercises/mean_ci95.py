"""Exercise of ``04_few_shot_data``: the mean of per-episode accuracies and its 95% interval."""
from __future__ import annotations

import math
import statistics
from typing import Callable

import torch

from .base import CheckFailed, Exercise, Feedback, Mistake, call_checked, run_check


def mean_ci95(acc):
    """``(mean, 1.96·σ/√n)`` of per-episode accuracies ``acc`` [n], σ the population std (ddof = 0)."""
    acc = torch.as_tensor(acc, dtype=torch.float64)
    return float(acc.mean()), 1.96 * float(acc.std(unbiased=False)) / math.sqrt(acc.numel())


def check_mean_ci95(fn: Callable) -> Feedback:
    """``mean_ci95(acc) -> (mean, ci95)`` for a tensor of per-episode accuracies (in %),
    ``ci95 = 1.96 * std / sqrt(n)`` with the population std (``ddof=0``); compared with Python's
    :mod:`statistics` (an independent computation)."""

    def body() -> str:
        g = torch.Generator().manual_seed(0)
        for n in (600, 50, 7):
            acc = (torch.rand(n, generator=g, dtype=torch.float64) * 40 + 60).round()
            out = call_checked("mean_ci95", fn, acc.clone())
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                raise CheckFailed(f"return two numbers (mean, ci95); got {type(out).__name__}.")
            mean, ci = (float(v) for v in out)
            values = acc.tolist()
            m = statistics.fmean(values)
            sd0, sd1 = statistics.pstdev(values), statistics.stdev(values)
            c = 1.96 * sd0 / math.sqrt(n)
            if abs(mean - m) > 1e-6:
                raise CheckFailed(f"the mean of {n} accuracies should be {m:.4f}, yours is {mean:.4f}.")
            if abs(ci - 1.96 * sd1 / math.sqrt(n)) < 1e-9 and abs(ci - c) > 1e-9:
                raise CheckFailed("you used the sample std (n - 1 in the denominator); the protocol uses the "
                                  "population std (torch: unbiased=False / numpy: ddof=0), as Finn et al.'s code does.")
            if abs(ci - c * math.sqrt(n)) < 1e-6:
                raise CheckFailed("you forgot to divide by sqrt(n): the CI is about the *mean*, whose spread shrinks "
                                  "as 1/sqrt(n) — not about single episodes.")
            if abs(ci - c / math.sqrt(n)) < 1e-9:
                raise CheckFailed("you divided by n; the standard error of the mean is sigma / sqrt(n).")
            if abs(ci - c / 1.96) < 1e-6:
                raise CheckFailed("the 95% interval is 1.96 standard errors wide on each side; yours is one.")
            if abs(ci - c) > 1e-6:
                raise CheckFailed(f"for {n} episodes the half-width should be {c:.4f}, yours is {ci:.4f}.")
        return "mean and 95% CI agree with an independent computation (Python's statistics) on 600, 50 and 7 episodes."

    return run_check("mean_ci95", body)


# ---------------------------------------------------------------------------- common mistakes
def _sample_std(acc):
    return float(acc.mean()), 1.96 * float(acc.std()) / math.sqrt(acc.numel())


def _no_sqrt(acc):
    return float(acc.mean()), 1.96 * float(acc.std(unbiased=False))


def _divided_by_n(acc):
    return float(acc.mean()), 1.96 * float(acc.std(unbiased=False)) / acc.numel()


def _one_standard_error(acc):
    return float(acc.mean()), float(acc.std(unbiased=False)) / math.sqrt(acc.numel())


def _median(acc):
    return float(acc.median()), 1.96 * float(acc.std(unbiased=False)) / math.sqrt(acc.numel())


EXERCISE = Exercise(
    name="mean_ci95", notebook="04_few_shot_data", solution=mean_ci95, check=check_mean_ci95,
    mistakes=(
        Mistake("the sample std (n − 1)", _sample_std, "sample std"),
        Mistake("the std of single episodes (no √n)", _no_sqrt, "sqrt(n)"),
        Mistake("divided by n instead of √n", _divided_by_n, "you divided by n"),
        Mistake("one standard error instead of 1.96", _one_standard_error, "1.96 standard errors"),
        Mistake("the median instead of the mean", _median, "the mean of"),
    ),
)
