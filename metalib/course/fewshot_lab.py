"""The computations behind the few-shot widgets (notebooks 05-07), tested once here; the widgets only draw.

API (everything a notebook needs; tensors are float32 unless said otherwise)::

    from metalib.course import fewshot_lab as fl
    learners = fl.load_learners(["protonet-omniglot-5w1s", "maml-omniglot-5w1s"])  # {name: learner}
    fl.default_steps(learner)                      # test-time inner steps of shipped weights (None: ProtoNet)
    data = fl.load_test_data("omniglot")           # ClassImageSet, images uint8 [C, P, ch, H, W]
    ep = fl.sample_episode(data, n_way=5, k_shot=1, n_query=3, seed=0, index=0)   # Episode, one task
    probs = fl.episode_probabilities(learner, ep, steps=None)      # [T, N*Q, N], rows sum to 1
    z = fl.embed(learner, x, params=None)                           # [n, d] features
    view = fl.episode_view(learner, ep, steps=3)                    # embeddings + logits of one task
    path = fl.adaptation_path(learner, x_s, y_s, [0, 1, 2, 3])      # {steps: adapted params}
    pca = fl.pca_2d(x)                         # (coords [n, 2], mean [d], components [2, d], ratio [2])
    grid = fl.decision_regions(view, pca, extent, resolution=120)   # class per grid point [res, res]
    curves = fl.accuracy_vs_steps(learners, data, n_way=5, k_shot=1, steps=range(11), episodes=50)
    curves[name].at(3)                         # (mean %, 95% CI) after 3 steps; str(curve) says how measured

    view.rule(z) gives the learner's logits for any feature vectors (ProtoNet: -||z - c_k||^2 to the real
    prototypes; MAML/Reptile: the adapted head), pca.project / pca.unproject map to and from the plane.
    Cost: MAML adapts once along the whole path (max(steps) inner steps per episode); Reptile's Adam
    inner loop restarts for every step count (sum(steps)), so give it a few, e.g. [0, 5, 10, 20, 43, 86].

Conventions:

* A *learner* is any :class:`metalib.algorithms.Learner`; this module uses its interface only
  (``predict``, ``eval_steps``, ``fixed_way``, ``embed``, ``explain``, and for learners that adapt by
  gradient steps ``adapt``/``forward``/``initial_params``). Shipped ones come from
  :func:`metalib.fewshot.pretrained_learner`. ``steps=None`` means the number of test-time steps
  the learner is evaluated with (:func:`default_steps`).
* Episodes come from :class:`metalib.data.EpisodeSampler` in the order of
  :func:`metalib.evaluation.seeded_episodes`: episode ``index`` of ``seed`` is the ``index``-th test
  episode that :func:`metalib.evaluation.evaluate` with that seed would draw.
* BatchNorm is transductive, as at test time: ProtoNet embeds support and queries in one batch;
  MAML/Reptile see the support set alone while adapting and the query set alone when predicting
  (so :func:`episode_view` embeds them separately, exactly as the predictions are computed).
* Accuracies are in % (0-100), with 95% CIs = 1.96·σ/√n over episodes (σ with ``ddof=0``), as in
  :func:`metalib.evaluation.evaluate`.
"""
from __future__ import annotations

import math
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .. import fewshot
from ..algorithms import Learner
from ..algorithms.base import Explainable
from ..evaluation import TEST_SEED, images_of, seeded_episodes
from ..functional import Params, check_steps
from ..pretrained import manifest
from ..training import History, ProgressBar, progress_bar

__all__ = [
    "load_learners", "load_test_data", "fewshot_names", "learner_config", "default_steps", "adapts", "head_size",
    "check_episode", "sample_episode", "episode_probabilities", "embed", "adaptation_path",
    "EpisodeView", "episode_view", "PCA", "pca_2d", "plane_points", "decision_regions",
    "StepCurve", "accuracy_vs_steps", "display_images", "check_sizes", "step_count", "images_of", "fit_live",
]

# The config each shipped learner was trained/evaluated with, keyed by the learner object without
# keeping it alive.
_CONFIGS: "weakref.WeakKeyDictionary[Any, fewshot.FewShotConfig]" = weakref.WeakKeyDictionary()
_DATA: Dict[Tuple[str, str], Any] = {}


