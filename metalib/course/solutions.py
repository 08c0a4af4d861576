"""Reference solutions of the notebook exercises (checked by :mod:`metalib.exercises`).

Try the exercise first! ``metalib.exercises.solution("inner_step")`` prints one of these.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad


# ----------------------------------------------------------------------------- 00_welcome
def split_task(x, y, k):
    """Split one task's points into K support points and the rest as query points."""
    return x[:k], y[:k], x[k:], y[k:]


# ----------------------------------------------------------------------------- 01_sinusoid_tasks
def sample_sinusoid_tasks(n_tasks, k, generator=None):
    """``n_tasks`` sinusoids y = A sin(x - phase) with A ~ U[0.1, 5], phase ~ U[0, pi], and k points
    x ~ U[-5, 5] each. Returns ``(amplitude [n], phase [n], x [n, k, 1], y [n, k, 1])``."""
    amplitude = 0.1 + 4.9 * torch.rand(n_tasks, generator=generator)
    phase = math.pi * torch.rand(n_tasks, generator=generator)
    x = -5 + 10 * torch.rand(n_tasks, k, 1, generator=generator)
    y = amplitude.view(-1, 1, 1) * torch.sin(x - phase.view(-1, 1, 1))
    return amplitude, phase, x, y


# ----------------------------------------------------------------------------- 02_maml_from_scratch
def inner_step(model, params, x, y, lr):
    """One MAML inner step: phi = theta - lr * grad_theta MSE(f_theta(x), y), kept differentiable."""

    def loss(p):
        return F.mse_loss(functional_call(model, p, (x,)), y)

    g = grad(loss)(params)
    return {name: p - lr * g[name] for name, p in params.items()}


# ----------------------------------------------------------------------------- 03_reptile_and_comparison
def reptile_update(theta, phis, eps):
    """theta + eps * mean_i (phi_i - theta). ``theta``: {name: tensor}; ``phis``: a list of such
    dicts (one per task); returns a new dict."""
    return {name: t + eps * torch.stack([phi[name] - t for phi in phis]).mean(0) for name, t in theta.items()}
