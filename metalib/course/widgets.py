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
3. few-shot classification (notebooks 05-07): :class:`EpisodeExplorer`, :class:`EmbeddingExplorer`,
   :class:`AccuracyVsSteps`, drawing the tested computations of :mod:`metalib.fewshot_lab`::

       from metalib.course import widgets, fewshot_lab as fl
       learners = fl.load_learners(["protonet-omniglot-5w1s", "maml-omniglot-5w1s"])
       data = fl.load_test_data("omniglot")
       ex = widgets.episode_explorer(learners, data, n_way=5, k_shot=1, n_query=3, seed=0)
       ex.update(n_way=20, k_shot=5); ex.new_episode(); ex.accuracy     # fraction of queries right
       em = widgets.embedding_explorer("maml-omniglot-5w1s", data, n_way=5, k_shot=5, max_steps=10)
       em.update(steps=3)
       curves = fl.accuracy_vs_steps(learners, data, n_way=5, k_shot=1, steps=range(11), episodes=50)
       widgets.accuracy_vs_steps(curves)
"""
from __future__ import annotations

import io
import math
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence

import ipywidgets as W
import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from . import fewshot_lab as fl
from . import plots
from . import sinusoid_lab as lab

__all__ = ["FigureApp", "AdaptationExplorer", "TrainingTimeline", "adaptation_explorer", "training_timeline",
           "EpisodeExplorer", "EmbeddingExplorer", "AccuracyVsSteps", "episode_explorer", "embedding_explorer",
           "accuracy_vs_steps"]


# =============================================================================================
# 1. Shared machinery
# =============================================================================================
class FigureApp:
    """Base class: a reusable figure, named values driven by controls, and an ``update`` callback.

    Subclasses set ``self.values`` (defaults), build ``self.controls`` ({value name: widget}) and
    the figure's artists in ``__init__``, then implement :meth:`_redraw` (change artists' data from
    ``self.values``).
    """

    width, height, dpi = 11.0, 4.2, 100   # 1,100 pixels wide: sharp on a projector, scaled to the page

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

    def clipped_titles(self) -> List[str]:
        """The titles (the figure's and each panel's) that do not lie wholly inside the figure as it is
        drawn now, or hold a raw "nan": empty when every title can be read."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.text import Text

        renderer = FigureCanvasAgg(self.fig).get_renderer()   # what render() draws with
        self.fig.draw(renderer)                                 # lays the figure out as it will be shown
        box = self.fig.bbox
        titles = [t for t in [getattr(self.fig, "_suptitle", None)] + [a.title for a in self.fig.axes]
                  if isinstance(t, Text) and t.get_visible() and t.get_text()]
        bad = []
        for t in titles:
            e = t.get_window_extent(renderer)
            if e.x0 < box.x0 - 0.5 or e.x1 > box.x1 + 0.5 or e.y0 < box.y0 - 0.5 or e.y1 > box.y1 + 0.5:
                bad.append(f"clipped ({e.x0:.0f}…{e.x1:.0f} of 0…{box.x1:.0f} px): {t.get_text()!r}")
            elif re.search(r"\bnan\b", t.get_text(), re.IGNORECASE):
                bad.append(f"NaN in the title: {t.get_text()!r}")
        return bad

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


def check_range(name: str, v: Any, lo: float, hi: float, integer: bool):
    """A widget value set from code (``app.set(...)``), checked: a number (an integer if ``integer``) in
    ``[lo, hi]``, returned as ``int``/``float``; otherwise one ``TypeError``/``ValueError`` line naming it."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {v!r}")
    if integer and not float(v).is_integer():
        raise TypeError(f"{name} must be an integer, got {v!r}")
    if not lo - 1e-9 <= float(v) <= hi + 1e-9:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {v}")
    return int(v) if integer else float(v)


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
        plots.sinusoid_axes(ax, ylim=(-7.0, 7.0))
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
        plots.sinusoid_axes(ax, ylim=(-6.0, 6.0))
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
        from ..pretrained import pretrained_snapshots

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
# 3. Few-shot classification
# =============================================================================================
# The computations (probabilities, embeddings, PCA, decision regions, accuracy vs steps) live in
# metalib.fewshot_lab and are tested there; these classes only draw them. Images are tiled into one
# RGB mosaic drawn by a single imshow, so a 20-way 5-shot episode still renders in a fraction of a second.
def _class_colors(n: int) -> np.ndarray:
    """``[n, 4]`` RGBA: tab10 up to 10 classes, tab20 up to 20, then a cyclic map."""
    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20" if n <= 20 else "hsv"]
    return np.array([cmap(i if n <= 20 else i / n) for i in range(n)])


_RIGHT, _WRONG = np.array([0.10, 0.65, 0.20]), np.array([0.85, 0.10, 0.10])


def _tile_size(side: int) -> int:
    """Display size of a tile: miniImageNet's 84 px halved (every other pixel) to keep PNGs light."""
    return side // 2 if side > 56 else side


