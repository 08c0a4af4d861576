"""The task batch every algorithm consumes, and the checks that keep bad input from passing silently."""
from __future__ import annotations

import os
from typing import Dict, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor


class TaskBatch(NamedTuple):
    """A batch of tasks, each split into a support and a query set.

    Shapes (``T`` tasks): ``x_s: [T, n_support, *x_shape]``, ``y_s: [T, n_support, *y_shape]``,
    ``x_q: [T, n_query, *x_shape]``, ``y_q: [T, n_query, *y_shape]``. For N-way K-shot
    classification ``n_support = N*K`` and the labels are integers in ``[0, N)``.
    """

    x_s: Tensor
    y_s: Tensor
    x_q: Tensor
    y_q: Tensor

    def task(self, i: int) -> "TaskBatch":
        """Task ``i`` without the leading task dimension."""
        return TaskBatch(self.x_s[i], self.y_s[i], self.x_q[i], self.y_q[i])

    def to(self, device) -> "TaskBatch":
        return TaskBatch(*(t.to(device) for t in self))

    @property
    def n_tasks(self) -> int:
        return self.x_s.shape[0]


def as_batch(batch: Sequence[Tensor], empty_query: bool = False) -> TaskBatch:
    """Check that ``batch`` is ``(x_s, y_s, x_q, y_q)`` with a consistent leading task dimension
    (``empty_query``: a query set of size 0 is allowed — the sequence learners train on the support alone)."""
    if isinstance(batch, Tensor) or not isinstance(batch, (tuple, list)) or len(batch) != 4:
        raise TypeError("a task batch must be a tuple (x_s, y_s, x_q, y_q) of four tensors")
    names = ("x_s", "y_s", "x_q", "y_q")
    for name, t in zip(names, batch):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() < 2:
            raise ValueError(
                f"{name} has shape {tuple(t.shape)}: a batch needs a leading task dimension and a "
                "sample dimension, e.g. x_s: [tasks, n_support, ...] (use x.unsqueeze(0) for one task)"
            )
    x_s, y_s, x_q, y_q = batch
    check_pair(x_s, y_s, "support", dims=2)
    check_pair(x_q, y_q, "query", dims=2)
    if x_s.shape[0] != x_q.shape[0]:
        raise ValueError(f"support has {x_s.shape[0]} tasks but query has {x_q.shape[0]}")
    if x_s.shape[2:] != x_q.shape[2:]:
        raise ValueError(
            f"support inputs have shape {tuple(x_s.shape[2:])} per sample but query inputs "
            f"{tuple(x_q.shape[2:])}"
        )
    if y_s.shape[2:] != y_q.shape[2:]:
        raise ValueError(
            f"support targets have shape {tuple(y_s.shape[2:])} per sample but query targets "
            f"{tuple(y_q.shape[2:])}"
        )
    if x_s.shape[0] < 1:
        raise ValueError(f"the batch has no tasks (x_s {tuple(x_s.shape)}): a batch needs at least one task")
    if x_s.shape[1] < 1:
        raise ValueError("the support set is empty (k_shot must be >= 1)")
    if x_q.shape[1] < 1 and not empty_query:
        raise ValueError("the query set is empty")
    return TaskBatch(x_s, y_s, x_q, y_q)


def check_pair(x: Tensor, y: Tensor, what: str, dims: int = 1) -> None:
    """Inputs and targets must agree on their leading ``dims`` dimensions (tasks, samples)."""
    if x.shape[:dims] != y.shape[:dims]:
        raise ValueError(
            f"{what} inputs have shape {tuple(x.shape)} but targets {tuple(y.shape)}: the first "
            f"{dims} dimension(s) must match"
        )


#: The device types whose label values are checked on every batch: reading a CPU tensor costs no device
#: synchronisation. On the others (CUDA) a label tensor is checked once per episode shape and setting —
#: ``(shape, dtype, device, n_way, what)`` — so a training step reads nothing back from the GPU;
#: ``METALIB_CHECK_EVERY_BATCH=1`` checks every batch there too (debugging).
CHECK_EVERY_BATCH = {"cpu"}
_CHECKED: Dict[Tuple, Optional[int]] = {}


def check_every_batch(y: Tensor) -> bool:
    """Whether checks may read the values of ``y`` now (see :data:`CHECK_EVERY_BATCH`)."""
    return y.device.type in CHECK_EVERY_BATCH or os.environ.get("METALIB_CHECK_EVERY_BATCH") == "1"


def class_counts(y: Tensor, n_way: int) -> Tensor:
    """How many of the labels ``y [n]`` fall in each class of ``[0, n_way)``: ``[n_way]``; a ``ValueError``
    for a class without examples, read where :func:`check_every_batch` (``bincount`` would sync on CUDA)."""
    counts = (y.unsqueeze(-1) == torch.arange(n_way, device=y.device)).sum(0)
    if check_every_batch(y) and bool((counts == 0).any()):
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"class(es) {missing} have no support examples (every class needs k_shot >= 1)")
    return counts


def needs_check(y: Tensor, *setting) -> bool:
    """Whether a check should read the values of ``y`` now: always where :func:`check_every_batch`, else
    only for the first tensor of its shape, dtype and device with this ``setting`` (see :func:`checked`)."""
    return check_every_batch(y) or (tuple(y.shape), y.dtype, str(y.device), *setting) not in _CHECKED


def checked(y: Tensor, *setting, result=None) -> None:
    """Record that tensors like ``y`` passed the check of ``setting`` (:func:`needs_check`)."""
    _CHECKED[(tuple(y.shape), y.dtype, str(y.device), *setting)] = result


def check_labels(y: Tensor, n_way: Optional[int], what: str) -> int:
    """Labels must be integers in ``[0, n_way)``; returns ``n_way`` (inferred if None). The values are
    read on every call for CPU labels, once per episode shape elsewhere (:data:`CHECK_EVERY_BATCH`)."""
    if y.dtype in (torch.bool,) or y.is_floating_point() or y.is_complex():
        raise TypeError(f"{what} labels must be an integer tensor, got {y.dtype}")
    if y.numel() == 0:
        raise ValueError(f"{what} labels are empty")
    setting = (n_way, what)
    if not needs_check(y, *setting):
        return _CHECKED[(tuple(y.shape), y.dtype, str(y.device), *setting)]
    lo, hi = int(y.min()), int(y.max())
    if n_way is None:
        present = torch.unique(y).tolist()
        if lo >= 0 and len(present) != hi + 1:
            missing = sorted(set(range(hi + 1)) - set(present))
            raise ValueError(f"{what} labels must be 0..N-1 with every class present; got labels {present} (no "
                             f"{', '.join(map(str, missing[:5]))}{'...' if len(missing) > 5 else ''}): relabel the "
                             f"{len(present)} classes 0..{len(present) - 1}, or pass n_way")
        n_way = hi + 1
    if isinstance(n_way, bool) or not isinstance(n_way, int) or n_way < 1:
        raise ValueError(f"n_way must be a positive int, got {n_way!r}")
    if lo < 0 or hi >= n_way:
        raise ValueError(f"{what} labels must lie in [0, {n_way}) for {n_way}-way tasks; found {lo}..{hi}")
    checked(y, *setting, result=n_way)
    return n_way
