"""The ambiguous regression tasks of PLATIPUS (Finn, Xu & Levine 2018): a sinusoid or a line, a few noisy points."""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from .batch import TaskBatch
from .tasks import check_count, uniform_draw  # the sinusoid family's checks and seeded draws


class SineLineParams(NamedTuple):
    """``T`` ambiguous tasks: ``is_sine [T]`` (bool) and the parameters of both kinds, each ``[T]``
    (a sinusoid's amplitude and phase; a line's slope and intercept — those of the other kind unused)."""

    is_sine: Tensor
    amplitude: Tensor
    phase: Tensor
    slope: Tensor
    intercept: Tensor


class SineLine:
    r"""Ambiguous regression (PLATIPUS, Finn, Xu & Levine 2018, section 5): each task is, with probability
    ``p_sine``, a sinusoid :math:`A\sin(x - arphi)` (:class:`Sinusoid`'s convention) and otherwise a line
    :math:`a x + b`; the targets carry Gaussian noise of std ``noise_std``. A few support points often fit
    both kinds. Defaults (docs/references.md): :math:`A \sim U[0.1, 5]`, :math:`arphi \sim U[0, \pi]`,
    :math:`a, b \sim U[-3, 3]`, :math:`x \sim U[-5, 5]`, noise 0.3, ``p_sine`` 0.5, 5 support points.
    Batches: ``x, y [T, k, 1]``; :meth:`function` gives the noiseless truth (for calibration)."""

    def __init__(self, amplitude: Tuple[float, float] = (0.1, 5.0), phase: Tuple[float, float] = (0.0, math.pi),
                 slope: Tuple[float, float] = (-3.0, 3.0), intercept: Tuple[float, float] = (-3.0, 3.0),
                 x_range: Tuple[float, float] = (-5.0, 5.0), noise_std: float = 0.3, p_sine: float = 0.5) -> None:
        for name, (lo, hi) in (("amplitude", amplitude), ("phase", phase), ("slope", slope),
                               ("intercept", intercept), ("x_range", x_range)):
            if not lo <= hi:
                raise ValueError(f"{name} range must be (low, high) with low <= high, got {(lo, hi)}")
        if not (noise_std >= 0 and math.isfinite(noise_std)):
            raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std!r}")
        if not 0.0 <= p_sine <= 1.0:
            raise ValueError(f"p_sine must lie in [0, 1], got {p_sine!r}")
        self.amplitude, self.phase, self.x_range = tuple(amplitude), tuple(phase), tuple(x_range)
        self.slope, self.intercept = tuple(slope), tuple(intercept)
        self.noise_std, self.p_sine = float(noise_std), float(p_sine)

    @staticmethod
    def function(x: Tensor, params: "SineLineParams") -> Tensor:
        """The noiseless targets at ``x [T, n, 1]`` of the ``T`` tasks ``params`` (``[T, n, 1]``)."""
        v = lambda t: t.view(-1, 1, 1).to(x)  # noqa: E731
        sine = v(params.amplitude) * torch.sin(x - v(params.phase))
        line = v(params.slope) * x + v(params.intercept)
        return torch.where(params.is_sine.view(-1, 1, 1).to(x.device), sine, line)

    def sample_params(self, n_tasks: int, generator: Optional[torch.Generator] = None) -> SineLineParams:
        """Draw ``n_tasks`` tasks (their kind and both kinds' parameters)."""
        check_count("n_tasks", n_tasks, minimum=1)
        is_sine = uniform_draw(n_tasks, 0.0, 1.0, generator) < self.p_sine
        draws = [uniform_draw(n_tasks, *r, generator).float() for r in (self.amplitude, self.phase, self.slope,
                                                                    self.intercept)]
        return SineLineParams(is_sine, *draws)

    def make_batch(self, params: SineLineParams, k_support: int, k_query: int,
                   generator: Optional[torch.Generator] = None, device=None,
                   dtype: torch.dtype = torch.float32) -> TaskBatch:
        """Noisy support and query points: ``x_s, y_s [T, k_support, 1]``, ``x_q, y_q [T, k_query, 1]``."""
        check_count("k_support", k_support, minimum=1)
        check_count("k_query", k_query, minimum=1)
        n = params.is_sine.shape[0]
        x = uniform_draw((n, k_support + k_query, 1), *self.x_range, generator)
        y = self.function(x, params) + self.noise_std * torch.randn(x.shape, generator=generator, dtype=torch.float64)
        x, y = x.to(device=device, dtype=dtype), y.to(device=device, dtype=dtype)
        return TaskBatch(x[:, :k_support], y[:, :k_support], x[:, k_support:], y[:, k_support:])

    def sample(self, n_tasks: int, k_support: int, k_query: int, generator: Optional[torch.Generator] = None,
               device=None, dtype: torch.dtype = torch.float32) -> TaskBatch:
        """A fresh batch of ``n_tasks`` tasks, reproducible with a seeded ``generator``."""
        return self.make_batch(self.sample_params(n_tasks, generator), k_support, k_query, generator, device, dtype)

    def __repr__(self) -> str:
        return (f"SineLine(amplitude={self.amplitude}, phase={self.phase}, slope={self.slope}, "
                f"intercept={self.intercept}, x_range={self.x_range}, noise_std={self.noise_std}, p_sine={self.p_sine})")
