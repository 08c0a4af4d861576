"""Interactive apps for the notebooks (ipywidgets + matplotlib).

Every app is a small class with

* ``fig`` — one matplotlib ``Figure``, created once and reused: an update changes line data and
  texts, it never rebuilds the figure;
* ``update(**values)`` — the callback the sliders call (and tests call directly), e.g.
  ``explorer.update(k=5, steps=3)``;
* ``ui`` — the ipywidgets box to display (a notebook shows it when the app is the last expression
  of a cell); the figure is shown in an ``ipywidgets.Image`` that is re-rendered after each update,
  so redrawing does not flicker and works with the ``inline`` backend (no ``ipympl`` needed).

Sections of this module:

1. shared machinery (:class:`FigureApp`);
2. sinusoid regression (notebooks 02-03): :class:`AdaptationExplorer`, :class:`TrainingTimeline`;
3. few-shot classification (later notebooks) — to be added below.
"""
from __future__ import annotations

import io
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence

import ipywidgets as W
from matplotlib.figure import Figure
from torch import Tensor, nn

from . import plots
from . import sinusoid_lab as lab

__all__ = ["FigureApp", "AdaptationExplorer", "TrainingTimeline", "adaptation_explorer", "training_timeline"]


# =============================================================================================
# 1. Shared machinery
# =============================================================================================
class FigureApp:
    """Base class: a reusable figure, named values driven by controls, and an ``update`` callback.

    Subclasses set ``self.values`` (defaults), build ``self.controls`` ({value name: widget}) and
    the figure's artists in ``__init__``, then implement :meth:`_redraw` (change artists' data from
    ``self.values``).
    """

    width, height, dpi = 11.0, 4.2, 80

    def __init__(self) -> None:
        plots.style()
        self.fig = Figure(figsize=(self.width, self.height), dpi=self.dpi, layout="constrained")
        self.values: Dict[str, Any] = {}
        self.controls: Dict[str, W.ValueWidget] = {}
        self.image = W.Image(format="png")
        self._ui: Optional[W.Widget] = None
        self._syncing = False
        self.renders = 0  # how many times the figure was rendered into the image (for tests)

    # -- the callback --------------------------------------------------------------------------
    def update(self, **values: Any) -> "FigureApp":
        """Set some values (e.g. ``k=5``), move the controls to match, redraw the figure."""
        unknown = set(values) - set(self.values)
        if unknown:
            raise TypeError(f"unknown value(s) {sorted(unknown)}; this app has {sorted(self.values)}")
        self.values.update(self._validate(values))
        self._sync_controls()
        self._redraw()
        if self._ui is not None:  # only once shown: tests drive update() without rendering PNGs
            self.render()
        return self

    def _validate(self, values: Dict[str, Any]) -> Dict[str, Any]:
        return values

    def _redraw(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- widgets ---------------------------------------------------------------------------------
    def _connect(self) -> None:
        for name, w in self.controls.items():
            w.observe(lambda change, name=name: self._on_control(name, change["new"]), names="value")

    def _on_control(self, name: str, value: Any) -> None:
        if not self._syncing and value != self.values.get(name):
            self.update(**{name: value})

    def _sync_controls(self) -> None:
        self._syncing = True
        try:
            for name, w in self.controls.items():
                if w.value != self.values[name]:
                    w.value = self.values[name]
        finally:
            self._syncing = False

    def render(self) -> bytes:
        """Draw the figure into the image widget (PNG); returns the PNG bytes."""
        buf = io.BytesIO()
        self.fig.savefig(buf, format="png", dpi=self.dpi)
        self.image.value = buf.getvalue()
        self.renders += 1
        return self.image.value

    def _layout_controls(self) -> W.Widget:
        return W.HBox(list(self.controls.values()), layout=W.Layout(flex_flow="row wrap"))

    @property
    def ui(self) -> W.Widget:
        """The controls above the figure, as one ipywidgets box (rendered on first access)."""
        if self._ui is None:
            self._ui = W.VBox([self._layout_controls(), self.image])
            self.render()
        return self._ui

    def _repr_mimebundle_(self, **kwargs):
        return self.ui._repr_mimebundle_(**kwargs)


def _slider(kind: str, description: str, value, min, max, step, fmt: Optional[str] = None) -> W.ValueWidget:
    style = {"description_width": "90px"}
    layout = W.Layout(width="310px")
    if kind == "int":
        return W.IntSlider(value=value, min=min, max=max, step=step, description=description,
                           style=style, layout=layout, continuous_update=True)
    return W.FloatSlider(value=value, min=min, max=max, step=step, description=description,
                         readout_format=fmt or ".2f", style=style, layout=layout, continuous_update=True)


def _mse(pred: Tensor, target: Tensor) -> float:
    return float(((pred - target) ** 2).mean())


# =============================================================================================
# 2. Sinusoid regression
# =============================================================================================
class AdaptationExplorer(FigureApp):
    """Pick a sinusoid (amplitude, phase), K support points, the number of inner steps and the inner
    learning rate; see every initialisation adapt to it.

    Left: the true function, the K support points, and for each initialisation its prediction
    before (dashed) and after ``steps`` SGD steps (solid). Right: the MSE (against the true
    function on 200 points over [-5, 5]) after 0, 1, ..., ``steps`` steps. The box in the corner
    lists the final MSEs.

    Args:
        models: ``{kind: nn.Module}`` with kinds from ``"maml"``, ``"fomaml"``, ``"reptile"``,
            ``"pretrain"``, ``"random"`` (see :func:`adaptation_explorer` for the shipped ones).
        amplitude, phase, k, steps, lr: the starting values.
        seed: seeds the pool of support inputs (the first K are used, so points stay put while
            amplitude and phase change).
    """

    RANGES = dict(amplitude=(0.1, 5.0), phase=(0.0, math.pi), k=(1, 20), steps=(0, 20), lr=(0.001, 0.05))

    def __init__(self, models: Mapping[str, nn.Module], amplitude: float = 3.0, phase: float = 1.0,
                 k: int = 10, steps: int = 10, lr: float = lab.TEST_LR, seed: int = 0) -> None:
        super().__init__()
        if not models:
            raise ValueError("give at least one model, e.g. {'maml': metalib.pretrained('sinusoid-maml')}")
        self.models = dict(models)
        self.seed = seed
        self.x = lab.grid()
        self.values = dict(amplitude=float(amplitude), phase=float(phase), k=int(k), steps=int(steps), lr=float(lr))
        self.values = self._validate(self.values)
        self.results: Dict[str, Dict[str, Any]] = {}

        self.ax, self.ax_mse = self.fig.subplots(1, 2, width_ratios=[1.35, 1])
        ax = self.ax
        (self.true_line,) = ax.plot([], [], color="k", ls="--", lw=1.6, label="true function")
        self.init_lines, self.lines, self.mse_lines = {}, {}, {}
        for kind in self.models:
            c, name = lab.COLORS.get(kind), lab.LABELS.get(kind, kind)
            (self.init_lines[kind],) = ax.plot([], [], color=c, ls=":", lw=1.2, alpha=0.7)
            (self.lines[kind],) = ax.plot([], [], color=c, lw=2.2, label=name)
            (self.mse_lines[kind],) = self.ax_mse.plot([], [], "o-", ms=3.5, color=c, label=name)
        (self.support_points,) = ax.plot([], [], "o", color="k", ms=7, zorder=5, label="support points")
        plots._sinusoid_axes(ax, ylim=(-7.0, 7.0))
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=8, frameon=False)
        self.title = ax.set_title("")
        self.ax_mse.set_xlabel("gradient steps")
        self.ax_mse.set_ylabel("MSE over x ∈ [−5, 5]")
        self.ax_mse.set_yscale("log")
        plots.plain_log_ticks(self.ax_mse)
        self.ax_mse.set_title("error after each step")
        self.mse_text = self.ax_mse.text(0.98, 0.97, "", transform=self.ax_mse.transAxes, ha="right", va="top",
                                         fontsize=8.5, family="monospace",
                                         bbox=dict(boxstyle="round,pad=0.3", fc="white", ec="0.7", alpha=0.9))
        lo, hi = self.RANGES["amplitude"]
        self.controls = {
            "amplitude": _slider("float", "amplitude A", self.values["amplitude"], lo, hi, 0.1, ".1f"),
            "phase": _slider("float", "phase φ", self.values["phase"], 0.0, round(math.pi, 2), 0.05, ".2f"),
            "k": _slider("int", "K points", self.values["k"], *self.RANGES["k"], 1),
            "steps": _slider("int", "inner steps", self.values["steps"], *self.RANGES["steps"], 1),
            "lr": _slider("float", "inner lr α", self.values["lr"], *self.RANGES["lr"], 0.001, ".3f"),
        }
        self._connect()
        self._redraw()

    def _validate(self, values: Dict[str, Any]) -> Dict[str, Any]:
        out = dict(values)
        for name, v in values.items():
            lo, hi = self.RANGES[name]
            if isinstance(lo, int):
                if isinstance(v, bool) or not float(v).is_integer():
                    raise TypeError(f"{name} must be an integer, got {v!r}")
                v = int(v)
            else:
                v = float(v)
            if not lo - 1e-9 <= v <= hi + 1e-9:
                raise ValueError(f"{name} must be in [{lo}, {hi}], got {v}")
            out[name] = v
        return out

    def support(self):
        """The current support set ``(x_s [K, 1], y_s [K, 1])``."""
        v = self.values
        return lab.demo_task(v["amplitude"], v["phase"], v["k"], seed=self.seed)

    def adapted(self, kind: str) -> Tensor:
        """The prediction of ``kind`` on the plotting grid after the current number of steps, ``[200, 1]``."""
        return self.results[kind]["path"][-1]

    def _redraw(self) -> None:
        v = self.values
        x_s, y_s = self.support()
        truth = lab.true_curve(self.x, v["amplitude"], v["phase"])
        xs = self.x.flatten().numpy()
        self.true_line.set_data(xs, truth.flatten().numpy())
        self.support_points.set_data(x_s.flatten().numpy(), y_s.flatten().numpy())
        steps = list(range(v["steps"] + 1))
        lines: List[str] = [f"MSE after {v['steps']} step{'s' if v['steps'] != 1 else ''}:"]
        all_mse: List[float] = []
        for kind, model in self.models.items():
            path = lab.adaptation_path(model, x_s, y_s, self.x, v["steps"], v["lr"])
            mse = [_mse(p, truth) for p in path]
            self.results[kind] = {"path": path, "mse": mse}
            self.init_lines[kind].set_data(xs, path[0].flatten().numpy())
            self.lines[kind].set_data(xs, path[-1].flatten().numpy())
            self.mse_lines[kind].set_data(steps, mse)
            finite = [m for m in mse if math.isfinite(m)]
            all_mse += finite
            lines.append(f"{lab.SHORT.get(kind, kind):<12}{plots.fmt(mse[-1]):>6}")
        self.mse_text.set_text("\n".join(lines))
        self.title.set_text(f"A = {v['amplitude']:.1f}, φ = {v['phase']:.2f}, K = {v['k']}, "
                            f"{v['steps']} step{'s' if v['steps'] != 1 else ''} of α = {v['lr']:.3f}")
        self.ax_mse.set_xlim(-0.3, max(v["steps"], 1) + 0.3)
        if all_mse:
            lo, hi = max(min(all_mse), 1e-3), max(max(all_mse), 1e-2)
            self.ax_mse.set_ylim(lo / 1.5, min(hi * 5, 1e5))  # headroom for the MSE box