def _mosaic(images: np.ndarray, rows: int, cols: int, frames: Optional[np.ndarray] = None, pad: int = 3,
            gap_after: Optional[int] = None) -> np.ndarray:
    """Tile ``images [rows*cols, s, s, 3]`` (row-major) into one RGB image on white; ``frames
    [rows*cols, 3]`` (NaN = none) colours a border in each tile's padding; ``gap_after``: a blank row
    band after that many rows (separates support from queries)."""
    s = images.shape[1]
    cell = s + 2 * pad
    extra = cell // 2 if gap_after is not None else 0
    out = np.ones((rows * cell + extra, cols * cell, 3))
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        y = r * cell + (extra if gap_after is not None and r >= gap_after else 0)
        x = c * cell
        if frames is not None and np.isfinite(frames[i]).all():
            out[y:y + cell, x:x + cell] = frames[i]
        out[y + pad:y + pad + s, x + pad:x + pad + s] = images[i]
    return out


def _choice(name: str, value, options: Sequence) -> None:
    if value not in options:
        raise ValueError(f"{name} must be one of {list(options)}, got {value!r}")


class EpisodeExplorer(FigureApp):
    """One few-shot episode, classified by a learner: the support set, the queries marked right or
    wrong, and the per-class probabilities of a few queries.

    Top: the episode as a grid — one column per class (labels 0..N-1), its K support images, then
    up to ``max_query_rows`` rows of its queries framed green (classified right) or red (wrong, the
    predicted class written beside). Bottom: for ``n_bars`` queries (mistakes first) the probability
    the learner gives each class (:func:`metalib.fewshot_lab.episode_probabilities`).

    Controls: a model selector, N-way and K-shot selectors and a "New episode" button (episode
    ``i`` of ``seed`` is the ``i``-th seeded test episode, :func:`metalib.fewshot_lab.sample_episode`).
    MAML and Reptile learners have an N-way linear head: selecting one fixes N to its size.

    Args:
        learners: ``{name: learner}`` (e.g. :func:`metalib.fewshot_lab.load_learners`) or one learner.
        data: the classes episodes come from (e.g. :func:`metalib.fewshot_lab.load_test_data`).
        n_way, k_shot, n_query: the episode (``n_query`` queries per class, all of them scored).
        steps: inner steps for MAML/Reptile (default: the shipped weights' test-time steps).
    """

    width, height = 11.0, 6.4
    WAYS, SHOTS = (2, 3, 5, 10, 20), (1, 2, 3, 5, 10)

    def __init__(self, learners: Any, data: Any, n_way: int = 5, k_shot: int = 1, n_query: int = 3,
                 seed: int = 0, model: Optional[str] = None, episode: int = 0, steps: Optional[int] = None,
                 max_query_rows: int = 3, n_bars: int = 4) -> None:
        super().__init__()
        if not isinstance(learners, Mapping):
            learners = {learners.name: learners}
        if not learners:
            raise ValueError("give at least one learner, e.g. fl.load_learners(['protonet-omniglot-5w1s'])")
        self.learners = dict(learners)
        self.data, self.seed, self.n_query = data, int(seed), int(n_query)
        self.steps_override = steps
        self._cache: Dict[tuple, tuple] = {}  # (model, n_way, k_shot, episode) -> (episode, EpisodeView)
        self.max_query_rows, self.n_bars = int(max_query_rows), int(n_bars)
        images = fl.images_of(data)
        self.n_classes, self.per_class = int(images.shape[0]), int(images.shape[1])
        ways = sorted({w for w in self.WAYS if w <= self.n_classes} | {int(n_way)})
        shots = sorted({k for k in self.SHOTS if k + self.n_query <= self.per_class} | {int(k_shot)})
        self.values = {"model": model if model is not None else next(iter(self.learners)),
                       "n_way": int(n_way), "k_shot": int(k_shot), "episode": int(episode)}
        self.values = self._validate(dict(self.values))

        # fixed margins instead of constrained layout: re-solving the layout on every render costs
        # more than drawing the episode
        self.fig.set_layout_engine("none")
        grid = self.fig.add_gridspec(2, max(self.n_bars, 1), height_ratios=[2.3, 1], left=0.07, right=0.99,
                                     top=0.9, bottom=0.05, hspace=0.28, wspace=0.22)
        self.ax = self.fig.add_subplot(grid[0, :])
        self.bar_axes = [self.fig.add_subplot(grid[1, i]) for i in range(self.n_bars)]
        self.mosaic = self.ax.imshow(np.ones((2, 2, 3)), interpolation="nearest")
        self.ax.tick_params(length=0, labelsize=8)
        self.ax.grid(False)
        for s in self.ax.spines.values():
            s.set_visible(False)
        self.title = self.ax.set_title("", fontsize=10)
        self._notes: List[Any] = []
        self.controls = {
            "model": W.Dropdown(options=list(self.learners), value=self.values["model"], description="model",
                                style={"description_width": "50px"}, layout=W.Layout(width="330px")),
            "n_way": W.Dropdown(options=ways, value=self.values["n_way"], description="N-way",
                                style={"description_width": "50px"}, layout=W.Layout(width="130px")),
            "k_shot": W.Dropdown(options=shots, value=self.values["k_shot"], description="K-shot",
                                 style={"description_width": "50px"}, layout=W.Layout(width="130px")),
        }
        self.button = W.Button(description="New episode", icon="refresh", layout=W.Layout(width="130px"))
        self.button.on_click(lambda _: self.new_episode())
        self._connect()
        self._redraw()

    # -- values ----------------------------------------------------------------------------------
    def _sync_controls(self) -> None:
        super()._sync_controls()
        # MAML/Reptile: N is fixed by the head, so the selector is greyed out
        self.controls["n_way"].disabled = fl.head_size(self.learner) is not None

    def _validate(self, values: Dict[str, Any]) -> Dict[str, Any]:
        out = dict(values)
        if "model" in values:
            _choice("model", values["model"], list(self.learners))
        for name in ("n_way", "k_shot", "episode"):
            if name in values:
                v = values[name]
                if isinstance(v, bool) or not float(v).is_integer():
                    raise TypeError(f"{name} must be an integer, got {v!r}")
                out[name] = int(v)
        merged = {**self.values, **out}
        size = fl.head_size(self.learners[merged["model"]])
        if size is not None and merged["n_way"] != size:
            if "n_way" in values and values["n_way"] != size:
                raise ValueError(f"{merged['model']} has a {size}-way linear head: it classifies {size}-way "
                                 f"episodes only (got n_way={values['n_way']}); ProtoNet works for any N")
            out["n_way"] = size  # switching to a MAML/Reptile model: N follows its head
        merged = {**self.values, **out}
        if merged["episode"] < 0:
            raise ValueError(f"episode must be >= 0, got {merged['episode']}")
        fl.check_sizes(self.data, merged["n_way"], merged["k_shot"], self.n_query)
        fl.check_episode(self.learners[merged["model"]], self.data, merged["n_way"])
        return out

    def new_episode(self) -> "EpisodeExplorer":
        """Show the next seeded episode (what the "New episode" button does)."""
        return self.update(episode=self.values["episode"] + 1)

    @property
    def learner(self):
        return self.learners[self.values["model"]]

    @property
    def accuracy(self) -> float:
        """Fraction (0-1) of this episode's N x n_query queries classified right."""
        return self.view.accuracy

    @property
    def steps(self) -> Optional[int]:
        """Inner steps used for the current model (None: ProtoNet)."""
        if not fl.adapts(self.learner):
            return None
        return fl.default_steps(self.learner) if self.steps_override is None else self.steps_override

    # -- drawing ---------------------------------------------------------------------------------
    def _layout_controls(self) -> W.Widget:
        return W.HBox([*self.controls.values(), self.button], layout=W.Layout(flex_flow="row wrap"))

    def _redraw(self) -> None:
        v = self.values
        n, k, q = v["n_way"], v["k_shot"], self.n_query
        key = (v["model"], n, k, v["episode"])
        if key not in self._cache:  # going back to a model/episode seen before is instant
            if len(self._cache) >= 32:
                self._cache.pop(next(iter(self._cache)))
            episode = fl.sample_episode(self.data, n, k, q, seed=self.seed, index=v["episode"],
                                        device=self.learner.device)
            self._cache[key] = (episode, fl.episode_view(self.learner, episode, steps=self.steps))
        self.episode, self.view = self._cache[key]
        self.probs = self.view.probs
        x_s, _, x_q, y_q = (t[0] for t in self.episode)
        self.support_images = x_s.cpu()
        rows = min(q, self.max_query_rows)
        pred = self.view.predictions
        right = (pred == y_q.cpu()).numpy()
        # queries are class-major: query j of class c is at c*q + j; show rows j < rows, column c
        shown = torch.tensor([c * q + j for j in range(rows) for c in range(n)], dtype=torch.long)
        side = x_s.shape[-1]
        stride = side // _tile_size(side)
        tiles = torch.cat([
            fl.display_images(x_s.cpu()).view(n, k, side, side, 3).transpose(0, 1).reshape(n * k, side, side, 3),
            fl.display_images(x_q.cpu()[shown]),
        ])[:, ::stride, ::stride].numpy()
        frames = np.full((len(tiles), 3), np.nan)
        frames[n * k:] = np.where(right[shown.numpy()][:, None], _RIGHT, _WRONG)
        img = _mosaic(tiles, k + rows, n, frames, gap_after=k)
        self.mosaic.set_data(img)
        self.mosaic.set_extent((-0.5, img.shape[1] - 0.5, img.shape[0] - 0.5, -0.5))
        self.ax.set_xlim(-0.5, img.shape[1] - 0.5)
        self.ax.set_ylim(img.shape[0] - 0.5, -0.5)
        cell = tiles.shape[1] + 6
        extra = cell // 2
        self.ax.set_xticks([c * cell + cell / 2 for c in range(n)], [str(c) for c in range(n)])
        ys = [r * cell + cell / 2 for r in range(k)] + [(k + r) * cell + extra + cell / 2 for r in range(rows)]
        labels = [f"shot {r + 1}" for r in range(k)] + [f"query {r + 1}" for r in range(rows)]
        if k > 5:  # keep labels legible for many shots
            labels = [lab if i in (0, k - 1) or i >= k else "" for i, lab in enumerate(labels)]
        self.ax.set_yticks(ys, labels)
        self.ax.xaxis.set_ticks_position("top")
        for t in self._notes:
            t.remove()
        self._notes = []
        for i, idx in enumerate(shown.tolist()):  # the predicted class beside each mistake
            if not right[idx]:
                r, c = divmod(i, n)
                self._notes.append(self.ax.text((c + 1) * cell - 2, (k + r) * cell + extra + cell - 2,
                                                f"→{int(pred[idx])}", color="white", fontsize=7, ha="right",
                                                va="bottom", bbox=dict(boxstyle="square,pad=0.1", fc=_WRONG, ec="none")))
        steps = f", {self.steps} inner step{'s' if self.steps != 1 else ''}" if self.steps is not None else ""
        wrong = int((~right.astype(bool)).sum())
        self.title.set_text(
            f"{v['model']}{steps} — {n}-way {k}-shot, episode {v['episode']} (seed {self.seed}): "
            f"{100 * self.accuracy:.0f}% of the {n * q} queries right ({wrong} wrong)"
            + (f"; showing {rows} of {q} queries per class" if rows < q else ""))
        self._draw_bars(right, pred)

    def _draw_bars(self, right: np.ndarray, pred: Tensor) -> None:
        n = self.values["n_way"]
        q = self.n_query
        order = [i for i in range(len(right)) if not right[i]] + [i for i in range(len(right)) if right[i]]
        # mistakes first, then one query per class so the picks differ
        picks: List[int] = []
        for i in order:
            if len(picks) == len(self.bar_axes):
                break
            if not right[i] or all(j // q != i // q for j in picks):
                picks.append(i)
        self.bar_queries = picks
        colors = np.array([[0.6, 0.6, 0.6]] * n)
        for ax_i, ax in enumerate(self.bar_axes):
            ax.clear()
            if ax_i >= len(picks):
                ax.set_axis_off()
                continue
            ax.set_axis_on()
            i = picks[ax_i]
            true, guess = i // q, int(pred[i])
            c = colors.copy()
            c[true] = _RIGHT
            if guess != true:
                c[guess] = _WRONG
            p = self.probs[i].numpy()
            ax.bar(np.arange(n), p, color=c, width=0.8)
            ax.set_ylim(0, 1.05)
            ax.set_xticks(range(n) if n <= 10 else range(0, n, 5))
            ax.tick_params(labelsize=7)
            ax.set_title(f"query {i % q + 1} of class {true}: p = {p[true]:.2f}"
                         + ("" if guess == true else f", says {guess}"), fontsize=8,
                         color="k" if guess == true else _WRONG)
            if ax_i == 0:
                ax.set_ylabel("p(class | query)", fontsize=8)


class EmbeddingExplorer(FigureApp):
    """Where a learner puts an episode's images: a 2-D PCA of the support and query embeddings,
    with the prototypes (ProtoNet) and the decision regions; for MAML/Reptile a slider over the
    inner steps 0..``max_steps`` shows the features and the regions move as the weights adapt.

    Left: one PCA (:func:`metalib.fewshot_lab.pca_2d`) fitted on the embeddings of every step
    together, so the axes stay put while the slider moves. Discs: support images; dots: queries
    (coloured by their true class, a black cross where the real rule gets them wrong); stars:
    ProtoNet's prototypes. The coloured background is the learner's real rule restricted to the
    plane through the mean spanned by PC1 and PC2 (:func:`metalib.fewshot_lab.decision_regions`);
    queries lie off that plane, so a dot can sit in another class's region and still be right —
    the box reports how often the plane's region agrees with the real prediction.
    Right (MAML/Reptile): this episode's query accuracy after each number of steps.

    No plane shows a 5-way linear rule faithfully (its decisions depend on four directions): the
    queries whose region is not the class the real rule gives them are drawn as hollow rings, and
    the box counts them.

    Args:
        max_steps: the slider runs over 0..``max_steps`` inner steps (all adapted once per episode).
        step_values: instead, only these step counts (e.g. ``[0, 1, 2, 5, 10, 20, 43, 86]`` for
            Reptile, whose Adam inner loop restarts for every step count: cost = their sum).
        resolution: grid points per side of the decision regions.
    """

    width, height = 11.0, 4.8

    def __init__(self, learner: Any, data: Any, n_way: int = 5, k_shot: int = 5, n_query: int = 15,
                 max_steps: int = 10, steps: Optional[int] = None, seed: int = 0, episode: int = 0,
                 name: Optional[str] = None, resolution: int = 150,
                 step_values: Optional[Sequence[int]] = None) -> None:
        super().__init__()
        self.learner, self.data, self.name = learner, data, name or learner.describe()
        self.kind = learner.name
        self.adapts = fl.adapts(learner)
        self.n_way, self.k_shot, self.n_query = int(n_way), int(k_shot), int(n_query)
        self.seed, self.resolution = int(seed), int(resolution)
        fl.check_sizes(data, self.n_way, self.k_shot, self.n_query)
        fl.check_episode(learner, data, self.n_way)
        if self.adapts:
            if step_values is None:
                if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 0:
                    raise ValueError(f"max_steps must be an int >= 0, got {max_steps!r}")
                step_values = range(max_steps + 1)
            self.step_values = sorted({fl.step_count(k) for k in step_values})
            if not self.step_values:
                raise ValueError("step_values is empty")
            self.max_steps = self.step_values[-1]
            start = fl.default_steps(learner) if steps is None else steps
            if steps is None and start not in self.step_values:  # the closest available step count
                start = min(self.step_values, key=lambda k: (abs(k - start), -k))
            self.values = {"steps": start, "episode": int(episode)}
        else:
            if steps not in (None, 0):
                raise ValueError(f"{learner.describe()} has no inner loop: leave steps out")
            self.max_steps, self.step_values = 0, [0]
            self.values = {"episode": int(episode)}
        self.values = self._validate(dict(self.values))
        self._episode_cache: Optional[int] = None

        self.fig.set_layout_engine("none")  # fixed margins: cheaper renders (see EpisodeExplorer)
        grid = dict(left=0.06, right=0.98, top=0.84, bottom=0.11, wspace=0.2)
        if self.adapts:
            self.ax, self.ax_acc = self.fig.subplots(1, 2, width_ratios=[1.5, 1], gridspec_kw=grid)
        else:
            self.ax, self.ax_acc = self.fig.subplots(1, 1, gridspec_kw=grid), None
        self.colors = _class_colors(self.n_way)
        ax = self.ax
        from matplotlib.colors import ListedColormap

        self.region_cmap = ListedColormap(self.colors[:, :3] * 0.35 + 0.65)  # pale class colours
        self.regions = ax.imshow(np.zeros((2, 2)), origin="lower", cmap=self.region_cmap, vmin=-0.5,
                                 vmax=self.n_way - 0.5, interpolation="nearest", aspect="auto", zorder=0)
        self.query_dots = ax.scatter([], [], s=16, zorder=3, linewidths=1.1, label="queries")
        self.wrong_marks = ax.scatter([], [], s=28, marker="x", color="k", linewidths=1.0, zorder=4,
                                      label="query misclassified")
        self.support_dots = ax.scatter([], [], s=70, zorder=5, edgecolors="k", linewidths=0.8, label="support")
        self.proto_marks = ax.scatter([], [], s=260, marker="*", zorder=6, edgecolors="k", linewidths=1.0,
                                      label="prototypes")
        self.proto_marks.set_visible(not self.adapts)
        ax.set_xlabel("PC1")
        ax.set_ylabel("PC2")
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], ls="", marker="o", ms=8, mfc="0.8", mec="k", label="support"),
                   Line2D([], [], ls="", marker="o", ms=4, mfc="0.5", mec="none", label="query"),
                   Line2D([], [], ls="", marker="o", ms=5, mfc="none", mec="0.4", mew=1.1,
                          label="query outside its predicted region"),
                   Line2D([], [], ls="", marker="x", ms=5, color="k", label="query misclassified")]
        if not self.adapts:
            handles.append(Line2D([], [], ls="", marker="*", ms=12, mfc="0.8", mec="k", label="prototype"))
        ax.legend(handles=handles, loc="upper left", fontsize=7, framealpha=0.85)
        self.title = ax.set_title("", fontsize=9)
        self.info = ax.text(0.99, 0.01, "", transform=ax.transAxes, ha="right", va="bottom", fontsize=8,
                            family="monospace", zorder=7,
                            bbox=dict(boxstyle="round,pad=0.3", fc="white", ec="0.7", alpha=0.9))
        if self.ax_acc is not None:
            a = self.ax_acc
            (self.acc_line,) = a.plot([], [], "o-", ms=3.5, color="C0", label="real rule")
            (self.plane_line,) = a.plot([], [], "s--", ms=3, color="0.55",
                                        label="queries in their predicted region")
            (self.acc_marker,) = a.plot([], [], "o", ms=11, mfc="none", mec="C3", mew=2, zorder=6)
            a.set_xlabel("inner steps")
            a.set_ylabel(f"accuracy, this episode's {self.n_way * self.n_query} queries (%)")
            a.set_ylim(0, 105)
            a.legend(loc="lower right", fontsize=8)
            a.set_title("this episode", fontsize=9)
        self.controls = {}
        if self.adapts:
            if self.step_values == list(range(self.max_steps + 1)):
                self.controls["steps"] = _slider("int", "inner steps", self.values["steps"], 0, self.max_steps, 1)
            else:
                self.controls["steps"] = W.SelectionSlider(options=self.step_values, value=self.values["steps"],
                                                           description="inner steps", continuous_update=True,
                                                           style={"description_width": "90px"},
                                                           layout=W.Layout(width="420px"))
        self.button = W.Button(description="New episode", icon="refresh", layout=W.Layout(width="130px"))
        self.button.on_click(lambda _: self.new_episode())
        self._connect()
        self._redraw()

    def _validate(self, values: Dict[str, Any]) -> Dict[str, Any]:
        out = dict(values)
        for name, v in values.items():
            if isinstance(v, bool) or not float(v).is_integer():
                raise TypeError(f"{name} must be an integer, got {v!r}")
            v = int(v)
            if name == "steps" and v not in self.step_values:
                allowed = (f"in [0, {self.max_steps}]" if self.step_values == list(range(self.max_steps + 1))
                           else f"one of {self.step_values}")
                raise ValueError(f"steps must be {allowed}, got {v}")
            if v < 0:
                raise ValueError(f"{name} must be >= 0, got {v}")
            out[name] = v
        return out

    def new_episode(self) -> "EmbeddingExplorer":
        """Show the next seeded episode (what the "New episode" button does)."""
        return self.update(episode=self.values["episode"] + 1)

    def _layout_controls(self) -> W.Widget:
        return W.HBox([*self.controls.values(), self.button], layout=W.Layout(flex_flow="row wrap"))

    def _prepare(self) -> None:
        """Per episode: the views at every step, one PCA over all of them, the plot extent."""
        e = self.values["episode"]
        self.episode = fl.sample_episode(self.data, self.n_way, self.k_shot, self.n_query, seed=self.seed,
                                         index=e, device=self.learner.device)
        if self.adapts:
            x_s, y_s = self.episode[0][0], self.episode[1][0]
            path = fl.adaptation_path(self.learner, x_s, y_s, self.step_values)
            self.views = {k: fl.episode_view(self.learner, self.episode, steps=k, params=phi) for k, phi in path.items()}
        else:
            self.views = {0: fl.episode_view(self.learner, self.episode)}
        allz = torch.cat([torch.cat([v.z_s, v.z_q]) for v in self.views.values()])
        self.pca = fl.pca_2d(allz)
        c = self.pca.coords.numpy()
        lo, hi = c.min(0), c.max(0)
        span = np.maximum(hi - lo, 1e-6)
        lo, hi = lo - 0.08 * span, hi + 0.08 * span
        self.extent = (float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1]))
        self._regions: Dict[int, np.ndarray] = {}
        self._plane_acc: Dict[int, float] = {}
        self._episode_cache = e

    def region_labels(self, steps: int = 0) -> np.ndarray:
        """The class of each grid point of the plane after ``steps`` steps, ``[res, res]`` (cached)."""
        if steps not in self._regions:
            self._regions[steps] = fl.decision_regions(self.views[steps], self.pca, self.extent,
                                                       self.resolution).numpy()
        return self._regions[steps]

    def in_region(self, steps: int = 0) -> Tensor:
        """``bool [N*Q]``: for each query, whether the class the real rule gives its projection onto
        the plane (the region it is drawn in) is its real prediction."""
        v = self.views[steps]
        on_plane = self.pca.unproject(self.pca.project(v.z_q))
        return v.rule(on_plane).argmax(-1) == v.predictions

    def plane_agreement(self, steps: int = 0) -> float:
        """Fraction of queries drawn in the region of their real prediction (how faithful the 2-D
        picture is)."""
        if steps not in self._plane_acc:
            self._plane_acc[steps] = float(self.in_region(steps).float().mean())
        return self._plane_acc[steps]

    def _redraw(self) -> None:
        if self._episode_cache != self.values["episode"]:
            self._prepare()
        k = self.values.get("steps", 0)
        v = self.view = self.views[k]
        zs, zq = self.pca.project(v.z_s).numpy(), self.pca.project(v.z_q).numpy()
        self.support_xy, self.query_xy = zs, zq
        self.regions.set_data(self.region_labels(k))
        self.regions.set_extent(self.extent)
        self.support_dots.set_offsets(zs)
        self.support_dots.set_facecolor(self.colors[v.y_s.numpy()])
        self.query_dots.set_offsets(zq)
        colors = self.colors[v.y_q.numpy()].copy()
        self.query_dots.set_edgecolor(colors.copy())
        colors[~self.in_region(k).numpy(), 3] = 0.0           # hollow: drawn outside its predicted region
        self.query_dots.set_facecolor(colors)
        wrong = (v.predictions != v.y_q).numpy()
        self.wrong_marks.set_offsets(zq[wrong] if wrong.any() else np.zeros((0, 2)))
        if v.prototypes is not None:
            self.proto_marks.set_offsets(self.pca.project(v.prototypes).numpy())
            self.proto_marks.set_facecolor(self.colors[: self.n_way])
        self.ax.set_xlim(self.extent[0], self.extent[1])
        self.ax.set_ylim(self.extent[2], self.extent[3])
        r = self.pca.explained_ratio.tolist()
        what = "embeddings" if not self.adapts else "features before the head"
        rule = "nearest real prototype (all dims)" if not self.adapts else "adapted linear head"
        steps = f", {k} inner step{'s' if k != 1 else ''}" if self.adapts else ""
        self.title.set_text(f"{self.name}{steps}, episode {self.values['episode']}: PCA of the {what}\n"
                            f"regions: real rule ({rule}) on the plane through the mean\n"
                            f"spanned by PC1 ({100 * r[0]:.0f}% of variance) and PC2 ({100 * r[1]:.0f}%)")
        self.info.set_text(f"{self.n_way}-way {self.k_shot}-shot, {len(v.y_q)} queries\n"
                           f"accuracy (real rule) {100 * v.accuracy:5.1f}%\n"
                           f"in their predicted region {100 * self.plane_agreement(k):5.1f}%\n"
                           f"(hollow: the others; the plane\ncannot show all {v.z_q.shape[1]} dimensions)")
        if self.ax_acc is not None:
            ks = sorted(self.views)
            accs = [100 * self.views[j].accuracy for j in ks]
            self.acc_line.set_data(ks, accs)
            self.plane_line.set_data(ks, [100 * self.plane_agreement(j) for j in ks])
            self.acc_marker.set_data([k], [accs[ks.index(k)]])
            self.ax_acc.set_xlim(-0.5, max(ks) + 0.5)


