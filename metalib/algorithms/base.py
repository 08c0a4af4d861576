"""What every algorithm is to the rest of metalib: the :class:`Learner` interface and the registry.

A learner is an ``nn.Module`` that holds *everything the outer loop trains* — the network's
initialisation θ, and whatever else the algorithm meta-learns (per-parameter learning rates, an
LSTM optimiser, a memory controller) — so ``learner.parameters()``, ``state_dict()``, ``.to(device)``
mean what they mean for any module. On top of that it answers two questions:

* **how to learn from a batch of tasks** — :meth:`Learner.meta_gradient` fills ``.grad`` of
  ``learner.parameters()`` with its meta-gradient (Reptile: its update direction θ − φ̄) and returns
  the mean query loss; :meth:`Learner.train_step` adds the outer update (``optimizer.step()``);
* **how to classify a new task** — :meth:`Learner.predict` maps a support set and queries to
  logits, adapting however the algorithm adapts (gradient steps, prototypes, attention, memory).

The trainer (:mod:`metalib.training`), the evaluator (:mod:`metalib.evaluation`), the few-shot
runs (:mod:`metalib.fewshot`) and the course layer use nothing else, so a new algorithm is one
file plus one :func:`register` line. Batches are ``(x_s, y_s, x_q, y_q)`` with a leading task
dimension (:class:`metalib.TaskBatch`).
"""
from __future__ import annotations

import inspect
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..batch import as_batch, check_every_batch, check_labels, check_pair, checked, needs_check  # noqa: F401
from ..functional import LossFn, NonFiniteLossError, Params, check_finite, deferring_finite_checks  # noqa: F401
from .contract import (  # noqa: F401 - the learners import these from here
    CONTRACT_METHODS, callable_loss, check_finite_inputs, check_loss_fn, check_network, check_one_task,
    check_query_classes, check_support_classes, no_loss_fn, with_input_contract,
)

Metrics = Dict[str, Tensor]


