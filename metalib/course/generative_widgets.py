"""Notebook 12's app (ipywidgets + matplotlib): PLATIPUS's sampled functions beside MAML's one function.

:class:`AmbiguityExplorer` follows :class:`metalib.course.widgets.FigureApp`: ``update(**values)`` is the callback
(tests call it), ``ui`` the box to display::

    from metalib.course import generative_lab as gl, generative_widgets as gw
    app = gw.AmbiguityExplorer({k: gl.load(k) for k in gl.KINDS});  app.update(k=2, centre=-3.0, samples=20)
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Tuple

import ipywidgets as W
import torch
from torch import Tensor

from ..algorithms import Learner
from ..algorithms.platipus import band_coverage
from ..ambiguous import SineLine
from . import generative_lab as gl
from . import plots
from .widgets import FigureApp, check_range

__all__ = ["AmbiguityExplorer", "support_points"]

_STYLE = {"description_width": "110px"}


def support_points(task: int, k: int, centre: float, seed: int = 0) -> Tuple[Tensor, Tensor, Tensor]:
    """``(x_s [k, 1], y_s [k, 1], truth on a 200-point grid [200, 1])`` of held-out task ``task``: the
    first ``k`` of a seeded pool of 10 inputs within ±1 of ``centre`` (clipped to [−5, 5]), their noisy
    targets (noise 0.3). A narrow window makes the task ambiguous; more points resolve it."""
    params = SineLine().sample_params(task + 1, torch.Generator().manual_seed(seed))
    one = type(params)(*(t[task:task + 1] for t in params))
    g = torch.Generator().manual_seed(seed * 1000 + task)
    u = torch.rand(10, 1, generator=g, dtype=torch.float64) * 2 - 1
    x = (centre + u).clamp(-5.0, 5.0)
    noise = gl.NOISE_STD * torch.randn(10, 1, generator=g, dtype=torch.float64)
    y = SineLine.function(x[None], one)[0] + noise
    grid = torch.linspace(-5, 5, 200, dtype=torch.float64).view(-1, 1)
    return x[:k].float(), y[:k].float(), SineLine.function(grid[None], one)[0].float()


class AmbiguityExplorer(FigureApp):
    """A held-out sinusoid-or-line task (``task``), ``k`` noisy support points around ``centre``, PLATIPUS's
    ``samples`` sampled functions (thin red, seeded) and MAML's one adapted function (blue), the truth dashed.
    The title gives the spread of the samples and the coverage of the truth by the band ± 0.6.

    Args:
        learners: ``{"platipus": PLATIPUS, "maml": MAML}`` (:func:`metalib.course.generative_lab.load`).
        task, k, centre, samples: the starting values.
    """

    width, height = 10.0, 4.2
    RANGES = dict(task=(0, 9), k=(1, 10), centre=(-4.0, 4.0), samples=(1, 20))

    def __init__(self, learners: Mapping[str, Learner], task: int = 0, k: int = 2, centre: float = 0.0,
                 samples: int = 10) -> None:
        super().__init__()
        missing = set(gl.KINDS) - set(learners)
        if missing:
            raise ValueError(f"learners needs {sorted(missing)} (generative_lab.load gives each)")
        self.learners = dict(learners)
        self.values = self._validate(dict(task=task, k=k, centre=centre, samples=samples))
        self.grid = torch.linspace(-5, 5, 200).view(-1, 1)
        self.ax = self.fig.subplots()
        self.coverage: Dict[str, float] = {}
        self.controls = {
            "task": W.IntSlider(value=self.values["task"], min=0, max=9, description="task", style=_STYLE),
            "k": W.IntSlider(value=self.values["k"], min=1, max=10, description="support points", style=_STYLE),
            "centre": W.FloatSlider(value=self.values["centre"], min=-4.0, max=4.0, step=0.5, description="points near x =",
                                    readout_format=".1f", style=_STYLE),
            "samples": W.IntSlider(value=self.values["samples"], min=1, max=20, description="sampled models",
                                   style=_STYLE),
        }
        self._connect()
        self._redraw()

    def _validate(self, values: Dict[str, Any]) -> Dict[str, Any]:
        out = dict(values)
        for name, v in values.items():
            lo, hi = self.RANGES[name]
            out[name] = check_range(name, v, lo, hi, isinstance(lo, int))
        return out

    def curves(self) -> Dict[str, Tensor]:
        """``{"platipus": [S, 200, 1], "maml": [1, 200, 1]}`` for the current values, and ``"truth"`` ``[200, 1]``."""
        v = self.values
        x_s, y_s, truth = support_points(v["task"], v["k"], v["centre"])
        out = {kind: gl.sample_curves(self.learners[kind], x_s, y_s, self.grid, v["samples"], seed=v["task"])
               for kind in gl.KINDS}
        out.update(truth=truth, x_s=x_s, y_s=y_s)
        return out

    def _redraw(self) -> None:
        c = self.curves()
        ax, xs = self.ax, self.grid.flatten().numpy()
        ax.clear()
        ax.plot(xs, c["truth"].flatten().numpy(), "k--", lw=1.5, label="true function")
        for i, f in enumerate(c["platipus"]):
            ax.plot(xs, f.flatten().numpy(), color="C3", lw=1.0, alpha=0.55, label="PLATIPUS samples" if i == 0 else None)
        ax.plot(xs, c["maml"][0].flatten().numpy(), color="C0", lw=2.2, label="MAML (one function)")
        ax.plot(c["x_s"].flatten().numpy(), c["y_s"].flatten().numpy(), "o", color="k", ms=7, zorder=5,
                label="support points")
        plots.sinusoid_axes(ax, ylim=(-8.0, 8.0))
        ax.legend(loc="lower left", fontsize=8)
        self.coverage = {k: float(band_coverage(c[k], c["truth"], gl.EVAL["margin"])) for k in gl.KINDS}
        spread = float(c["platipus"].std(0, unbiased=False).mean()) if c["platipus"].shape[0] > 1 else 0.0
        v = self.values
        ax.set_title(f"task {v['task']}, {v['k']} point{'s' if v['k'] != 1 else ''} near x = {v['centre']:.1f}: "
                     f"spread of {v['samples']} samples {spread:.2f}; truth inside the band ± 0.6: PLATIPUS "
                     f"{100 * self.coverage['platipus']:.0f}%, MAML {100 * self.coverage['maml']:.0f}%", fontsize=9)
