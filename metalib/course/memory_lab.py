"""The course layer of notebook 11 (model-based learning): memory traces, accuracy by instance, the
memory explorer, SNAIL's attention explorer, and the LRUA exercise.

* :func:`mann_trace` — one seeded test sequence through a MANN: every step's prediction, the read and
  write weights over the memory slots, the usage (the tested computation the widget draws);
* :func:`nearest_prototype_sequence` — a metric learner (ProtoNet) on the same sequences: at every
  step, the nearest prototype among the labelled images seen so far;
* :func:`instance_curves` / :func:`plot_instance_curves` — Santoro et al.'s figure: accuracy against
  the presentation number of a class (:func:`metalib.evaluation.accuracy_by_instance`);
* :class:`MemoryExplorer` — a time slider through one episode: the image and the label it is fed,
  the read and write weights up to that step as heat maps, the prediction; "New episode";
* :class:`AttentionExplorer` — SNAIL: the attention of a query step over the sequence;
* :func:`lrua_write` (reference) and :func:`check_lrua_write` — the exercise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import ipywidgets as W
import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from torch import Tensor

from ..data.sequences import SequenceSampler
from ..evaluation import TEST_SEED, InstanceAccuracy, accuracy_by_instance, images_of
from .exercises import lrua_write as _lrua_exercise
from .paper_results import INSTANCE_ACCURACY
from .exercises import solution as _solution
from .widgets import FigureApp

__all__ = ["SequenceTrace", "mann_trace", "nearest_prototype_sequence", "instance_curves", "plot_instance_curves",
           "first_guess_bound", "blind_guess_sequence", "toy_classes", "train_live", "slot_story", "MemoryExplorer",
           "AttentionExplorer", "lrua_write", "check_lrua_write", "solution", "PAPER_TABLE1", "ship_sequence_learner"]

PAPER_TABLE1 = INSTANCE_ACCURACY  # Santoro et al. 2016, Table 1 (metalib.course.paper_results)



# =============================================================================================
# 1. Tested computations
# =============================================================================================
@dataclass
class SequenceTrace:
    """One test sequence through a sequence learner (``L`` steps, ``H`` heads, ``S`` slots).

    ``x [L, 1, h, w]`` images; ``y [L]`` labels; ``label_in [L]`` the label fed at each step (−1 at
    step 0: nothing); ``instance [L]``; ``logits [L, N]``; ``pred [L]``; ``right [L]`` (bool);
    ``read``, ``write`` ``[L, H, S]`` (None without a memory); ``usage [L, S]``; ``gate [L, H]``.
    """

    x: Tensor
    y: Tensor
    label_in: Tensor
    instance: Tensor
    logits: Tensor
    pred: Tensor
    right: Tensor
    read: Optional[Tensor]
    write: Optional[Tensor]
    usage: Optional[Tensor]
    gate: Optional[Tensor]
    episode: int

    @property
    def length(self) -> int:
        return int(self.y.shape[0])


def seeded_sequence(data: Any, episode: int = 0, n_way: int = 5, instances: int = 10, seed: int = TEST_SEED):
    """The ``episode``-th seeded test sequence (:meth:`metalib.data.sequences.SequenceSampler.episodes`):
    ``(x [L, ...], y [L], instance [L])``."""
    if isinstance(episode, bool) or not isinstance(episode, int) or episode < 0:
        raise ValueError(f"episode must be an int >= 0, got {episode!r}")
    sampler = SequenceSampler(images_of(data), n_way, instances)
    for i, ep in enumerate(sampler.episodes(episode + 1, seed, chunk=1)):
        if i == episode:
            return ep.x[0], ep.y[0], ep.instance[0]
    raise AssertionError("unreachable")


@torch.no_grad()
def mann_trace(learner: Any, data: Any, episode: int = 0, n_way: int = 5, instances: int = 10,
               seed: int = TEST_SEED) -> SequenceTrace:
    """Run the ``episode``-th seeded test sequence through ``learner.predict_sequence(x, y, trace=True)``
    (a MANN or the LSTM baseline) and keep everything the explorer draws."""
    x, y, inst = seeded_sequence(data, episode, n_way, instances, seed)
    logits, tr = learner.predict_sequence(x[None], y[None], trace=True)
    logits = logits[0]
    pred = logits.argmax(-1)
    get = lambda k: tr[k][0] if k in tr else None  # noqa: E731
    label_in = torch.cat([torch.tensor([-1]), y[:-1]])
    return SequenceTrace(x, y, label_in, inst, logits, pred, pred == y, get("read_weights"), get("write_weights"),
                         get("usage"), get("gate"), episode)


def slot_story(trace: SequenceTrace, t: int) -> Dict[str, Any]:
    """What the strongest read at step ``t`` retrieves: ``slot`` (largest read weight, summed over
    heads), its ``weight`` (mean over heads), ``written`` — the step ``s <= t`` that wrote most into
    that slot — and what that step was fed and showed (``written_label_in``, ``written_y``), and
    ``previous`` — the last earlier step that showed the class of step ``t`` (None at a 1st instance)."""
    if trace.read is None:
        raise ValueError("this learner has no memory (the LSTM baseline): there is no slot to follow")
    if not 0 <= t < trace.length:
        raise ValueError(f"t must be in [0, {trace.length - 1}], got {t}")
    read = trace.read[t].sum(0)
    slot = int(read.argmax())
    writes = trace.write[: t + 1, :, slot].sum(-1)
    s = int(writes.argmax())
    earlier = torch.nonzero(trace.y[:t] == trace.y[t]).flatten()
    return {"slot": slot, "weight": float(trace.read[t, :, slot].mean()), "written": s,
            "written_weight": float(writes[s]), "written_label_in": int(trace.label_in[s]), "written_y": int(trace.y[s]),
            "previous": int(earlier[-1]) if len(earlier) else None}


def nearest_prototype_sequence(learner: Any) -> Callable[[Tensor, Tensor], Tensor]:
    """A metric learner on Santoro et al.'s sequences: ``(x [B, L, ...], y [B, L]) -> logits [B, L, N]``
    where step ``t`` is classified by ``-||f(x_t) - c_k||²`` to the prototypes ``c_k`` of the labelled
    images *before* ``t`` — only among the classes seen so far (the others get ``-inf``; at step 0
    every class gets 0). Each sequence's images are embedded in one batch (``learner.embed``: for
    ProtoNet's Conv-4, BatchNorm statistics of the sequence, as its evaluation embeds an episode)."""
    embed = getattr(learner, "embed", None)
    if not callable(embed):
        raise TypeError(f"{type(learner).__name__} has no embed(x): nearest prototypes need an embedding")

    @torch.no_grad()
    def predict(x: Tensor, y: Tensor) -> Tensor:
        b, n = y.shape
        n_way = int(y.max()) + 1
        z = torch.stack([embed(x[i]) for i in range(b)])                              # [B, L, d]
        onehot = F.one_hot(y, n_way).to(z.dtype)                                     # [B, L, N]
        sums = torch.cumsum(onehot.unsqueeze(-1) * z.unsqueeze(-2), dim=1)           # [B, L, N, d], up to t
        counts = onehot.cumsum(1)
        sums = torch.cat([torch.zeros_like(sums[:, :1]), sums[:, :-1]], dim=1)     # strictly before t
        counts = torch.cat([torch.zeros_like(counts[:, :1]), counts[:, :-1]], dim=1)
        protos = sums / counts.clamp_min(1).unsqueeze(-1)
        logits = -((z.unsqueeze(-2) - protos) ** 2).sum(-1)
        logits = logits.masked_fill(counts == 0, float("-inf"))
        return torch.where(counts.sum(-1, keepdim=True) == 0, torch.zeros_like(logits), logits)

    return predict