class LearnerConfig:
    """What a run's configuration reads of a learner class (:mod:`metalib.config`, :mod:`metalib.fewshot`).

    Class attributes:
        name: the registry name (``"maml"``, ``"protonet"``, ...).
        family: ``"optimisation-based"``, ``"metric-based"``, ``"model-based"`` or ``"generative"``.
        config_class: the learner's typed config, a dataclass subclassing
            :class:`metalib.algorithms.settings.FewShotConfig` declared in the learner's file (``MAMLConfig``):
            its added fields are the hyperparameters, passed by name to ``__init__``; ``None``: the
            learner has none (plain ``FewShotConfig``).
        config_keys: run fields of ``FewShotConfig`` the ``__init__`` also takes (MANN: ``("n_way",)``).
        paper_settings: ``{(dataset, n_way, k_shot): config_class(...)}`` — the paper's settings as
            instances of ``config_class`` (``algorithm`` left empty), which
            :func:`metalib.config.default_config` starts from.
        budget_settings: the same shape — a schedule for about 30 CPU-minutes on one thread, chosen
            on the validation split (``benchmarks/bench_time_to_accuracy.py``, issue #29), used instead
            of the paper's by ``default_config(..., settings="budget")``. A key
            ``(dataset, n_way, k_shot, name)`` holds the schedule of the registered ``name`` that pins
            settings (``"fomaml"``); such a name never inherits the class's own schedule.
        needs_head: the network ends in an ``n_way`` linear head (MAML, Reptile), so the learner
            classifies ``n_way``-way tasks only; ``False``: any N (ProtoNet).
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    config_class: ClassVar[Optional[type]] = None
    config_keys: ClassVar[Tuple[str, ...]] = ()
    paper_settings: ClassVar[Dict[Tuple[str, int, int], Any]] = {}
    budget_settings: ClassVar[Dict[Tuple[str, int, int], Any]] = {}
    needs_head: ClassVar[bool] = False

    @classmethod
    def default_model(cls, in_channels: int, image_size: int, hidden: int, n_way: int) -> nn.Module:
        """The network of a few-shot run: Conv-4, with an ``n_way`` linear head if :attr:`needs_head`."""
        from ..models import Conv4

        return Conv4(in_channels=in_channels, n_classes=n_way if cls.needs_head else None, hidden=hidden,
                     image_size=image_size)

    @classmethod
    def from_config(cls, config: Any, model: nn.Module, **fixed: Any) -> "Learner":
        """Build from a :class:`metalib.config.FewShotConfig`: its ``config_keys`` fields and the
        hyperparameters of its ``config_class`` that ``__init__`` takes (``test_inner_steps`` sets
        ``eval_steps``), then ``fixed`` (what the registry entry pins)."""
        params = inspect.signature(cls.__init__).parameters
        takes_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
        settings = {k: getattr(config, k) for k in cls.config_keys}
        settings.update({k: v for k, v in config.learner_settings().items() if takes_all or k in params})
        settings.update(fixed)
        learner = cls(model, **settings)
        if learner.eval_steps is not None and getattr(config, "test_steps", None):
            learner.eval_steps = config.test_steps
        return learner

    @classmethod
    def check_config(cls, config: Any) -> None:
        """Raise ``ValueError`` for a config this algorithm cannot train (before any work is done): a
        learner with ``n_way`` outputs (a linear head, or ``n_way`` in its ``config_keys``: MANN, SNAIL)
        trains on ``n_way``-way episodes only."""
        if (cls.needs_head or "n_way" in cls.config_keys) and config.train_way_ != config.n_way:
            raise ValueError(f"{cls.name} has n_way outputs{' (a linear head)' if cls.needs_head else ''}: train_way "
                             f"must equal n_way (got train_way={config.train_way_}, n_way={config.n_way})")


@runtime_checkable
class Explainable(Protocol):
    """The course explorers' view of a learner (:mod:`metalib.course` checks for it): its embedding
    and its classification rule on it."""

    def embed(self, x: Tensor, params: Optional[Params] = None) -> Tensor: ...

    def explain(self, x_s: Tensor, y_s: Tensor, x_q: Tensor, params: Optional[Params] = None) -> Dict[str, Any]: ...


class CourseHooks:
    """The optional hooks the course's explorers use (:class:`Explainable`), with defaults for a network
    made of ``features`` and a linear ``head``; nothing in training or evaluation calls them."""

    stateless_adaptation: ClassVar[bool] = True  # an inner step depends on the current weights only

    def embed(self, x: Tensor, params: Optional[Params] = None) -> Tensor:
        """Embeddings ``[n, d]`` of inputs ``x`` (one batch). Default, for a network made of
        ``features`` and a linear ``head`` (Conv-4 with a head): the features before the head,
        computed with ``params`` (adapted weights; default θ), so ``head(embed(x, φ))`` is the
        prediction of the adapted model."""
        model = getattr(self, "model", None)
        feats = getattr(model, "features", None)
        if not isinstance(feats, nn.Module) or not isinstance(getattr(model, "head", None), nn.Linear):
            raise NotImplementedError(f"{self.describe()} has no embedding view: its network needs .features and "
                                      f"a linear .head (metalib.models.Conv4), got {type(model).__name__}")
        from ..functional import batchnorm_context, buffers_of, forward, params_of

        params = params_of(model) if params is None else params
        sub = lambda d: {k[len("features."):]: v for k, v in d.items() if k.startswith("features.")}  # noqa: E731
        with batchnorm_context(model, getattr(self, "bn_mode", "transductive")):
            return forward(feats, sub(params), sub(buffers_of(model)), x).flatten(1)

    def explain(self, x_s: Tensor, y_s: Tensor, x_q: Tensor, params: Optional[Params] = None) -> Dict[str, Any]:
        """One task in the learner's embedding space: ``z_s [N*K, d]``, ``z_q [Q, d]``, ``logits
        [Q, N]`` and ``rule``, a function of feature vectors ``[m, d] -> [m, N]`` (the classifier
        on the embedding), plus the rule's parts (``weight``/``bias``, ``prototypes``).

        Default (features + linear head): the support and the queries embedded separately with
        ``params`` (as adaptation and prediction see them), the rule is the (adapted) head."""
        params = getattr(self, "initial_params")() if params is None else params
        z_s, z_q = self.embed(x_s, params), self.embed(x_q, params)
        w, b = params["head.weight"].detach(), params["head.bias"].detach()
        return {"z_s": z_s, "z_q": z_q, "logits": F.linear(z_q, w, b), "weight": w, "bias": b,
                "rule": lambda z: F.linear(z, w, b)}


class Learner(LearnerConfig, CourseHooks, nn.Module):
    """Base class of every meta-learning algorithm (see the module docstring): what training and
    evaluation use. What a run's configuration reads is :class:`LearnerConfig`; the course's optional
    hooks are :class:`CourseHooks` (the course layer checks for :class:`Explainable`).

    Subclasses implement :meth:`meta_gradient` and :meth:`predict`; the rest has defaults.

    Attributes:
        loss_fn: the task loss ``loss_fn(predictions, targets)`` (default: cross-entropy).
        eval_steps: inner steps at test time for learners that adapt by gradient steps (``None``
            for those that do not: ``predict`` then takes no ``steps``).
    """


    def __init__(self, loss_fn: Optional[LossFn] = None) -> None:
        super().__init__()
        self.loss_fn: LossFn = check_loss_fn(loss_fn) if loss_fn is not None else F.cross_entropy
        self.eval_steps: Optional[int] = None

    # ------------------------------------------------------------------ what subclasses implement
    def meta_gradient(self, batch: Sequence[Tensor], loss_fn: Optional[LossFn] = None) -> Tuple[Tensor, Tensor]:
        """Accumulate the meta-gradient of ``batch`` into ``.grad`` of :meth:`parameters`.

        Returns:
            ``(mean query loss (0-dim), query predictions [T, n_query, ...])``, detached (logits for
            classification).
        """
        raise NotImplementedError

    def meta_backward(self, batch: Sequence[Tensor], loss_fn: Optional[LossFn] = None, **kw: Any) -> Tensor:
        """:meth:`meta_gradient`, returning the mean query loss only (0-dim, detached)."""
        return self.meta_gradient(batch, loss_fn, **kw)[0]

    def predict(self, x_s: Tensor, y_s: Tensor, x_q: Tensor, n_way: Optional[int] = None,
                steps: Optional[int] = None) -> Tensor:
        """Query predictions (logits for classification) after learning from the support set.

        One task (``x_s [N*K, ...]``, ``y_s [N*K]``, ``x_q [Q, ...]`` → ``[Q, N]``) or a batch
        (``[T, N*K, ...]``, ``[T, N*K]``, ``[T, Q, ...]`` → ``[T, Q, N]``). ``steps``: inner steps
        for learners that adapt by gradient (default :attr:`eval_steps`).
        """
        raise NotImplementedError

    # ------------------------------------------------------------------ defaults
    def train_step(self, batch: Sequence[Tensor], optimizer: torch.optim.Optimizer) -> Metrics:
        """One meta-iteration: clear the gradients, :meth:`meta_gradient`, check the loss is finite
        (before touching the weights), :meth:`clip_gradients`, ``optimizer.step()``.

        Returns:
            ``{"loss": mean query loss}`` and, for classification, ``"accuracy"`` (% of the
            queries of the batch classified correctly by the adapted learner) — 0-dim tensors.
        Raises:
            metalib.NonFiniteLossError: the loss is NaN/inf; the weights were not updated.
        """
        optimizer.zero_grad(set_to_none=True)
        loss, out = self.meta_gradient(batch)
        check_finite(loss, "the meta-loss")
        self.clip_gradients()
        optimizer.step()
        return query_metrics(loss, out, batch[3])

    def clip_gradients(self) -> None:
        """Clip the meta-gradient in ``.grad`` before the outer step, where the algorithm does (Relation
        Networks' official code); default: not at all."""

    def outer_optimizer(self, lr: float) -> torch.optim.Optimizer:
        """The optimiser of the outer loop: Adam over every meta-learned tensor (the papers' choice)."""
        return torch.optim.Adam(self.parameters(), lr=lr)

    def outer_schedule(self, optimizer: torch.optim.Optimizer, iterations: int):
        """A learning-rate schedule the algorithm itself prescribes (Reptile's linear annealing), or None."""
        return None

    def check_task(self, n_way: int) -> None:
        """Raise ``ValueError`` if this learner cannot classify ``n_way``-way tasks (a fixed head)."""
        n = self.fixed_way
        if n is not None and n != n_way:
            raise ValueError(f"this {self.describe()} learner has a {n}-way linear head: it classifies {n}-way "
                             f"tasks only (got {n_way}-way); metric-based learners work for any N")

    def check_data(self, x: Tensor, y: Optional[Tensor], what: str, loss_fn: Optional[LossFn] = None) -> None:
        """One clear line, before any work: inputs on the learner's device and in its float dtype; with
        cross-entropy, integer labels in ``[0, fixed_way)`` — a ``-100`` label would be silently left
        out by ``F.cross_entropy`` (its ``ignore_index``). The label range is checked where it costs
        no device synchronisation (labels on the CPU; :data:`metalib.batch.CHECK_EVERY_BATCH`)."""
        p = next((t for t in self.parameters() if t.is_floating_point()), None)
        if p is not None and isinstance(x, Tensor):
            if x.device != p.device:
                raise ValueError(f"the {what} inputs are on {x.device} but the learner's weights on {p.device}: "
                                 "move one of them with .to(...)")
            if not x.is_floating_point():
                raise TypeError(f"the {what} inputs are {x.dtype} but the learner's weights {p.dtype}: convert the inputs "
                                f"(x.to({p.dtype}), scaled as in training: uint8 pixels / 255)")
            if x.dtype != p.dtype:
                raise TypeError(f"the {what} inputs are {x.dtype} but the learner's weights {p.dtype}: convert one "
                                f"(x.to({p.dtype}) or learner.to({x.dtype}))")
        if y is None or (loss_fn or self.loss_fn) is not F.cross_entropy:
            return
        if y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
            raise TypeError(f"the {what} labels must be an integer tensor (class indices) for cross-entropy, got {y.dtype}")
        if y.dtype != torch.long:  # F.cross_entropy takes int64 class indices only
            raise TypeError(f"the {what} labels must be an integer tensor of dtype torch.int64 (class indices) for "
                            f"cross-entropy, got {y.dtype}: convert them with y.long()")
        if y.numel() == 0 or not needs_check(y, "head", self.fixed_way, what):  # CUDA: once per episode shape
            return
        lo, hi, n = int(y.min()), int(y.max()), self.fixed_way
        if lo < 0 or (n is not None and hi >= n):
            hint = " (-100 is cross_entropy's ignore_index: those examples would be silently left out)" if lo == -100 else ""
            raise ValueError(f"the {what} labels must lie in [0, {n if n is not None else 'n_way'})"
                             + (f" for this {n}-way head" if n is not None else "") + f"; found {lo}..{hi}{hint}"
                             + (f" (class indices: integers in [0, {n}))" if n is not None and not hint else ""))
        checked(y, "head", n, what)  # its own key: check_labels caches n_way under (n, what)

    # ------------------------------------------------------------------ the input contract
    #: whether a training batch needs queries (False: the sequence learners, trained on the support alone).
    #: Those (MANN, the LSTM baseline) predict every label of a sequence before it is shown — the first
    #: instance of each class is a guess by design — so a sequence with fewer than their N classes (a
    #: 3-way episode on a 5-way output) is accepted by design; every other learner refuses a support set
    #: without all N classes, and queries of a class the support lacks (:meth:`check_batch`).
    needs_query: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every learner's public entry points check their input first — ``meta_gradient``,
        ``train_step``, ``meta_loss`` and ``task_losses`` with :meth:`check_batch`, ``predict`` with
        :meth:`check_episode`, ``adapt`` with :meth:`check_support` — one contract, enforced here, so a
        new learner gets it by subclassing (nothing to call)."""
        super().__init_subclass__(**kwargs)
        for name, kind in CONTRACT_METHODS.items():
            fn = cls.__dict__.get(name)
            if callable(fn) and not getattr(fn, "_input_contract", False):
                setattr(cls, name, with_input_contract(fn, kind))

    def check_batch(self, batch: Sequence[Tensor], loss_fn: Optional[LossFn] = None) -> None:
        """The input contract of a training batch ``(x_s, y_s, x_q, y_q)``, one line before any work:
        a task dimension, non-empty support and query (:func:`metalib.batch.as_batch`), inputs in the
        learner's device and float dtype, with cross-entropy int64 labels in ``[0, fixed_way)`` (no
        ``-100``) (:meth:`check_data`); with a fixed N (a linear head, MANN, SNAIL) every task's support
        holds all N classes — a 3-way batch on a 5-way head is refused, not trained with two dead outputs;
        every query's class has support examples in its task (:func:`check_support_classes`,
        :func:`check_query_classes`); finite inputs (:func:`check_finite_inputs`)."""
        x_s, y_s, x_q, y_q = as_batch(batch, empty_query=not self.needs_query)
        self.check_data(x_s, y_s, "support", loss_fn)
        self.check_data(x_q, y_q, "query", loss_fn)
        if (loss_fn or self.loss_fn) is F.cross_entropy and self.needs_query:  # (below: why not the sequence learners)
            if self.fixed_way is None:  # any N: the support's classes are 0..N-1, every one present
                check_labels(y_s, None, "support")
            check_support_classes(y_s, self.fixed_way, self.fixed_way is not None, self.describe())  # each task
            check_query_classes(y_s, y_q)
        check_finite_inputs(x_s, "support")
        check_finite_inputs(x_q, "query")

    def check_episode(self, x_s: Tensor, y_s: Tensor, x_q: Tensor, n_way: Optional[int] = None) -> None:
        """The input contract of :meth:`predict`: one task (``y_s [N*K]``) or a batch (``y_s [T, N*K]``)
        with a non-empty support set and queries, ``n_way`` against the head (:meth:`check_task`), then
        :meth:`check_data` and finite inputs as :meth:`check_batch`."""
        for name, t in (("x_s", x_s), ("y_s", y_s), ("x_q", x_q)):
            if not isinstance(t, Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if n_way is not None:
            self.check_task(n_way)
        if self.loss_fn is F.cross_entropy:  # classification: y_s's dimension tells one task from a batch
            d = y_s.dim()
            if d not in (1, 2):
                raise ValueError(f"y_s must be [n_support] (one task) or [tasks, n_support], got shape {tuple(y_s.shape)}")
            check_pair(x_s, y_s, "support", dims=d)
            if x_q.dim() != x_s.dim() or x_s.shape[d:] != x_q.shape[d:]:
                raise ValueError(f"support inputs {tuple(x_s.shape)} and query inputs {tuple(x_q.shape)} differ in shape")
            if d == 2 and x_s.shape[0] != x_q.shape[0]:
                raise ValueError(f"support has {x_s.shape[0]} tasks but query has {x_q.shape[0]}")
            if x_s.shape[d - 1] == 0:
                raise ValueError("the support set is empty (k_shot must be >= 1)")
            if x_q.shape[d - 1] == 0:
                raise ValueError("the query set is empty: there is nothing to predict")
            if d == 2 and x_s.shape[0] == 0:
                raise ValueError(f"the batch has no tasks (x_s {tuple(x_s.shape)}): a batch needs at least one task")
        self.check_data(x_s, y_s, "support")
        self.check_data(x_q, None, "query")
        n = n_way if n_way is not None else self.fixed_way
        if self.loss_fn is F.cross_entropy and self.needs_query:  # logits for absent classes would be made up
            if self.fixed_way is None and not (y_s.is_floating_point() or y_s.dtype == torch.bool):
                check_labels(y_s, n_way, "support")  # any N: labels 0..N-1 (a range, then the classes present)
            check_support_classes(y_s, n, self.fixed_way is not None, self.describe())
        check_finite_inputs(x_s, "support")
        check_finite_inputs(x_q, "query")

    def check_support(self, x_s: Tensor, y_s: Tensor, loss_fn: Optional[LossFn] = None) -> None:
        """The input contract of ``adapt`` (one task's support set ``x_s [n_support, ...]``, ``y_s
        [n_support, ...]``): tensors, one non-empty task (:func:`check_one_task`), :meth:`check_data`,
        finite inputs. A support without some class of the head is allowed here: ``adapt`` fine-tunes
        on whatever it is given (``predict`` and training refuse it)."""
        for name, t in (("x_s", x_s), ("y_s", y_s)):
            if not isinstance(t, Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        check_one_task(x_s, y_s)
        self.check_data(x_s, y_s, "support", loss_fn)
        check_finite_inputs(x_s, "support")

    @property
    def fixed_way(self) -> Optional[int]:
        """The number of classes of the network's linear head (``model.head``) or, for a learner built with
        ``n_way`` (in its ``config_keys``: MANN, SNAIL), ``n_way``; None: any N."""
        if "n_way" in self.config_keys:
            return self.n_way
        head = getattr(getattr(self, "model", None), "head", None)
        return int(head.out_features) if isinstance(head, nn.Linear) else None

    @property
    def device(self) -> torch.device:
        first = next(iter([*self.parameters(), *self.buffers()]), None)
        return first.device if first is not None else torch.device("cpu")

    def describe(self) -> str:
        """A human name with the variant, e.g. ``"MAML (second-order)"`` (progress bars, results)."""
        return type(self).__name__

    @property
    def short_name(self) -> str:
        """The name a table column uses, e.g. ``"FOMAML"`` (default: :meth:`describe`)."""
        return self.describe()


# ============================================================================ learners without an inner loop
class EpisodeClassifier(Learner):
    """A learner that classifies a task's queries in one computation from its support set — no inner
    loop: the metric-based learners (ProtoNet, Matching and Relation Networks) and closed-form heads
    (R2D2). A subclass implements :meth:`task_logits` for one task; batching, the checks, the loss,
    ``meta_gradient`` and ``predict`` are here, written once.
    """

    def task_logits(self, x_s: Tensor, y_s: Tensor, x_q: Tensor, n_way: int) -> Tensor:
        """Logits ``[Q, N]`` of one task's queries (``x_s [N*K, ...]``, ``y_s [N*K]``, ``x_q [Q, ...]``)."""
        raise NotImplementedError

    def query_losses(self, logits: Tensor, y_q: Tensor) -> Tensor:
        """Per-task query loss ``[T]`` from logits ``[T, Q, N]`` and labels ``[T, Q]`` (default:
        cross-entropy of the softmax over the logits)."""
        return F.cross_entropy(logits.flatten(0, 1), y_q.flatten(), reduction="none").view(y_q.shape).mean(1)

    def logits(self, x_s: Tensor, y_s: Tensor, x_q: Tensor, n_way: Optional[int] = None) -> Tensor:
        """:meth:`task_logits` of one task (``y_s: [N*K]`` → ``[Q, N]``) or of a batch (``y_s: [T, N*K]``
        → ``[T, Q, N]``): the labels' dimension tells which. ``n_way`` defaults to max label + 1."""
        if y_s.dim() not in (1, 2):
            raise ValueError(f"y_s must be [n_support] or [tasks, n_support], got shape {tuple(y_s.shape)}")
        check_pair(x_s, y_s, "support", dims=y_s.dim())
        if x_s.shape[y_s.dim():] != x_q.shape[y_s.dim():]:
            raise ValueError(f"support inputs {tuple(x_s.shape)} and query inputs {tuple(x_q.shape)} differ in shape")
        n_way = check_labels(y_s, n_way, "support")
        self.check_data(x_s, None, "support")
        if y_s.dim() == 1:
            return self.task_logits(x_s, y_s, x_q, n_way)
        if x_s.shape[0] != x_q.shape[0]:
            raise ValueError(f"support has {x_s.shape[0]} tasks but query has {x_q.shape[0]}")
        return torch.stack([self.task_logits(*t, n_way) for t in zip(x_s, y_s, x_q)])

    def task_losses(self, batch: Sequence[Tensor], n_way: Optional[int] = None) -> Tuple[Tensor, Tensor]:
        """Per-task query losses ``[T]`` and logits ``[T, Q, N]`` of a batch of episodes."""
        x_s, y_s, x_q, y_q = as_batch(batch)
        n_way = check_labels(y_s, n_way, "support")
        check_labels(y_q, n_way, "query")
        logits = self.logits(x_s, y_s, x_q, n_way)
        return self.query_losses(logits, y_q), logits

    def meta_loss(self, batch: Sequence[Tensor], n_way: Optional[int] = None) -> Tensor:
        """The mean query loss over the batch of episodes (``NonFiniteLossError`` if it is NaN/inf)."""
        loss = self.task_losses(batch, n_way)[0].mean()
        check_finite(loss.detach(), "the query loss")
        return loss

    def meta_gradient(self, batch: Sequence[Tensor], loss_fn: Optional[LossFn] = None) -> Tuple[Tensor, Tensor]:
        """``meta_loss(batch).backward()``; returns the loss and the logits ``[T, Q, N]``, detached.
        ``loss_fn`` must be None: the loss is the algorithm's own (:meth:`query_losses`)."""
        no_loss_fn(loss_fn, f"{self.describe()}'s loss is its own (query_losses)")
        losses, logits = self.task_losses(batch)
        loss = losses.mean()
        check_finite(loss.detach(), "the query loss")
        loss.backward()
        return loss.detach(), logits.detach()

    def predict(self, x_s: Tensor, y_s: Tensor, x_q: Tensor, n_way: Optional[int] = None,
                steps: Optional[int] = None) -> Tensor:
        """:meth:`logits` (no inner loop: ``steps`` must be None or 0)."""
        if steps not in (None, 0):
            raise ValueError(f"{self.describe()} has no inner loop: steps must be None (or 0), got {steps!r}")
        return self.logits(x_s, y_s, x_q, n_way)


