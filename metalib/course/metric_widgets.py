"""Notebook 09's widget: one query, three comparison rules, side by side.

:class:`MetricComparison` shows a seeded test episode — its support set, one column per class —
and for the query you pick, what each metric-based learner compares it with, as bars under the
support images of each class:

* Matching Networks: the attention :math:`a(\\hat x, x_i)` on *each support image* (filled bars)
  and its sum per class, :math:`\\hat y_k` (outlined);
* ProtoNet: the squared distance :math:`\\|f(\\hat x) - c_k\\|^2` to each class prototype (lower = closer);
* Relation Networks: the relation score :math:`r_k \\in (0, 1)` of each class;

with each method's prediction beside its bars. Controls: the query, N-way, K-shot (which shipped
weights: the 1-shot or the 5-shot ones) and "New episode". The numbers come from
:func:`metalib.course.metric_lab.compare_episode` (tested there); this module only draws them::

    from metalib.course import metric_lab as ml, metric_widgets as mw
    app = mw.metric_comparison({k: ml.load_family(k) for k in (1, 5)}, data)
    app.update(query=3, n_way=10); app.new_episode(); app.ui
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

import ipywidgets as W
import numpy as np

from . import fewshot_lab as fl
from . import metric_lab as ml
from .widgets import FigureApp

__all__ = ["MetricComparison", "metric_comparison"]

RIGHT, WRONG, NEUTRAL = np.array([0.10, 0.65, 0.20]), np.array([0.85, 0.10, 0.10]), np.array([0.62, 0.62, 0.62])


def _int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) and not (isinstance(v, float) and v.is_integer()):
        raise TypeError(f"{name} must be an integer, got {v!r}")
    return int(v)


class MetricComparison(FigureApp):
    """One episode classified by every metric-based learner; see the module docstring.

    Args:
        learners: ``{k_shot: {name: learner}}`` — which learners to use for K-shot episodes (e.g.
            ``{k: metric_lab.load_family(k) for k in (1, 5)}``); the K-shot selector offers these K.
        data: the classes episodes come from (e.g. ``metalib.data.Omniglot("test")``).
        n_query: queries per class in each episode (the query selector offers all ``N * n_query``).
        seed, episode: episode ``episode`` of the seeded sequence ``seed`` (the evaluator's episodes).
    """

    width, height = 11.0, 8.0
    WAYS = (2, 3, 5, 10, 20)

    def __init__(self, learners: Mapping[int, Mapping[str, Any]], data: Any, n_way: int = 5, k_shot: Optional[int] = None,
                 n_query: int = 2, seed: int = 0, episode: int = 0, query: int = 0) -> None:
        super().__init__()
        if not learners or not all(isinstance(v, Mapping) and v for v in learners.values()):
            raise ValueError("learners must be {k_shot: {name: learner}} with at least one learner per shot, e.g. "
                             "{k: metric_lab.load_family(k) for k in (1, 5)}")
        self.learners = {_int("k_shot", k): dict(v) for k, v in learners.items()}
        names = {tuple(v) for v in self.learners.values()}
        if len(names) != 1:
            raise ValueError(f"every shot needs the same learners (by name); got {sorted(names)}")
        self.names: List[str] = list(next(iter(names)))
        self.data, self.seed, self.n_query = data, _int("seed", seed), _int("n_query", n_query)
        images = fl.images_of(data)
        self.n_classes, self.per_class = int(images.shape[0]), int(images.shape[1])
        self.ways = sorted({w for w in self.WAYS if w <= self.n_classes} | {_int("n_way", n_way)})
        self.shots = sorted(self.learners)
        self._cache: Dict[Tuple[int, int, int], Tuple[Any, ml.EpisodeComparison]] = {}
        self.values = {"n_way": int(n_way), "k_shot": self.shots[0] if k_shot is None else k_shot,
                       "episode": int(episode), "query": int(query)}
        self.values = self._validate(dict(self.values))

        # fixed layout: query | support mosaic on top, one row of bars per learner below
        self.fig.set_layout_engine("none")
        rows = len(self.names)
        grid = self.fig.add_gridspec(1 + rows, 2, width_ratios=[1.15, 6.2], height_ratios=[2.1] + [1] * rows,
                                     left=0.015, right=0.985, top=0.9, bottom=0.05, hspace=0.62, wspace=0.06)
        self.ax_query = self.fig.add_subplot(grid[0, 0])
        self.ax_support = self.fig.add_subplot(grid[0, 1])
        self.bar_axes = [self.fig.add_subplot(grid[1 + i, 1]) for i in range(rows)]
        self.text_axes = [self.fig.add_subplot(grid[1 + i, 0]) for i in range(rows)]
        for ax in (self.ax_query, self.ax_support):
            ax.grid(False)
            for s in ax.spines.values():
                s.set_visible(False)
        self.query_image = self.ax_query.imshow(np.ones((2, 2, 3)), interpolation="nearest")
        self.ax_query.set_xticks([])
        self.ax_query.set_yticks([])
        self.mosaic = self.ax_support.imshow(np.ones((2, 2, 3)), interpolation="nearest", aspect="auto")
        self.ax_support.tick_params(length=0, labelsize=8)
        self.ax_support.xaxis.set_ticks_position("top")
        self.query_title = self.ax_query.set_title("", fontsize=9)
        self.support_title = self.ax_support.set_title("", fontsize=9, pad=16)
        self.suptitle = self.fig.suptitle("", fontsize=10, y=0.985)
        self.side_texts = []
        for ax in self.text_axes:
            ax.set_axis_off()
            self.side_texts.append(ax.text(0.0, 0.5, "", fontsize=9, va="center", ha="left", transform=ax.transAxes))

        self.controls = {
            "query": W.Dropdown(options=self._query_options(), value=self.values["query"], description="query",
                                style={"description_width": "45px"}, layout=W.Layout(width="230px")),
            "n_way": W.Dropdown(options=self.ways, value=self.values["n_way"], description="N-way",
                                style={"description_width": "50px"}, layout=W.Layout(width="130px")),
            "k_shot": W.Dropdown(options=self.shots, value=self.values["k_shot"], description="K-shot",
                                 style={"description_width": "50px"}, layout=W.Layout(width="130px")),
        }
        self._options_for = self.values["n_way"]
        self.button = W.Button(description="New episode", icon="refresh", layout=W.Layout(width="130px"))
        self.button.on_click(lambda _: self.new_episode())
        self._connect()
        self._redraw()

    # -- values ----------------------------------------------------------------------------------
    def _query_options(self, n_way: Optional[int] = None) -> List[Tuple[str, int]]:
        n = self.values["n_way"] if n_way is None else n_way
        return [(f"{i}: a class-{i // self.n_query} image", i) for i in range(n * self.n_query)]

    def _validate(self, values: Dict[str, Any]) -> Dict[str, Any]:
        out = {name: _int(name, v) for name, v in values.items()}
        merged = {**self.values, **out}
        if merged["k_shot"] not in self.learners:
            raise ValueError(f"k_shot must be one of {sorted(self.learners)} (the shots with learners), got {merged['k_shot']}")
        if merged["episode"] < 0:
            raise ValueError(f"episode must be >= 0, got {merged['episode']}")
        fl.check_sizes(self.data, merged["n_way"], merged["k_shot"], self.n_query)
        for learner in self.learners[merged["k_shot"]].values():
            fl.check_episode(learner, self.data, merged["n_way"])
        n_queries = merged["n_way"] * self.n_query
        if "query" in values and not 0 <= merged["query"] < n_queries:
            raise ValueError(f"query must be in [0, {n_queries}) for {merged['n_way']}-way episodes with "
                             f"{self.n_query} queries per class, got {merged['query']}")
        if merged["query"] >= n_queries:  # fewer classes than before: back to the first query
            out["query"] = 0
        return out

    def _sync_controls(self) -> None:
        if self._options_for != self.values["n_way"]:  # the query list follows N
            self._syncing = True
            try:
                self.controls["query"].options = self._query_options()
                self._options_for = self.values["n_way"]
            finally:
                self._syncing = False
        super()._sync_controls()

    def new_episode(self) -> "MetricComparison":
        """Show the next seeded episode (what the "New episode" button does)."""
        return self.update(episode=self.values["episode"] + 1)

    @property
    def comparison(self) -> ml.EpisodeComparison:
        """Every learner on the current episode (:func:`metalib.course.metric_lab.compare_episode`)."""
        return self._current()[1]

    @property
    def predictions(self) -> Dict[str, int]:
        """``{name: predicted class}`` of the selected query."""
        q = self.values["query"]
        return {name: int(v.predictions[q]) for name, v in self.comparison.views.items()}

    def _current(self):
        v = self.values
        key = (v["n_way"], v["k_shot"], v["episode"])
        if key not in self._cache:
            if len(self._cache) >= 16:
                self._cache.pop(next(iter(self._cache)))
            learners = self.learners[v["k_shot"]]
            device = next(iter(learners.values())).device
            ep = fl.sample_episode(self.data, v["n_way"], v["k_shot"], self.n_query, seed=self.seed,
                                   index=v["episode"], device=device)
            self._cache[key] = (ep, ml.compare_episode(learners, ep))
        return self._cache[key]

    def _layout_controls(self) -> W.Widget:
        return W.HBox([*self.controls.values(), self.button], layout=W.Layout(flex_flow="row wrap"))

    # -- drawing ---------------------------------------------------------------------------------
    def _support_mosaic(self, cmp: ml.EpisodeComparison, true: int) -> np.ndarray:
        """The support images in a grid (column = class, row = shot), each cell shaped like the
        axes' cell so that, drawn with ``aspect="auto"``, the images stay square."""
        n, k = cmp.n_way, cmp.k_shot
        pos = self.ax_support.get_position()
        w_in, h_in = pos.width * self.width, pos.height * self.height
        cell_w, cell_h = w_in / n, h_in / k
        side = int(cmp.x_s.shape[-1])
        tile_in = 0.9 * min(cell_w, cell_h)
        ppi = side / tile_in
        cw, ch = max(side + 2, int(round(cell_w * ppi))), max(side + 2, int(round(cell_h * ppi)))
        img = np.ones((k * ch, n * cw, 3))
        tiles = fl.display_images(cmp.x_s).numpy()
        seen = [0] * n
        for i, c in enumerate(cmp.y_s.tolist()):
            r = seen[c]
            seen[c] += 1
            y0, x0 = r * ch + (ch - side) // 2, c * cw + (cw - side) // 2
            if c == true:  # frame the query's class
                img[y0 - 1:y0 + side + 1, x0 - 1:x0 + side + 1] = RIGHT
            img[y0:y0 + side, x0:x0 + side] = tiles[i]
        return img

    def _redraw(self) -> None:
        v = self.values
        ep, cmp = self._current()
        q = v["query"]
        n, k = cmp.n_way, cmp.k_shot
        true = int(cmp.y_q[q])
        self.query_image.set_data(fl.display_images(cmp.x_q[q:q + 1]).numpy()[0])
        self.query_title.set_text(f"query {q}\n(true class {true})")
        img = self._support_mosaic(cmp, true)
        self.mosaic.set_data(img)
        self.mosaic.set_extent((-0.5, n - 0.5, k, 0))
        self.ax_support.set_xlim(-0.5, n - 0.5)
        self.ax_support.set_ylim(k, 0)
        self.ax_support.set_xticks(range(n), [str(c) for c in range(n)])
        self.ax_support.set_yticks([])
        self.support_title.set_text(f"support set: {k} image{'s' if k > 1 else ''} of each of {n} classes "
                                    f"(the query's class framed green)")
        accs = " · ".join(f"{name} {100 * view.accuracy:.0f}%" for name, view in cmp.views.items())
        self.suptitle.set_text(f"{n}-way {k}-shot, test episode {v['episode']} (seed {self.seed}); right on this "
                               f"episode's {len(cmp.y_q)} queries: {accs}")
        for ax, text, (name, view) in zip(self.bar_axes, self.side_texts, cmp.views.items()):
            self._draw_bars(ax, view, q, n, k, cmp.y_s.numpy())
            pred = int(view.predictions[q])
            ok = pred == true
            text.set_text(f"{name}\npredicts class {pred}\n{'✓ right' if ok else f'✗ wrong (true: {true})'}")
            text.set_color("k" if ok else WRONG)

    def _draw_bars(self, ax, view: ml.MethodView, q: int, n: int, k: int, y_s: np.ndarray) -> None:
        ax.clear()
        true, pred = int(view.y_q[q]), int(view.predictions[q])
        colors = np.tile(NEUTRAL, (n, 1))
        colors[true] = RIGHT
        if pred != true:
            colors[pred] = WRONG
        per_class = view.class_values[q].numpy()
        if view.kind == "attention":
            att = view.values[q].numpy()
            width = 0.8 / k
            slot = np.zeros(n, dtype=int)
            xs = np.zeros(len(y_s))
            for i, c in enumerate(y_s):  # support image i sits under its class column, in shot order
                xs[i] = c - 0.4 + width * (slot[c] + 0.5)
                slot[c] += 1
            ax.bar(np.arange(n), per_class, width=0.86, facecolor="none", edgecolor=colors, linewidth=1.2)
            ax.bar(xs, att, width=0.9 * width, color=colors[y_s])
            ax.set_ylim(0, max(float(per_class.max()), 1e-6) * 1.18)
            ax.set_ylabel(r"$a(\hat{x}, x_i)$", fontsize=9)
        else:
            ax.bar(np.arange(n), per_class, width=0.8, color=colors)
            top = 1.05 if view.kind in ("score", "probability") else max(float(per_class.max()), 1e-6) * 1.12
            ax.set_ylim(0, top)
            ax.set_ylabel({"distance": r"$\|f(\hat{x}) - c_k\|^2$", "score": r"$r_k$"}.get(view.kind, "p"), fontsize=9)
        ax.set_xlim(-0.5, n - 0.5)
        ax.set_xticks(range(n) if n <= 10 else range(0, n, 2))
        ax.tick_params(labelsize=7)
        pick = "lowest" if view.better == "lower" else "highest"
        total = r"; outline: the class's total $\hat{y}_k$, the highest total wins" if view.kind == "attention" else \
            f" — the {pick} wins"
        ax.set_title(view.description + total, fontsize=8.5, loc="left")


def metric_comparison(learners: Optional[Mapping[int, Mapping[str, Any]]] = None, data: Any = None,
                      **kw) -> MetricComparison:
    """:class:`MetricComparison` of the shipped Omniglot learners (default: Matching Networks,
    ProtoNet and Relation Networks, 1- and 5-shot) on the Omniglot test classes."""
    if learners is None:
        learners = {k: ml.load_family(k) for k in ml.FAMILY}
    return MetricComparison(learners, fl.load_test_data("omniglot") if data is None else data, **kw)

