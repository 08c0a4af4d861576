"""Exercise of ``01_sinusoid_tasks``: sample sinusoid tasks y = A sin(x - phase)."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from .base import CheckFailed, Exercise, Feedback, Mistake, as_float, call_checked, close, run_check


def sample_sinusoid_tasks(n_tasks, k, generator=None):
    """``n_tasks`` sinusoids y = A sin(x - phase) with A ~ U[0.1, 5], phase ~ U[0, pi] and k points
    x ~ U[-5, 5] each: ``(amplitude [n], phase [n], x [n, k, 1], y [n, k, 1])``."""
    amplitude = 0.1 + 4.9 * torch.rand(n_tasks, generator=generator)
    phase = math.pi * torch.rand(n_tasks, generator=generator)
    x = -5 + 10 * torch.rand(n_tasks, k, 1, generator=generator)
    y = amplitude.view(-1, 1, 1) * torch.sin(x - phase.view(-1, 1, 1))
    return amplitude, phase, x, y


def check_sinusoid_sampler(fn: Callable) -> Feedback:
    """``sample_sinusoid_tasks(n_tasks, k, generator)`` returns ``(amplitude [n], phase [n],
    x [n, k, 1], y [n, k, 1])`` with A ~ U[0.1, 5], phase ~ U[0, pi], x ~ U[-5, 5], y = A sin(x - phase)."""

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
            raise CheckFailed(f"x and y should have shape (n_tasks, k, 1) = ({n}, {k}, 1); got "
                              f"{tuple(x.shape)} and {tuple(y.shape)}.")
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


# ---------------------------------------------------------------------------- common mistakes
def _sampler(amp=(0.1, 4.9), ph=math.pi, xr=(-5, 10), sign=-1, use_gen=True, flat=False, same=False,
             no_amplitude=False, global_rng=False):
    def fn(n, k, generator=None):
        g = None if global_rng else generator if use_gen else torch.Generator().manual_seed(42)
        a = amp[0] + amp[1] * torch.rand(n, generator=g)
        if same:
            a = a[:1].expand(n).clone()
        p = ph * torch.rand(n, generator=g)
        x = xr[0] + xr[1] * torch.rand(n, k, 1, generator=g)
        y = (1 if no_amplitude else a.view(-1, 1, 1)) * torch.sin(x + sign * p.view(-1, 1, 1))
        return (a, p, x.squeeze(-1), y.squeeze(-1)) if flat else (a, p, x, y)
    return fn


EXERCISE = Exercise(
    name="sample_sinusoid", notebook="01_sinusoid_tasks", solution=sample_sinusoid_tasks,
    check=check_sinusoid_sampler,
    mistakes=(
        Mistake("A·sin(x + φ)", _sampler(sign=+1), "wrong sign"),
        Mistake("amplitudes U[0, 1]", _sampler(amp=(0.0, 1.0)), "amplitudes should lie in [0.1, 5.0]"),
        Mistake("phases U[0, 2π]", _sampler(ph=2 * math.pi), "phases should be uniform"),
        Mistake("inputs U[0, 1]", _sampler(xr=(0, 1)), "inputs should be uniform"),
        Mistake("no trailing feature dimension", _sampler(flat=True), "trailing feature dimension"),
        Mistake("a fixed seed inside the function", _sampler(use_gen=False), "another seed gave the same tasks"),
        Mistake("the global random generator", _sampler(global_rng=True), "generators seeded alike"),
        Mistake("one amplitude for every task", _sampler(same=True), "same amplitude"),
        Mistake("y = sin(x − φ)", _sampler(no_amplitude=True), "amplitude is missing"),
    ),
)