# ============================================================================ learners and data
def fewshot_names() -> List[str]:
    """Names of the shipped few-shot learners (manifest entries with a training config)."""
    return sorted(n for n, info in manifest().items() if "config" in info)


def load_learners(names: Union[str, Sequence[str]], device=None) -> Dict[str, Learner]:
    """``{name: learner}`` for shipped weights (via :func:`metalib.fewshot.pretrained_learner`).

    Raises ``ValueError`` naming the available learners for an unknown name.
    """
    if isinstance(names, str):
        names = [names]
    known = fewshot_names()
    out: Dict[str, Learner] = {}
    for name in names:
        if name not in known:
            raise ValueError(f"unknown model {name!r}: the shipped few-shot learners are {', '.join(known) or 'none'} "
                             "(metalib.list_pretrained() lists all weights)")
        learner, config = fewshot.pretrained_learner(name, device)
        _CONFIGS[learner] = config
        out[name] = learner
    return out


def fit_live(trainer: "fewshot.FewShotTrainer", window: int = 20) -> History:
    """``trainer.fit()`` for a notebook's live demo: a progress bar that stays visible when the run
    ends (make the trainer with ``progress=False``, or there are two), then one line that survives
    in a saved notebook — iterations, seconds, and the training loss and accuracy over the last
    ``window`` iterations."""
    bar = ProgressBar(trainer.config.describe(), window=window, leave=True)
    trainer.loop.callbacks.append(bar)
    try:
        history = trainer.fit()
    finally:
        trainer.loop.callbacks.remove(bar)
    loss, acc = history.loss[-window:], [a for a in history.accuracy[-window:] if a == a]
    line = (f"{trainer.config.describe()}: {trainer.iteration:,} iterations in {history.seconds:.1f} s; "
            f"training loss {sum(loss) / max(len(loss), 1):.3f}")
    if acc:
        line += f", accuracy {sum(acc) / len(acc):.1f}%"
    print(line + f" (means over the last {len(loss)} iterations' training episodes)")
    return history


def learner_config(learner: Learner) -> Optional[fewshot.FewShotConfig]:
    """The training config of a learner from :func:`load_learners` (``None`` for your own)."""
    return _CONFIGS.get(learner)


def load_test_data(dataset: str = "omniglot", split: str = "test", progress: bool = False):
    """The ``split`` of ``dataset`` ("omniglot" / "miniimagenet", or a shipped learner's name: its
    dataset) exactly as :func:`metalib.evaluation.evaluate` uses it: a ``ClassImageSet`` whose
    ``images`` are uint8 ``[C, P, ch, H, W]`` (episodes convert to float in [0, 1]).

    Loaded once per process (the data's own cache under ``$METALIB_CACHE`` makes the first load fast).
    """
    if dataset not in fewshot.DATASETS:
        if dataset in fewshot_names():
            dataset = manifest()[dataset]["config"]["dataset"]
        else:
            raise ValueError(f"dataset must be 'omniglot', 'miniimagenet' or a shipped learner's name, got {dataset!r}")
    if dataset == "custom":
        raise ValueError("dataset='custom' has no test split: pass your own uint8 tensor [C, P, ch, H, W]")
    key = (dataset, split)
    if key not in _DATA:
        _DATA[key] = fewshot.load_split(fewshot.default_config("protonet", dataset=dataset), split, progress)
    return _DATA[key]


def adapts(learner: Learner) -> bool:
    """Whether ``learner`` adapts by inner gradient steps (it has test-time ``eval_steps``)."""
    return learner.eval_steps is not None


def default_steps(learner: Learner) -> Optional[int]:
    """Test-time inner steps: those the shipped weights were evaluated with (``learner.eval_steps``,
    e.g. 3 for MAML 5-way Omniglot); ``None`` for learners without an inner loop (ProtoNet)."""
    return learner.eval_steps


def head_size(learner: Learner) -> Optional[int]:
    """The number of outputs of the learner's linear head (the only N it can do), else None."""
    return learner.fixed_way


