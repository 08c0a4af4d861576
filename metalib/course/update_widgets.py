"""Notebook 10's two apps (ipywidgets + matplotlib), drawing the tested computations of
:mod:`metalib.course.update_lab`:

* :class:`MetaSGDExplorer` — Meta-SGD's learned learning rates, layer by layer, beside MAML's single α, and
  both learners adapting to a sinusoid chosen with sliders (amplitude, phase, K, steps);
* :class:`GateExplorer` — the LSTM meta-learner's input and forget gates over the inner steps of one
  Omniglot episode, and its update beside SGD's for the same gradient.

Both follow :class:`metalib.course.widgets.FigureApp`: ``update(**values)`` is the callback (tests call it),
``ui`` the box to display::

    from metalib.course import update_lab as ul, update_widgets as uw
    ex = uw.MetaSGDExplorer(ul.load_sinusoid_learners());  ex.update(amplitude=4.0, k=5, steps=3)
    gx = uw.GateExplorer(metalib.pretrained("lstm-meta-omniglot-5w1s"), fl.load_test_data("omniglot"))
    gx.update(episode=3, step=2, layer="head")
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping

import ipywidgets as W
import numpy as np
import torch

from ..algorithms import Learner
from . import plots
from . import sinusoid_lab as lab
from . import update_lab as ul
from .widgets import FigureApp, check_range

__all__ = ["MetaSGDExplorer", "GateExplorer"]

_STYLE = {"description_width": "90px"}


def _int_slider(description: str, value: int, lo: int, hi: int) -> W.IntSlider:
    return W.IntSlider(value=value, min=lo, max=hi, step=1, description=description, style=_STYLE,
                       layout=W.Layout(width="300px"), continuous_update=True)


def _float_slider(description: str, value: float, lo: float, hi: float, step: float, fmt: str) -> W.FloatSlider:
    return W.FloatSlider(value=value, min=lo, max=hi, step=step, description=description, readout_format=fmt,
                         style=_STYLE, layout=W.Layout(width="300px"), continuous_update=True)


# =============================================================================================
# Meta-SGD on sinusoids
# =============================================================================================
class MetaSGDExplorer(FigureApp):
    """Left: histograms of Meta-SGD's learned α, one per layer (weights and bias together), and MAML's single
    α (every parameter) as a vertical line. Middle: a sinusoid (amplitude, phase), its K support points, and
    both learners' predictions after ``steps`` steps of their own update (MAML: SGD at its α; Meta-SGD:
    θ − α∘∇L), their initialisations dotted. Right: the MSE against the true function (200 points over
    [−5, 5]) after 0…10 steps.

    Args:
        learners: ``{"maml": MAML, "metasgd": Meta-SGD}`` (:func:`metalib.course.update_lab.load_sinusoid_learners`).
        amplitude, phase, k, steps: the starting values.
    """

    width, height = 12.5, 5.0
    RANGES = dict(amplitude=(0.1, 5.0), phase=(0.0, math.pi), k=(1, 20), steps=(1, 10))
    MAX_STEPS = 10
    COLORS = {"maml": "C0", "metasgd": "C3"}
    LABELS = {"maml": "MAML (one α)", "metasgd": "Meta-SGD (learned α)"}
    LEGEND = dict(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=2, frameon=False)

    def __init__(self, learners: Mapping[str, Learner], amplitude: float = 3.0, phase: float = 1.0, k: int = 5,
                 steps: int = 1, seed: int = 0) -> None:
        super().__init__()
        missing = {"maml", "metasgd"} - set(learners)
        if missing:
            raise ValueError(f"learners needs {sorted(missing)} (update_lab.load_sinusoid_learners() gives both)")
        self.learners = {k_: learners[k_] for k_ in ("maml", "metasgd")}
        self.seed, self.x = seed, lab.grid()
        self.values = self._validate(dict(amplitude=amplitude, phase=phase, k=k, steps=steps))
        self.paths: Dict[str, torch.Tensor] = {}
        self.mse: Dict[str, List[float]] = {}
        self.ax_alpha, self.ax, self.ax_mse = self.fig.subplots(1, 3, width_ratios=[1.0, 1.25, 0.9])

        alphas = ul.alpha_by_layer(self.learners["metasgd"])
        maml_lr = float(getattr(self.learners["maml"], "inner_lr"))
        lo = min(float(a.min()) for a in alphas.values())
        hi = max(max(float(a.max()) for a in alphas.values()), maml_lr)
        bins = np.linspace(lo, hi, 40)
        for i, (layer, a) in enumerate(alphas.items()):
            self.ax_alpha.hist(a.numpy(), bins=bins, histtype="step", lw=1.8, color=f"C{i + 4}",
                               label=f"{ul.layer_label(self.learners['metasgd'].model, layer)}: {a.numel():,} α")
        self.ax_alpha.axvline(maml_lr, color=self.COLORS["maml"], ls="--", lw=1.8, label=f"MAML: α = {maml_lr:g} for all")
        self.ax_alpha.axvline(0.0, color="0.6", lw=0.8)
        self.ax_alpha.set_yscale("log")
        self.ax_alpha.set_xlabel("learning rate α of one parameter entry")
        self.ax_alpha.set_ylabel("entries")
        self.ax_alpha.set_title("Meta-SGD's learned α by layer")
        # legends below their panels: inside, they covered the histogram's peak, MAML's α and the lowest MSEs
        self.ax_alpha.legend(**self.LEGEND)

        (self.true_line,) = self.ax.plot([], [], color="k", ls="--", lw=1.5, label="true function")
        self.init_lines, self.lines, self.mse_lines = {}, {}, {}
        for kind in self.learners:
            c = self.COLORS[kind]
            (self.init_lines[kind],) = self.ax.plot([], [], color=c, ls=":", lw=1.2, alpha=0.8)
            (self.lines[kind],) = self.ax.plot([], [], color=c, lw=2.2, label=self.LABELS[kind])
            (self.mse_lines[kind],) = self.ax_mse.plot([], [], "o-", ms=3.5, color=c, label=self.LABELS[kind])
        (self.points,) = self.ax.plot([], [], "o", color="k", ms=6.5, zorder=5, label="support points")
        plots.sinusoid_axes(self.ax, ylim=(-7.0, 7.0))
        self.ax.legend(**self.LEGEND)
        self.ax.set_title("the task and both learners")
        self.title = self.fig.suptitle("", fontsize=10)
        self.cursor = self.ax_mse.axvline(1, color="0.5", lw=1, ls=":")
        self.ax_mse.set_xlabel("inner steps")
        self.ax_mse.set_ylabel("MSE over x ∈ [−5, 5]")
        self.ax_mse.set_yscale("log")
        self.ax_mse.set_xlim(-0.3, self.MAX_STEPS + 0.3)
        self.ax_mse.set_title("error after each step")
        self.ax_mse.legend(**self.LEGEND)
        self.controls = {
            "amplitude": _float_slider("amplitude A", self.values["amplitude"], *self.RANGES["amplitude"], 0.1, ".1f"),
            "phase": _float_slider("phase φ", self.values["phase"], 0.0, round(math.pi, 2), 0.05, ".2f"),
            "k": _int_slider("K points", self.values["k"], *self.RANGES["k"]),
            "steps": _int_slider("inner steps", self.values["steps"], *self.RANGES["steps"]),
        }
        self._connect()
        self._redraw()

    def _validate(self, values: Dict[str, Any]) -> Dict[str, Any]:
        out = dict(values)
        for name, v in values.items():
            lo, hi = self.RANGES[name]
            out[name] = check_range(name, v, lo, hi, isinstance(lo, int))
        return out

    def support(self):
        """The current task's support set ``(x_s [K, 1], y_s [K, 1])`` (the first K of a seeded pool)."""
        v = self.values
        return lab.demo_task(v["amplitude"], v["phase"], v["k"], seed=self.seed)

    def _redraw(self) -> None:
        v = self.values
        x_s, y_s = self.support()
        truth = lab.true_curve(self.x, v["amplitude"], v["phase"])
        xs = self.x.flatten().numpy()
        self.true_line.set_data(xs, truth.flatten().numpy())
        self.points.set_data(x_s.flatten().numpy(), y_s.flatten().numpy())
        text = []
        for kind, learner in self.learners.items():
            path = ul.prediction_path(learner, x_s, y_s, self.x, self.MAX_STEPS)
            self.paths[kind] = path
            self.mse[kind] = [float(((p - truth) ** 2).mean()) for p in path]
            self.init_lines[kind].set_data(xs, path[0].flatten().numpy())
            self.lines[kind].set_data(xs, path[v["steps"]].flatten().numpy())
            self.mse_lines[kind].set_data(range(self.MAX_STEPS + 1), self.mse[kind])
            diverged = not math.isfinite(self.mse[kind][v["steps"]])   # its curve is gone: no NaN, no legend entry
            self.lines[kind].set_label(("_" if diverged else "") + self.LABELS[kind])
            mse = "diverged" if diverged else plots.fmt(self.mse[kind][v["steps"]])
            text.append(f"{self.LABELS[kind].split(' (')[0]}: {mse}")
        self.ax.legend(**self.LEGEND)
        self.cursor.set_xdata([v["steps"], v["steps"]])
        finite = [m for ms in self.mse.values() for m in ms if math.isfinite(m) and m > 0]
        if finite:
            self.ax_mse.set_ylim(max(min(finite), 1e-3) / 1.5, min(max(finite) * 3, 1e3))  # a divergence leaves the top
        s = v["steps"]
        self.title.set_text(f"A = {v['amplitude']:.1f}, φ = {v['phase']:.2f}, K = {v['k']}, after {s} "
                            f"step{'s' if s != 1 else ''} — MSE " + ", ".join(text))

    def final_mse(self) -> Dict[str, float]:
        """``{kind: MSE after the current number of steps}``."""
        return {k: m[self.values["steps"]] for k, m in self.mse.items()}


