"""Prototypical Networks (Snell, Swersky & Zemel, NeurIPS 2017)."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..batch import as_batch, check_labels, check_pair
from ..functional import check_finite
from .base import Learner, register


def prototypes(z_s: Tensor, y_s: Tensor, n_way: int) -> Tensor:
    r"""Class prototypes :math:`c_k = \frac{1}{|S_k|} \sum_{(x_i, y_i) \in S_k} f_\phi(x_i)` (eq. 1).

    Args:
        z_s: support embeddings ``[n_support, d]``; y_s: labels ``[n_support]`` in ``[0, n_way)``.
    Returns:
        ``[n_way, d]``. Raises ``ValueError`` if a class has no support example.
    """
    counts = torch.bincount(y_s, minlength=n_way)
    if bool((counts == 0).any()):
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"class(es) {missing} have no support examples (every class needs k_shot >= 1)")
    sums = torch.zeros(n_way, z_s.shape[-1], dtype=z_s.dtype, device=z_s.device).index_add_(0, y_s, z_s)
    return sums / counts.unsqueeze(1).to(z_s.dtype)


def squared_distances(z_q: Tensor, protos: Tensor) -> Tensor:
    r""":math:`\|z_q - c_k\|^2` for every query and class: ``[n_query, d] x [n_way, d] -> [n_query, n_way]``.

    Computed as a broadcast difference, not the expanded ``a^2 - 2ab + b^2`` form, so it is exact
    (never slightly negative) — the sizes here are small.
    """
    return (z_q.unsqueeze(1) - protos.unsqueeze(0)).pow(2).sum(-1)


class ProtoNet(Learner):
    r"""Prototypical Networks: classify a query by its distance to the class prototypes.

    :math:`p(y = k \mid x) \propto \exp(-\|f_\phi(x) - c_k\|^2)` (eq. 2), trained with the
    cross-entropy of the query set. ``encoder`` maps ``[n, *x_shape]`` to embeddings; anything
    after the batch dimension is flattened.

    BatchNorm: support and query of a task are embedded in one forward pass (as Snell et al.'s
    code does), so an encoder whose BatchNorm uses batch statistics is transductive over the episode.
    """

    name = "protonet"
    family = "metric-based"
    # Snell et al. 2017, sections 3.1-3.2 and the official code: Adam 1e-3 halved every 2,000
    # episodes, one episode per update; Omniglot: 60-way training episodes with 5 queries per class
    # (shots as at test); miniImageNet: 30-way (1-shot) / 20-way (5-shot), 15 queries. The paper
    # trains until validation stops improving: 20,000 episodes is metalib's bound, not the paper's.
    paper_settings = {
        **{("omniglot", n, k): dict(train_way=60, train_query=5, meta_batch=1, meta_lr=1e-3, lr_decay_every=2000,
                                    iterations=20_000) for n in (5, 20) for k in (1, 5)},
        **{("miniimagenet", 5, k): dict(train_way=30 if k == 1 else 20, train_query=15, meta_batch=1, meta_lr=1e-3,
                                        lr_decay_every=2000, iterations=20_000) for k in (1, 5)},
    }

    def __init__(self, encoder: nn.Module, loss_fn=None) -> None:
        if not isinstance(encoder, nn.Module):
            raise TypeError(f"encoder must be a torch.nn.Module, got {type(encoder).__name__}")
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

    def _task_logits(self, x_s: Tensor, y_s: Tensor, x_q: Tensor, n_way: int) -> Tensor:
        z = self.embed(torch.cat([x_s, x_q]))
        z_s, z_q = z[: x_s.shape[0]], z[x_s.shape[0]:]
        return -squared_distances(z_q, prototypes(z_s, y_s, n_way))

    def logits(self, x_s: Tensor, y_s: Tensor, x_q: Tensor, n_way: Optional[int] = None) -> Tensor:
        r"""Logits :math:`-\|f(x_q) - c_k\|^2`.

        Accepts one task (``x_s: [N*K, C, H, W]``, ``y_s: [N*K]``, ``x_q: [n_query, C, H, W]`` →
        ``[n_query, N]``) or a batch (``x_s: [T, N*K, ...]``, ``y_s: [T, N*K]``, ``x_q: [T, n_query, ...]``
        → ``[T, n_query, N]``): the labels' dimension tells which. ``n_way`` defaults to max label + 1.
        """
        batched = y_s.dim() == 2
        if y_s.dim() not in (1, 2):
            raise ValueError(f"y_s must be [n_support] or [tasks, n_support], got shape {tuple(y_s.shape)}")
        check_pair(x_s, y_s, "support", dims=y_s.dim())
        if x_s.shape[y_s.dim():] != x_q.shape[y_s.dim():]:
            raise ValueError(f"support inputs {tuple(x_s.shape)} and query inputs {tuple(x_q.shape)} differ in shape")
        n_way = check_labels(y_s, n_way, "support")
        if not batched:
            return self._task_logits(x_s, y_s, x_q, n_way)
        if x_s.shape[0] != x_q.shape[0]:
            raise ValueError(f"support has {x_s.shape[0]} tasks but query has {x_q.shape[0]}")
        return torch.stack([self._task_logits(*t, n_way) for t in zip(x_s, y_s, x_q)])

    def task_losses(self, batch: Sequence[Tensor], n_way: Optional[int] = None) -> Tuple[Tensor, Tensor]:
        """Per-task query cross-entropy ``[T]`` and logits ``[T, n_query, N]``."""
        x_s, y_s, x_q, y_q = as_batch(batch)
        n_way = check_labels(y_s, n_way, "support")
        check_labels(y_q, n_way, "query")
        logits = self.logits(x_s, y_s, x_q, n_way)
        losses = F.cross_entropy(logits.flatten(0, 1), y_q.flatten(), reduction="none")
        return losses.view(y_q.shape).mean(1), logits

    def meta_loss(self, batch: Sequence[Tensor], n_way: Optional[int] = None) -> Tensor:
        """Mean query cross-entropy over the batch of episodes (eq. 2 + cross-entropy)."""
        return self.task_losses(batch, n_way)[0].mean()

    def meta_backward(self, batch: Sequence[Tensor], loss_fn=None, with_predictions: bool = False):
        """``meta_loss(batch).backward()``; returns the loss (and the query logits ``[T, Q, N]``), detached.
        ``loss_fn`` must be None: the loss is the cross-entropy of eq. 2."""
        if loss_fn is not None:
            raise ValueError("ProtoNet's loss is the cross-entropy of its distance softmax; loss_fn must be None")
        losses, logits = self.task_losses(batch)
        loss = losses.mean()
        check_finite(loss.detach(), "the query loss")
        loss.backward()
        return (loss.detach(), logits.detach()) if with_predictions else loss.detach()

    def predict(self, x_s: Tensor, y_s: Tensor, x_q: Tensor, n_way: Optional[int] = None,
                steps: Optional[int] = None) -> Tensor:
        """:meth:`logits` (ProtoNet has no inner loop: ``steps`` must be None or 0)."""
        if steps not in (None, 0):
            raise ValueError(f"ProtoNet has no inner loop: steps must be None (or 0), got {steps!r}")
        return self.logits(x_s, y_s, x_q, n_way)

    def describe(self) -> str:
        return "ProtoNet"

    def __repr__(self) -> str:
        return f"ProtoNet(encoder={self.encoder.__class__.__name__})"


register("protonet", ProtoNet)
