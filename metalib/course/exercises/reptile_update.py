"""Exercise of ``03_reptile_and_comparison``: Reptile's outer update."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .base import CheckFailed, Exercise, Feedback, Mistake, as_float, call_checked, close, run_check


def reptile_update(theta, phis, eps):
    """θ + ε·mean_i(φ_i − θ): ``theta`` a dict {name: tensor}, ``phis`` a list of such dicts (one per task)."""
    return {name: t + eps * torch.stack([phi[name] - t for phi in phis]).mean(0)
            for name, t in theta.items()}


def check_reptile_update(fn: Callable) -> Feedback:
    """``reptile_update(theta, phis, eps)`` returns θ + ε·mean_i(φ_i − θ) as a new dict."""

    def body() -> str:
        gen = torch.Generator().manual_seed(0)
        for n_tasks, eps in ((3, 0.3), (5, 0.7), (1, 0.5)):
            shapes = {"0.weight": (4, 1), "0.bias": (4,), "2.weight": (1, 4)}
            theta = {k: torch.randn(s, generator=gen, dtype=torch.float64) for k, s in shapes.items()}
            phis = [{k: t + torch.randn(t.shape, generator=gen, dtype=torch.float64) for k, t in theta.items()}
                    for _ in range(n_tasks)]
            before = {k: t.clone() for k, t in theta.items()}
            out = call_checked("reptile_update", fn, theta, [dict(p) for p in phis], eps)
            if not isinstance(out, dict) or set(out) != set(theta):
                raise CheckFailed("return a dict with the same keys as theta: {name: new tensor}.")
            if any(not torch.equal(theta[k], before[k]) for k in theta):
                raise CheckFailed("theta was modified in place; return a new dict instead (it makes the update "
                                  "easy to test and to undo).")
            for k in theta:
                if not isinstance(out[k], Tensor) or out[k].shape != theta[k].shape:
                    raise CheckFailed(f"out[{k!r}] should be a tensor of shape {tuple(theta[k].shape)}.")
            diff = {k: torch.stack([p[k] - before[k] for p in phis]) for k in theta}

            def is_(f) -> bool:
                return all(close(as_float(out[k]), f(k)) for k in theta)

            if is_(lambda k: before[k] + eps * diff[k].mean(0)):
                continue
            if is_(lambda k: before[k] - eps * diff[k].mean(0)):
                raise CheckFailed("wrong direction: Reptile moves θ *towards* the adapted weights, θ + ε·(φ − θ).")
            if n_tasks > 1 and is_(lambda k: before[k] + eps * diff[k].sum(0)):
                raise CheckFailed("you summed over the tasks; take the mean, so that ε does not depend on the batch size.")
            if is_(lambda k: before[k] + diff[k].mean(0)):
                raise CheckFailed("ε is missing: θ + ε·mean(φ − θ). (Without it θ jumps all the way to the mean of the φ's.)")
            if n_tasks > 1 and (is_(lambda k: before[k] + eps * diff[k][-1]) or is_(lambda k: before[k] + eps * diff[k][0])):
                raise CheckFailed("only one task's φ is used: average (φ_i − θ) over all tasks of the batch.")
            raise CheckFailed("the result is not θ + ε·mean_i(φ_i − θ).")
        return "θ + ε·mean(φᵢ − θ), for one and for several tasks."

    return run_check("reptile_update", body)


# ---------------------------------------------------------------------------- common mistakes
def _reptile(kind):
    def fn(theta, phis, eps):
        d = {k: torch.stack([p[k] - t for p in phis]) for k, t in theta.items()}
        if kind == "minus":
            return {k: t - eps * d[k].mean(0) for k, t in theta.items()}
        if kind == "sum":
            return {k: t + eps * d[k].sum(0) for k, t in theta.items()}
        if kind == "no_eps":
            return {k: t + d[k].mean(0) for k, t in theta.items()}
        if kind == "last":
            return {k: t + eps * d[k][-1] for k, t in theta.items()}
        for k, t in theta.items():  # "inplace"
            t.add_(eps * d[k].mean(0))
        return theta
    return fn


EXERCISE = Exercise(
    name="reptile_update", notebook="03_reptile_and_comparison", solution=reptile_update, check=check_reptile_update,
    mistakes=(
        Mistake("θ − ε·mean(φ − θ)", _reptile("minus"), "wrong direction"),
        Mistake("the sum over tasks", _reptile("sum"), "summed"),
        Mistake("ε left out", _reptile("no_eps"), "ε is missing"),
        Mistake("only the last task's φ", _reptile("last"), "only one task"),
        Mistake("θ changed in place", _reptile("inplace"), "modified in place"),
    ),
)
