"""Automatic checks for the notebook exercises: they say *what* is wrong, not just that it is.

Each ``check_*`` function calls the student's function on a few random cases, compares it with an
independent computation and returns a :class:`Feedback` — shown as a one-paragraph message in a
notebook, truthy when the exercise is solved::

    from metalib.course.exercises import check_inner_step, solution
    check_inner_step(inner_step)     # ✓ ... or ✗ <what is wrong> + a hint
    solution("inner_step")           # prints a reference solution (try first!)

=================  =======================================  =======================
exercise           notebook                                  check
=================  =======================================  =======================
split_task         00_welcome                                :func:`check_split_task`
sample_sinusoid    01_sinusoid_tasks                         :func:`check_sinusoid_sampler`
inner_step         02_maml_from_scratch                      :func:`check_inner_step`
reptile_update     03_reptile_and_comparison                 :func:`check_reptile_update`
=================  =======================================  =======================
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from . import solutions
from ..functional import inner_loop
from ..models import MLP

__all__ = [
    "Feedback", "check_split_task", "check_sinusoid_sampler", "check_inner_step",
    "check_reptile_update", "solution", "EXERCISES",
]


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


def call_checked(exercise: str, fn: Callable, *args):
    """Call the student's function; turn exceptions into a readable failure."""
    if not callable(fn):
        raise CheckFailed(f"expected a function, got {type(fn).__name__}.")
    try:
        return fn(*args)
    except NotImplementedError:
        raise CheckFailed(
            "not written yet — the function still raises NotImplementedError. Replace the `raise` "
            f"with your code, then run this cell again. (Stuck? `solution({exercise!r})`.)"
        ) from None
    except Exception as e:  # the student's bug: report it, don't crash the notebook
        raise CheckFailed(f"your function raised {type(e).__name__}: {e}") from None


def run_check(exercise: str, body: Callable[[], str]) -> Feedback:
    try:
        return Feedback(True, exercise, body())
    except CheckFailed as f:
        return Feedback(False, exercise, str(f))


def close(a: Tensor, b: Tensor, tol: float = 1e-6) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a.double(), b.double(), rtol=tol, atol=tol))


def as_float(t: Tensor) -> Tensor:
    return t.detach().double()


# ============================================================================ 00: split a task
def check_split_task(fn: Callable) -> Feedback:
    """Exercise of ``00_welcome``: ``split_task(x, y, k) -> (x_s, y_s, x_q, y_q)`` puts ``k`` of a
    task's points in the support set and the others in the query set (disjoint, pairs kept)."""

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
                for a, b in zip(xs.flatten().tolist(), ys.flatten().tolist()):
                    if round(a, 6) not in lookup:
                        raise CheckFailed(f"the {part} set contains x = {a:.2f}, which is not one of the task's points.")
                    if abs(lookup[round(a, 6)] - b) > 1e-9:
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


