"""Data-parallel meta-training across processes: ``torch.distributed``, launched by ``torchrun``.

    torchrun --nproc-per-node 2 scripts/train_fewshot.py --algorithm maml --way 5 --shot 1 ...

Each of the ``W`` processes (ranks) draws the indices of the **same** seeded meta-batch of ``T``
tasks (the generator is seeded identically everywhere) and builds the images of its own contiguous
share only (:func:`shard_range`); it computes the meta-gradient of its share with the learner's own
``meta_backward``, and one ``all_reduce`` (NCCL on GPUs, gloo on CPU) sums the shares weighted by
their sizes:

.. math:: g = \\sum_{r=0}^{W-1} \\frac{T_r}{T}\\, g_r, \\qquad
          g_r = \\frac{1}{T_r} \\sum_{i \\in \\text{share}_r} \\nabla_\\theta \\mathcal{L}_i

which is the single-process meta-gradient :math:`\\frac1T \\sum_i \\nabla_\\theta \\mathcal{L}_i` (MAML,
FOMAML, ProtoNet; Reptile's :math:`\\theta - \\bar\\phi` likewise), up to the order of the float
additions. The loss and accuracy are reduced in the same call. Every rank then takes the same
optimiser step, so the weights stay identical without ever being broadcast again: ``W`` processes
train the model one process trains on the same seed. Rank 0 alone logs, validates, tests and
writes checkpoints (atomically, :mod:`metalib.checkpoint`); the others receive its starting state
(a fresh or a resumed run) once, at the start.

A process that dies makes the others' next collective fail (gloo: at once, the connection closes;
NCCL: at the latest after ``timeout_s``), and :class:`DistributedError` says which iteration and
what to look for; ``torchrun`` then stops the remaining processes and names the failed rank.
Model parallelism is not in scope: a meta-batch needs at least ``W`` tasks.
"""
from __future__ import annotations

import datetime
import os
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch import Tensor

from .algorithms.base import query_metrics
from .functional import check_finite

__all__ = ["DistributedError", "setup", "teardown", "world", "is_main", "shard_range", "DistributedStep",
           "broadcast_state"]

DEFAULT_TIMEOUT_S = 600


class DistributedError(RuntimeError):
    """A collective operation failed: another process crashed, was killed, or timed out."""


def world() -> Tuple[int, int]:
    """``(rank, world_size)`` of this process; ``(0, 1)`` outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Whether this process logs, validates and writes (rank 0, or no process group)."""
    return world()[0] == 0


