"""Reptile (Nichol, Achiam & Schulman, 2018: "On First-Order Meta-Learning Algorithms")."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.func import vmap

from ..batch import as_batch
from ..engine import choose_vmap
from ..functional import (LossFn, Params, adam_step, batchnorm_context, buffers_of, check_finite, check_positive,
                          check_steps, forward, params_of, sgd_step, support_grad)
from .base import Learner, as_task_batch, callable_loss, check_network, check_one_task, register
from .settings import FewShotConfig, setting


@dataclass(kw_only=True)
class ReptileConfig(FewShotConfig):
    """A Reptile run: the inner optimiser and the outer step ε (SGD; ``meta_lr`` is not used)."""

    inner_lr: float = setting(0.02, "inner-loop step size", low=0)
    inner_steps: int = setting(5, "inner steps in training", low=0)
    test_inner_steps: int = setting(0, "inner steps at validation and test (0: inner_steps)", low=0)
    outer_lr: float = setting(0.1, "the meta step size epsilon", low=0)
    outer_lr_final: float = setting(0.0, "what epsilon is annealed to", low=0)
    anneal_iterations: int = setting(0, "iterations epsilon is annealed over (0: the run's)", low=0)
    inner_optimizer: str = setting("adam", "the inner optimiser: adam (the paper's) or sgd")
    batching: str = setting("auto", "auto, loop (a task loop) or vmap (batched)")
    bn_mode: str = setting("transductive", "BatchNorm: transductive (batch statistics) or module")
    unused = ("meta_lr", "lr_decay_every", "lr_decay", "lr_schedule")  # the outer step is SGD at outer_lr


class Reptile(Learner):
    r"""Reptile: move the initialisation towards the weights each task ends up with.

    Per task :math:`i`, run ``inner_steps`` steps of SGD (or Adam) on its support set from
    :math:`\theta`, giving :math:`\phi_i`; then update (Algorithm 2 of the paper, batched version)

    .. math:: \theta \leftarrow \theta + \epsilon \cdot \frac{1}{T} \sum_{i=1}^{T} (\phi_i - \theta)

    with :math:`\epsilon` = ``outer_lr``, optionally annealed linearly to 0 as in the paper's
    experiments (:meth:`annealed_outer_lr`). No second derivatives are ever needed.

    To the trainer, Reptile is SGD on the "Reptile gradient": :meth:`meta_backward` puts
    :math:`\theta - \bar\phi` into ``.grad`` and :meth:`outer_optimizer` is ``torch.optim.SGD``
    with learning rate :math:`\epsilon` (annealed by :meth:`outer_schedule`), which is the update above.

    Args:
        model: any ``nn.Module``.
        inner_lr: inner step size (SGD) or Adam's learning rate.
        inner_steps: k, the number of inner steps per task.
        outer_lr: :math:`\epsilon`, the meta step size.
        inner_optimizer: ``"sgd"`` or ``"adam"`` (the official code uses Adam with beta1 = 0).
        batching: ``"auto"``, ``"loop"`` or ``"vmap"`` over the tasks of a batch, as in :class:`metalib.MAML`.
        bn_mode: as in :class:`metalib.MAML` (``"transductive"``: batch statistics always).
        outer_lr_final: the value :math:`\epsilon` is annealed to by the end of training (0 in the paper).
        anneal_iterations: the iterations the annealing takes (0: the whole run).
        loss_fn: the task loss used when a call passes none (default: cross-entropy).
        eval_steps: inner steps at test time (default ``inner_steps``; the paper uses many more).
    """

    name = "reptile"
    family = "optimisation-based"
    config_class = ReptileConfig
    needs_head = True
    # Nichol et al. 2018, the supervised-reptile README's non-transductive commands (see
    # docs/references.md): Adam inner optimiser with beta1 = 0, meta-step annealed linearly to 0.
    # Difference: the official inner loop takes mini-batch steps (inner batch 5-25) over the
    # train-shots; metalib's takes full-batch steps on them. train_query=1: the query set only
    # monitors the loss (Reptile never trains on it).
    paper_settings = {
        key: ReptileConfig(**s, train_query=1, inner_optimizer="adam", outer_lr_final=0.0) for key, s in {
            ("omniglot", 5, 5): dict(train_shot=10, inner_steps=5, inner_lr=0.0015, outer_lr=0.7, meta_batch=5,
                                     iterations=100_000, test_inner_steps=100),
            ("omniglot", 5, 1): dict(train_shot=12, inner_steps=12, inner_lr=0.00044, outer_lr=1.0, meta_batch=3,
                                     iterations=200_000, test_inner_steps=86),
            ("omniglot", 20, 1): dict(train_shot=9, inner_steps=12, inner_lr=0.00046, outer_lr=1.0, meta_batch=3,
                                      iterations=200_000, test_inner_steps=97),
            ("omniglot", 20, 5): dict(train_shot=12, inner_steps=12, inner_lr=0.00046, outer_lr=1.0, meta_batch=3,
                                      iterations=200_000, test_inner_steps=97),
            ("miniimagenet", 5, 5): dict(train_shot=15, inner_steps=8, inner_lr=0.00022, outer_lr=1.0, meta_batch=5,
                                         iterations=200_000, test_inner_steps=88),
            ("miniimagenet", 5, 1): dict(train_shot=12, inner_steps=19, inner_lr=0.0012, outer_lr=0.235, meta_batch=2,
                                         iterations=200_000, test_inner_steps=55),
        }.items()
    }
    # issue #29: a schedule for ~30 CPU-minutes on one thread, chosen on the validation split
    # (benchmarks/README.md "Time to accuracy"; grid and results in benchmarks/results/budget_search.json):
    # epsilon 0.5 annealed linearly to 0 over 1,900 iterations of 3 tasks (one task per update stayed flat:
    # benchmarks/README.md), 5 train-shots per class
    budget_settings = {
        ("omniglot", 5, 1): dataclasses.replace(paper_settings[("omniglot", 5, 1)], train_way=5, train_shot=5, train_query=1, meta_batch=3, inner_steps=5,
                                          inner_lr=0.001, test_inner_steps=50, outer_lr=0.5, outer_lr_final=0.0,
                                          anneal_iterations=1900, iterations=1900),
    }

    def __init__(
        self,
        model: nn.Module,
        inner_lr: float = 0.02,
        inner_steps: int = 5,
        outer_lr: float = 0.1,
        inner_optimizer: Literal["sgd", "adam"] = "sgd",
        batching: Literal["auto", "loop", "vmap"] = "auto",
        bn_mode: Literal["transductive", "module"] = "transductive",
        outer_lr_final: float = 0.0,
        anneal_iterations: int = 0,
        loss_fn: Optional[LossFn] = None,
        eval_steps: Optional[int] = None,
    ) -> None:
        check_network(model)
        super().__init__(loss_fn)
        self.model = model
        self.inner_lr = check_positive("inner_lr", inner_lr)
        self.inner_steps = check_steps("inner_steps", inner_steps)
        self.outer_lr = check_positive("outer_lr", outer_lr, allow_zero=True)
        self.outer_lr_final = check_positive("outer_lr_final", outer_lr_final, allow_zero=True)
        if isinstance(anneal_iterations, bool) or not isinstance(anneal_iterations, int) or anneal_iterations < 0:
            raise ValueError(f"anneal_iterations must be an integer >= 0, got {anneal_iterations!r}")
        self.anneal_iterations = anneal_iterations
        self.eval_steps = self.inner_steps if eval_steps is None else check_steps("eval_steps", eval_steps)
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

    @property
    def stateless_adaptation(self) -> bool:
        """SGD steps depend on the current weights only; Adam's carry its moments."""
        return self.inner_optimizer == "sgd"

    def initial_params(self) -> Params:
        """The initialisation :math:`\\theta` as ``{name: tensor}`` (the model's own tensors)."""
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
        loss_fn: Optional[LossFn] = None,
        steps: Optional[int] = None,
        params: Optional[Params] = None,
    ) -> Params:
        """Train a copy of the weights on one task's support set; returns the detached :math:`\\phi`.

        Args:
            x_s: ``[n_support, *x_shape]``; y_s: ``[n_support, *y_shape]`` (one task).
        """
        self._set_loss_fn(loss_fn)
        check_one_task(x_s, y_s)
        self.check_data(x_s, y_s, "support", self._loss_fn)
        steps = self.inner_steps if steps is None else check_steps("steps", steps)
        theta = {k: p.detach() for k, p in (self.initial_params() if params is None else params).items()}
        with self._bn_context(), torch.no_grad():
            phi, losses = self._inner(theta, buffers_of(self.model), x_s, y_s, steps)
        check_finite(losses, "the inner-loop (support) loss")
        return phi

    def _set_loss_fn(self, loss_fn) -> None:
        self._loss_fn = callable_loss(loss_fn, self.loss_fn)

    def forward(self, params: Params, x: Tensor) -> Tensor:
        """Predictions of the model with ``params`` on ``x``; also ``learner(params, x)``."""
        with self._bn_context():
            return forward(self.model, params, buffers_of(self.model), x)

    @torch.no_grad()
    def predict(self, x_s: Tensor, y_s: Tensor, x_q: Tensor, n_way: Optional[int] = None,
                steps: Optional[int] = None) -> Tensor:
        """Adapt a copy of θ to each task's support set (``steps``, default :attr:`eval_steps`) and
        predict its queries: ``[Q, N]`` for one task, ``[T, Q, N]`` for a batch."""
        x_s, y_s, x_q, batched = as_task_batch(x_s, y_s, x_q)
        if n_way is not None:
            self.check_task(n_way)
        steps = self.eval_steps if steps is None else steps
        out = [self.forward(self.adapt(xs, ys, steps=steps), xq) for xs, ys, xq in zip(x_s, y_s, x_q)]
        return torch.stack(out) if batched else out[0]

    @torch.no_grad()
    def meta_gradient(self, batch: Sequence[Tensor], loss_fn: Optional[LossFn] = None):
        """Adapt to every task (support sets only, as in the paper) and put the "Reptile gradient"
        :math:`\\theta - \\bar\\phi` into each parameter's ``.grad``: ``torch.optim.SGD`` with
        learning rate :math:`\\epsilon` then takes exactly the Reptile step.

        Returns:
            the mean post-adaptation query loss (0-dim; the queries are only monitored) and the adapted
            models' query predictions ``[T, n_query, ...]``.
        """
        self._set_loss_fn(loss_fn)
        loss_fn = self._loss_fn
        x_s, y_s, x_q, y_q = as_batch(batch)
        self.check_data(x_s, y_s, "support", loss_fn)
        self.check_data(x_q, y_q, "query", loss_fn)
        theta = self.initial_params()
        start = {k: p.detach() for k, p in theta.items()}
        buffers, steps, model = buffers_of(self.model), self.inner_steps, self.model

        def one_task(xs, ys, xq, yq):
            phi, inner = self._inner(start, buffers, xs, ys, steps)
            pred = forward(model, phi, buffers, xq)
            return phi, inner, loss_fn(pred, yq), pred

        with self._bn_context():
            if self.uses_vmap():
                phis, inner, query, preds = vmap(one_task, randomness="different")(x_s, y_s, x_q, y_q)
            else:
                outs = [one_task(*t) for t in zip(x_s, y_s, x_q, y_q)]
                phis = {k: torch.stack([o[0][k] for o in outs]) for k in start}
                inner, query, preds = (torch.stack([o[i] for o in outs]) for i in (1, 2, 3))
        check_finite(inner, "the inner-loop (support) loss")
        for k, p in theta.items():
            p.grad = p - phis[k].mean(0)  # theta - mean(phi)
        return query.mean(), preds

    @torch.no_grad()
    def meta_step(
        self, batch: Sequence[Tensor], loss_fn: Optional[LossFn] = None, outer_lr: Optional[float] = None
    ) -> Tensor:
        """One Reptile meta-update on the model, in place, from a batch of tasks:
        :meth:`meta_backward`, then :math:`\\theta \\leftarrow \\theta - \\epsilon\\,(\\theta - \\bar\\phi)`.

        Returns:
            the mean post-adaptation query loss (a 0-dim tensor).
        """
        eps = self.outer_lr if outer_lr is None else check_positive("outer_lr", outer_lr, allow_zero=True)
        loss = self.meta_backward(batch, loss_fn)
        for p in self.initial_params().values():
            p.sub_(eps * p.grad)  # theta + eps * mean(phi - theta)
        return loss

    def outer_optimizer(self, lr: float) -> torch.optim.Optimizer:
        """``torch.optim.SGD`` at :math:`\\epsilon` = ``outer_lr`` (``lr``, Adam's rate for the others, is unused)."""
        return torch.optim.SGD(self.parameters(), lr=self.outer_lr)

    def outer_schedule(self, optimizer: torch.optim.Optimizer, iterations: int):
        """:math:`\\epsilon` annealed linearly from ``outer_lr`` to ``outer_lr_final`` over ``anneal_iterations``
        (0: the run's ``iterations``), then held there."""
        if self.outer_lr == 0:
            return None
        total = self.anneal_iterations or iterations
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda it: self.annealed_outer_lr(it, total, self.outer_lr_final) / self.outer_lr)

    def annealed_outer_lr(self, iteration: int, total: int, final: float = 0.0) -> float:
        """:math:`\\epsilon` annealed linearly from ``outer_lr`` to ``final`` over ``total``
        iterations, as in the paper's Omniglot and miniImageNet runs."""
        frac = min(max(iteration / max(total, 1), 0.0), 1.0)
        return (1 - frac) * self.outer_lr + frac * final

    def describe(self) -> str:
        return "Reptile"

    def __repr__(self) -> str:
        return (
            f"Reptile(inner_lr={self.inner_lr}, inner_steps={self.inner_steps}, outer_lr="
            f"{self.outer_lr}, inner_optimizer={self.inner_optimizer!r}, batching={self.batching!r})"
        )


register("reptile", Reptile)
