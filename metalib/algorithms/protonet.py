"""Prototypical Networks (Snell, Swersky & Zemel, NeurIPS 2017)."""
from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from ..batch import class_counts
from .base import EpisodeClassifier, check_network, register
from .settings import FewShotConfig


def prototypes(z_s: Tensor, y_s: Tensor, n_way: int) -> Tensor:
    r"""Class prototypes :math:`c_k = \frac{1}{|S_k|} \sum_{(x_i, y_i) \in S_k} f_\phi(x_i)` (eq. 1).

    Args:
        z_s: support embeddings ``[n_support, d]``; y_s: labels ``[n_support]`` in ``[0, n_way)``.
    Returns:
        ``[n_way, d]``. Raises ``ValueError`` if a class has no support example.
    """
    counts = class_counts(y_s, n_way)
    sums = torch.zeros(n_way, z_s.shape[-1], dtype=z_s.dtype, device=z_s.device).index_add_(0, y_s, z_s)
    return sums / counts.unsqueeze(1).to(z_s.dtype)


def squared_distances(z_q: Tensor, protos: Tensor) -> Tensor:
    r""":math:`\|z_q - c_k\|^2` for every query and class: ``[n_query, d] x [n_way, d] -> [n_query, n_way]``.

    Computed as a broadcast difference, not the expanded ``a^2 - 2ab + b^2`` form, so it is exact
    (never slightly negative) — the sizes here are small.
    """
    return (z_q.unsqueeze(1) - protos.unsqueeze(0)).pow(2).sum(-1)


class ProtoNetConfig(FewShotConfig):
    """A ProtoNet run: no setting beyond the run's (the embedding network and the episodes)."""


class ProtoNet(EpisodeClassifier):
    r"""Prototypical Networks: classify a query by its distance to the class prototypes.

    :math:`p(y = k \mid x) \propto \exp(-\|f_\phi(x) - c_k\|^2)` (eq. 2), trained with the
    cross-entropy of the query set. ``encoder`` maps ``[n, *x_shape]`` to embeddings; anything
    after the batch dimension is flattened.

    BatchNorm: support and query of a task are embedded in one forward pass (as Snell et al.'s
    code does), so an encoder whose BatchNorm uses batch statistics is transductive over the episode.
    """

    name = "protonet"
    config_class = ProtoNetConfig
    family = "metric-based"
    # Snell et al. 2017, sections 3.1-3.2 and the official code: Adam 1e-3 halved every 2,000
    # episodes, one episode per update; Omniglot: 60-way training episodes with 5 queries per class
    # (shots as at test); miniImageNet: 30-way (1-shot) / 20-way (5-shot), 15 queries. The paper
    # trains until validation stops improving: 20,000 episodes is metalib's bound, not the paper's.
    paper_settings = {
        **{("omniglot", n, k): ProtoNetConfig(train_way=60, train_query=5, meta_batch=1, meta_lr=1e-3, lr_decay_every=2000,
                                    iterations=20_000) for n in (5, 20) for k in (1, 5)},
        **{("miniimagenet", 5, k): ProtoNetConfig(train_way=30 if k == 1 else 20, train_query=15, meta_batch=1, meta_lr=1e-3,
                                        lr_decay_every=2000, iterations=20_000) for k in (1, 5)},
    }
    # issue #29: a schedule for ~30 CPU-minutes on one thread, chosen on the validation split
    # (benchmarks/README.md "Time to accuracy"; grid and results in benchmarks/results/budget_search.json:
    # peak lr {1e-3, 2e-3, 4e-3} x {step, cosine}, 1 CPU-minute each, all within 92.4-93.3% ± 0.9).
    # 5-way training episodes (not the paper's 60-way): the same episodes as every raced learner.
    budget_settings = {
        ("omniglot", 5, 1): dataclasses.replace(paper_settings[("omniglot", 5, 1)], train_way=5, train_shot=1, train_query=15, meta_batch=1, meta_lr=0.004,
                                 lr_schedule="step", lr_decay_every=6925, lr_decay=0.5, iterations=27700),
    }

    def __init__(self, encoder: nn.Module, loss_fn=None) -> None:
        check_network(encoder, "encoder")
        super().__init__(loss_fn)
        self.encoder = encoder

    @property
    def model(self) -> nn.Module:
        """The network (the encoder), under the name every learner uses."""
        return self.encoder

    def embed(self, x: Tensor, params=None) -> Tensor:
        """``[n, *x_shape] -> [n, d]`` (ProtoNet does not adapt: ``params`` must be None)."""
        if params is not None:
            raise ValueError("ProtoNet does not adapt: params must be None")
        return self.encoder(x).flatten(1)

    def explain(self, x_s: Tensor, y_s: Tensor, x_q: Tensor, params=None):
        """Support and queries embedded in one batch (as :meth:`logits` does); the rule is
        :math:`-\\|z - c_k\\|^2` to the prototypes (see :meth:`metalib.algorithms.Learner.explain`)."""
        if params is not None:
            raise ValueError("ProtoNet does not adapt: params must be None")
        z = self.embed(torch.cat([x_s, x_q]))
        z_s, z_q = z[: x_s.shape[0]], z[x_s.shape[0]:]
        protos = prototypes(z_s, y_s, int(y_s.max()) + 1)
        return {"z_s": z_s, "z_q": z_q, "logits": -squared_distances(z_q, protos), "prototypes": protos,
                "rule": lambda v: -squared_distances(v, protos)}

    def task_logits(self, x_s: Tensor, y_s: Tensor, x_q: Tensor, n_way: int) -> Tensor:
        r"""Logits :math:`-\|f(x_q) - c_k\|^2` of one task ``[Q, N]``; :meth:`logits` takes one task or
        a batch (``[T, Q, N]``); the loss is the cross-entropy of their softmax (eq. 2)."""
        z = self.embed(torch.cat([x_s, x_q]))
        z_s, z_q = z[: x_s.shape[0]], z[x_s.shape[0]:]
        return -squared_distances(z_q, prototypes(z_s, y_s, n_way))

    def describe(self) -> str:
        return "ProtoNet"

    def __repr__(self) -> str:
        return f"ProtoNet(encoder={self.encoder.__class__.__name__})"


register("protonet", ProtoNet)