class AccuracyVsSteps(FigureApp):
    """Query accuracy against the number of test-time inner steps, one curve and 95% CI band per
    learner (:func:`metalib.course.fewshot_lab.accuracy_vs_steps`); ProtoNet (no inner loop) as a dashed
    reference line. A selector shows or hides curves; a ring marks each learner's test-time steps."""

    width, height = 9.0, 4.4

    def __init__(self, curves: Mapping[str, "fl.StepCurve"], show: Optional[Sequence[str]] = None) -> None:
        super().__init__()
        if not curves:
            raise ValueError("no curves: compute them with fl.accuracy_vs_steps(learners, data, ...)")
        self.curves = dict(curves)
        self.values = {"show": tuple(self.curves if show is None else show)}
        self.values = self._validate(self.values)
        ax = self.ax = self.fig.subplots(1, 1)
        self.lines, self.bands, self.marks = {}, {}, {}
        top = max(max(c.steps) for c in self.curves.values())
        for i, (name, c) in enumerate(self.curves.items()):
            color = f"C{i % 10}"
            mean, ci = np.array(c.mean), np.array(c.ci95)
            xs = np.array(c.steps) if c.adapts else np.array([0, top])
            m = mean if c.adapts else np.array([mean[0], mean[0]])
            e = ci if c.adapts else np.array([ci[0], ci[0]])
            (self.lines[name],) = ax.plot(xs, m, "o-" if c.adapts else "--", ms=3.5, color=color,
                                          label=name + ("" if c.adapts else " (no inner loop)"))
            self.bands[name] = ax.fill_between(xs, m - e, m + e, color=color, alpha=0.18, lw=0)
            d = c.default_steps
            if c.adapts and d is not None and d in c.steps:
                (self.marks[name],) = ax.plot([d], [c.at(d)[0]], "o", ms=10, mfc="none", mec=color, mew=1.8)
        first = next(iter(self.curves.values()))
        ax.set_xlabel("test-time inner steps")
        ax.set_ylabel("query accuracy (%)")
        ax.set_title(f"{first.n_way}-way {first.k_shot}-shot, mean ± 95% CI over {first.episodes} seeded episodes\n"
                     f"(seed {first.seed}, {first.q_query} queries/class); ring: the learner's test-time steps",
                     fontsize=9)
        self.controls = {"show": W.SelectMultiple(options=list(self.curves), value=self.values["show"],
                                                  description="show", rows=min(len(self.curves), 5),
                                                  style={"description_width": "50px"}, layout=W.Layout(width="420px"))}
        self._connect()
        self._redraw()

    def _validate(self, values: Dict[str, Any]) -> Dict[str, Any]:
        show = values.get("show")
        if show is not None:
            if isinstance(show, str):
                show = (show,)
            unknown = [s for s in show if s not in self.curves]
            if unknown:
                raise ValueError(f"unknown curve(s) {unknown}; have {list(self.curves)}")
            return {"show": tuple(s for s in self.curves if s in show)}  # keep the curves' order
        return values

    def _redraw(self) -> None:
        shown = set(self.values["show"])
        vis = []
        for name in self.curves:
            on = name in shown
            for artist in (self.lines[name], self.bands[name], self.marks.get(name)):
                if artist is not None:
                    artist.set_visible(on)
            if on:
                c = self.curves[name]
                vis += [m - e for m, e in zip(c.mean, c.ci95)] + [m + e for m, e in zip(c.mean, c.ci95)]
        if vis:
            self.ax.set_ylim(max(0, min(vis) - 3), min(100, max(vis) + 3) + 2)
        legend = self.ax.get_legend()
        if legend is not None:
            legend.remove()
        handles = [self.lines[name] for name in self.curves if name in shown]   # only the curves drawn
        if handles:
            self.ax.legend(handles=handles, loc="lower right", fontsize=8)