class TrainingTimeline(FigureApp):
    """Slide through the weight snapshots saved during meta-training.

    Left: one fixed task — its support points, the snapshot's initialisation (dashed) and its
    prediction after ``steps`` SGD steps (solid). Right: the mean query MSE over seeded test tasks,
    before and after adaptation, for every snapshot (log-spaced iterations), the current one marked.

    Args:
        snapshots: ``{iteration: state_dict}`` — from :func:`metalib.pretrained_snapshots` or
            ``History.snapshots`` of :func:`metalib.training.meta_train` (``snapshot_every=``).
        name: shown in the title.
        k, steps, lr: adaptation at every snapshot (``steps`` has a slider).
        amplitude, phase: the task shown on the left.
    """

    def __init__(self, snapshots: Mapping[int, Mapping[str, Tensor]], name: str = "", k: int = 10,
                 steps: int = 1, lr: float = lab.TEST_LR, amplitude: float = 3.5, phase: float = 2.0,
                 n_tasks: int = 200, seed: int = 0) -> None:
        super().__init__()
        if not snapshots:
            raise ValueError("no snapshots: train with meta_train(..., snapshot_every=N) or load shipped ones "
                             "with metalib.pretrained_snapshots(name)")
        self.snapshots = {int(i): sd for i, sd in snapshots.items()}
        self.iterations = sorted(self.snapshots)
        self.name, self.k, self.lr, self.n_tasks = name, int(k), float(lr), int(n_tasks)
        self.amplitude, self.phase, self.seed = float(amplitude), float(phase), seed
        self.x = lab.grid()
        self._models = {i: lab.snapshot_model(sd) for i, sd in self.snapshots.items()}
        self._curves: Dict[int, tuple] = {}
        self.values = {"iteration": self.iterations[-1], "steps": int(steps)}

        self.ax, self.ax_mse = self.fig.subplots(1, 2, width_ratios=[1.2, 1])
        ax = self.ax
        self.x_s, self.y_s = lab.demo_task(self.amplitude, self.phase, self.k, seed=seed)
        truth = lab.true_curve(self.x, self.amplitude, self.phase)
        ax.plot(self.x.flatten().numpy(), truth.flatten().numpy(), color="k", ls="--", lw=1.6, label="true function")
        (self.init_line,) = ax.plot([], [], color="C0", ls=":", lw=1.6, label="initialisation θ")
        (self.adapted_line,) = ax.plot([], [], color="C0", lw=2.4, label="after adaptation")
        ax.plot(self.x_s.flatten().numpy(), self.y_s.flatten().numpy(), "o", color="k", ms=7, zorder=5,
                label=f"K = {self.k} support points")
        plots._sinusoid_axes(ax, ylim=(-6.0, 6.0))
        ax.legend(loc="lower left", fontsize=8)
        self.title = ax.set_title("")
        a = self.ax_mse
        (self.before_curve,) = a.plot([], [], "o-", ms=3, color="0.55", label="before adaptation")
        (self.after_curve,) = a.plot([], [], "o-", ms=3, color="C0", label="after adaptation")
        (self.marker,) = a.plot([], [], "o", ms=11, mfc="none", mec="C3", mew=2, zorder=6)
        self.cursor = a.axvline(self.iterations[-1], color="C3", lw=1, alpha=0.6)
        a.set_xscale("symlog", linthresh=10)
        a.set_yscale("log")
        plots.plain_log_ticks(a)
        a.set_xlabel("meta-training iteration")
        a.set_ylabel(f"query MSE ({self.n_tasks} test tasks)")
        a.legend(loc="lower left", fontsize=8)
        self.mse_text = a.text(0.98, 0.97, "", transform=a.transAxes, ha="right", va="top", fontsize=9,
                               family="monospace", bbox=dict(boxstyle="round,pad=0.3", fc="white", ec="0.7", alpha=0.9))
        self.controls = {
            "iteration": W.SelectionSlider(options=self.iterations, value=self.values["iteration"],
                                           description="iteration", style={"description_width": "90px"},
                                           layout=W.Layout(width="480px"), continuous_update=True),
            "steps": _slider("int", "inner steps", self.values["steps"], 0, 10, 1),
        }
        self._connect()
        self._redraw()

    @classmethod
    def from_pretrained(cls, name: str = "sinusoid-maml", **kw) -> "TrainingTimeline":
        from .pretrained import pretrained_snapshots

        return cls(pretrained_snapshots(name), name=name, **kw)

    def _validate(self, values: Dict[str, Any]) -> Dict[str, Any]:
        out = dict(values)
        if "iteration" in values:
            it = int(values["iteration"])
            if it not in self.snapshots:  # snap to the nearest saved snapshot
                it = min(self.iterations, key=lambda i: abs(i - it))
            out["iteration"] = it
        if "steps" in values:
            s = values["steps"]
            if isinstance(s, bool) or not float(s).is_integer() or not 0 <= int(s) <= 10:
                raise ValueError(f"steps must be an integer in [0, 10], got {s!r}")
            out["steps"] = int(s)
        return out

    def curve(self, steps: int):
        """``(iterations, MSE before, MSE after `steps` steps)`` over the snapshots (cached)."""
        if steps not in self._curves:
            self._curves[steps] = lab.snapshot_curve(self.snapshots, k=self.k, steps=steps,
                                                     n_tasks=self.n_tasks, lr=self.lr)
        return self._curves[steps]

    def model(self, iteration: int) -> nn.Module:
        """The network holding snapshot ``iteration``."""
        return self._models[iteration]

    def _redraw(self) -> None:
        it, steps = self.values["iteration"], self.values["steps"]
        path = lab.adaptation_path(self._models[it], self.x_s, self.y_s, self.x, steps, self.lr)
        self.path = path
        xs = self.x.flatten().numpy()
        self.init_line.set_data(xs, path[0].flatten().numpy())
        self.adapted_line.set_data(xs, path[-1].flatten().numpy())
        self.adapted_line.set_label(f"after {steps} step{'s' if steps != 1 else ''}")
        self.ax.legend(loc="lower left", fontsize=8)
        its, before, after = self.curve(steps)
        self.before_curve.set_data(its, before)
        self.after_curve.set_data(its, after)
        self.after_curve.set_label(f"after {steps} step{'s' if steps != 1 else ''}")
        self.ax_mse.legend(loc="lower left", fontsize=8)
        i = its.index(it)
        self.marker.set_data([it], [after[i]])
        self.cursor.set_xdata([it, it])
        self.ax_mse.set_xlim(0, its[-1] * 1.3)
        vals = [v for v in before + after if math.isfinite(v) and v > 0]
        if vals:
            self.ax_mse.set_ylim(min(vals) / 1.5, max(vals) * 1.5)
        self.mse_text.set_text(f"iteration {it:,}\nbefore  {plots.fmt(before[i]):>6}\n"
                               f"after   {plots.fmt(after[i]):>6}")
        self.title.set_text(f"{self.name + ': ' if self.name else ''}snapshot at iteration {it:,}")


def adaptation_explorer(models: Optional[Mapping[str, nn.Module]] = None,
                        kinds: Sequence[str] = ("maml", "reptile", "pretrain", "random"), **kw) -> AdaptationExplorer:
    """The adaptation explorer on the shipped sinusoid weights (``kinds``), or on your ``models``."""
    if models is None:
        models = {kind: lab.load(kind) for kind in kinds}
    return AdaptationExplorer(models, **kw)


def training_timeline(name_or_snapshots: Any = "sinusoid-maml", **kw) -> TrainingTimeline:
    """The meta-training timeline of shipped weights (by name), of ``History.snapshots``, or of a
    ``{iteration: state_dict}`` dict."""
    if isinstance(name_or_snapshots, str):
        return TrainingTimeline.from_pretrained(name_or_snapshots, **kw)
    snaps = getattr(name_or_snapshots, "snapshots", name_or_snapshots)
    return TrainingTimeline(snaps, **kw)


# =============================================================================================
# 3. Few-shot classification — widgets for the Omniglot / miniImageNet notebooks go here.
# =============================================================================================
