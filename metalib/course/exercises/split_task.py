"""Exercise of ``00_welcome``: split one task's points into a support and a query set."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .base import CheckFailed, Exercise, Feedback, Mistake, call_checked, run_check


def split_task(x, y, k):
    """``k`` support points and the other ``n - k`` as query points: ``(x_s, y_s, x_q, y_q)``."""
    return x[:k], y[:k], x[k:], y[k:]


def check_split_task(fn: Callable) -> Feedback:
    """``split_task(x, y, k) -> (x_s, y_s, x_q, y_q)`` puts ``k`` of a task's points in the support
    set and the others in the query set (disjoint, every (x, y) pair kept together)."""

    def body() -> str:
        gen = torch.Generator().manual_seed(0)
        for n, k in ((20, 5), (12, 1), (30, 29)):
            x = (torch.randperm(1000, generator=gen)[:n].double() / 100 - 5).view(n, 1)
            y = 3 * torch.sin(x - 1.0)
            out = call_checked("split_task", fn, x.clone(), y.clone(), k)
            if not isinstance(out, (tuple, list)) or len(out) != 4:
                raise CheckFailed(f"return four tensors (x_s, y_s, x_q, y_q); got {type(out).__name__}"
                                  + (f" of length {len(out)}" if isinstance(out, (tuple, list)) else "") + ".")
            x_s, y_s, x_q, y_q = out
            for name, t in zip(("x_s", "y_s", "x_q", "y_q"), out):
                if not isinstance(t, Tensor):
                    raise CheckFailed(f"{name} should be a tensor, got {type(t).__name__}.")
            if x_s.shape[0] != k or y_s.shape[0] != k:
                raise CheckFailed(f"with k={k} the support set must hold k={k} points; yours holds "
                                  f"{x_s.shape[0]} inputs and {y_s.shape[0]} targets.")
            if x_q.shape[0] != n - k or y_q.shape[0] != n - k:
                raise CheckFailed(f"the query set should hold the other {n - k} of the {n} points; yours holds "
                                  f"{x_q.shape[0]} inputs and {y_q.shape[0]} targets.")
            if x_s.shape[1:] != x.shape[1:] or x_q.shape[1:] != x.shape[1:]:
                raise CheckFailed(f"keep each point's shape: x is {tuple(x.shape)}, so x_s should be "
                                  f"({k}, 1), but it is {tuple(x_s.shape)}.")
            lookup = {round(float(a), 6): float(b) for a, b in zip(x.flatten(), y.flatten())}
            for xs, ys, part in ((x_s, y_s, "support"), (x_q, y_q, "query")):
                tol = 1e-9 if ys.dtype == torch.float64 else 1e-5 * 4   # float32 targets: their rounding (|y| <= 3)
                for a, b in zip(xs.flatten().tolist(), ys.flatten().tolist()):
                    if round(a, 6) not in lookup:
                        raise CheckFailed(f"the {part} set contains x = {a:.2f}, which is not one of the task's points.")
                    if abs(lookup[round(a, 6)] - b) > tol:
                        raise CheckFailed(f"in the {part} set the target of x = {a:.2f} is not its own y any more: "
                                          "split x and y with the same indices so that every pair stays together.")
            s = {round(a, 6) for a in x_s.flatten().tolist()}
            q = {round(a, 6) for a in x_q.flatten().tolist()}
            if s & q:
                raise CheckFailed("a point is in both the support and the query set. The query set must be "
                                  "unseen during adaptation — otherwise it cannot measure generalisation.")
            if len(s | q) != n:
                raise CheckFailed("some of the task's points are missing from both sets (or appear twice).")
        return "support and query sets are disjoint, have the right sizes and keep every (x, y) pair together."

    return run_check("split_task", body)


# ---------------------------------------------------------------------------- common mistakes
def _query_is_everything(x, y, k):
    return x[:k], y[:k], x, y


def _one_too_many(x, y, k):
    return x[: k + 1], y[: k + 1], x[k + 1:], y[k + 1:]


def _pairs_broken(x, y, k):
    return x[:k], y.flip(0)[:k], x[k:], y.flip(0)[k:]


def _overlap(x, y, k):
    return x[:k], y[:k], torch.cat([x[:1], x[k + 1:]]), torch.cat([y[:1], y[k + 1:]])


def _flattened(x, y, k):
    return x[:k].flatten(), y[:k].flatten(), x[k:].flatten(), y[k:].flatten()


def _two_tensors(x, y, k):
    return x[:k], y[:k]


EXERCISE = Exercise(
    name="split_task", notebook="00_welcome", solution=split_task, check=check_split_task,
    mistakes=(
        Mistake("the query set is the whole task (it contains the support points)", _query_is_everything,
                "query set should hold"),
        Mistake("k + 1 support points", _one_too_many, "support set must hold"),
        Mistake("x and y split with different indices", _pairs_broken, "pair"),
        Mistake("a support point is also a query point", _overlap, "both the support and the query"),
        Mistake("the feature dimension dropped", _flattened, "keep each point's shape"),
        Mistake("only the support set returned", _two_tensors, "four tensors"),
    ),
)