def setup(backend: Optional[str] = None, timeout_s: float = DEFAULT_TIMEOUT_S,
          device: Optional[str] = None) -> Tuple[int, int, Optional[torch.device]]:
    """Join the process group that ``torchrun`` describes in the environment (``RANK``,
    ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``).

    Args:
        backend: default ``"nccl"`` when CUDA is available (and ``device`` is not ``"cpu"``), else ``"gloo"``.
        timeout_s: how long a collective may wait for the other processes before it fails. It must
            exceed the longest pause of rank 0 between two iterations (a validation, a checkpoint).
        device: ``"cpu"`` to train on the CPU even where CUDA is available.
    Returns:
        ``(rank, world_size, device)``: the device of this rank (``cuda:LOCAL_RANK`` with NCCL, the
        CPU with gloo); ``(0, 1, None)`` when not launched by ``torchrun`` (one process).
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return 0, 1, None
    if not dist.is_available():
        raise DistributedError("this torch build has no torch.distributed; run one process")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() and device != "cpu" else "gloo"
    if backend == "nccl":
        if local >= torch.cuda.device_count():
            raise DistributedError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} CUDA device(s): "
                                   "use --nproc-per-node <= the number of GPUs")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device(device) if device is not None else torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return dist.get_rank(), dist.get_world_size(), dev


def teardown(finished: bool = False) -> None:
    """Leave the process group (if any).

    Args:
        finished: this rank ended normally. It then waits at a barrier until every rank has, so that no
            process tears its connections down while a peer still writes (a rank that left early was
            seen to abort in gloo's destructor: "terminate called without an active exception"). After an
            error no barrier: the peers may be gone and the run must fail at once.
    """
    if dist.is_available() and dist.is_initialized():
        if finished:
            try:
                dist.barrier()
            except Exception:  # a peer died after its last collective: leaving is all that is left to do
                pass
        dist.destroy_process_group()


def shard_range(n_tasks: int, rank: int, size: int) -> Tuple[int, int]:
    """The contiguous share ``[start, stop)`` of ``n_tasks`` tasks that ``rank`` of ``size`` processes
    takes: sizes differ by at most one (the first ``n_tasks % size`` ranks take one more)."""
    if n_tasks < size:
        raise ValueError(f"a meta-batch of {n_tasks} task(s) cannot be shared by {size} processes: use "
                         f"--meta-batch >= {size} (or fewer processes); ProtoNet's paper schedule trains on one "
                         "episode per iteration, which one process must do")
    base, extra = divmod(n_tasks, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def _all_reduce(flat: Tensor, what: str) -> None:
    try:
        dist.all_reduce(flat)
    except Exception as err:  # gloo: RuntimeError; NCCL: DistBackendError (a RuntimeError) or a timeout
        rank, size = world()
        raise DistributedError(
            f"process {rank} of {size}: the all-reduce of {what} failed ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}). Another process probably crashed, was killed or "
            "hangs: its own error is printed above (torchrun names the failed rank)."
        ) from None  # the backend's error is in the line: no second, chained traceback (still err.__context__)


class DistributedStep:
    """The meta-iteration of one process of a data-parallel run (``TrainingLoop(step_fn=...)``).

    ``step(batch, optimizer)``: ``batch`` is this rank's share of a meta-batch of ``meta_batch``
    tasks (or the whole meta-batch, which is then cut with :func:`shard_range`); clears the
    gradients, ``learner.meta_backward(share)``, one ``all_reduce`` of the size-weighted gradients
    and metrics, a finiteness check of the global loss (the same on every rank, so they all stop
    or go on together), the learner's ``clip_gradients()``, ``optimizer.step()``. Returns ``{"loss", "accuracy"}`` of the whole
    meta-batch (0-dim tensors), like :meth:`metalib.algorithms.Learner.train_step`.
    """

    def __init__(self, learner, meta_batch: int) -> None:
        self.learner, self.meta_batch = learner, int(meta_batch)
        self.rank, self.size = world()
        shard_range(self.meta_batch, 0, self.size)  # refuses a meta-batch smaller than the world

    def shard(self, batch: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        """This rank's share of a whole meta-batch."""
        a, b = shard_range(batch[0].shape[0], self.rank, self.size)
        return tuple(t[a:b] for t in batch)

    def __call__(self, batch: Sequence[Tensor], optimizer: torch.optim.Optimizer) -> Dict[str, Tensor]:
        if batch[0].shape[0] == self.meta_batch and self.size > 1:
            batch = self.shard(batch)
        weight = batch[0].shape[0] / self.meta_batch
        optimizer.zero_grad(set_to_none=True)
        loss, preds = self.learner.meta_gradient(batch)
        metrics = query_metrics(loss, preds, batch[3])
        params = [p for p in self.learner.parameters() if p.requires_grad]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        keys = sorted(metrics)
        dtype = grads[0].dtype if grads else torch.float32
        flat = torch.cat([g.reshape(-1) for g in grads]
                         + [torch.stack([metrics[k].detach().to(dtype).reshape(()) for k in keys])]) * weight
        if self.size > 1:
            _all_reduce(flat, "the meta-gradient")
        at = 0
        for p in params:
            p.grad = flat[at:at + p.numel()].view_as(p).clone()
            at += p.numel()
        reduced = {k: flat[at + i] for i, k in enumerate(keys)}
        check_finite(reduced["loss"], "the meta-loss (all processes)")
        self.learner.clip_gradients()  # of the summed meta-gradient, as train_step clips in one process
        optimizer.step()
        return reduced


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def broadcast_state(state: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """Rank 0's ``state`` (e.g. ``TrainingLoop.state()``) on every rank (tensors via the CPU)."""
    box = [_to_cpu(state) if is_main() else None]
    try:
        dist.broadcast_object_list(box, src=0)
    except Exception as err:
        raise DistributedError(f"process {world()[0]}: receiving the starting state from rank 0 failed "
                               f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
    return box[0]