# =============================================================================================
# The LSTM meta-learner's gates
# =============================================================================================
class GateExplorer(FigureApp):
    """One Omniglot episode through the LSTM meta-learner's inner loop.

    Left: its input gate :math:`i_t` and forget gate :math:`f_t` over the inner steps — the median over the
    chosen layer's coordinates, with the 10-90% band. Right: at step ``step``, every coordinate's update
    :math:`c_t - c_{t-1}` (y) against SGD's for the same gradient, :math:`-\\eta\\nabla_t` with MAML's
    Omniglot η = 0.4 (x); the diagonal is "the LSTM did what SGD would", the dashed line the best single
    learning rate for this step (least squares). Up to 3,000 coordinates are drawn (a fixed random subset).

    Args:
        learner: an LSTM meta-learner (``metalib.pretrained("lstm-meta-omniglot-5w1s")``).
        data: the classes to draw episodes from (``fewshot_lab.load_test_data("omniglot")``).
        episode: which seeded test episode (``0 .. episodes - 1``); step: the inner step shown on the right;
            layer: ``"all"`` or one of the network's layers.
    """

    width, height = 12.0, 4.2
    SHOW = 3000

    def __init__(self, learner: Learner, data, episode: int = 0, step: int = 1, layer: str = "all", n_way: int = 5,
                 k_shot: int = 1, n_query: int = 15, episodes: int = 20, sgd_lr: float = 0.4) -> None:
        super().__init__()
        if not callable(getattr(learner, "unroll", None)):
            raise TypeError(f"{learner.describe()} is not an LSTM meta-learner (it has no unroll())")
        self.learner, self.data, self.n_way, self.k_shot, self.n_query = learner, data, n_way, k_shot, n_query
        self.episodes, self.sgd_lr = int(episodes), float(sgd_lr)
        self.steps = int(learner.eval_steps)
        self._traces: Dict[int, ul.GateTrace] = {}
        first = self.trace(int(episode))
        self.layers = ["all", *first.layers]
        self.values = self._validate(dict(episode=episode, step=step, layer=layer))
        self.ax_i, self.ax_f, self.ax_u = self.fig.subplots(1, 3, width_ratios=[1, 1, 1.2])
        ts = np.arange(1, self.steps + 1)
        self.bands, self.medians = {}, {}
        for ax, gate, c in ((self.ax_i, "input", "C2"), (self.ax_f, "forget", "C1")):
            self.bands[gate] = ax.fill_between(ts, ts * 0, ts * 0, color=c, alpha=0.25, label="10-90% of coordinates")
            (self.medians[gate],) = ax.plot(ts, ts * 0, "o-", color=c, ms=4, label="median")
            ax.set_xlabel("inner step t")
            ax.set_xticks(ts)
            ax.legend(fontsize=7.5, loc="best")
        self.ax_i.set_title("input gate $i_t$ (the step size)")
        self.ax_f.set_title("forget gate $f_t$ (1 = keep θ)")
        self.step_marks = [ax.axvline(1, color="0.5", lw=1, ls=":") for ax in (self.ax_i, self.ax_f)]
        (self.scatter,) = self.ax_u.plot([], [], ".", ms=2.5, alpha=0.5, color="C0")
        (self.diag,) = self.ax_u.plot([], [], color="k", lw=1, label=f"= SGD (η = {self.sgd_lr:g})")
        (self.fit,) = self.ax_u.plot([], [], color="C3", lw=1.2, ls="--", label="best single η")
        self.ax_u.set_xlabel(f"SGD's update −η∇ (η = {self.sgd_lr:g})")
        self.ax_u.set_ylabel("LSTM's update $c_t - c_{t-1}$")
        self.ax_u.legend(fontsize=7.5, loc="upper left")
        self.info = self.ax_u.text(0.98, 0.03, "", transform=self.ax_u.transAxes, ha="right", va="bottom", fontsize=8,
                                   family="monospace", bbox=dict(boxstyle="round,pad=0.3", fc="white", ec="0.7", alpha=0.9))
        self.title = self.fig.suptitle("", fontsize=10)
        self.controls = {
            "episode": _int_slider("episode", self.values["episode"], 0, self.episodes - 1),
            "step": _int_slider("inner step", self.values["step"], 1, self.steps),
            "layer": W.Dropdown(options=self.layers, value=self.values["layer"], description="layer", style=_STYLE,
                                layout=W.Layout(width="240px")),
        }
        self._connect()
        self._redraw()

    def _validate(self, values: Dict[str, Any]) -> Dict[str, Any]:
        out = dict(values)
        if "episode" in values:
            out["episode"] = check_range("episode", values["episode"], 0, self.episodes - 1, True)
        if "step" in values:
            out["step"] = check_range("step", values["step"], 1, self.steps, True)
        if "layer" in values and values["layer"] not in self.layers:
            raise ValueError(f"layer must be one of {self.layers}, got {values['layer']!r}")
        return out

    def trace(self, episode: int) -> "ul.GateTrace":
        """The recorded inner loop of ``episode`` (cached)."""
        if episode not in self._traces:
            self._traces[episode] = ul.gate_trace(self.learner, self.data, seed=episode, n_way=self.n_way,
                                                  k_shot=self.k_shot, n_query=self.n_query, sgd_lr=self.sgd_lr)
        return self._traces[episode]

    def _redraw(self) -> None:
        v = self.values
        tr = self.trace(v["episode"])
        ts = np.arange(1, self.steps + 1)
        for ax, gate in ((self.ax_i, "input"), (self.ax_f, "forget")):
            q = tr.gate_quantiles(gate, v["layer"]).numpy()
            self.bands[gate].remove()
            self.bands[gate] = ax.fill_between(ts, q[0], q[2], color=self.medians[gate].get_color(), alpha=0.25,
                                               label="10-90% of coordinates")
            self.medians[gate].set_ydata(q[1])
            pad = max(float(q[2].max() - q[0].min()) * 0.15, 1e-4)
            ax.set_ylim(float(q[0].min()) - pad, float(q[2].max()) + pad)
        for m in self.step_marks:
            m.set_xdata([v["step"], v["step"]])
        sl = tr.coords(v["layer"])
        g = tr.unroll.grads[v["step"] - 1, sl]
        d = tr.unroll.updates[v["step"] - 1, sl]
        n = g.numel()
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(0))[: self.SHOW] if n > self.SHOW else slice(None)
        sgd = (-self.sgd_lr * g[idx]).numpy()
        lstm = d[idx].numpy()
        self.scatter.set_data(sgd, lstm)
        lim = float(max(np.abs(sgd).max(initial=0.0), np.abs(lstm).max(initial=0.0), 1e-12)) * 1.08
        self.ax_u.set_xlim(-lim, lim)
        self.ax_u.set_ylim(-lim, lim)
        self.diag.set_data([-lim, lim], [-lim, lim])
        eta = tr.effective_lr(v["step"], v["layer"])
        slope = eta / self.sgd_lr
        self.fit.set_data([-lim, lim], [-lim * slope, lim * slope])
        i_med = float(tr.unroll.input_gates[v["step"] - 1, sl].median())
        f_med = float(tr.unroll.forget_gates[v["step"] - 1, sl].median())
        self.info.set_text(f"step {v['step']}: best η = {eta:.3g}\nmedian i = {i_med:.3g}\nmedian 1−f = {1 - f_med:.2g}")
        self.ax_u.set_title(f"step {v['step']}, layer {v['layer']} ({n:,} coordinates)")
        self.title.set_text(f"episode {v['episode']} ({self.n_way}-way {self.k_shot}-shot, seeded test episode), {self.steps} LSTM updates: "
                            f"query accuracy {tr.accuracy:.0f}% — plain SGD (η = {self.sgd_lr:g}, same steps, same start): "
                            f"{tr.sgd_accuracy:.0f}%")
