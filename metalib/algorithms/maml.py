r"""MAML and first-order MAML (Finn, Abbeel & Levine, ICML 2017).

The algorithm is the two functions below: :func:`adapt_task` (the inner loop, eq. 1) and
:func:`query_loss` (the query loss after it on one task, eq. 2-3). The meta-objective is their mean
over a batch of tasks, :math:`\frac{1}{T}\sum_i \mathcal{L}^{q}_{\mathcal{T}_i}(f_{\phi_i(\theta)})`,
minimised over :math:`\theta` by the outer optimiser (Adam). First-order MAML is ``first_order=True``;
Meta-SGD (``metasgd.py``) is ``lr`` a tensor per parameter; ANIL (``anil.py``) is ``theta`` the head
only. The class :class:`MAML` runs them on a batch (:mod:`metalib.engine`: vmap or a task loop).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .. import engine
from ..batch import as_batch
from ..functional import (
    LearningRate, LossFn, Params, buffers_of, check_finite, check_positive, check_steps, forward, params_of, sgd_step,
    support_grad,
)
from .base import Learner, as_task_batch, callable_loss, check_network, check_one_task, register
from .settings import FewShotConfig, setting


def adapt_task(model: nn.Module, theta: Params, buffers: Params, x_s: Tensor, y_s: Tensor, loss_fn: LossFn,
               lr: LearningRate, steps: int, first_order: bool = False) -> Tuple[Params, Tensor]:
    r"""The inner loop on one task (eq. 1), ``steps`` times from :math:`\phi_0 = \theta`:
    :math:`\phi \leftarrow \phi - \alpha \nabla_\phi \mathcal{L}^{s}(f_\phi)` on the support set
    ``x_s [n_s, ...]``, ``y_s [n_s]``. Second order, :math:`\phi` stays a differentiable function of
    :math:`\theta`; ``first_order``: each inner gradient is a constant. Returns ``(phi, support losses [steps])``."""
    phi, losses = theta, []
    for _ in range(steps):
        grads, loss = support_grad(model, phi, buffers, x_s, y_s, loss_fn, create_graph=not first_order)
        phi = sgd_step(phi, grads, lr)                      # phi - lr * grad (lr: a number or a dict)
        losses.append(loss)
    return phi, torch.stack(losses) if losses else x_s.new_zeros(0)


def query_loss(model: nn.Module, theta: Params, buffers: Params, task: Sequence[Tensor], loss_fn: LossFn,
               lr: LearningRate, steps: int, first_order: bool = False) -> Tuple[Tensor, Tensor, Tensor]:
    r"""MAML's objective on one task ``(x_s, y_s, x_q, y_q)``: the query loss of the adapted model,
    :math:`\mathcal{L}^{q}_{\mathcal{T}}(f_{\phi(\theta)})` with :math:`\phi(\theta)` = :func:`adapt_task`.
    Its gradient with respect to :math:`\theta` is the task's meta-gradient.
    Returns ``(query loss (0-dim), query predictions [n_q, ...], support losses [steps])``."""
    x_s, y_s, x_q, y_q = task
    phi, support_losses = adapt_task(model, theta, buffers, x_s, y_s, loss_fn, lr, steps, first_order)
    pred = forward(model, phi, buffers, x_q)
    return loss_fn(pred, y_q), pred, support_losses


Batching = Literal["auto", "loop", "vmap"]
BNMode = Literal["transductive", "module"]


@dataclass(kw_only=True)
class MAMLConfig(FewShotConfig):
    """A MAML run: the run's fields and MAML's own (passed to :class:`MAML`; flags of train_fewshot.py)."""

    inner_lr: float = setting(0.01, "inner-loop step size alpha", low=0)
    inner_steps: int = setting(1, "inner steps in training", low=0)
    test_inner_steps: int = setting(0, "inner steps at validation and test (0: inner_steps)", low=0)
    first_order: bool = setting(False, "first-order MAML: no second-order terms")
    batching: str = setting("auto", "auto, loop (a task loop) or vmap (batched; benchmarks/README.md)")
    recompute_steps: bool = setting(False, "recompute the inner steps in the backward pass (less memory)")
    bn_mode: str = setting("transductive", "BatchNorm: transductive (batch statistics) or module")


class MAML(Learner):
    r"""Model-Agnostic Meta-Learning.

    For each task :math:`\mathcal{T}_i` the inner loop takes ``inner_steps`` SGD steps from the
    meta-parameters :math:`\theta` on the support set (eq. 1 of the paper):
    :math:`\phi_i = \theta - \alpha \nabla_\theta \mathcal{L}^{s}_{\mathcal{T}_i}(f_\theta)`; the
    meta-objective is the mean query loss of the adapted models (eq. 2-3):
    :math:`\min_\theta \frac{1}{T}\sum_i \mathcal{L}^{q}_{\mathcal{T}_i}(f_{\phi_i(\theta)})`.
    Its gradient flows *through* the inner steps (second-order) unless ``first_order=True`` (FOMAML).

    The learner holds no state of its own besides the model: θ lives in ``model`` and is read with
    :func:`metalib.functional.params_of` on every call (:meth:`initial_params`), so an outer
    optimiser built on ``learner.parameters()`` (= ``model.parameters()``) works as usual.

    Args:
        model: any ``nn.Module``; ``model(x)`` maps a batch of inputs to predictions.
        inner_lr: :math:`\alpha`.
        inner_steps: inner SGD steps at meta-training (override per call with ``steps=``).
        first_order: drop the second-order terms (FOMAML).
        batching: how a batch of tasks is processed. ``"loop"`` — one task after another;
            ``"vmap"`` — the batched path: all tasks at once with :func:`torch.func.vmap`, BatchNorm
            computed with plain tensor operations (:func:`metalib.engine.plain_batchnorm`),
            which makes its second-order meta-gradient equal the loop's (``F.batch_norm`` under
            vmap gives a wrong one); ``"auto"`` (default) — ``vmap`` for models without
            convolutions or BatchNorm (on the sinusoid MLP it is several times faster); for conv
            nets, the path :data:`metalib.engine.BATCHED_BY_DEFAULT` names for the model's
            device (chosen from the measurements in ``benchmarks/README.md``: the loop on CPU).
            The loop takes its inner gradients with :func:`torch.autograd.grad` (the same
            meta-gradient as :func:`torch.func.grad`, which vmap needs, for less per-step
            overhead: ``metalib.functional.inner_loop``'s ``engine``).
        bn_mode: ``"transductive"`` (default, as the original MAML code): every BatchNorm layer uses
            the statistics of the batch it sees — support at adaptation, query at prediction — at
            meta-training *and* meta-test time; running statistics are ignored and never updated.
            ``"module"``: BatchNorm behaves as the module is configured (``train()``/``eval()``).
        recompute_steps: opt-in gradient checkpointing over the inner steps of the second-order
            meta-gradient (:func:`metalib.engine.inner_loop_checkpointed`): each inner step is
            recomputed during ``backward()`` instead of kept, giving the same meta-gradient with
            memory that grows more slowly with ``inner_steps``, for about one extra
            forward+backward per step. Implies the task loop (not vmap); has no effect with
            ``first_order`` (FOMAML keeps no inner-step graph anyway). Default ``False``.
        loss_fn: the task loss used when a call passes none (default: cross-entropy; the
            sinusoid notebooks pass ``F.mse_loss``).
        eval_steps: inner steps at test time (:meth:`predict`, :func:`metalib.evaluation.evaluate`);
            default ``inner_steps``.
    """

    name = "maml"
    family = "optimisation-based"
    config_class = MAMLConfig
    needs_head = True
    # Finn et al. 2017 (appendix A.1) and the official code (main.py; see docs/references.md):
    # Omniglot 5-way: inner lr 0.4, 1 step (3 at test), meta-batch 32, 60,000 iterations (the current
    # code; older usage text said 40,000); 20-way: lr 0.1, 5 steps (5 at test), meta-batch 16;
    # queries = K per class (update_batch_size); miniImageNet: lr 0.01, 5 steps (10 at test),
    # meta-batch 4, 15 queries, 32 filters, 60,000 iterations. Adam 1e-3, second order.
    paper_settings = {
        **{("omniglot", 5, k): MAMLConfig(inner_lr=0.4, inner_steps=1, test_inner_steps=3, meta_batch=32,
                                          iterations=60_000, train_query=k, meta_lr=1e-3) for k in (1, 5)},
        **{("omniglot", 20, k): MAMLConfig(inner_lr=0.1, inner_steps=5, test_inner_steps=5, meta_batch=16,
                                           iterations=60_000, train_query=k, meta_lr=1e-3) for k in (1, 5)},
        **{("miniimagenet", 5, k): MAMLConfig(inner_lr=0.01, inner_steps=5, test_inner_steps=10, meta_batch=4,
                                              iterations=60_000, train_query=15, meta_lr=1e-3, hidden=32)
           for k in (1, 5)},
    }
    # issue #29: a schedule for ~30 CPU-minutes on one thread, chosen on the validation split
    # (benchmarks/README.md "Time to accuracy"; grid and results in benchmarks/results/budget_search.json):
    # Adam 0.002 halved every 6,200 iterations, one 5-way 1-shot episode (15 queries/class) per update.
    # First-order MAML has its own search and key: Adam 0.004, cosine to x0.02 over 9,600 iterations.
    budget_settings = {
        ("omniglot", 5, 1): dataclasses.replace(paper_settings[("omniglot", 5, 1)], train_way=5, train_shot=1, train_query=15, meta_batch=1, meta_lr=0.002,
                                 lr_schedule="step", lr_decay_every=6200, lr_decay=0.5, iterations=24800),
        ("omniglot", 5, 1, "fomaml"): dataclasses.replace(paper_settings[("omniglot", 5, 1)], train_way=5, train_shot=1, train_query=15, meta_batch=1, meta_lr=0.004,
                                           lr_schedule="cosine", lr_decay_every=9600, lr_decay=0.02, iterations=9600,
                                           first_order=True),
    }

    def __init__(self, model: nn.Module, inner_lr: float = 0.01, inner_steps: int = 1, first_order: bool = False,
                 batching: Batching = "auto", bn_mode: BNMode = "transductive", recompute_steps: bool = False,
                 loss_fn: Optional[LossFn] = None, eval_steps: Optional[int] = None) -> None:
        check_network(model)
        super().__init__(loss_fn)
        self.model = model
        self.inner_lr = check_positive("inner_lr", inner_lr)
        self.inner_steps = check_steps("inner_steps", inner_steps)
        self.first_order = bool(first_order)
        self.bn_mode, self.batching = bn_mode, batching
        engine.bn_context(model, bn_mode)  # validates bn_mode
        engine.choose_vmap(model, batching, False)  # validates batching
        self.recompute_steps = bool(recompute_steps)
        if self.recompute_steps and batching == "vmap":
            raise ValueError("recompute_steps=True runs the tasks in a loop; it cannot be combined with batching='vmap'")
        self.eval_steps = self.inner_steps if eval_steps is None else check_steps("eval_steps", eval_steps)

    def _bn_context(self, plain: bool = False):
        """The BatchNorm mode (``bn_mode``); ``plain``: BatchNorm as plain tensor ops (the vmap path)."""
        return engine.bn_context(self.model, self.bn_mode, plain=plain)

    def uses_vmap(self) -> bool:
        """Whether a batch of tasks is processed with ``vmap`` (see ``batching``; ``"auto"``
        depends on the device the model is on)."""
        if self.recompute_steps and not self.first_order:
            return False
        return engine.choose_vmap(self.model, self.batching, not self.first_order, self.bn_mode, device=self.device)

    # ------------------------------------------------------------------ the one thing ANIL and Meta-SGD change
    def inner_params(self, theta: Params, buffers: Params) -> Tuple[Params, Params]:
        """``(what the inner loop adapts, what it holds fixed)``: θ and the buffers (ANIL: the head, and
        the body with the buffers)."""
        return theta, buffers

    def step_size(self) -> LearningRate:
        """The inner step size α: ``inner_lr`` (Meta-SGD: a tensor per parameter entry)."""
        return self.inner_lr

    def task_loss(self, theta: Params, buffers: Params, task: Sequence[Tensor], loss_fn: LossFn, steps: int,
                  first_order: bool) -> Tuple[Tensor, Tensor, Tensor]:
        """:func:`query_loss` of one task with this learner's :meth:`inner_params` and :meth:`step_size`
        (recomputing each inner step during ``backward()`` with ``recompute_steps``: the same values)."""
        start, fixed = self.inner_params(theta, buffers)
        if self.recompute_steps and not first_order:
            return engine.query_loss_checkpointed(self.model, start, fixed, task, loss_fn, self.step_size(), steps,
                                                  context=self._bn_context)
        return query_loss(self.model, start, fixed, task, loss_fn, self.step_size(), steps, first_order)

    def _adapt(self, theta: Params, buffers: Params, x_s: Tensor, y_s: Tensor, loss_fn: LossFn, steps: int,
               first_order: bool) -> Tuple[Params, Params, Tensor]:
        """:func:`adapt_task` on :meth:`inner_params`: ``(adapted, fixed, support losses)``."""
        start, fixed = self.inner_params(theta, buffers)
        if self.recompute_steps and not first_order:
            phi, losses = engine.inner_loop_checkpointed(self.model, start, fixed, x_s, y_s, loss_fn, self.step_size(),
                                                         steps, context=self._bn_context)
        else:
            phi, losses = adapt_task(self.model, start, fixed, x_s, y_s, loss_fn, self.step_size(), steps, first_order)
        return phi, fixed, losses

    # ------------------------------------------------------------------ public API
    def initial_params(self) -> Params:
        """The initialisation :math:`\\theta` that adaptation starts from, as ``{name: tensor}``
        (the model's own parameter tensors, not copies: detach/clone them for a before/after comparison)."""
        return params_of(self.model)

    def adapt(self, x_s: Tensor, y_s: Tensor, loss_fn: Optional[LossFn] = None, steps: Optional[int] = None,
              params: Optional[Params] = None, first_order: Optional[bool] = None) -> Params:
        """Adapt to one task: ``steps`` inner SGD steps on its support set.

        Args:
            x_s: ``[n_support, *x_shape]`` (no task dimension); y_s: ``[n_support, *y_shape]``.
            loss_fn: default :attr:`loss_fn`.
            steps: defaults to ``inner_steps`` (e.g. pass 10 at meta-test time).
            params: start here instead of the model's parameters.
        Returns:
            ``{name: adapted tensor}`` — differentiable with respect to the model's parameters
            (second-order) unless ``first_order``.
        """
        loss_fn = callable_loss(loss_fn, self.loss_fn)
        check_one_task(x_s, y_s)
        self.check_data(x_s, y_s, "support", loss_fn)
        steps = self.inner_steps if steps is None else check_steps("steps", steps)
        fo = self.first_order if first_order is None else first_order
        start = self.initial_params() if params is None else params
        with self._bn_context():
            adapted, _, losses = self._adapt(start, buffers_of(self.model), x_s, y_s, loss_fn, steps, fo)
        check_finite(losses, "the inner-loop (support) loss")
        return {k: adapted.get(k, v) for k, v in start.items()}

    def forward(self, params: Params, x: Tensor) -> Tensor:
        """Predictions of the model with ``params`` (e.g. from :meth:`adapt`) on ``x``; also
        ``learner(params, x)``."""
        with self._bn_context():
            return forward(self.model, params, buffers_of(self.model), x)

    def predict(self, x_s: Tensor, y_s: Tensor, x_q: Tensor, n_way: Optional[int] = None,
                steps: Optional[int] = None) -> Tensor:
        """Adapt to each task's support set with ``steps`` inner steps (default :attr:`eval_steps`)
        and predict its queries: ``[Q, N]`` for one task, ``[T, Q, N]`` for a batch (see
        :meth:`metalib.algorithms.Learner.predict`)."""
        x_s, y_s, x_q, batched = as_task_batch(x_s, y_s, x_q)
        if n_way is not None:
            self.check_task(n_way)
        steps = self.eval_steps if steps is None else steps
        _, preds = self._run((x_s, y_s, x_q, None), self.loss_fn, steps, backward=False)
        return preds if batched else preds[0]

    def task_losses(self, batch: Sequence[Tensor], loss_fn: Optional[LossFn] = None,
                    steps: Optional[int] = None) -> Tuple[Tensor, Tensor]:
        """Adapt to every task of ``batch`` and evaluate on its query set.

        Args:
            batch: ``(x_s, y_s, x_q, y_q)`` with a leading task dimension ``T``.
        Returns:
            ``(query_losses [T], query_predictions [T, n_query, ...])``, differentiable with
            respect to the model's parameters.
        """
        return self._run(batch, loss_fn, steps, backward=False)

    def _run(self, batch: Sequence[Tensor], loss_fn: Optional[LossFn], steps: Optional[int], backward: bool):
        """:meth:`task_loss` on every task of ``batch`` by :func:`metalib.engine.run_tasks` (vmap or a
        task loop, see ``batching``); with ``backward``, the meta-gradient is back-propagated there.
        ``y_q = None`` (:meth:`predict`): predictions only, the losses returned are zeros."""
        loss_fn = callable_loss(loss_fn, self.loss_fn)
        labels = not (isinstance(batch, (tuple, list)) and len(batch) == 4 and batch[3] is None)
        if labels:
            x_s, y_s, x_q, y_q = tasks = tuple(as_batch(batch))
        else:  # predictions only: check the shapes with placeholder query labels
            x_s, y_s, x_q, y_q = as_batch((*batch[:3], batch[2].new_zeros(batch[2].shape[:2], dtype=torch.long)))
            tasks, y_q = (x_s, y_s, x_q), None
        self.check_data(x_s, y_s, "support", loss_fn)
        self.check_data(x_q, y_q, "query", loss_fn)
        steps = self.inner_steps if steps is None else check_steps("steps", steps)
        theta, buffers, fo = self.initial_params(), buffers_of(self.model), self.first_order

        def one_task(*task):
            if labels:
                return self.task_loss(theta, buffers, task, loss_fn, steps, fo)
            phi, fixed, inner = self._adapt(theta, buffers, task[0], task[1], loss_fn, steps, fo)
            pred = forward(self.model, phi, fixed, task[2])
            return pred.new_zeros(()), pred, inner

        vmapped = self.uses_vmap()
        with self._bn_context(plain=vmapped):  # plain BatchNorm: vmap's double backward is exact
            losses, preds, inner = engine.run_tasks(one_task, tasks, vmapped, backward)
        # one check (one device sync) per batch, after the fact: a NaN has then reached .grad, which
        # the caller discards when this raises (no optimiser step)
        check_finite(inner, "the inner-loop (support) loss")
        check_finite(losses.detach(), "the query loss")
        return losses, preds

    def meta_loss(self, batch: Sequence[Tensor], loss_fn: Optional[LossFn] = None, steps: Optional[int] = None) -> Tensor:
        """Mean query loss over the task batch (the MAML objective); ``.backward()`` fills the
        model's ``.grad`` with the meta-gradient."""
        return self.task_losses(batch, loss_fn, steps)[0].mean()

    def meta_gradient(self, batch: Sequence[Tensor], loss_fn: Optional[LossFn] = None,
                      steps: Optional[int] = None) -> Tuple[Tensor, Tensor]:
        """``meta_loss(batch, loss_fn).backward()`` with the memory of one task instead of ``T``.

        On the task loop, each task's query loss (divided by ``T``) is back-propagated as soon as it
        is computed, so only one task's graph is alive at a time (the structure of learn2learn's and
        higher's MAML examples); the ``.grad`` sum is the same meta-gradient up to float rounding
        (~1e-7 relative in float32: the tasks' contributions are added in another order). On the vmap
        path it is exactly ``meta_loss(...).backward()``. This is what :meth:`train_step` (the
        trainer's step) runs.

        Returns:
            the mean query loss (0-dim) and the query predictions ``[T, n_query, ...]``, detached.
        """
        losses, preds = self._run(batch, loss_fn, steps, backward=True)
        return losses.mean(), preds

    def describe(self) -> str:
        return f"MAML ({'first' if self.first_order else 'second'}-order)"

    @property
    def short_name(self) -> str:
        return "FOMAML" if self.first_order else "MAML"

    def __repr__(self) -> str:
        ck = ", recompute_steps=True" if self.recompute_steps else ""
        return (f"MAML(inner_lr={self.inner_lr}, inner_steps={self.inner_steps}, first_order="
                f"{self.first_order}, batching={self.batching!r}, bn_mode={self.bn_mode!r}{ck})")


register("maml", MAML)
register("fomaml", MAML, first_order=True)
