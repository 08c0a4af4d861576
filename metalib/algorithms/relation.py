r"""Relation Networks (Sung, Yang, Zhang, Xiang, Torr & Hospedales, CVPR 2018).

An embedding module :math:`f_\varphi` keeps *feature maps* (it is not flattened), and a learned
relation module :math:`g_\phi` scores every (class, query) pair (eq. 1-3 of the paper):

.. math::

    r_{c,j} = g_\phi\big(\mathcal{C}(f_\varphi(x_c),\ f_\varphi(x_j))\big),
    \qquad c = 1..N,\quad j = 1..Q,

where :math:`\mathcal{C}` concatenates along the channels and, for K > 1, the class feature is the
**sum** of its K support feature maps, :math:`f_\varphi(x_c) = \sum_{i: y_i = c} f_\varphi(x_i)`.
:math:`r_{c,j} \in (0, 1)` (a sigmoid) and the objective is the mean squared error against the
one-hot target (eq. 3): :math:`\frac{1}{QN}\sum_{j}\sum_c \big(r_{c,j} - \mathbf 1(y_j = c)\big)^2`.
A query is assigned to the class with the highest relation score.

Shapes: images ``[n, ch, H, W]`` → feature maps ``[n, C, h, w]`` (Omniglot 28x28 with the default
embedding: ``[n, 64, 5, 5]``); class features ``[N, C, h, w]``; pairs ``[Q*N, 2C, h, w]`` →
relation scores ``[Q, N]``.

The networks (the paper's section 3.4 / figure 2, as in the official code, LearningToCompare_FSL):

* embedding (:class:`RelationEncoder`): four blocks of 3x3 convolution (64 filters), BatchNorm,
  ReLU; the first two with 2x2 max-pooling and no padding, the last two padded and **not pooled**
  (the feature maps stay 5x5 on Omniglot, 19x19 on 84x84 miniImageNet);
* relation module (:class:`RelationModule`): two blocks of 3x3 convolution (64 filters),
  BatchNorm, ReLU, 2x2 max-pooling (padded on feature maps smaller than 10x10, as the official
  Omniglot code; unpadded otherwise, as its miniImageNet code), then a fully connected layer to 8
  units with ReLU and one to 1 unit with a sigmoid.

BatchNorm. The embedding normalises with the statistics of the batch it sees (the support and query
images of an episode embedded together, as metalib's ProtoNet and Matching Networks). The relation
module's BatchNorm uses the batch of pairs while meta-training and tracks running statistics, which
it uses at prediction (``relation_bn="running"``, the default): a pair's score then depends on that
pair only. ``relation_bn="episode"`` normalises with the statistics of the episode's pairs at
prediction too — what the official code does (it never calls ``eval()``) — so scores depend on the
other pairs of the episode.
"""
from __future__ import annotations

import dataclasses
import contextlib
from dataclasses import dataclass
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..batch import check_labels, class_counts
from ..functional import Params, buffers_of, check_positive, forward, params_of, transductive_batchnorm
from .base import EpisodeClassifier, check_network, no_loss_fn, register
from .settings import FewShotConfig, setting


