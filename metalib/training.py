"""A small meta-training loop shared by all algorithms (sinusoid and other in-memory task families)."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional

import torch
from torch import Tensor

from .algorithms import ProtoNet, Reptile
from .batch import TaskBatch
from .device import tune_cpu_allocator
from .functional import LossFn, check_finite

Learner = object  # MAML | Pretrain | Reptile | ProtoNet


@dataclass
class History:
    """What a run recorded: the training loss per iteration and optional weight snapshots."""

    loss: List[float] = field(default_factory=list)
    snapshots: Dict[int, Dict[str, Tensor]] = field(default_factory=dict)
    seconds: float = 0.0

    def smoothed(self, window: int = 100) -> List[float]:
        """Running mean of the loss over ``window`` iterations (for plots)."""
        out, acc = [], 0.0
        for i, v in enumerate(self.loss):
            acc += v
            if i >= window:
                acc -= self.loss[i - window]
            out.append(acc / min(i + 1, window))
        return out


def _module_of(learner) -> torch.nn.Module:
    return learner.encoder if isinstance(learner, ProtoNet) else learner.model


def meta_train(
    learner: Learner,
    sample_batch: Callable[[], TaskBatch],
    iterations: int,
    loss_fn: Optional[LossFn] = None,
    meta_lr: float = 1e-3,
    anneal_outer_lr: bool = False,
    snapshot_every: Optional[int] = None,
    snapshot_at: Optional[Iterable[int]] = None,
    progress: bool = True,
    desc: Optional[str] = None,
) -> History:
    """Meta-train ``learner`` for ``iterations`` meta-batches drawn by ``sample_batch()``.

    MAML, Pretrain and ProtoNet take one Adam step (``meta_lr``) on their meta-loss per
    iteration, as in the papers; Reptile takes its own interpolation step with ``outer_lr``,
    annealed linearly to 0 if ``anneal_outer_lr`` (as Nichol et al. do). MAML and Pretrain
    back-propagate task by task (:meth:`metalib.MAML.meta_backward`: the memory of one task's graph),
    and on the CPU the allocator keeps freed memory for reuse (:func:`metalib.device.tune_cpu_allocator`).

    Args:
        snapshot_every: keep a copy of the weights every that many iterations (and at 0 and the
            end), e.g. for the meta-training timeline widget.
        snapshot_at: keep a copy of the weights after exactly these numbers of updates (0 = the
            initial weights), e.g. log-spaced; combined with ``snapshot_every``.
    Raises:
        metalib.NonFiniteLossError: as soon as a loss is NaN/inf, with the weights left as they
            were before that iteration's update.
    """
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    module = _module_of(learner)
    if all(p.device.type == "cpu" for p in module.parameters()):
        tune_cpu_allocator()  # reuse freed activation memory (metalib.device.tune_cpu_allocator)
    is_reptile = isinstance(learner, Reptile)
    if not is_reptile and not isinstance(learner, ProtoNet) and loss_fn is None:
        raise TypeError(f"{type(learner).__name__} needs a loss_fn")
    opt = None if is_reptile else torch.optim.Adam(module.parameters(), lr=meta_lr)
    history = History()

    def snapshot(i: int) -> None:
        history.snapshots[i] = copy.deepcopy({k: v.detach().clone() for k, v in module.state_dict().items()})

    wanted = set(snapshot_at or ())
    if snapshot_every or 0 in wanted:
        snapshot(0)
    bar = _progress(iterations, progress, desc or type(learner).__name__)
    start = time.perf_counter()
    for it in range(iterations):
        batch = sample_batch()
        if is_reptile:
            eps = learner.annealed_outer_lr(it, iterations) if anneal_outer_lr else learner.outer_lr
            loss = learner.meta_step(batch, loss_fn, outer_lr=eps)
        else:
            opt.zero_grad(set_to_none=True)
            if isinstance(learner, ProtoNet):
                loss = learner.meta_loss(batch)
                check_finite(loss.detach(), f"the meta-loss at iteration {it}")
                loss.backward()
            elif hasattr(learner, "meta_backward"):  # MAML, Pretrain: one task's graph alive at a time
                loss = learner.meta_backward(batch, loss_fn)
                check_finite(loss, f"the meta-loss at iteration {it}")
            else:
                loss = learner.meta_loss(batch, loss_fn)
                check_finite(loss.detach(), f"the meta-loss at iteration {it}")
                loss.backward()
            opt.step()
        history.loss.append(float(loss.detach()))
        if (it + 1) in wanted or (snapshot_every and ((it + 1) % snapshot_every == 0 or it + 1 == iterations)):
            snapshot(it + 1)
        if bar is not None:
            bar.update(1)
            if it % 50 == 0 or it + 1 == iterations:
                bar.set_postfix(loss=f"{sum(history.loss[-50:]) / len(history.loss[-50:]):.3f}")
    history.seconds = time.perf_counter() - start
    if bar is not None:
        bar.close()
    return history


def _progress(total: int, enabled: bool, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False)
