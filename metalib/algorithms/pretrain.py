"""The baseline every meta-learner must beat: one network trained on all tasks jointly."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from ..batch import as_batch
from ..functional import LossFn, buffers_of, check_finite, forward
from .base import callable_loss, register
from .maml import MAML, MAMLConfig


class PretrainConfig(MAMLConfig):  # no field of its own: MAMLConfig's dataclass methods serve
    """A joint-training run: MAML's settings for the fine-tuning at test time; no meta-gradient through
    the inner loop, so nothing to take first-order or recompute."""

    unused = ("first_order", "recompute_steps")


class Pretrain(MAML):
    r"""Joint training ("pretrained" in Finn et al.'s sinusoid figure), fine-tuned at test time.

    Meta-training minimises the plain loss on every point of every task, with no inner loop:
    :math:`\min_\theta \sum_i \mathcal{L}_{\mathcal{T}_i}(f_\theta)`. At test time it adapts exactly
    like MAML (``adapt``/``task_losses``/``predict`` with ``steps`` SGD steps at ``inner_lr``), so
    the two are compared with the same fine-tuning procedure; only the initialisation differs.
    """

    name = "pretrain"
    short_name = "Pretrain"  # a table column's name
    config_class = PretrainConfig
    paper_settings = {}  # no paper of its own: the baseline of Finn et al.'s sinusoid figure

    def meta_loss(self, batch: Sequence[Tensor], loss_fn: Optional[LossFn] = None, steps: Optional[int] = None) -> Tensor:
        """Loss of the un-adapted model on all support and query points of the batch."""
        loss_fn = callable_loss(loss_fn, self.loss_fn)
        x_s, y_s, x_q, y_q = as_batch(batch)
        x = torch.cat([x_s, x_q], 1).flatten(0, 1)
        y = torch.cat([y_s, y_q], 1).flatten(0, 1)
        with self._bn_context():
            loss = loss_fn(forward(self.model, self.initial_params(), buffers_of(self.model), x), y)
        check_finite(loss.detach(), "the joint-training loss")
        return loss

    def meta_gradient(self, batch: Sequence[Tensor], loss_fn: Optional[LossFn] = None, steps: Optional[int] = None):
        """``meta_loss(batch, loss_fn).backward()`` (one graph: there is no per-task inner loop); returns the
        loss and the un-adapted model's query predictions ``[T, n_query, ...]``."""
        loss = self.meta_loss(batch, loss_fn, steps)
        loss.backward()
        x_q = as_batch(batch).x_q
        with torch.no_grad(), self._bn_context():
            pred = forward(self.model, self.initial_params(), buffers_of(self.model), x_q.flatten(0, 1))
        return loss.detach(), pred.view(*x_q.shape[:2], *pred.shape[1:])

    def describe(self) -> str:
        return "Pretrain (joint training, fine-tuned)"


    def __repr__(self) -> str:
        return f"Pretrain(fine-tune lr={self.inner_lr}, steps={self.inner_steps})"


register("pretrain", Pretrain)