def toy_classes(n_classes: int = 40, per_class: int = 10, size: int = 8, seed: int = 0) -> Tensor:
    """A toy image set, uint8 ``[n_classes, per_class, 1, size, size]``: each class a random pattern
    (70%) plus per-image noise (30%) — classes far easier to tell apart than Omniglot's, so that a
    model-based learner can be trained on them in seconds on a CPU."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n_classes, 1, 1, size, size, generator=g)
    noise = torch.rand(n_classes, per_class, 1, size, size, generator=g)
    return ((0.7 * base + 0.3 * noise) * 255).to(torch.uint8)


def train_live(learner: Any, data: Any, steps: int, n_way: int, shots: int, batch: int = 16, lr: float = 3e-3,
               seed: int = 0, n_query: int = 1) -> List[float]:
    """A short live training run: ``steps`` Adam updates (``learner.outer_optimizer(lr)``,
    ``learner.train_step``) on batches of ``batch`` episodes drawn from ``data`` with a generator
    seeded with ``seed``. Sequence learners (MANN, the LSTM baseline: they have ``predict_sequence``)
    get Santoro et al.'s sequences of ``n_way`` classes × ``shots`` instances; the others (SNAIL)
    ``n_way``-way ``shots``-shot episodes with ``n_query`` queries per class. Returns the losses."""
    from ..data import EpisodeSampler

    images = images_of(data)
    sequences = callable(getattr(learner, "predict_sequence", None))
    sampler = SequenceSampler(images, n_way, shots) if sequences else EpisodeSampler(images, n_way, shots, n_query)
    opt = learner.outer_optimizer(lr)
    g = torch.Generator().manual_seed(seed)
    losses: List[float] = []
    for _ in range(int(steps)):
        if sequences:
            ep = sampler.sample(batch, g)
            out = learner.train_step((ep.x, ep.y, ep.x[:, :0], ep.y[:, :0]), opt)
        else:
            out = learner.train_step(sampler.sample(batch, g), opt)
        losses.append(float(out["loss"]))
    return losses


def blind_guess_sequence(n_way: int) -> Callable[[Tensor, Tensor], Tensor]:
    """A learner that never looks at the images: ``(x [B, L, ...], y [B, L]) -> logits [B, L, N]`` where
    step ``t`` — knowing only the labels fed before it, ``y[0..t-1]`` — bets on the lowest label not yet
    seen (logit 1, the others 0), or, once every label has been seen, on label 0. At a class's 1st
    presentation it reaches :func:`first_guess_bound` on average (the label assignment is random); from
    the 2nd on it is right only by luck. What the offset label alone is worth."""
    if isinstance(n_way, bool) or not isinstance(n_way, int) or n_way < 1:
        raise ValueError(f"n_way must be an int >= 1, got {n_way!r}")

    def predict(x: Tensor, y: Tensor) -> Tensor:
        onehot = F.one_hot(y, n_way).to(torch.float64)                                   # [B, L, N]
        seen = torch.cat([torch.zeros_like(onehot[:, :1]), onehot[:, :-1]], 1).cumsum(1) > 0  # labels fed before t
        unseen = ~seen
        first = torch.where(unseen.any(-1), unseen.to(torch.int64).argmax(-1), torch.zeros_like(y))
        return F.one_hot(first, n_way).to(torch.float32)

    return predict


def first_guess_bound(n_way: int = 5) -> float:
    """The best possible accuracy (%) at a class's 1st presentation, for a learner that knows which
    labels were already used and guesses uniformly among the others: the ``j``-th new class (in
    order of first appearance) is right with probability ``1/(N - j + 1)``; averaged over ``j``."""
    return 100 * sum(1 / (n_way - j) for j in range(n_way)) / n_way


def instance_curves(models: Mapping[str, Any], data: Any, episodes: int = 100, n_way: int = 5, instances: int = 10,
                    seed: int = TEST_SEED, predict: Optional[Mapping[str, Callable]] = None) -> Dict[str, InstanceAccuracy]:
    """:func:`metalib.evaluation.accuracy_by_instance` of every model on the same seeded
    sequences; ``predict[name]`` replaces ``predict_sequence`` (e.g. :func:`nearest_prototype_sequence`)."""
    predict = dict(predict or {})
    return {name: accuracy_by_instance(m, data, n_way, instances, episodes, seed, predict=predict.get(name), name=name)
            for name, m in models.items()}


def plot_instance_curves(ax: Axes, curves: Mapping[str, InstanceAccuracy], paper: Optional[Mapping[str, Mapping[int, float]]] = None,
                         skip_first: Sequence[str] = (), bound: bool = True) -> None:
    """Accuracy against instance number, one line per model (± 95% CI as a band); ``paper`` adds
    dashed lines (e.g. :data:`PAPER_TABLE1`); models in ``skip_first`` have no 1st-instance point
    (a metric learner cannot name a class it has not seen); ``bound`` marks :func:`first_guess_bound`."""
    colors = ["C0", "C1", "C2", "C3", "C4"]
    for i, (name, r) in enumerate(curves.items()):
        ks = [k for k in range(1, r.instances + 1) if not (k == 1 and name in skip_first)]
        m = np.array([r.mean[k] for k in ks])
        c = np.array([r.ci95[k] for k in ks])
        ax.plot(ks, m, "o-", color=colors[i % 5], ms=4, label=f"{name} (metalib)")
        ax.fill_between(ks, m - c, m + c, color=colors[i % 5], alpha=0.15, lw=0)
    for j, (name, row) in enumerate((paper or {}).items()):
        ks = sorted(row)
        ax.plot(ks, [row[k] for k in ks], "s--", color=["C0", "C1"][j % 2], alpha=0.55, ms=4, lw=1.2,
                label=f"{name}, Santoro et al. (paper)")
    if bound and curves:
        n = next(iter(curves.values())).n_way
        ax.plot([1], [first_guess_bound(n)], marker="*", color="k", ms=11, ls="none",
                label=f"best blind guess at the 1st instance ({first_guess_bound(n):.1f}%)")
    ax.axhline(100 / (next(iter(curves.values())).n_way if curves else 5), color="gray", lw=1, ls=":", label="chance")
    ax.set(xlabel="instance (presentation number of the class in the episode)", ylabel="accuracy (%)", ylim=(0, 101))
    ax.set_xticks(range(1, 11))
    # below the panel: inside, it covered the blind guesser's star and the chance line
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=2, frameon=False)


# =============================================================================================
# 2. The exercise: LRUA write weights and usage
# =============================================================================================
# the exercise lives with its solution, check and common mistakes in metalib.course.exercises.lrua_write
lrua_write = _lrua_exercise.lrua_write
check_lrua_write = _lrua_exercise.check_lrua_write


def solution(show: bool = True) -> Optional[str]:
    """The reference solution of the exercise (printed; returned with ``show=False``):
    ``metalib.course.exercises.solution("lrua_write")``."""
    return _solution("lrua_write", show=show)


# =============================================================================================
# 3. Widgets
# =============================================================================================
def _png_gray(x: Tensor) -> np.ndarray:
    return x.detach().float().cpu().squeeze(0).numpy()


class MemoryExplorer(FigureApp):
    """Scrub through one episode of a MANN: the image of step ``t`` and the label it is fed (the
    previous step's), the prediction and whether it is right; the read and write weights over the
    memory slots of every step up to ``t`` (heat maps, summed over heads); the strongest read of
    step ``t`` — which slot, and which earlier step wrote it.

    Controls: a step slider, a head selector ("all" = summed over heads; only with more than one
    head) and "New episode" (the next seeded test sequence, :func:`seeded_sequence`).
    """

    width, height = 11.0, 5.6

    def __init__(self, learner: Any, data: Any, episode: int = 0, t: int = 0, n_way: int = 5, instances: int = 10,
                 seed: int = TEST_SEED, name: Optional[str] = None) -> None:
        super().__init__()
        if getattr(learner, "read_heads", 0) < 1:
            raise ValueError("MemoryExplorer needs a learner with an external memory (a MANN with read_heads >= 1)")
        self.learner, self.data, self.seed = learner, data, int(seed)
        self.n_way, self.instances = int(n_way), int(instances)
        self.name = name or learner.describe()
        self.length = self.n_way * self.instances
        self.heads = int(learner.read_heads)
        self._traces: Dict[int, SequenceTrace] = {}
        self.values = {"t": int(t), "episode": int(episode), "head": "all"}
        self.values = {**self.values, **self._validate(dict(self.values))}
        self.fig.set_layout_engine("none")
        gs = self.fig.add_gridspec(2, 4, width_ratios=[0.8, 2, 2, 0.07], height_ratios=[4, 1], left=0.05, right=0.95,
                                   top=0.84, bottom=0.1, wspace=0.25, hspace=0.45)
        self.ax_img = self.fig.add_subplot(gs[0, 0])
        self.ax_read = self.fig.add_subplot(gs[0, 1])
        self.ax_write = self.fig.add_subplot(gs[0, 2])
        self.ax_seq = self.fig.add_subplot(gs[1, :3])
        self.img = self.ax_img.imshow(np.zeros((28, 28)), cmap="gray_r", vmin=0, vmax=1)
        self.ax_img.set_xticks([])
        self.ax_img.set_yticks([])
        self.ax_img.grid(False)
        slots = int(learner.memory_slots)
        blank = np.full((self.length, slots), np.nan)
        cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#f2f2f2")   # steps after t: light grey
        self.read_im = self.ax_read.imshow(blank, aspect="auto", cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        self.write_im = self.ax_write.imshow(blank.copy(), aspect="auto", cmap=cmap, vmin=0, vmax=1,
                                             interpolation="nearest")
        # the colour carries the weight: a colour bar (it follows the clim that _redraw sets)
        self.colorbar = self.fig.colorbar(self.read_im, cax=self.fig.add_subplot(gs[0, 3]), label="weight")
        for ax, what in ((self.ax_read, "read"), (self.ax_write, "write")):
            ax.set(xlabel="memory slot", ylabel="step", title=f"{what} weights (steps 0 … t)")
            ax.grid(False)
        (self.read_mark,) = self.ax_read.plot([], [], "s", mfc="none", mec="red", ms=9, mew=1.5)
        (self.write_mark,) = self.ax_write.plot([], [], "s", mfc="none", mec="red", ms=9, mew=1.5)
        self.seq_im = self.ax_seq.imshow(np.ones((1, self.length, 3)), aspect="auto", interpolation="nearest")
        self.ax_seq.set_yticks([])
        self.ax_seq.grid(False)
        self.ax_seq.set_xlabel("step (green: right, red: wrong; the number: the class's presentation)")
        self._seq_texts: List[Any] = []
        self.title = self.fig.suptitle("", fontsize=11)
        self.caption = self.ax_img.set_title("", fontsize=9)
        self.controls = {
            "t": W.IntSlider(value=self.values["t"], min=0, max=self.length - 1, description="step t",
                             style={"description_width": "60px"}, layout=W.Layout(width="420px"),
                             continuous_update=True),
        }
        if self.heads > 1:  # with one head "all" is that head: a selector would change nothing
            self.controls["head"] = W.Dropdown(options=["all"] + list(range(self.heads)), value="all",
                                               description="head", style={"description_width": "40px"},
                                               layout=W.Layout(width="140px"))
        self.button = W.Button(description="New episode", icon="refresh", layout=W.Layout(width="130px"))
        self.button.on_click(lambda _: self.new_episode())
        self._connect()
        self._redraw()

    def _layout_controls(self) -> W.Widget:
        return W.HBox([*self.controls.values(), self.button])

    def _validate(self, values: Dict[str, Any]) -> Dict[str, Any]:
        out = dict(values)
        if "t" in values:
            t = values["t"]
            if isinstance(t, bool) or not float(t).is_integer() or not 0 <= int(t) < self.length:
                raise ValueError(f"t must be an integer step in [0, {self.length - 1}], got {t!r}")
            out["t"] = int(t)
        if "episode" in values:
            e = values["episode"]
            if isinstance(e, bool) or not float(e).is_integer() or int(e) < 0:
                raise ValueError(f"episode must be an integer >= 0, got {e!r}")
            out["episode"] = int(e)
        if "head" in values and values["head"] != "all":
            h = values["head"]
            if isinstance(h, bool) or not isinstance(h, int) or not 0 <= h < self.heads:
                raise ValueError(f"head must be 'all' or an int in [0, {self.heads - 1}], got {h!r}")
        return out

    def new_episode(self) -> "MemoryExplorer":
        """The next seeded test sequence, from step 0 (what the "New episode" button does)."""
        return self.update(episode=self.values["episode"] + 1, t=0)

    @property
    def trace(self) -> SequenceTrace:
        e = self.values["episode"]
        if e not in self._traces:
            self._traces[e] = mann_trace(self.learner, self.data, e, self.n_way, self.instances, self.seed)
        return self._traces[e]

    def weights(self, kind: str) -> Tensor:
        """The heat map drawn for ``kind`` ("read" / "write"): ``[L, S]``, rows after ``t`` NaN."""
        tr, t, h = self.trace, self.values["t"], self.values["head"]
        w = (tr.read if kind == "read" else tr.write).double()
        w = w.sum(1) if h == "all" else w[:, h]
        w = w.clone()
        w[t + 1:] = float("nan")
        return w

    @property
    def story(self) -> Dict[str, Any]:
        """:func:`slot_story` of the current step."""
        return slot_story(self.trace, self.values["t"])

    def _redraw(self) -> None:
        tr, t = self.trace, self.values["t"]
        scale = 1.0 if self.values["head"] != "all" else float(self.heads)
        self.img.set_data(_png_gray(tr.x[t]))
        fed = "nothing (step 0)" if t == 0 else f"label {int(tr.label_in[t])} (step {t - 1}'s)"
        mark = "✓" if bool(tr.right[t]) else "✗"
        self.caption.set_text(f"fed: image + {fed}\ntrue {int(tr.y[t])}, predicted {int(tr.pred[t])} {mark}\n"
                              f"presentation {int(tr.instance[t])} of its class")
        self.caption.set_color("green" if bool(tr.right[t]) else "red")
        self.read_im.set_data(self.weights("read").numpy())
        self.read_im.set_clim(0, scale)
        self.write_im.set_data(self.weights("write").numpy())
        self.write_im.set_clim(0, scale)
        st = self.story
        self.read_mark.set_data([st["slot"]], [t])
        self.write_mark.set_data([st["slot"]], [st["written"]])
        prev = "its 1st presentation" if st["previous"] is None else f"last shown at step {st['previous']}"
        # step 0 is fed no label (label_in -1): say so rather than show the placeholder
        fed_then = "fed no label" if st["written_label_in"] < 0 else f"fed label {st['written_label_in']}"
        self.title.set_text(f"{self.name} — test episode {self.values['episode']}, step {t} (class {int(tr.y[t])}: "
                            f"{prev})\nstrongest read slot {st['slot']} (weight {st['weight']:.2f}), written most at "
                            f"step {st['written']} ({fed_then})")
        colors = np.ones((1, self.length, 3))
        for s in range(t + 1):
            colors[0, s] = (0.55, 0.85, 0.55) if bool(tr.right[s]) else (0.95, 0.55, 0.55)
        self.seq_im.set_data(colors)
        for txt in self._seq_texts:
            txt.remove()
        self._seq_texts = [self.ax_seq.text(s, 0, str(int(tr.instance[s])), ha="center", va="center", fontsize=7)
                           for s in range(t + 1)]
        self.ax_seq.set_title(f"accuracy so far: {float(tr.right[: t + 1].double().mean()):.0%} of steps 0…{t}",
                              fontsize=9)


class AttentionExplorer(FigureApp):
    """SNAIL on one seeded N-way K-shot test episode: the support images in the order SNAIL sees them,
    the query, and the attention of the query step over the sequence in each attention block.

    Controls: a query slider, a block selector (1–3) and "New episode".
    """

    width, height = 11.0, 4.4

    def __init__(self, learner: Any, data: Any, n_way: int = 5, k_shot: int = 1, n_query: int = 2,
                 episode: int = 0, query: int = 0, block: int = 1, seed: int = TEST_SEED, name: Optional[str] = None) -> None:
        super().__init__()
        if not callable(getattr(learner, "explain_query", None)):
            raise ValueError("AttentionExplorer needs a SNAIL learner (with explain_query)")
        learner.check_task(n_way)
        self.learner, self.data, self.seed = learner, data, int(seed)
        self.n_way, self.k_shot, self.n_query = int(n_way), int(k_shot), int(n_query)
        self.name = name or learner.describe()
        self.n_q = self.n_way * self.n_query
        self._cache: Dict[int, Dict[str, Any]] = {}
        self.values = {"episode": int(episode), "query": int(query), "block": int(block)}
        self.values = {**self.values, **self._validate(dict(self.values))}
        self.steps = self.n_way * self.k_shot + 1
        self.fig.set_layout_engine("none")
        gs = self.fig.add_gridspec(2, self.steps, height_ratios=[1, 1.5], left=0.06, right=0.99, top=0.78,
                                   bottom=0.14, hspace=0.15, wspace=0.08)
        self.img_axes = [self.fig.add_subplot(gs[0, i]) for i in range(self.steps)]
        self.imgs = []
        for ax in self.img_axes:
            self.imgs.append(ax.imshow(np.zeros((28, 28)), cmap="gray_r", vmin=0, vmax=1))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
        self.ax_bar = self.fig.add_subplot(gs[1, :])
        self.bars = self.ax_bar.bar(range(self.steps), np.zeros(self.steps), color="C0")
        self.ax_bar.set(xlim=(-0.5, self.steps - 0.5), ylim=(0, 1), ylabel="attention of the query step")
        self.ax_bar.set_xticks(range(self.steps))
        self.title = self.fig.suptitle("", fontsize=11)
        self.controls = {
            "query": W.IntSlider(value=self.values["query"], min=0, max=self.n_q - 1, description="query",
                                 style={"description_width": "50px"}, layout=W.Layout(width="300px")),
            "block": W.Dropdown(options=[1, 2, 3], value=self.values["block"], description="attention block",
                                style={"description_width": "100px"}, layout=W.Layout(width="190px")),
        }
        self.button = W.Button(description="New episode", icon="refresh", layout=W.Layout(width="130px"))
        self.button.on_click(lambda _: self.new_episode())
        self._connect()
        self._redraw()

    def _layout_controls(self) -> W.Widget:
        return W.HBox([*self.controls.values(), self.button])

    def _validate(self, values: Dict[str, Any]) -> Dict[str, Any]:
        out = dict(values)
        for key, hi in (("episode", None), ("query", self.n_q - 1), ("block", 3)):
            if key in values:
                v = values[key]
                if isinstance(v, bool) or not float(v).is_integer():
                    raise ValueError(f"{key} must be an integer, got {v!r}")
                v = int(v)
                low = 1 if key == "block" else 0
                if v < low or (hi is not None and v > hi):
                    raise ValueError(f"{key} must be in [{low}, {hi if hi is not None else '∞'}], got {v}")
                out[key] = v
        return out

    def new_episode(self) -> "AttentionExplorer":
        return self.update(episode=self.values["episode"] + 1, query=0)

    @property
    def view(self) -> Dict[str, Any]:
        """The current episode: ``x_s, y_s, x_q, y_q`` (one task), and :meth:`SNAIL.explain_query`'s
        ``order``, ``logits``, ``attention``."""
        e = self.values["episode"]
        if e not in self._cache:
            from ..data import EpisodeSampler
            from ..evaluation import seeded_episodes

            sampler = EpisodeSampler(images_of(self.data), self.n_way, self.k_shot, self.n_query)
            batch = None
            for i, b in enumerate(seeded_episodes(sampler, e + 1, self.seed, chunk=1)):
                batch = b
            x_s, y_s, x_q, y_q = (t[0] for t in batch)
            with torch.no_grad():
                ex = self.learner.explain_query(x_s, y_s, x_q)
            self._cache[e] = {"x_s": x_s, "y_s": y_s, "x_q": x_q, "y_q": y_q, **ex}
        return self._cache[e]

    @property
    def attention(self) -> Tensor:
        """The drawn bars: the query step's attention ``[N*K + 1]`` in the selected block."""
        v = self.view
        return v["attention"][self.values["block"] - 1][self.values["query"]]

    def _redraw(self) -> None:
        v, q = self.view, self.values["query"]
        order = v["order"]
        for i in range(self.steps - 1):
            self.imgs[i].set_data(_png_gray(v["x_s"][order[i]]))
            self.img_axes[i].set_title(f"label {int(v['y_s'][order[i]])}", fontsize=8)
        self.imgs[-1].set_data(_png_gray(v["x_q"][q]))
        self.img_axes[-1].set_title("query\n(null label)", fontsize=8, color="C3")
        att = self.attention.numpy()
        same = [bool(v["y_s"][order[i]] == v["y_q"][q]) for i in range(self.steps - 1)] + [False]
        for b, h, s in zip(self.bars, att, same):
            b.set_height(float(h))
            b.set_color("C2" if s else "C0")
        self.bars[-1].set_color("C3")
        self.ax_bar.set_xticklabels([f"{i}" for i in range(self.steps - 1)] + ["query"])
        p = v["logits"][q].softmax(-1)
        pred, true = int(p.argmax()), int(v["y_q"][q])
        self.title.set_text(f"{self.name} — test episode {self.values['episode']}, query {q}: true class {true}, "
                            f"predicted {pred} ({float(p[pred]):.0%}) {'✓' if pred == true else '✗'}\nattention "
                            f"block {self.values['block']} (green: the support images of the query's class)")


# =============================================================================================
# 4. The shipped sequence learners (how mann-omniglot and lstm-baseline-omniglot were made)
# =============================================================================================
def ship_sequence_learner(algorithm: str, name: str, minutes: float = 8.0, run_dir: Optional[str] = None,
                          note: str = "", directory: Optional[str] = None, episodes: int = 600,
                          overwrite: bool = False) -> Dict[str, Any]:
    """Train ``algorithm`` ("mann" / "lstm-baseline") on Omniglot with its paper settings
    (:func:`metalib.fewshot.default_config`, 5 classes, sequences of 10 instances) for at most ``minutes``
    of wall time (``FewShotTrainer.fit(max_seconds=...)``; resumes from ``run_dir``), measure accuracy by
    instance on ``episodes`` seeded test sequences and the standard 5-way 1-shot accuracy (600 episodes,
    what the manifest records), and ship the weights as ``name`` with a note that gives both. Returns
    ``{"by_instance": InstanceAccuracy, "standard": EvalResult}``. ``name`` is checked before training: a
    plain name, not shipped yet unless ``overwrite`` (:func:`metalib.pretrained.check_ship_name`)."""
    import math

    from .. import fewshot
    from ..data import Omniglot
    from ..pretrained import WEIGHTS_DIR, check_ship_name

    check_ship_name(name, WEIGHTS_DIR if directory is None else directory, overwrite)
    if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not math.isfinite(minutes) or minutes <= 0:
        raise ValueError(f"minutes must be a number > 0, got {minutes!r}")

    cfg = fewshot.default_config(algorithm, n_way=5, k_shot=1, val_every=0)
    trainer = fewshot.FewShotTrainer(cfg, run_dir=run_dir or f"runs/{name}", val_data=False, progress=False)
    trainer.fit(max_seconds=float(minutes) * 60, threads=None)  # None: the --threads count main() set
    test = Omniglot("test")
    by_instance = accuracy_by_instance(trainer.learner, test, 5, 10, episodes, name=algorithm)
    standard = fewshot.evaluate(trainer.learner, test, 5, 1, 15, episodes=600, threads=None)
    row = " / ".join(f"{by_instance.mean[k]:.1f} ± {by_instance.ci95[k]:.1f}" for k in (1, 2, 3, 4, 5, 10))
    full_note = (f"CPU-budget run: {trainer.iteration:,} updates of {cfg.meta_batch} sequences "
                 f"({trainer.iteration * cfg.meta_batch:,} episodes of 5 classes x 10 instances; the paper: 100,000), "
                 f"{trainer.history.seconds / 60:.1f} min of training. {note} Accuracy by instance (1/2/3/4/5/10) on "
                 f"{episodes} seeded test sequences (accuracy_by_instance, seed 1000): {row}. The test accuracy below is "
                 "the standard 5-way 1-shot protocol (the support set as a sequence, each query as the next step).")
    fewshot.ship(name, trainer, standard, note=full_note, overwrite=overwrite,
                 **({} if directory is None else {"directory": directory}))
    return {"by_instance": by_instance, "standard": standard}


def main(argv=None) -> int:
    """``python -m metalib.course.memory_lab ship mann mann-omniglot --minutes 8``: every mistake in the
    command is one line on stderr (exit 2), found before any training."""
    import argparse
    import math
    import sys

    from ..pretrained import check_ship_name

    parser = argparse.ArgumentParser(description="train and ship a sequence learner on Omniglot (see ship_sequence_learner)")
    parser.add_argument("command", choices=["ship"])
    parser.add_argument("algorithm", choices=["mann", "lstm-baseline"])
    parser.add_argument("name", help="a plain name for metalib/weights/NAME.pt")
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--run-dir", default=None)
    parser.add_argument("--note", default="")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--overwrite", action="store_true", help="replace shipped weights of the same name")
    args = parser.parse_args(argv)
    try:
        if not math.isfinite(args.minutes) or args.minutes <= 0:
            raise ValueError(f"--minutes must be a number > 0, got {args.minutes}")
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        check_ship_name(args.name, overwrite=args.overwrite)
        torch.set_num_threads(args.threads)
        out = ship_sequence_learner(args.algorithm, args.name, args.minutes, args.run_dir, args.note,
                                    overwrite=args.overwrite)
    except (ValueError, TypeError, OSError, RuntimeError) as err:
        text = str(err).strip().splitlines()
        print(f"error: {text[0] if text else type(err).__name__}", file=sys.stderr)
        return 2
    print(out["by_instance"])
    print(out["standard"])
    return 0


if __name__ == "__main__":  # python -m metalib.course.memory_lab ship mann mann-omniglot --minutes 8
    raise SystemExit(main())
