"""Reptile (Nichol, Achiam & Schulman, 2018: "On First-Order Meta-Learning Algorithms")."""
from __future__ import annotations

from typing import Literal, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.func import vmap

from ..batch import as_batch, check_pair
from ..functional import (
    LossFn, Params, adam_step, batchnorm_context, buffers_of, check_finite, check_positive,
    check_steps, choose_vmap, forward, params_of, sgd_step, support_grad,
)


class Reptile:
    r"""Reptile: move the initialisation towards the weights each task ends up with.

    Per task :math:`i`, run ``inner_steps`` steps of SGD (or Adam) on its support set from
    :math:`\theta`, giving :math:`\phi_i`; then update (Algorithm 2 of the paper, batched version)

    .. math:: \theta \leftarrow \theta + \epsilon \cdot \frac{1}{T} \sum_{i=1}^{T} (\phi_i - \theta)

    with :math:`\epsilon` = ``outer_lr``, optionally annealed linearly to 0 as in the paper's
    experiments (:meth:`annealed_outer_lr`). No second derivatives are ever needed.

    Args:
        model: any ``nn.Module``.
        inner_lr: inner step size (SGD) or Adam's learning rate.
        inner_steps: k, the number of inner steps per task.
        outer_lr: :math:`\epsilon`, the meta step size.
        inner_optimizer: ``"sgd"`` or ``"adam"`` (the official code uses Adam with beta1 = 0).
        batching: ``"auto"``, ``"loop"`` or ``"vmap"`` over the tasks of a batch, as in :class:`metalib.MAML`.
        bn_mode: as in :class:`metalib.MAML` (``"transductive"``: batch statistics always).
    """

    def __init__(
        self,
        model: nn.Module,
        inner_lr: float = 0.02,
        inner_steps: int = 5,
        outer_lr: float = 0.1,
        inner_optimizer: Literal["sgd", "adam"] = "sgd",
        batching: Literal["auto", "loop", "vmap"] = "auto",
        bn_mode: Literal["transductive", "module"] = "transductive",
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.inner_lr = check_positive("inner_lr", inner_lr)
        self.inner_steps = check_steps("inner_steps", inner_steps)
        self.outer_lr = check_positive("outer_lr", outer_lr, allow_zero=True)
        if inner_optimizer not in ("sgd", "adam"):
            raise ValueError(f"inner_optimizer must be 'sgd' or 'adam', got {inner_optimizer!r}")
        self.inner_optimizer, self.batching, self.bn_mode = inner_optimizer, batching, bn_mode
        batchnorm_context(model, bn_mode)  # validates bn_mode
        choose_vmap(model, batching, False)  # validates batching

    def _bn_context(self):
        return batchnorm_context(self.model, self.bn_mode)

    def uses_vmap(self) -> bool:
        """Whether a batch of tasks is adapted with ``vmap`` (MLPs) or one by one (conv nets)."""
        return choose_vmap(self.model, self.batching, False, self.bn_mode)

    def parameters(self) -> Params:
        return params_of(self.model)

    def _inner(self, phi: Params, buffers: Params, x_s: Tensor, y_s: Tensor, steps: int):
        """k steps of SGD/Adam on one task; a pure function (vmap-able). Returns (phi, losses [steps])."""

        state: dict = {}
        losses = []
        for _ in range(steps):
            # torch.func.grad under vmap, torch.autograd.grad on the task loop (less overhead)
            grads, loss = support_grad(self.model, phi, buffers, x_s, y_s, self._loss_fn, create_graph=False)
            if self.inner_optimizer == "adam":
                phi = adam_step(phi, grads, state, self.inner_lr)
            else:
                phi = sgd_step(phi, grads, self.inner_lr)
            losses.append(loss)
        return phi, (torch.stack(losses) if losses else x_s.new_zeros(0))

    def adapt(
        self,
        x_s: Tensor,
        y_s: Tensor,
        loss_fn: LossFn,
        steps: Optional[int] = None,
        params: Optional[Params] = None,
    ) -> Params:
        """Train a copy of the weights on one task's support set; returns the detached :math:`\\phi`.

        Args:
            x_s: ``[n_support, *x_shape]``; y_s: ``[n_support, *y_shape]`` (one task).
        """
        self._set_loss_fn(loss_fn)
        check_pair(x_s, y_s, "support")
        steps = self.inner_steps if steps is None else check_steps("steps", steps)
        theta = {k: p.detach() for k, p in (self.parameters() if params is None else params).items()}
        with self._bn_context(), torch.no_grad():
            phi, losses = self._inner(theta, buffers_of(self.model), x_s, y_s, steps)
        check_finite(losses, "the inner-loop (support) loss")
        return phi

    def _set_loss_fn(self, loss_fn) -> None:
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable as loss_fn(prediction, target), got {loss_fn!r}")
        self._loss_fn = loss_fn

    def forward(self, params: Params, x: Tensor) -> Tensor:
        """Predictions of the model with ``params`` on ``x``."""
        with self._bn_context():
            return forward(self.model, params, buffers_of(self.model), x)

    __call__ = forward

    @torch.no_grad()
    def meta_step(
        self, batch: Sequence[Tensor], loss_fn: LossFn, outer_lr: Optional[float] = None
    ) -> Tensor:
        """One Reptile meta-update on the model, in place, from a batch of tasks.

        Only the support sets are trained on (as in the paper); the query sets are evaluated
        with the adapted weights and their mean loss is returned, for monitoring.

        Also leaves :math:`\\theta - \\bar\\phi` in each parameter's ``.grad``: the "Reptile
        gradient", so that ``torch.optim.SGD(lr=outer_lr)`` would take the very same step.
        Returns:
            the mean post-adaptation query loss (a 0-dim tensor).
        """
        self._set_loss_fn(loss_fn)
        x_s, y_s, x_q, y_q = as_batch(batch)
        eps = self.outer_lr if outer_lr is None else check_positive("outer_lr", outer_lr, allow_zero=True)
        theta = self.parameters()
        start = {k: p.detach() for k, p in theta.items()}
        buffers, steps, model = buffers_of(self.model), self.inner_steps, self.model

        def one_task(xs, ys, xq, yq):
            phi, inner = self._inner(start, buffers, xs, ys, steps)
            return phi, inner, loss_fn(forward(model, phi, buffers, xq), yq)

        with self._bn_context():
            if self.uses_vmap():
                phis, inner, query = vmap(one_task, randomness="different")(x_s, y_s, x_q, y_q)
            else:
                outs = [one_task(*t) for t in zip(x_s, y_s, x_q, y_q)]
                phis = {k: torch.stack([o[0][k] for o in outs]) for k in start}
                inner, query = torch.stack([o[1] for o in outs]), torch.stack([o[2] for o in outs])
        check_finite(inner, "the inner-loop (support) loss")
        for k, p in theta.items():
            p.grad = p - phis[k].mean(0)  # theta - mean(phi)
            p.sub_(eps * p.grad)          # theta + eps * mean(phi - theta)
        return query.mean()

    def annealed_outer_lr(self, iteration: int, total: int, final: float = 0.0) -> float:
        """:math:`\\epsilon` annealed linearly from ``outer_lr`` to ``final`` over ``total``
        iterations, as in the paper's Omniglot and miniImageNet runs."""
        frac = min(max(iteration / max(total, 1), 0.0), 1.0)
        return (1 - frac) * self.outer_lr + frac * final

    def __repr__(self) -> str:
        return (
            f"Reptile(inner_lr={self.inner_lr}, inner_steps={self.inner_steps}, outer_lr="
            f"{self.outer_lr}, inner_optimizer={self.inner_optimizer!r}, batching={self.batching!r})"
        )