def step_count(k: Any) -> int:
    """An inner-step count: an int (also numpy's) >= 0; floats and bools are refused."""
    if isinstance(k, bool) or not hasattr(k, "__index__"):
        raise TypeError(f"steps must be ints, got {k!r}")
    return check_steps("steps", int(k))


def _resolve_steps(learner: Learner, steps: Optional[int]) -> Optional[int]:
    if not adapts(learner):
        if steps not in (None, 0):
            raise ValueError(f"{learner.describe()} has no inner loop: steps must be None (or 0), got {steps!r}")
        return None
    return default_steps(learner) if steps is None else step_count(steps)


def check_episode(learner: Learner, data, n_way: int) -> None:
    """Raise ``ValueError`` if ``learner`` cannot classify ``n_way``-way episodes of ``data``'s images."""
    model = learner.model
    images = images_of(data)
    want = (getattr(model, "in_channels", None), getattr(model, "image_size", None))
    ch, h = int(images.shape[2]), int(images.shape[3])
    if want[0] is not None and (want[0], want[1]) != (ch, h):
        raise ValueError(f"the learner expects {want[0]}x{want[1]}x{want[1]} images but the data has "
                         f"{ch}x{h}x{images.shape[4]} (an Omniglot learner on miniImageNet, or vice versa?)")
    learner.check_task(n_way)


def check_sizes(data, n_way: int, k_shot: int, n_query: int) -> None:
    images = images_of(data)
    n_classes, per_class = int(images.shape[0]), int(images.shape[1])
    for name, v, low in (("n_way", n_way, 1), ("k_shot", k_shot, 1), ("n_query", n_query, 1)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name} must be an int, got {v!r}")
        if v < low:
            raise ValueError(f"{name} must be >= {low}, got {v}")
    if n_way > n_classes:
        raise ValueError(f"n_way={n_way} is more classes than the data has ({n_classes})")
    if k_shot + n_query > per_class:
        raise ValueError(f"k_shot + n_query = {k_shot} + {n_query} = {k_shot + n_query} images per class, "
                         f"but each class has only {per_class} images")


def _sampler(data, n_way: int, k_shot: int, n_query: int, device=None):
    from ..data import EpisodeSampler

    check_sizes(data, n_way, k_shot, n_query)
    return EpisodeSampler(images_of(data), n_way, k_shot, n_query, device=device)


def sample_episode(data, n_way: int = 5, k_shot: int = 1, n_query: int = 3, seed: int = 0, index: int = 0,
                   device=None):
    """Episode ``index`` (0, 1, ...) of the seeded sequence ``seed``: one task as an
    :class:`metalib.data.Episode` with a task dimension of 1 — ``x_s [1, N*K, ch, H, W]``,
    ``y_s [1, N*K]``, ``x_q [1, N*Q, ch, H, W]``, ``y_q [1, N*Q]`` (class-major).

    The same episode as the ``index``-th one :func:`metalib.evaluation.evaluate` draws with ``seed``
    (indices are drawn for the episodes before it; only this one's images are gathered).
    """
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"index must be an int >= 0, got {index!r}")
    sampler = _sampler(data, n_way, k_shot, n_query, device)
    g = torch.Generator().manual_seed(int(seed))
    for _ in range(index):
        sampler.sample_indices(1, g)
    return sampler.gather(*sampler.sample_indices(1, g))


# ============================================================================ adaptation, probabilities
def adaptation_path(learner: Learner, x_s: Tensor, y_s: Tensor, steps: Iterable[int]) -> Dict[int, Params]:
    """``{k: adapted params after k inner steps}`` for every ``k`` in ``steps``, via ``learner.adapt``
    on one task's support set ``x_s [N*K, ch, H, W]``, ``y_s [N*K]`` (``k = 0``: the initialisation).

    Where each inner step depends only on the current weights (``learner.stateless_adaptation``:
    MAML's plain SGD) the path is built incrementally (``adapt(steps=k - j, params=phi_j)``: the same
    arithmetic as ``adapt(steps=k)``); otherwise (Reptile with the Adam inner optimiser) it restarts
    from θ for every ``k`` (the optimiser state starts empty at each ``adapt``).
    """
    if not adapts(learner):
        raise TypeError(f"{learner.describe()} has no inner loop (nothing to adapt)")
    wanted = sorted({step_count(k) for k in steps})
    restart = not learner.stateless_adaptation
    out: Dict[int, Params] = {}
    with torch.no_grad():
        theta = {n: p.detach() for n, p in learner.initial_params().items()}
        prev_k, prev = 0, theta
        for k in wanted:
            if k == 0:
                out[k] = theta
                continue
            if restart:
                out[k] = learner.adapt(x_s, y_s, steps=k)
            else:
                out[k] = learner.adapt(x_s, y_s, steps=k - prev_k, params=prev)
                prev_k, prev = k, out[k]
            out[k] = {n: p.detach() for n, p in out[k].items()}
    return out


