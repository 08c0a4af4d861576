"""The input contract every learner keeps (issue 24), checked by :class:`metalib.algorithms.Learner` before any
work: ``meta_gradient``, ``train_step``, ``meta_loss`` and ``task_losses`` check their batch, ``predict`` its
episode, ``adapt`` its support set (:data:`CONTRACT_METHODS`), wrapped around every subclass's methods in
``Learner.__init_subclass__`` (:func:`with_input_contract`), so a new learner keeps it without a line of its own.
The checks themselves are ``Learner.check_batch`` / ``check_episode`` / ``check_support`` and the functions here.
"""
from __future__ import annotations

import functools
import inspect
import threading
from typing import Any, Callable, List, Optional

import torch
from torch import Tensor

from ..batch import check_pair, checked, needs_check
from ..functional import LossFn, NonFiniteLossError, check_finite, deferring_finite_checks

_CONTRACT = threading.local()
#: the public methods the input contract guards, and which check each gets
CONTRACT_METHODS = {"meta_gradient": "batch", "train_step": "batch", "meta_loss": "batch", "task_losses": "batch",
                     "predict": "predict", "adapt": "adapt"}


def check_finite_inputs(x: Tensor, what: str) -> None:
    """Raise :class:`metalib.NonFiniteLossError` (a ``ValueError``) if the ``what`` inputs hold NaN or inf —
    before any update, so bad data never reaches the weights and is never blamed on a learning rate.
    Inside :func:`metalib.functional.deferred_finite_checks` (GPU training) the check is recorded on the
    device instead (no host sync), and read with the loss's."""
    if not x.is_floating_point() or x.device.type == "meta":
        return
    if deferring_finite_checks():
        check_finite(x, f"the {what} inputs")
        return
    if not bool(torch.isfinite(x).all()):
        raise NonFiniteLossError(f"the {what} inputs contain NaN or inf values: bad data, refused before "
                                 "any update; clean or drop those examples")


def with_input_contract(fn: Callable, kind: str) -> Callable:
    """``fn`` (a learner's ``meta_gradient``/``train_step``/``meta_loss``/``task_losses``/``predict``/``adapt``)
    preceded by the input contract; nested calls (``train_step`` calling ``meta_gradient``) check once, at
    the outermost."""
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def checked_call(self, *args: Any, **kwargs: Any):
        if getattr(_CONTRACT, "active", False):
            return fn(self, *args, **kwargs)
        try:
            bound = sig.bind(self, *args, **kwargs).arguments
        except TypeError:
            return fn(self, *args, **kwargs)  # the method's own error for a wrong call
        if kind == "predict":
            self.check_episode(bound.get("x_s"), bound.get("y_s"), bound.get("x_q"), bound.get("n_way"))
        elif kind == "adapt":
            loss_fn = bound.get("loss_fn")
            self.check_support(bound.get("x_s"), bound.get("y_s"), callable_loss(loss_fn, self.loss_fn))
        else:
            loss_fn = bound.get("loss_fn")
            self.check_batch(bound.get("batch"), callable_loss(loss_fn, self.loss_fn) if loss_fn is not None else None)
        _CONTRACT.active = True
        try:
            return fn(self, *args, **kwargs)
        finally:
            _CONTRACT.active = False

    checked_call._input_contract = True  # type: ignore[attr-defined]
    return checked_call


def check_network(net: Any, what: str = "model") -> None:
    """A learner's network is a ``torch.nn.Module``: one ``TypeError`` line otherwise."""
    if not isinstance(net, torch.nn.Module):
        raise TypeError(f"{what} must be a torch.nn.Module, got {type(net).__name__}")


def no_loss_fn(loss_fn: Any, whose: str) -> None:
    """A learner whose loss is part of its algorithm (``whose``: "SNAIL's loss is ...") takes no ``loss_fn``."""
    if loss_fn is not None:
        raise ValueError(f"{whose}; loss_fn must be None")


def check_loss_fn(loss_fn: Any) -> LossFn:
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(prediction, target), got {loss_fn!r}")
    return loss_fn


def callable_loss(loss_fn: Optional[Callable], default: Callable) -> Callable:
    """``loss_fn`` checked, or ``default``."""
    return default if loss_fn is None else check_loss_fn(loss_fn)


