"""Task families. The sinusoid regression of Finn et al. (2017), section 5.1."""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from .batch import TaskBatch


class SinusoidParams(NamedTuple):
    """Amplitudes and phases of ``T`` sinusoids, each ``[T]``."""

    amplitude: Tensor
    phase: Tensor


class Sinusoid:
    r"""Regression tasks :math:`y = A \sin(x - \varphi)`.

    Defaults follow Finn et al. (2017): :math:`A \sim U[0.1, 5.0]`, :math:`\varphi \sim U[0, \pi]`,
    :math:`x \sim U[-5, 5]`; the loss is the mean squared error.
    """

    def __init__(
        self,
        amplitude: Tuple[float, float] = (0.1, 5.0),
        phase: Tuple[float, float] = (0.0, math.pi),
        x_range: Tuple[float, float] = (-5.0, 5.0),
    ) -> None:
        for name, (lo, hi) in (("amplitude", amplitude), ("phase", phase), ("x_range", x_range)):
            if not lo <= hi:
                raise ValueError(f"{name} range must be (low, high) with low <= high, got {(lo, hi)}")
        self.amplitude, self.phase, self.x_range = tuple(amplitude), tuple(phase), tuple(x_range)

    @staticmethod
    def function(x: Tensor, amplitude: Tensor, phase: Tensor) -> Tensor:
        """:math:`A \\sin(x - \\varphi)`; ``amplitude``/``phase`` broadcast against ``x``."""
        return amplitude * torch.sin(x - phase)

    def sample_params(self, n_tasks: int, generator: Optional[torch.Generator] = None) -> SinusoidParams:
        """Draw ``n_tasks`` (amplitude, phase) pairs."""
        check_count("n_tasks", n_tasks, minimum=1)
        a = uniform_draw(n_tasks, *self.amplitude, generator)
        p = uniform_draw(n_tasks, *self.phase, generator)
        return SinusoidParams(a.float(), p.float())

    def sample_x(self, n_tasks: int, k: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """``[n_tasks, k, 1]`` inputs drawn uniformly from ``x_range``."""
        return uniform_draw((n_tasks, k, 1), *self.x_range, generator)

    def make_batch(
        self,
        params: SinusoidParams,
        k_support: int,
        k_query: int,
        generator: Optional[torch.Generator] = None,
        device=None,
        dtype: torch.dtype = torch.float32,
    ) -> TaskBatch:
        """Support and query points for the given tasks: ``x_s, y_s: [T, k_support, 1]``,
        ``x_q, y_q: [T, k_query, 1]``."""
        check_count("k_support", k_support, minimum=1)
        check_count("k_query", k_query, minimum=1)
        n = params.amplitude.shape[0]
        x = self.sample_x(n, k_support + k_query, generator)
        y = self.function(x, params.amplitude.view(-1, 1, 1), params.phase.view(-1, 1, 1))
        x, y = x.to(device=device, dtype=dtype), y.to(device=device, dtype=dtype)
        return TaskBatch(x[:, :k_support], y[:, :k_support], x[:, k_support:], y[:, k_support:])

    def sample(
        self,
        n_tasks: int,
        k_support: int,
        k_query: int,
        generator: Optional[torch.Generator] = None,
        device=None,
        dtype: torch.dtype = torch.float32,
    ) -> TaskBatch:
        """A fresh batch of ``n_tasks`` tasks, reproducible with a seeded ``generator``."""
        return self.make_batch(self.sample_params(n_tasks, generator), k_support, k_query, generator, device, dtype)

    def __repr__(self) -> str:
        return f"Sinusoid(amplitude={self.amplitude}, phase={self.phase}, x_range={self.x_range})"


def check_count(name: str, value: int, minimum: int) -> None:
    """``value`` an int >= ``minimum`` (a count of tasks or points), else one TypeError/ValueError line."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def uniform_draw(shape, low: float, high: float, generator: Optional[torch.Generator]) -> Tensor:
    """Uniform draws in ``[low, high)`` of ``shape``, float64 on the CPU from ``generator`` (task parameters)."""
    shape = (shape,) if isinstance(shape, int) else shape
    # Draw in float64 on the CPU so a seed gives the same tasks on every device and dtype.
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    return low + (high - low) * u