@torch.no_grad()
def episode_probabilities(learner: Learner, batch: Sequence[Tensor], steps: Optional[int] = None) -> Tensor:
    """Per-query class probabilities ``[T, N*Q, N]`` (softmax over the N classes) for a batch of
    episodes ``(x_s [T, N*K, ...], y_s [T, N*K], x_q [T, N*Q, ...], y_q)``.

    The softmax of ``learner.predict`` (ProtoNet: :math:`p(y=k|x) = \\mathrm{softmax}_k(-\\|f(x) - c_k\\|^2)`,
    Snell et al. eq. 2; MAML / Reptile: the logits of the model adapted with ``steps`` inner steps on
    the task's support set, ``steps=None``: :func:`default_steps`).
    """
    x_s, y_s, x_q, _ = batch
    steps = _resolve_steps(learner, steps)
    return learner.predict(x_s, y_s, x_q, int(y_s.max()) + 1, steps=steps).softmax(-1)


@torch.no_grad()
def embed(learner: Learner, x: Tensor, params: Optional[Params] = None) -> Tensor:
    """Embeddings ``[n, d]`` of images ``x [n, ch, H, W]`` (``learner.embed``; one batch: BatchNorm
    uses its statistics). ``params``: adapted weights of a learner that adapts (default θ)."""
    explainable(learner)
    return learner.embed(x) if params is None else learner.embed(x, params)


def explainable(learner) -> None:
    """The course's explorers need the optional hooks of :class:`metalib.algorithms.base.Explainable`."""
    if not isinstance(learner, Explainable):
        raise TypeError(f"{type(learner).__name__} has no embed/explain: the explorers need a learner with "
                        "the course hooks (metalib.algorithms.base.Explainable)")


@dataclass
class EpisodeView:
    """One task seen through a learner (all tensors detached, on the CPU).

    Attributes:
        kind: the learner's registry name (``"protonet"``, ``"maml"``, ...); ``steps``: inner steps
            (None: no inner loop).
        z_s ``[N*K, d]``, z_q ``[N*Q, d]``: embeddings (ProtoNet: one batch of support + queries;
            MAML/Reptile: the support alone and the queries alone, as in adaptation and prediction).
        y_s ``[N*K]``, y_q ``[N*Q]``: labels. logits ``[N*Q, N]``, probs ``[N*Q, N]``: the real rule.
        prototypes ``[N, d]`` (ProtoNet: class means of ``z_s``, eq. 1); weight ``[N, d]``,
            bias ``[N]``: the (adapted) linear head (MAML/Reptile). The others are None.
    """

    kind: str
    steps: Optional[int]
    z_s: Tensor
    z_q: Tensor
    y_s: Tensor
    y_q: Tensor
    logits: Tensor
    probs: Tensor
    prototypes: Optional[Tensor] = None
    weight: Optional[Tensor] = None
    bias: Optional[Tensor] = None

    @property
    def n_way(self) -> int:
        return int(self.logits.shape[-1])

    @property
    def predictions(self) -> Tensor:
        return self.logits.argmax(-1)

    @property
    def accuracy(self) -> float:
        """Fraction of queries classified correctly (0-1)."""
        return float((self.predictions == self.y_q).float().mean())

    rule_fn: Optional[Any] = field(default=None, repr=False)

    def rule(self, z: Tensor) -> Tensor:
        """The learner's logits for arbitrary feature vectors ``z [m, d] -> [m, N]`` (ProtoNet
        ``-||z - c_k||^2``, MAML/Reptile ``z W^T + b``): ``learner.explain``'s rule, or the one its
        ``prototypes`` / ``weight`` and ``bias`` define."""
        z = z.to(self.z_q.dtype)
        if self.rule_fn is not None:
            return self.rule_fn(z)
        if self.prototypes is not None:
            return -(z.unsqueeze(1) - self.prototypes.unsqueeze(0)).pow(2).sum(-1)
        return torch.nn.functional.linear(z, self.weight, self.bias)