def check_one_task(x_s: Tensor, y_s: Tensor) -> None:
    """``adapt`` takes one task's support set: refuse an empty one, and a whole batch ``[T, k, ...]``
    (which would silently be treated as one task)."""
    check_pair(x_s, y_s, "support")
    if x_s.shape[0] == 0:
        raise ValueError("the support set is empty: adapting needs at least one example (k_shot >= 1)")
    integer = not (y_s.is_floating_point() or y_s.is_complex())
    if (integer and y_s.dim() >= 2) or (not integer and x_s.dim() == 3 and y_s.dim() == 3):
        raise ValueError(f"adapt takes one task (x_s [n_support, ...]), but got inputs {tuple(x_s.shape)} and targets "
                         f"{tuple(y_s.shape)}, a batch of {x_s.shape[0]} tasks: index one task (adapt(x_s[i], y_s[i])) "
                         "or use task_losses / meta_loss / predict for a batch")


def listed(items: List[int]) -> str:
    return f"{items[:5]}{'...' if len(items) > 5 else ''}"


def check_support_classes(y_s: Tensor, n_way: Optional[int], fixed: bool, who: str = "this learner") -> None:
    """Every task's support labels (``y_s [N*K]`` or ``[T, N*K]``, integer) hold each class of ``[0, n_way)``
    (``n_way`` None: the batch's largest label + 1)
    — one ``ValueError`` line naming the support otherwise: logits for a class without support examples
    are made up, and a ``fixed`` N-way learner (a linear head) given fewer classes would train or predict
    with dead outputs. Read on the CPU every call, elsewhere once per shape (:func:`metalib.batch.needs_check`)."""
    if (y_s.numel() == 0 or y_s.is_floating_point() or y_s.dtype == torch.bool or y_s.is_complex()
            or not needs_check(y_s, "present", n_way)):
        return
    key = n_way
    if n_way is None:  # any N: the batch's (max label + 1), as the metric learners infer it
        n_way = int(y_s.max()) + 1
    tasks = y_s.reshape(1, -1) if y_s.dim() == 1 else y_s.reshape(y_s.shape[0], -1)
    for t, y in enumerate(tasks):
        present = torch.unique(y)
        present = present[(present >= 0) & (present < n_way)]
        if len(present) == n_way:
            continue
        held = len(present)
        missing = sorted(set(range(n_way)) - set(present.tolist()))
        where = f"the support set of task {t}" if y_s.dim() > 1 else "the support set"
        fix = (f"; {who} has a fixed {n_way}-way output and classifies {n_way}-way tasks only: sample {n_way}-way "
               f"tasks, or build it with n_way={held}") if fixed else ""
        raise ValueError(f"class(es) {listed(missing)} ({len(missing)} of {n_way}) have no examples in {where}, which "
                         f"holds {held} class(es): every class needs k_shot >= 1 support examples{fix}")
    checked(y_s, "present", key)


def check_query_classes(y_s: Tensor, y_q: Tensor) -> None:
    """Every query label of a task (``y_q [T, Q]``) is a class of that task's support labels (``y_s [T, N*K]``);
    one ``ValueError`` line naming the support otherwise (its class has no support examples to learn from)."""
    if (y_q.numel() == 0 or y_s.dim() != 2 or y_q.dim() != 2 or y_q.is_floating_point() or y_q.dtype == torch.bool
            or not needs_check(y_s, "query-in-support", tuple(y_q.shape))):
        return
    found = (y_q.unsqueeze(-1) == y_s.unsqueeze(-2)).any(-1)  # [T, Q]
    if not bool(found.all()):
        t = int((~found).any(1).nonzero()[0])
        absent, held = sorted(set(y_q[t][~found[t]].tolist())), sorted(set(y_s[t].tolist()))
        classes = f"[0, {len(held)})" if held == list(range(len(held))) else listed(held)
        raise ValueError(f"the query labels must lie in {classes}, the classes of the support set of task {t}: class(es) "
                         f"{listed(absent)} of its queries have no support examples (every query's class needs "
                         "k_shot >= 1 support examples)")
    checked(y_s, "query-in-support", tuple(y_q.shape))
