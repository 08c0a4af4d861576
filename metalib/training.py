"""One meta-training loop for every learner, with callbacks.

:class:`TrainingLoop` draws a batch of tasks, calls ``learner.train_step(batch, optimizer)`` (the
algorithm's meta-gradient and outer update: :class:`metalib.algorithms.Learner`), steps the
learning-rate schedule, records the metrics in a :class:`History`, and hands the rest to callbacks:
a progress bar (:class:`ProgressBar`), weight snapshots (:class:`Snapshots`); the few-shot runs add
validation, best-weights keeping and checkpoints (:mod:`metalib.fewshot`). :func:`meta_train` is
the loop for in-memory task families such as the sinusoids.

What the loop guarantees:

* **An iteration is atomic.** A Ctrl-C (a notebook's "interrupt kernel") that arrives while the
  weights are being updated is held until the iteration is complete; one that arrives before (while
  sampling, adapting, back-propagating) undoes the iteration's partial work — the episode generator
  and the random state go back to where they were, the weights were not touched. Either way the
  loop stops at the end of a complete iteration and ``run()`` again continues exactly from there.
* **Nothing non-finite is kept.** A NaN/inf loss stops the run before the update
  (:class:`TrainingDiverged`, weights untouched); weights that become non-finite after an update
  (checked every ``check_every`` iterations) are rolled back to the last good state — the one
  kept at the start and every ``keep_every`` iterations (no copy of the weights per iteration).

On a GPU the loop runs **without a host synchronisation per iteration** (``deferred``, the default
on CUDA): the metrics stay device tensors and every finiteness check of the step is recorded on the
device (:func:`metalib.functional.deferred_finite_checks`); once every ``check_every`` iterations
(and at the end of a run, before a checkpoint or a kept state) one sync reads them all. A NaN/inf
found there rolls the run back to the last good state and stops it with :class:`TrainingDiverged`
naming the first bad iteration (the update was taken: the GPU did not wait to be asked). On the CPU
nothing changes (``check_every=1``, the loss checked before every update).

Optionally (``capture=``) the meta-iteration is captured once per batch shape and replayed:
``"cuda_graph"`` (:class:`CudaGraphStep`: the gradient computation — inner steps, outer backward —
as one CUDA graph, the optimiser step after it) or ``"compile"`` (``torch.compile``). Without CUDA,
``"cuda_graph"`` falls back to the plain step with a warning, and a capture that fails falls back
to it too (the reason is kept in ``loop.capture_error``).
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .device import progress_bar
from .engine import CudaGraphStep  # noqa: F401 - re-exported (capture="cuda_graph")
from .functional import LossFn
from .harness import Harness, TrainingDiverged


# ============================================================================ what a run records
@dataclass
class History:
    """What a run recorded: per iteration the training loss and accuracy (%; NaN where the learner
    reports none, e.g. regression), validation results ``(iteration, accuracy %, ci95)``, weight
    snapshots ``{iteration: state_dict}`` and the training time in seconds."""

    loss: List[float] = field(default_factory=list)
    accuracy: List[float] = field(default_factory=list)
    val: List[Tuple[int, float, float]] = field(default_factory=list)
    snapshots: Dict[int, Dict[str, Tensor]] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> Dict[str, Any]:
        """Everything but the snapshots, as plain lists (what a checkpoint stores)."""
        return {"loss": list(self.loss), "accuracy": list(self.accuracy),
                "val": [list(v) for v in self.val], "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "History":
        return cls(list(d["loss"]), list(d["accuracy"]), [tuple(v) for v in d["val"]], seconds=float(d["seconds"]))

    def _lengths(self) -> Tuple[int, int, int]:
        return len(self.loss), len(self.accuracy), len(self.val)

    def _truncate(self, lengths: Tuple[int, int, int]) -> None:
        n_loss, n_acc, n_val = lengths
        del self.loss[n_loss:], self.accuracy[n_acc:], self.val[n_val:]


# ============================================================================ callbacks
class Callback:
    """Hooks of :class:`TrainingLoop`; override what you need. ``loop.iteration`` counts completed
    iterations. A callback with state to resume implements ``state_dict``/``load_state_dict``."""

    def on_run_start(self, loop: "TrainingLoop", until: int) -> None: ...

    def on_iteration_end(self, loop: "TrainingLoop", metrics: Dict[str, float]) -> None: ...

    def on_run_end(self, loop: "TrainingLoop") -> None: ...

    def on_interrupt(self, loop: "TrainingLoop") -> None: ...

    def on_diverged(self, loop: "TrainingLoop", error: "TrainingDiverged") -> None: ...


class ProgressBar(Callback):
    """A progress bar with the running loss (and accuracy, and the last validation) over the last
    ``window`` iterations, updated every iteration."""

    def __init__(self, desc: str, window: int = 20, leave: bool = False) -> None:
        self.desc, self.window, self.leave, self.bar = desc, window, leave, None

    def on_run_start(self, loop, until):
        if loop.iteration < until:
            self.bar = progress_bar(loop.iterations, True, self.desc, initial=loop.iteration, leave=self.leave)

    def on_iteration_end(self, loop, metrics):
        if self.bar is None:
            return
        h = loop.history
        self.bar.update(1)
        tail = h.loss[-self.window:]
        if not tail:  # deferred metrics (GPU): the history fills at the next check
            return
        post = {"loss": f"{sum(tail) / len(tail):.3f}"}
        accs = [a for a in h.accuracy[-self.window:] if not math.isnan(a)]
        if accs:
            post["acc"] = f"{sum(accs) / len(accs):.1f}%"
        if h.val:
            post["val"] = f"{h.val[-1][1]:.1f}%"
        self.bar.set_postfix(post, refresh=False)

    def close(self, loop=None, *_):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    on_run_end = on_interrupt = on_diverged = close


class Snapshots(Callback):
    """Keep a copy of the network's weights (``learner.model.state_dict()``) in ``history.snapshots``
    after exactly the iterations ``at`` (0 = the initial weights) and every ``every`` iterations
    (plus 0 and the last), e.g. for the meta-training timeline widget."""

    def __init__(self, every: Optional[int] = None, at: Optional[Iterable[int]] = None) -> None:
        self.every, self.at = every, set(at or ())

    def _take(self, loop, i: int) -> None:
        loop.history.snapshots[i] = {k: v.detach().clone() for k, v in loop.learner.model.state_dict().items()}

    def on_run_start(self, loop, until):
        if loop.iteration == 0 and (self.every or 0 in self.at):
            self._take(loop, 0)

    def on_iteration_end(self, loop, metrics):
        i = loop.iteration
        if i in self.at or (self.every and (i % self.every == 0 or i == loop.iterations)):
            self._take(loop, i)


# ============================================================================ the loop
class TrainingLoop(Harness):
    """Meta-train ``learner`` on batches from ``sample_batch()`` (see the module docstring).

    The loop itself is :meth:`run` and :meth:`_iteration`: sample a batch, ``train_step``, log,
    then the callbacks (validation and best weights, checkpoints, progress). What makes it safe to
    interrupt and resume and fast on a GPU is the harness it inherits (:mod:`metalib.harness`).

    Args:
        learner: a :class:`metalib.algorithms.Learner`.
        sample_batch: a callable with no arguments returning a batch of tasks ``(x_s, y_s, x_q, y_q)``.
        iterations: the length of the run (for the schedule and the progress bar).
        optimizer: default ``learner.outer_optimizer(meta_lr)`` (Adam; Reptile: SGD at ε).
        scheduler: default ``learner.outer_schedule(optimizer, iterations)`` (Reptile's annealing) or none.
        generator: the ``torch.Generator`` ``sample_batch`` draws from, if any: its state is part of
            the run's state (resumable, and restored when an iteration is undone).
        check_every: check that the weights (and, ``deferred``, the losses) are finite every that
            many iterations (one device sync). Default: 1, or 50 when ``deferred``.
        keep_every: keep an in-memory copy of the complete state every that many iterations (and at
            the start): what non-finite weights are rolled back to. ``None``: at the start only.
        deferred: no host sync per iteration (see the module docstring). Default: on CUDA devices.
        step_fn: ``step_fn(batch, optimizer) -> metrics``, the meta-iteration (default
            ``learner.train_step``; :mod:`metalib.distributed` passes its all-reducing step).
        capture: ``None`` (default), ``"cuda_graph"`` or ``"compile"`` (see the module docstring);
            implies ``deferred``. Shapes are static per capture: a batch of another shape is captured anew.
        compile_options: keyword arguments of ``torch.compile`` for ``capture="compile"``.
    """

    def __init__(self, learner, sample_batch: Callable[[], Sequence[Tensor]], iterations: int,
                 optimizer: Optional[torch.optim.Optimizer] = None, scheduler=None, meta_lr: float = 1e-3,
                 callbacks: Sequence[Callback] = (), generator: Optional[torch.Generator] = None,
                 check_every: Optional[int] = None, keep_every: Optional[int] = None,
                 deferred: Optional[bool] = None, step_fn: Optional[Callable[..., Dict[str, Tensor]]] = None,
                 capture: Optional[str] = None, compile_options: Optional[Dict[str, Any]] = None) -> None:
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
            raise ValueError(f"iterations must be an int >= 0, got {iterations!r}")
        if not callable(getattr(learner, "train_step", None)):
            raise TypeError(f"expected a metalib learner (with train_step), got {type(learner).__name__}")
        self.learner, self.sample_batch, self.iterations = learner, sample_batch, iterations
        self.optimizer = optimizer if optimizer is not None else learner.outer_optimizer(meta_lr)
        self.scheduler = scheduler if scheduler is not None else learner.outer_schedule(self.optimizer, iterations)
        self.callbacks: List[Callback] = list(callbacks)
        self.generator = generator
        self.iteration = 0
        self.history = History()
        self.step_fn = step_fn if step_fn is not None else learner.train_step
        self.setup_harness(deferred, check_every, keep_every, capture, compile_options)

    def run(self, until: Optional[int] = None, max_seconds: Optional[float] = None) -> History:
        """Train until iteration ``until`` (default ``iterations``) from where the run stands;
        ``max_seconds``: or until the end of the first iteration that ends after that many seconds."""
        until = self.start_run(until, max_seconds)
        for c in self.callbacks:
            c.on_run_start(self, until)
        start, base = time.perf_counter(), self.history.seconds
        with self.protected(start, base):  # Ctrl-C held during an update, undone before it; errors undone
            if self.pending_callbacks:  # the last run stopped between an update and its callbacks
                self._callbacks({})
            while self.iteration < until:
                self.begin_iteration()
                metrics, held = self._iteration(start, base, until)
                self.end_iteration(held)  # a Ctrl-C held during the update stops the run here
                self._callbacks(metrics)  # validation and best weights, checkpoints, progress
                if max_seconds is not None and time.perf_counter() - start >= max_seconds:
                    break
            self.sync()  # deferred: a run ends on checked iterations
        for c in self.callbacks:
            c.on_run_end(self)
        return self.history

    def _iteration(self, start: float, base: float, until: Optional[int] = None) -> Tuple[Dict[str, Any], bool]:
        it = self.iteration
        batch = self.sample_batch()  # 1. a batch of tasks
        out, ok = self.checked_step(batch, it)  # 2. learner.train_step: the meta-gradient and the update
        self.hold_interrupts()
        if self.scheduler is not None:
            self.scheduler.step()
        self.iteration = it + 1
        metrics = self.log(it, out, ok, until)  # 3. loss and accuracy into the history
        self.history.seconds = base + time.perf_counter() - start
        return metrics, self.release_interrupts()  # was a Ctrl-C held during the update?

    def _callbacks(self, metrics: Dict[str, float]) -> None:
        self.pending_callbacks = True
        for c in self.callbacks:
            c.on_iteration_end(self, metrics)
        self.pending_callbacks = False
        if self.keep_every and self.iteration % self.keep_every == 0:
            self.keep_good_state()


# ============================================================================ the sinusoid-style entry point
def meta_train(
    learner,
    sample_batch: Callable[[], Sequence[Tensor]],
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

    Each iteration is ``learner.train_step(batch, optimizer)``: MAML, Pretrain and ProtoNet take
    one Adam step (``meta_lr``) on their meta-gradient, as in the papers; Reptile takes its own
    interpolation step with ``outer_lr`` (SGD on θ − φ̄), annealed linearly to 0 if
    ``anneal_outer_lr`` (as Nichol et al. do).

    Args:
        learner: a :class:`metalib.algorithms.Learner`, e.g. ``MAML(models.sinusoid_mlp())``.
        sample_batch: a callable with **no arguments** that returns a fresh batch of tasks
            ``(x_s, y_s, x_q, y_q)`` (e.g. ``lambda: tasks.Sinusoid().sample(25, 10, 10, generator=g)``).
        loss_fn: the task loss (e.g. ``F.mse_loss``); default the learner's ``loss_fn``.
        snapshot_every: keep a copy of the network's weights every that many iterations (and at 0
            and the end), e.g. for the meta-training timeline widget.
        snapshot_at: keep a copy after exactly these numbers of updates (0 = the initial weights).
    Returns:
        :class:`History`: ``loss`` per iteration, ``snapshots``, ``seconds``.
    Raises:
        TrainingDiverged (a :class:`metalib.NonFiniteLossError`): a loss became NaN/inf; the weights
            are those before that iteration's update.
    """
    callbacks: List[Callback] = [Snapshots(snapshot_every, snapshot_at)]
    if progress:
        callbacks.append(ProgressBar(desc or learner.describe()))
    previous = learner.loss_fn
    if loss_fn is not None:
        learner.loss_fn = loss_fn
    try:
        loop = TrainingLoop(learner, sample_batch, iterations, meta_lr=meta_lr, callbacks=callbacks)
        if not anneal_outer_lr:
            loop.scheduler = None
        return loop.run()
    finally:
        learner.loss_fn = previous


def log_line(message: str) -> None:
    """Print one line to stderr without breaking a progress bar."""
    from tqdm.auto import tqdm

    tqdm.write(message, file=sys.stderr)
