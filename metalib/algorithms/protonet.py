"""Prototypical Networks (Snell, Swersky & Zemel, NeurIPS 2017)."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..batch import as_batch, check_labels, check_pair


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


class ProtoNet:
    r"""Prototypical Networks: classify a query by its distance to the class prototypes.

    :math:`p(y = k \mid x) \propto \exp(-\|f_\phi(x) - c_k\|^2)` (eq. 2), trained with the
    cross-entropy of the query set. ``encoder`` maps ``[n, *x_shape]`` to embeddings; anything
    after the batch dimension is flattened.

    BatchNorm: support and query of a task are embedded in one forward pass (as Snell et al.'s
    code does), so an encoder whose BatchNorm uses batch statistics is transductive over the episode.
    """

    def __init__(self, encoder: nn.Module) -> None:
        if not isinstance(encoder, nn.Module):
            raise TypeError(f"encoder must be a torch.nn.Module, got {type(encoder).__name__}")
        self.encoder = encoder

    def embed(self, x: Tensor) -> Tensor:
        """``[n, *x_shape] -> [n, d]``."""
        return self.encoder(x).flatten(1)

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

    def __repr__(self) -> str:
        return f"ProtoNet(encoder={self.encoder.__class__.__name__})"