# ============================================================================ helpers for learners


def query_metrics(loss: Tensor, predictions: Tensor, y_q: Tensor) -> Metrics:
    """``{"loss"}``, plus ``{"accuracy"}`` (%) when ``predictions`` are logits over integer labels."""
    out = {"loss": loss.detach()}
    if not y_q.is_floating_point() and predictions.dim() == y_q.dim() + 1:
        out["accuracy"] = (predictions.detach().argmax(-1) == y_q).float().mean() * 100
    return out


def as_task_batch(x_s: Tensor, y_s: Tensor, x_q: Tensor) -> Tuple[Tensor, Tensor, Tensor, bool]:
    """``(x_s, y_s, x_q, batched)`` with a task dimension added for one task (``y_s: [N*K]``)."""
    if y_s.dim() == 1 and x_s.dim() == x_q.dim():
        return x_s.unsqueeze(0), y_s.unsqueeze(0), x_q.unsqueeze(0), False
    return x_s, y_s, x_q, True


# ============================================================================ the registry
class _Entry:
    def __init__(self, name: str, cls: type, fixed: Mapping[str, Any]) -> None:
        self.name, self.cls, self.fixed = name, cls, dict(fixed)


_REGISTRY: Dict[str, _Entry] = {}


def register(name: str, cls: Optional[type] = None, **fixed: Any):
    """Make ``cls`` (a :class:`Learner` subclass) available as ``name`` — to :func:`get`, to
    :func:`metalib.fewshot.default_config` / ``FewShotTrainer`` and to the command line.

    ``fixed``: settings the name pins (``register("fomaml", MAML, first_order=True)``).
    Usable as a decorator: ``@register("protonet")``. Re-registering a name replaces it.
    """
    if not isinstance(name, str) or not name or name != name.lower() or " " in name:
        raise ValueError(f"a learner's name must be a non-empty lower-case string without spaces, got {name!r}")

    def add(c: type) -> type:
        if not (isinstance(c, type) and issubclass(c, Learner)):
            raise TypeError(f"register({name!r}, ...) needs a Learner subclass, got {c!r}")
        _REGISTRY[name] = _Entry(name, c, fixed)
        return c

    return add if cls is None else add(cls)


def entry(name: str) -> _Entry:
    """The registry entry of ``name`` (its class and the settings it pins)."""
    key = name.lower() if isinstance(name, str) else name
    if key not in _REGISTRY:
        raise ValueError(f"unknown algorithm {name!r}; available: {', '.join(available())}")
    return _REGISTRY[key]


def available() -> List[str]:
    """The registered algorithm names."""
    return sorted(_REGISTRY)


def get(name: str, model: nn.Module, **settings: Any) -> Learner:
    """``name``'s learner around ``model``: ``metalib.algorithms.get("maml", net, inner_lr=0.4)``."""
    e = entry(name)
    return e.cls(model, **{**settings, **e.fixed})


def learner_registry() -> Dict[str, Tuple[type, Dict[str, Any]]]:
    """``{name: (class, pinned settings)}`` of every registered learner (a copy)."""
    return {k: (e.cls, dict(e.fixed)) for k, e in _REGISTRY.items()}