# ============================================================================ the networks
def _block(cin: int, cout: int, padding: int, pool: bool, track_running_stats: bool) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, 3, padding=padding), nn.BatchNorm2d(cout, track_running_stats=track_running_stats),
              nn.ReLU()]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class RelationEncoder(nn.Module):
    """The embedding module of Relation Networks: Conv-4 whose last two blocks are padded and not
    pooled, so it returns feature maps ``[n, hidden, s, s]`` with ``s = ((H - 2) // 2 - 2) // 2``
    (5 for 28x28 Omniglot, 19 for 84x84 miniImageNet).

    BatchNorm does not track running statistics: it always normalises with the batch it sees
    (transductive over an episode, as metalib's Conv-4).
    """

    def __init__(self, in_channels: int = 1, hidden: int = 64, image_size: int = 28) -> None:
        super().__init__()
        side = ((image_size - 2) // 2 - 2) // 2
        if side < 4:
            raise ValueError(f"RelationEncoder needs images of at least 22x22 (feature maps of at least 4x4 for the "
                             f"relation module's two poolings), got {image_size}")
        self.in_channels, self.hidden, self.image_size = in_channels, hidden, image_size
        self.feature_shape = (hidden, side, side)
        self.embedding_dim = hidden * side * side
        self.features = nn.Sequential(
            _block(in_channels, hidden, 0, True, False), _block(hidden, hidden, 0, True, False),
            _block(hidden, hidden, 1, False, False), _block(hidden, hidden, 1, False, False),
        )

    def builder_spec(self):
        """``("metalib.algorithms.relation:RelationEncoder", kwargs)``: how :mod:`metalib.pretrained` rebuilds it."""
        return "metalib.algorithms.relation:RelationEncoder", dict(in_channels=self.in_channels, hidden=self.hidden,
                                                                    image_size=self.image_size)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels or x.shape[-1] != self.image_size:
            raise ValueError(f"RelationEncoder expects [n, {self.in_channels}, {self.image_size}, {self.image_size}] "
                             f"images, got shape {tuple(x.shape)}")
        return self.features(x)


class RelationModule(nn.Module):
    """:math:`g_\\phi`: pairs of concatenated feature maps ``[m, 2C, s, s]`` -> relation scores ``[m]``
    in (0, 1) (returned as the pre-sigmoid log-odds by :meth:`forward`; ``sigmoid`` gives the score).

    Two blocks of 3x3 convolution (``channels`` filters), BatchNorm (tracking running statistics),
    ReLU and 2x2 max-pooling, then ``Linear(-> hidden)``, ReLU, ``Linear(-> 1)``. Padding 1 on maps
    smaller than 10x10 (the official Omniglot code), 0 otherwise (its miniImageNet code).
    """

    def __init__(self, feature_shape: Tuple[int, int, int], channels: int = 64, hidden: int = 8) -> None:
        super().__init__()
        c, s, _ = feature_shape
        pad = 1 if s < 10 else 0
        side = s
        for _ in range(2):
            side = (side + 2 * pad - 2) // 2
        if side < 1:
            raise ValueError(f"feature maps of {s}x{s} are too small for the relation module's two poolings")
        self.blocks = nn.Sequential(_block(2 * c, channels, pad, True, True), _block(channels, channels, pad, True, True))
        self.fc1 = nn.Linear(channels * side * side, hidden)
        self.fc2 = nn.Linear(hidden, 1)

    def forward(self, pairs: Tensor) -> Tensor:
        h = self.blocks(pairs).flatten(1)
        return self.fc2(F.relu(self.fc1(h))).squeeze(-1)


# ============================================================================ the equations
def class_features(maps_s: Tensor, y_s: Tensor, n_way: int) -> Tensor:
    r""":math:`f_\varphi(x_c) = \sum_{i: y_i = c} f_\varphi(x_i)`: ``[N*K, C, h, w]``, ``[N*K]`` -> ``[N, C, h, w]``
    (the sum, not the mean: section 3.2 of the paper). Raises ``ValueError`` for a class without support."""
    class_counts(y_s, n_way)
    return torch.zeros(n_way, *maps_s.shape[1:], dtype=maps_s.dtype, device=maps_s.device).index_add_(0, y_s, maps_s)


def relation_pairs(class_maps: Tensor, maps_q: Tensor) -> Tensor:
    r""":math:`\mathcal{C}(f(x_c), f(x_j))` for every query j and class c, query-major:
    ``[N, C, h, w]``, ``[Q, C, h, w]`` -> ``[Q*N, 2C, h, w]`` (row ``j*N + c``; class channels first)."""
    n, q = class_maps.shape[0], maps_q.shape[0]
    return torch.cat([class_maps.unsqueeze(0).expand(q, *class_maps.shape),
                      maps_q.unsqueeze(1).expand(q, n, *maps_q.shape[1:])], 2).flatten(0, 1)


def one_hot_mse(scores: Tensor, y_q: Tensor) -> Tensor:
    r"""Eq. 3: :math:`\frac{1}{QN}\sum_{j,c} (r_{c,j} - \mathbf 1(y_j = c))^2` for scores ``[..., Q, N]``
    and labels ``[..., Q]``; one value per leading index (``[]`` for one task, ``[T]`` for a batch)."""
    target = F.one_hot(y_q, scores.shape[-1]).to(scores.dtype)
    return (scores - target).pow(2).mean((-2, -1))


# ============================================================================ the learner
@dataclass(kw_only=True)
class RelationConfig(FewShotConfig):
    """A Relation Networks run: the relation module's size, its BatchNorm and the gradient clipping."""

    relation_dim: int = setting(8, "the relation module's hidden units", low=1)
    relation_bn: str = setting("running", "the relation module's BatchNorm: running or episode")
    clip_grad_norm: float = setting(0.5, "clip the gradient's norm to this (0: no clipping)", low=0)
    feature_shape: Optional[Sequence[int]] = setting(None, "[C, h, w] of the encoder's feature maps (default: "
                                                     "the encoder's feature_shape)")


class RelationNetworks(EpisodeClassifier):
    r"""Relation Networks: a learned relation module scores each (class, query) pair of feature maps
    (see the module docstring for the equations and the networks).

    :meth:`predict` returns the log-odds :math:`\log\frac{r}{1-r}` of the relation scores ``[Q, N]``
    (``sigmoid`` of them is :math:`r`; the argmax is the same); :meth:`relation_scores` returns
    :math:`r`. The loss is the MSE of :math:`r` against the one-hot target (eq. 3).

    Args:
        encoder: the embedding module, returning feature maps ``[n, C, h, w]`` (default network:
            :class:`RelationEncoder`); it needs a ``feature_shape`` attribute ``(C, h, w)`` unless
            ``feature_shape`` is given.
        relation_dim: units of the relation module's hidden fully connected layer (8 in the paper).
        relation_bn: ``"running"`` (default) or ``"episode"``: the relation module's BatchNorm
            statistics at prediction (see the module docstring).
        clip_grad_norm: the official code clips each network's gradient norm at 0.5 before the Adam
            step; ``0`` turns clipping off.
        feature_shape: ``(C, h, w)`` of the encoder's output, if the encoder does not say (if it does,
            the two must agree); ``--feature-shape`` of ``train_fewshot.py``.
    """

    name = "relation"
    short_name = "RelationNet"  # a table column's name
    config_class = RelationConfig
    family = "metric-based"
    # Sung et al. 2018, section 4.1, and the official code (LearningToCompare_FSL, train scripts):
    # Adam 1e-3 halved every 100,000 episodes, one episode per update, training episodes of the test
    # tasks' N and K; query images per class in training: Omniglot 19 (5-way 1-shot), 15 (5-way
    # 5-shot), 10 (20-way 1-shot), 5 (20-way 5-shot); miniImageNet 15 (1-shot), 10 (5-shot).
    # Episodes: 1,000,000 (Omniglot) and 500,000 (miniImageNet), the code's defaults.
    paper_settings = {
        **{("omniglot", n, k): RelationConfig(train_query=q, meta_batch=1, meta_lr=1e-3, lr_decay_every=100_000,
                                    iterations=1_000_000)
           for (n, k), q in {(5, 1): 19, (5, 5): 15, (20, 1): 10, (20, 5): 5}.items()},
        **{("miniimagenet", 5, k): RelationConfig(train_query=q, meta_batch=1, meta_lr=1e-3, lr_decay_every=100_000,
                                        iterations=500_000)
           for k, q in {1: 15, 5: 10}.items()},
    }
    # issue #29: a schedule for ~30 CPU-minutes on one thread, chosen on the validation split
    # (benchmarks/README.md "Time to accuracy"; grid and results in benchmarks/results/budget_search.json):
    # Adam 0.004 halved every 5,525 iterations, one 5-way 1-shot episode (15 queries/class) per update
    budget_settings = {
        ("omniglot", 5, 1): dataclasses.replace(paper_settings[("omniglot", 5, 1)], train_way=5, train_shot=1, train_query=15, meta_batch=1, meta_lr=0.004,
                                 lr_schedule="step", lr_decay_every=5525, lr_decay=0.5, iterations=22100),
    }

    def __init__(self, encoder: nn.Module, relation_dim: int = 8, relation_bn: str = "running",
                 clip_grad_norm: float = 0.5, feature_shape: Optional[Sequence[int]] = None, loss_fn=None) -> None:
        check_network(encoder, "encoder")
        no_loss_fn(loss_fn, "Relation Networks' loss is the MSE against one-hot targets (eq. 3)")
        if relation_bn not in ("running", "episode"):
            raise ValueError(f"relation_bn must be 'running' or 'episode', got {relation_bn!r}")
        if isinstance(relation_dim, bool) or not isinstance(relation_dim, int) or relation_dim < 1:
            raise ValueError(f"relation_dim must be a positive int, got {relation_dim!r}")
        own = getattr(encoder, "feature_shape", None)
        shape = feature_shape if feature_shape is not None else own
        if (not isinstance(shape, (tuple, list)) or len(shape) != 3
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape)):
            raise ValueError(f"Relation Networks need the encoder's feature-map shape (C, h, w), three positive ints "
                             f"(got {shape!r}): use RelationEncoder (the default network) or pass feature_shape=(C, h, w)")
        if own is not None and tuple(shape) != tuple(own):
            raise ValueError(f"feature_shape={tuple(shape)} but the encoder's feature maps are {tuple(own)}")
        super().__init__(None)
        self.encoder = encoder
        self.feature_shape = tuple(shape)
        self.relation_dim, self.relation_bn = relation_dim, relation_bn
        self._training_pass = False  # task_losses sets it: BatchNorm of the relation module as in training
        self.clip_grad_norm = check_positive("clip_grad_norm", clip_grad_norm, allow_zero=True)
        self.relation = RelationModule(self.feature_shape, channels=self.feature_shape[0], hidden=relation_dim)

    @property
    def model(self) -> nn.Module:
        """The embedding module (the network the manifest rebuilds; the relation module is part of
        the learner's state)."""
        return self.encoder

    @classmethod
    def default_model(cls, in_channels: int, image_size: int, hidden: int, n_way: int) -> nn.Module:
        """:class:`RelationEncoder` (Conv-4 keeping 5x5 / 19x19 feature maps)."""
        return RelationEncoder(in_channels=in_channels, hidden=hidden, image_size=image_size)

    # ------------------------------------------------------------------ the pieces
    def feature_maps(self, x: Tensor, params: Optional[Params] = None) -> Tensor:
        """:math:`f_\\varphi(x)`: ``[n, ch, H, W] -> [n, C, h, w]`` (one batch)."""
        params = params_of(self.encoder) if params is None else params
        maps = forward(self.encoder, params, buffers_of(self.encoder), x)
        if tuple(maps.shape[1:]) != self.feature_shape:
            raise ValueError(f"the encoder returned feature maps {tuple(maps.shape[1:])}, expected {self.feature_shape}")
        return maps

    def embed(self, x: Tensor, params: Optional[Params] = None) -> Tensor:
        """The feature maps flattened: ``[n, C*h*w]`` (for the course's embedding views)."""
        return self.feature_maps(x, params).flatten(1)

    @contextlib.contextmanager
    def _relation_mode(self, training: bool) -> Iterator[None]:
        """Meta-training: BatchNorm over the batch of pairs, updating the running statistics.
        Prediction: the running statistics (``"running"``) or the episode's pairs (``"episode"``,
        nothing updated)."""
        before = self.relation.training
        self.relation.train(training)
        try:
            if training or self.relation_bn == "running":
                yield
            else:
                with transductive_batchnorm(self.relation):
                    yield
        finally:
            self.relation.train(before)

    def relation_log_odds(self, class_maps: Tensor, maps_q: Tensor) -> Tensor:
        """Pre-sigmoid relation scores of every (query, class) pair: ``[N, C, h, w]``, ``[Q, C, h, w]`` -> ``[Q, N]``."""
        pairs = relation_pairs(class_maps, maps_q)
        out = forward(self.relation, params_of(self.relation), buffers_of(self.relation), pairs)
        return out.view(maps_q.shape[0], class_maps.shape[0])

    def _task(self, x_s: Tensor, y_s: Tensor, x_q: Tensor, n_way: int) -> Dict[str, Tensor]:
        maps = self.feature_maps(torch.cat([x_s, x_q]))
        maps_s, maps_q = maps[: x_s.shape[0]], maps[x_s.shape[0]:]
        classes = class_features(maps_s, y_s, n_way)
        return {"maps_s": maps_s, "maps_q": maps_q, "class_maps": classes,
                "log_odds": self.relation_log_odds(classes, maps_q)}

    def task_logits(self, x_s: Tensor, y_s: Tensor, x_q: Tensor, n_way: int) -> Tensor:
        """Log-odds of the relation scores ``[Q, N]`` of one task (``x_s [N*K, ...]``, ``y_s [N*K]``,
        ``x_q [Q, ...]``); :meth:`logits` (from :class:`EpisodeClassifier`) batches it. The relation
        module's BatchNorm is in the mode :meth:`task_losses` / :meth:`predict` set."""
        with self._relation_mode(self._training_pass):
            return self._task(x_s, y_s, x_q, n_way)["log_odds"]

    def relation_scores(self, x_s: Tensor, y_s: Tensor, x_q: Tensor, n_way: Optional[int] = None) -> Tensor:
        """The relation scores :math:`r \\in (0, 1)`: ``sigmoid`` of :meth:`logits`."""
        return self.logits(x_s, y_s, x_q, n_way).sigmoid()

    def explain(self, x_s: Tensor, y_s: Tensor, x_q: Tensor, params=None) -> Dict[str, Any]:
        r"""One task (see :meth:`metalib.algorithms.Learner.explain`): ``z_s`` ``[N*K, C*h*w]`` and
        ``z_q`` ``[Q, C*h*w]`` (flattened feature maps), ``logits`` (log-odds) and ``scores``
        :math:`r` ``[Q, N]``, ``class_features`` ``[N, C*h*w]`` (the per-class sums); ``rule(z)`` scores
        flattened feature maps ``z [m, C*h*w]`` against this episode's classes (log-odds)."""
        if params is not None:
            raise ValueError("Relation Networks do not adapt: params must be None")
        n_way = check_labels(y_s, None, "support")
        with self._relation_mode(False):
            t = self._task(x_s, y_s, x_q, n_way)
        classes = t["class_maps"].detach()

        def rule(z: Tensor) -> Tensor:
            with self._relation_mode(False):
                return self.relation_log_odds(classes, z.view(-1, *self.feature_shape))

        return {"z_s": t["maps_s"].detach().flatten(1), "z_q": t["maps_q"].detach().flatten(1),
                "logits": t["log_odds"].detach(), "scores": t["log_odds"].detach().sigmoid(),
                "class_features": classes.flatten(1), "rule": rule}

    # ------------------------------------------------------------------ training
    def query_losses(self, log_odds: Tensor, y_q: Tensor) -> Tensor:
        """Per-task MSE of the relation scores against one-hot targets ``[T]`` (eq. 3)."""
        return one_hot_mse(log_odds.sigmoid(), y_q)

    def task_losses(self, batch: Sequence[Tensor], n_way: Optional[int] = None) -> Tuple[Tensor, Tensor]:
        """Per-task losses ``[T]`` (eq. 3) and the log-odds ``[T, Q, N]``, computed as in meta-training
        (the relation module's BatchNorm over the batch of pairs, running statistics updated)."""
        self._training_pass = True
        try:
            return super().task_losses(batch, n_way)
        finally:
            self._training_pass = False

    def clip_gradients(self) -> None:
        """The official code's gradient clipping before the Adam step (in :meth:`train_step`): the
        embedding's and the relation module's gradient norms are each clipped at ``clip_grad_norm``."""
        if self.clip_grad_norm:
            nn.utils.clip_grad_norm_(self.encoder.parameters(), self.clip_grad_norm)
            nn.utils.clip_grad_norm_(self.relation.parameters(), self.clip_grad_norm)

    def describe(self) -> str:
        return "Relation Networks"


    def __repr__(self) -> str:
        return (f"RelationNetworks(encoder={self.encoder.__class__.__name__}, feature_shape={self.feature_shape}, "
                f"relation_dim={self.relation_dim}, relation_bn={self.relation_bn!r})")


register("relation", RelationNetworks)