# ============================================================================ 01: sample sinusoids
def check_sinusoid_sampler(fn: Callable) -> Feedback:
    """Exercise of ``01_sinusoid_tasks``: ``sample_sinusoid_tasks(n_tasks, k, generator)`` returns
    ``(amplitude [n], phase [n], x [n, k, 1], y [n, k, 1])`` with A ~ U[0.1, 5], phase ~ U[0, pi],
    x ~ U[-5, 5] and y = A sin(x - phase)."""

    def body() -> str:
        n, k = 2000, 7
        out = call_checked("sample_sinusoid", fn, n, k, torch.Generator().manual_seed(0))
        if not isinstance(out, (tuple, list)) or len(out) != 4:
            raise CheckFailed("return four tensors: (amplitude, phase, x, y).")
        a, p, x, y = out
        for name, t in zip(("amplitude", "phase", "x", "y"), out):
            if not isinstance(t, Tensor):
                raise CheckFailed(f"{name} should be a tensor, got {type(t).__name__}.")
        if a.shape != (n,) or p.shape != (n,):
            raise CheckFailed(f"amplitude and phase should have shape ({n},) — one per task — got "
                        f"{tuple(a.shape)} and {tuple(p.shape)}.")
        if x.shape == (n, k) or y.shape == (n, k):
            raise CheckFailed(f"x and y need a trailing feature dimension: shape ({n}, {k}, 1), not ({n}, {k}) "
                        "— the network takes inputs of shape [points, 1] (use .unsqueeze(-1) or view(n, k, 1)).")
        if x.shape != (n, k, 1) or y.shape != (n, k, 1):
            raise CheckFailed(f"x and y should have shape (n_tasks, k, 1) = ({n}, {k}, 1); got {tuple(x.shape)} and {tuple(y.shape)}.")
        a, p, x, y = (as_float(t) for t in (a, p, x, y))
        if bool((a == a[0]).all()):
            raise CheckFailed("every task has the same amplitude: draw one amplitude per task (a tensor of n_tasks values).")
        if a.min() < 0.1 - 1e-6 or a.max() > 5.0 + 1e-6:
            raise CheckFailed(f"amplitudes should lie in [0.1, 5.0]; yours range over [{a.min():.2f}, {a.max():.2f}]. "
                        "Scale a U[0, 1] draw: 0.1 + 4.9 * torch.rand(...).")
        if a.min() > 0.3 or a.max() < 4.8 or abs(float(a.mean()) - 2.55) > 0.15:
            raise CheckFailed(f"amplitudes should be uniform on [0.1, 5.0] (mean 2.55); yours have mean "
                        f"{float(a.mean()):.2f} and range [{a.min():.2f}, {a.max():.2f}].")
        if p.min() < -1e-6 or p.max() > math.pi + 1e-6 or p.max() < 2.9 or abs(float(p.mean()) - math.pi / 2) > 0.1:
            raise CheckFailed(f"phases should be uniform on [0, π] (mean {math.pi / 2:.2f}); yours have mean "
                        f"{float(p.mean()):.2f} and range [{p.min():.2f}, {p.max():.2f}].")
        if x.min() < -5 - 1e-6 or x.max() > 5 + 1e-6 or x.min() > -4.9 or x.max() < 4.9 or abs(float(x.mean())) > 0.1:
            raise CheckFailed(f"inputs should be uniform on [-5, 5]; yours range over [{x.min():.2f}, {x.max():.2f}] "
                        f"with mean {float(x.mean()):.2f}. Scale a U[0, 1] draw: -5 + 10 * torch.rand(...).")
        A, P = a.view(-1, 1, 1), p.view(-1, 1, 1)
        if not close(y, A * torch.sin(x - P), 1e-4):
            if close(y, A * torch.sin(x + P), 1e-4):
                raise CheckFailed("the phase has the wrong sign: the tasks are y = A·sin(x − φ), not A·sin(x + φ).")
            if close(y, torch.sin(x - P), 1e-4):
                raise CheckFailed("the amplitude is missing: y = A·sin(x − φ).")
            if close(y, A * torch.sin(x), 1e-4):
                raise CheckFailed("the phase is missing: y = A·sin(x − φ).")
            if close(y, A * torch.sin(x - P.view(1, -1, 1)[:, : x.shape[1]]), 1e-4) or close(
                y, A.view(1, -1, 1)[:, : x.shape[1]] * torch.sin(x - P), 1e-4):
                raise CheckFailed("amplitude/phase are broadcast along the wrong dimension: reshape them to "
                            "(n_tasks, 1, 1) so that each task uses its own.")
            raise CheckFailed("y does not equal A·sin(x − φ) for the amplitudes, phases and inputs you returned.")
        again = call_checked("sample_sinusoid", fn, n, k, torch.Generator().manual_seed(0))
        other = call_checked("sample_sinusoid", fn, n, k, torch.Generator().manual_seed(1))
        if not all(torch.equal(as_float(u), as_float(v)) for u, v in zip(again, (a, p, x, y))):
            raise CheckFailed("two calls with generators seeded alike gave different tasks: pass "
                        "`generator=generator` to every torch.rand call so that experiments are reproducible.")
        if torch.equal(as_float(other[0]), a):
            raise CheckFailed("a generator with another seed gave the same tasks: draw the random numbers from "
                        "`generator`, not from a fixed seed inside the function.")
        return ("shapes, ranges, y = A·sin(x − φ) and reproducibility from the generator are all right "
                f"(checked on {n} tasks).")

    return run_check("sample_sinusoid", body)


# ============================================================================ 02: MAML's inner step
def _inner_case(seed: int):
    torch.manual_seed(seed)
    model = MLP(1, (8, 8), 1).double()
    gen = torch.Generator().manual_seed(seed)
    n = 5 + seed
    x = torch.rand(n, 1, generator=gen, dtype=torch.float64) * 10 - 5
    y = 2 * torch.sin(x - 0.5)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    return model, params, x, y