def _one_task(episode: Sequence[Tensor], task: int = 0) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    x_s, y_s, x_q, y_q = episode
    if y_s.dim() == 2:
        return x_s[task], y_s[task], x_q[task], y_q[task]
    return x_s, y_s, x_q, y_q


@torch.no_grad()
def episode_view(learner: Learner, episode: Sequence[Tensor], steps: Optional[int] = None,
                 params: Optional[Params] = None, task: int = 0) -> EpisodeView:
    """Embeddings, logits and the classification rule of one task (``task`` of a batch, or a single
    task without the task dimension). ``params``: already adapted weights (skips ``adapt``)."""
    x_s, y_s, x_q, y_q = _one_task(episode, task)
    steps = _resolve_steps(learner, steps)
    n = int(y_s.max()) + 1
    learner.check_task(n)
    if params is None and adapts(learner):
        params = adaptation_path(learner, x_s, y_s, [steps])[steps]
    explainable(learner)
    v = learner.explain(x_s, y_s, x_q, params=params)
    cpu = {k: (t.detach().cpu() if isinstance(t, Tensor) else t) for k, t in v.items()}
    return EpisodeView(learner.name, steps, cpu["z_s"], cpu["z_q"], y_s.cpu(), y_q.cpu(), cpu["logits"],
                       cpu["logits"].softmax(-1), prototypes=cpu.get("prototypes"), weight=cpu.get("weight"),
                       bias=cpu.get("bias"), rule_fn=_cpu_rule(v["rule"]))


def _cpu_rule(rule):
    def on_cpu(z: Tensor) -> Tensor:
        return rule(z).detach().cpu()
    return on_cpu


# ============================================================================ PCA
class PCA(NamedTuple):
    """A 2-D principal-component projection: ``coords [n, 2]`` of the fitted points, their
    ``mean [d]``, the unit ``components [2, d]`` (rows: PC1, PC2) and ``explained_ratio [2]``
    (fraction of the total variance along each)."""

    coords: Tensor
    mean: Tensor
    components: Tensor
    explained_ratio: Tensor

    def project(self, x: Tensor) -> Tensor:
        """``[m, d] -> [m, 2]``: coordinates of ``x - mean`` along the two components."""
        return (x.to(self.mean.dtype) - self.mean) @ self.components.T

    def unproject(self, coords: Tensor) -> Tensor:
        """``[m, 2] -> [m, d]``: the points ``mean + c1 PC1 + c2 PC2`` of the plane."""
        return self.mean + coords.to(self.mean.dtype) @ self.components