def _learner_and_name(learner_or_name: Any):
    if isinstance(learner_or_name, str):
        return fl.load_learners(learner_or_name)[learner_or_name], learner_or_name
    return learner_or_name, None


def episode_explorer(learners: Any = ("protonet-omniglot-5w1s", "maml-omniglot-5w1s"), data: Any = None,
                     **kw) -> EpisodeExplorer:
    """The episode explorer on ``{name: learner}``, one learner, or shipped names (loaded with
    :func:`metalib.fewshot_lab.load_learners`); ``data`` defaults to the first learner's test split."""
    if isinstance(learners, str) or (isinstance(learners, Sequence) and all(isinstance(s, str) for s in learners)):
        names = [learners] if isinstance(learners, str) else list(learners)
        learners = fl.load_learners(names)  # first: an unknown name is reported as such
        if data is None:
            data = fl.load_test_data(names[0])
    elif data is None:
        raise ValueError("give data= (e.g. fl.load_test_data('omniglot')) with your own learners")
    return EpisodeExplorer(learners, data, **kw)


def embedding_explorer(learner_or_name: Any = "maml-omniglot-5w1s", data: Any = None, **kw) -> EmbeddingExplorer:
    """The embedding explorer for a learner or shipped name; ``data`` defaults to that name's test split."""
    learner, name = _learner_and_name(learner_or_name)
    if data is None:
        if name is None:
            raise ValueError("give data= (e.g. fl.load_test_data('omniglot')) with your own learner")
        data = fl.load_test_data(name)
    kw.setdefault("name", name)
    return EmbeddingExplorer(learner, data, **kw)


def accuracy_vs_steps(curves: Mapping[str, "fl.StepCurve"], **kw) -> AccuracyVsSteps:
    """The accuracy-versus-steps figure for curves from :func:`metalib.course.fewshot_lab.accuracy_vs_steps`."""
    return AccuracyVsSteps(curves, **kw)