def check_inner_step(fn: Callable) -> Feedback:
    """Exercise of ``02_maml_from_scratch``: ``inner_step(model, params, x, y, lr)`` takes one SGD step
    on the MSE of ``model`` (run with ``params``) on ``(x, y)`` and returns the new params dict,
    *differentiable* with respect to ``params`` — second-order terms included — as MAML needs.
    Compared with :func:`metalib.functional.inner_loop` and its gradient."""

    def body() -> str:
        cases = 0
        for seed, lr in ((0, 0.1), (1, 0.03), (2, 0.5)):
            model, params, x, y = _inner_case(seed)
            before = {k: v.detach().clone() for k, v in params.items()}
            out = call_checked("inner_step", fn, model, params, x, y, lr)
            if isinstance(out, tuple) and out and isinstance(out[0], dict):
                raise CheckFailed("return only the dict of new parameters, not a tuple.")
            if not isinstance(out, dict):
                raise CheckFailed(f"return a dict {{name: tensor}} like `params`; got {type(out).__name__}.")
            if set(out) != set(params):
                missing, extra = set(params) - set(out), set(out) - set(params)
                raise CheckFailed(f"the returned dict must have the same keys as params; missing {sorted(missing)}"
                            + (f", unexpected {sorted(extra)}" if extra else "") + ".")
            for k, v in out.items():
                if not isinstance(v, Tensor):
                    raise CheckFailed(f"out[{k!r}] should be a tensor, got {type(v).__name__}.")
                if v.shape != params[k].shape:
                    raise CheckFailed(f"out[{k!r}] has shape {tuple(v.shape)}, but the parameter has shape "
                                f"{tuple(params[k].shape)}.")
            if any(not torch.equal(params[k].detach(), before[k]) for k in params):
                raise CheckFailed("`params` was modified in place. Build a new dict ({k: p - lr * g[k] ...}) and "
                            "leave θ alone: the outer loop still needs it.")
            ref, _ = inner_loop(model, params, {}, x, y, F.mse_loss, lr, 1)
            theta = {k: v.detach() for k, v in params.items()}
            g = {k: (theta[k] - ref[k].detach()) / lr for k in params}  # the true gradient
            got = {k: as_float(v) for k, v in out.items()}

            def matches(scale: float, sign: float = -1.0) -> bool:
                return all(close(got[k], theta[k] + sign * scale * g[k]) for k in params)

            if not matches(lr):
                if matches(lr, +1.0):
                    raise CheckFailed("wrong sign: you stepped *up* the gradient (θ + lr·g). Gradient descent is θ − lr·∇L.")
                if matches(1.0):
                    raise CheckFailed("the learning rate is missing: you returned θ − ∇L; multiply the gradient by lr.")
                if all(close(got[k], theta[k]) for k in params):
                    raise CheckFailed("the parameters did not move: return θ − lr·∇L (is the gradient zero or lr unused?).")
                if matches(lr * x.shape[0]):
                    raise CheckFailed("the step is n times too large: use the mean squared error (F.mse_loss), not the sum.")
                if matches(lr * 2) or matches(lr / 2):
                    raise CheckFailed("the step is off by a factor of 2: the loss is F.mse_loss(prediction, y), "
                                "the plain mean of squared errors (no 1/2).")
                err = max(float((got[k] - (theta[k] - lr * g[k])).abs().max()) for k in params)
                raise CheckFailed(f"the new parameters differ from θ − lr·∇MSE by up to {err:.2e}. Is the loss the "
                            "MSE of functional_call(model, params, (x,)) against y?")
            # Differentiable? Second order?
            if any(not v.requires_grad for v in out.values()):
                raise CheckFailed("the result is detached from params (no autograd history): the outer loop "
                            "cannot differentiate through φ(θ). Avoid .detach(), .data, torch.no_grad() "
                            "and .item() in the update.")
            v = {k: torch.randn(p.shape, generator=torch.Generator().manual_seed(7), dtype=p.dtype) for k, p in params.items()}

            def meta_grad(result):
                s = sum((result[k] * v[k]).sum() for k in params)
                return torch.autograd.grad(s, list(params.values()), allow_unused=True, retain_graph=True)

            ref_g = meta_grad(ref)
            try:
                got_g = meta_grad(out)
            except RuntimeError as e:
                raise CheckFailed(f"could not differentiate through your result: {e}") from None
            got_g = [torch.zeros_like(p) if t is None else t for t, p in zip(got_g, params.values())]
            if not all(close(a, b) for a, b in zip(got_g, ref_g)):
                if all(close(a, v[k]) for a, k in zip(got_g, params)):
                    raise CheckFailed("the values are right, but the inner gradient is treated as a constant "
                                "(dφ/dθ = I): that is first-order MAML. For MAML keep it in the graph — "
                                "torch.func.grad does; torch.autograd.grad needs create_graph=True — and "
                                "don't .detach() it.")
                raise CheckFailed("the values are right, but the gradient through your step differs from "
                            "MAML's second-order one.")
            cases += 1
        return (f"matches metalib.functional.inner_loop on {cases} random cases — values and the "
                "second-order gradient through the step.")

    return run_check("inner_step", body)


# ============================================================================ 03: Reptile's update
def check_reptile_update(fn: Callable) -> Feedback:
    """Exercise of ``03_reptile_and_comparison``: ``reptile_update(theta, phis, eps)`` returns
    θ + ε·mean_i(φ_i − θ) as a new dict (``theta``: {name: tensor}; ``phis``: list of such dicts)."""

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


# ============================================================================ solutions
EXERCISES: Dict[str, Callable] = {
    "split_task": solutions.split_task,
    "sample_sinusoid": solutions.sample_sinusoid_tasks,
    "inner_step": solutions.inner_step,
    "reptile_update": solutions.reptile_update,
}


def solution(name: str, show: bool = True, exercises: Optional[Dict[str, Callable]] = None) -> Optional[str]:
    """Print (``show=True``) or return the source of the reference solution of exercise ``name``
    (from ``exercises``, default this module's :data:`EXERCISES`)."""
    exercises = EXERCISES if exercises is None else exercises
    if name not in exercises:
        raise KeyError(f"no exercise named {name!r}; there are: {', '.join(exercises)}")
    src = inspect.getsource(exercises[name])
    if show:
        print(src)
        return None
    return src