def pca_2d(x: Tensor, reference: Optional[Tensor] = None) -> PCA:
    """PCA of ``x [n, d]`` onto its two leading principal components (SVD of the centred data).

    Signs: a principal axis is only defined up to sign, and SVD may return either. To keep pictures
    from flipping, each component is oriented so that its dot product with the matching row of
    ``reference [2, d]`` (e.g. the components of the previous frame) is >= 0; without a reference,
    so that its largest-magnitude loading is positive (the convention of scikit-learn's ``svd_flip``).
    Computed in float64 and returned in ``x``'s dtype.
    """
    if not isinstance(x, Tensor) or x.dim() != 2:
        raise ValueError(f"pca_2d expects a 2-D tensor [n, d], got {getattr(x, 'shape', type(x))}")
    n, d = x.shape
    if n < 2 or d < 2:
        raise ValueError(f"pca_2d needs at least 2 points with at least 2 features, got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("pca_2d: x contains NaN or inf")
    xd = x.detach().double()
    mean = xd.mean(0)
    xc = xd - mean
    _, s, vh = torch.linalg.svd(xc, full_matrices=False)
    comps = vh[:2].clone()
    if comps.shape[0] < 2:  # n == 2 gives 2 rows anyway; kept for safety
        comps = torch.cat([comps, torch.zeros(2 - comps.shape[0], d, dtype=comps.dtype)])
    if reference is not None:
        ref = reference.detach().double()
        if ref.shape != comps.shape:
            raise ValueError(f"reference must be [2, {d}], got {tuple(ref.shape)}")
        signs = torch.where((comps * ref).sum(1) < 0, -1.0, 1.0).to(comps.dtype)
    else:
        big = comps.abs().argmax(1)
        signs = torch.sign(comps[torch.arange(2), big])
        signs[signs == 0] = 1.0
    comps = comps * signs[:, None]
    var = s.pow(2)
    total = var.sum()
    ratio = var[:2] / total if total > 0 else torch.zeros(2, dtype=var.dtype)
    coords = xc @ comps.T
    dt = x.dtype if x.dtype.is_floating_point else torch.float32
    return PCA(coords.to(dt), mean.to(dt), comps.to(dt), ratio.to(dt))


def plane_points(pca: PCA, extent: Tuple[float, float, float, float], resolution: int = 120) -> Tuple[Tensor, Tensor]:
    """A ``resolution x resolution`` grid over ``extent = (x0, x1, y0, y1)`` in the PCA plane:
    ``(coords [res*res, 2], features [res*res, d])`` with ``features = mean + coords @ components``
    (row-major, y varying slowest, as ``imshow(origin="lower")`` expects)."""
    x0, x1, y0, y1 = (float(v) for v in extent)
    xs = torch.linspace(x0, x1, resolution, dtype=pca.mean.dtype)
    ys = torch.linspace(y0, y1, resolution, dtype=pca.mean.dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    coords = torch.stack([gx.flatten(), gy.flatten()], 1)
    return coords, pca.unproject(coords)


def decision_regions(view: EpisodeView, pca: PCA, extent: Tuple[float, float, float, float],
                     resolution: int = 120) -> Tensor:
    """The class the learner's *real* rule assigns to each point of the PCA plane, ``int64 [res, res]``.

    Every grid point is mapped back into feature space (``mean + c1 PC1 + c2 PC2``) and classified
    there: ProtoNet by the squared distance to the real (d-dimensional) prototypes, MAML/Reptile by
    the adapted linear head. So the picture is the true rule restricted to the plane through the
    mean spanned by the two PCs — not "nearest projected prototype", which is a different rule.
    Points off the plane (most queries) can be classified differently from the region they fall in.
    """
    _, feats = plane_points(pca, extent, resolution)
    return view.rule(feats).argmax(-1).view(resolution, resolution)


# ============================================================================ accuracy vs steps
@dataclass
class StepCurve:
    """Mean query accuracy (%) after each number of inner steps, over seeded episodes.

    ``mean[i]`` ± ``ci95[i]`` (1.96·σ/√n, σ over episodes with ``ddof=0``) is the accuracy after
    ``steps[i]`` steps; ``accuracies[i]`` the per-episode values. ``adapts=False`` (ProtoNet): no
    inner loop, the same accuracy at every step count (a reference line).
    """

    name: str
    algorithm: str
    steps: List[int]
    mean: List[float]
    ci95: List[float]
    episodes: int
    n_way: int
    k_shot: int
    q_query: int
    seed: int
    seconds: float
    adapts: bool = True
    default_steps: Optional[int] = None
    accuracies: List[List[float]] = field(default_factory=list, repr=False)

    def at(self, steps: int) -> Tuple[float, float]:
        """``(mean, ci95)`` after ``steps`` inner steps."""
        i = self.steps.index(steps)
        return self.mean[i], self.ci95[i]

    def __str__(self) -> str:
        best = max(range(len(self.steps)), key=lambda i: self.mean[i])
        return (f"{self.name}: {self.mean[0]:.1f}% after {self.steps[0]} steps, highest {self.mean[best]:.1f}% "
                f"± {self.ci95[best]:.1f}% after {self.steps[best]} (95% CI over {self.episodes} seeded episodes, "
                f"{self.n_way}-way {self.k_shot}-shot, {self.q_query} queries/class, seed {self.seed}; "
                f"{self.seconds:.0f} s)")


def _stats(acc: Tensor) -> Tuple[float, float]:
    n = acc.numel()
    return float(acc.mean()), 1.96 * float(acc.std(unbiased=False)) / math.sqrt(n)


def accuracy_vs_steps(learners: Union[Learner, Mapping[str, Learner]], data, n_way: int = 5, k_shot: int = 1,
                      steps: Iterable[int] = range(0, 11), episodes: int = 50, seed: int = TEST_SEED,
                      n_query: int = 15, progress: bool = False) -> Dict[str, StepCurve]:
    """Query accuracy after 0, 1, ... inner steps for each learner, on the same seeded episodes.

    Every learner and every step count sees the very episodes :func:`metalib.evaluation.evaluate`
    draws with ``seed`` (so the value at ``steps=k`` equals ``evaluate(learner, data, n_way, k_shot,
    n_query, episodes, seed, steps=k).mean``). MAML is adapted once per episode along the whole path
    (:func:`adaptation_path`); ProtoNet (no inner loop) gives a flat reference curve.

    Cost: MAML ``max(steps)`` inner steps per episode; Reptile with Adam ``sum(steps)`` (it restarts
    for every step count), so prefer a few step counts for it, e.g. ``[0, 5, 10, 20, 50]``.
    """
    if not isinstance(learners, Mapping):
        learners = {type(learners).__name__: learners}
    if not learners:
        raise ValueError("give at least one learner")
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be an int >= 1, got {episodes!r}")
    steps = sorted({step_count(k) for k in steps})
    if not steps:
        raise ValueError("steps is empty")
    check_sizes(data, n_way, k_shot, n_query)
    out: Dict[str, StepCurve] = {}
    for name, learner in learners.items():
        check_episode(learner, data, n_way)
        sampler = _sampler(data, n_way, k_shot, n_query, learner.device)
        accs: List[List[float]] = [[] for _ in steps]
        start = time.perf_counter()
        bar = progress_bar(episodes, progress, f"{name}: accuracy vs steps")
        with torch.no_grad():
            for batch in seeded_episodes(sampler, episodes, seed):
                if not adapts(learner):
                    pred = learner.predict(batch[0], batch[1], batch[2], n_way).argmax(-1)
                    hit = (pred == batch[3]).double().mean(1).cpu()
                    for row in accs:
                        row += hit.tolist()
                else:
                    for xs, ys, xq, yq in zip(*batch):
                        path = adaptation_path(learner, xs, ys, steps)
                        for row, k in zip(accs, steps):
                            pred = learner.forward(path[k], xq).argmax(-1)
                            row.append(float((pred == yq).double().mean()))
                if bar is not None:
                    bar.update(batch[0].shape[0])
        if bar is not None:
            bar.close()
        table = torch.tensor(accs, dtype=torch.float64) * 100
        stats = [_stats(r) for r in table]
        out[name] = StepCurve(name=name, algorithm=learner.describe(), steps=list(steps),
                              mean=[m for m, _ in stats], ci95=[c for _, c in stats], episodes=episodes,
                              n_way=n_way, k_shot=k_shot, q_query=n_query, seed=seed,
                              seconds=time.perf_counter() - start, adapts=adapts(learner),
                              default_steps=default_steps(learner), accuracies=table.tolist())
    return out


# ============================================================================ display
def display_images(x: Tensor) -> Tensor:
    """Images for ``imshow``: ``[n, ch, H, W]`` float in [0, 1] (as episodes hold them) ->
    ``[n, H, W, 3]`` float RGB in [0, 1]. One channel (Omniglot: 1 = stroke) is shown as dark ink on
    white (``1 - x``); three channels as they are (metalib does not normalise miniImageNet)."""
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected images [n, 1 or 3, H, W], got {tuple(x.shape)}")
    x = x.detach().float().cpu().clamp(0, 1)
    if x.shape[1] == 1:
        x = (1 - x).expand(-1, 3, -1, -1)
    return x.permute(0, 2, 3, 1).contiguous()
