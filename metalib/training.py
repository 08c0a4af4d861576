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
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from . import checkpoint as ckpt
from .device import progress_bar, tune_cpu_allocator
from .engine import CudaGraphStep
from .functional import LossFn, NonFiniteLossError, deferred_finite_checks


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

    def smoothed(self, window: int = 100) -> List[float]:
        """Running mean of the loss over ``window`` iterations (for plots)."""
        out, acc = [], 0.0
        for i, v in enumerate(self.loss):
            acc += v
            if i >= window:
                acc -= self.loss[i - window]
            out.append(acc / min(i + 1, window))
        return out

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


class TrainingDiverged(NonFiniteLossError):
    """The loss (or the weights) became NaN/inf; training stopped, the learner is at a good state."""

    def __init__(self, message: str, iteration: int, checkpoint=None) -> None:
        super().__init__(message)
        self.iteration, self.checkpoint = iteration, checkpoint


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


# ============================================================================ Ctrl-C, held while the weights change
class _InterruptGuard:
    """While entered (in the main thread), a SIGINT that arrives inside :meth:`critical` is held and
    raised as ``KeyboardInterrupt`` when the critical section ends; outside it, SIGINT behaves as
    before. Elsewhere than the main thread, signals cannot be handled and nothing changes."""

    def __init__(self) -> None:
        self.in_critical = False
        self.pending = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> "_InterruptGuard":
        self.in_critical = self.pending = False
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handler)
            self._installed = True
        return self

    def __exit__(self, *exc) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def _handler(self, signum, frame) -> None:
        if self.in_critical and not self.pending:
            self.pending = True  # a second Ctrl-C while held interrupts at once
            return
        if callable(self._previous):
            self._previous(signum, frame)
        elif self._previous != signal.SIG_IGN:
            raise KeyboardInterrupt

    def begin(self) -> None:
        self.in_critical = True

    def end(self) -> bool:
        """Leave the critical section; whether a Ctrl-C was held in it."""
        self.in_critical = False
        held, self.pending = self.pending, False
        return held


# ============================================================================ the loop
class TrainingLoop:
    """Meta-train ``learner`` on batches from ``sample_batch()`` (see the module docstring).

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
        if capture not in (None, "cuda_graph", "compile"):
            raise ValueError(f"capture must be None, 'cuda_graph' or 'compile', got {capture!r}")
        if check_every is not None and (isinstance(check_every, bool) or not isinstance(check_every, int)
                                        or check_every < 1):
            raise ValueError(f"check_every must be an int >= 1, got {check_every!r}")
        self.learner, self.sample_batch, self.iterations = learner, sample_batch, iterations
        self.optimizer = optimizer if optimizer is not None else learner.outer_optimizer(meta_lr)
        self.scheduler = scheduler if scheduler is not None else learner.outer_schedule(self.optimizer, iterations)
        self.callbacks: List[Callback] = list(callbacks)
        self.generator = generator
        on_cuda = getattr(learner, "device", torch.device("cpu")).type == "cuda"
        self.deferred = bool(on_cuda if deferred is None else deferred) or capture is not None
        self.check_every = check_every if check_every is not None else (50 if self.deferred else 1)
        self.keep_every = keep_every
        self.iteration = 0
        self.history = History()
        self.pending_callbacks = False  # the last iteration's callbacks were interrupted: redo them first
        self._good: Optional[Dict[str, Any]] = None
        self._guard: Optional[_InterruptGuard] = None
        self._pending: List[Tuple[int, Dict[str, Tensor], Optional[Tensor]]] = []  # deferred: (iteration, metrics, ok)
        self.step_fn = step_fn if step_fn is not None else learner.train_step
        self.capture, self.capture_error = capture, None
        self._step = self._plain_step
        if capture == "cuda_graph":
            if on_cuda:
                self._step = CudaGraphStep(self.step_fn, self.optimizer)
            else:
                import warnings

                self.capture_error = "capture='cuda_graph' needs a learner on a CUDA device; running without graphs"
                warnings.warn(self.capture_error, stacklevel=2)
        elif capture == "compile":
            compiled = torch.compile(lambda batch: self.step_fn(batch, self.optimizer), **(compile_options or {}))
            self._step = compiled

    def _plain_step(self, batch: Sequence[Tensor]) -> Dict[str, Tensor]:
        return self.step_fn(batch, self.optimizer)

    # ------------------------------------------------------------------ state
    def state(self) -> Dict[str, Any]:
        """The complete resumable state: learner, optimiser, schedule, generator, RNG, iteration, history
        (deferred: after :meth:`sync`, so that a state is never taken over unchecked iterations)."""
        import copy

        self.sync()
        return {
            "iteration": self.iteration,
            "model": {k: v.detach().clone() for k, v in self.learner.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "scheduler": copy.deepcopy(self.scheduler.state_dict()) if self.scheduler is not None else None,
            "generator": self.generator.get_state() if self.generator is not None else None,
            "rng": ckpt.rng_state(),
            "history": self.history.as_dict(),
            "pending_callbacks": self.pending_callbacks,
            "callbacks": {type(c).__name__: c.state_dict() for c in self.callbacks if hasattr(c, "state_dict")},
        }

    def load_state(self, state: Dict[str, Any], history: bool = True) -> None:
        """Restore what :meth:`state` returned (``history=False``: keep the current history)."""
        self.learner.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.generator is not None and state.get("generator") is not None:
            self.generator.set_state(state["generator"])
        ckpt.set_rng_state(state["rng"])
        self._pending.clear()
        self.iteration = int(state["iteration"])
        self.pending_callbacks = bool(state.get("pending_callbacks", False))
        if history:
            snapshots = self.history.snapshots
            self.history = History.from_dict(state["history"])
            self.history.snapshots = {k: v for k, v in snapshots.items() if k <= self.iteration}
        for c in self.callbacks:
            saved = (state.get("callbacks") or {}).get(type(c).__name__)
            if saved is not None and hasattr(c, "load_state_dict"):
                c.load_state_dict(saved)

    def _mark(self) -> Dict[str, Any]:
        """What undoing an unfinished iteration needs (small: no weights)."""
        return {"iteration": self.iteration, "rng": ckpt.rng_state(), "lengths": self.history._lengths(),
                "generator": self.generator.get_state() if self.generator is not None else None,
                "seconds": self.history.seconds, "pending": len(self._pending)}

    def _undo(self, mark: Dict[str, Any]) -> None:
        del self._pending[mark.get("pending", len(self._pending)):]
        self.iteration = mark["iteration"]
        ckpt.set_rng_state(mark["rng"])
        if self.generator is not None:
            self.generator.set_state(mark["generator"])
        self.history._truncate(mark["lengths"])
        self.history.seconds = mark["seconds"]
        self.optimizer.zero_grad(set_to_none=True)

    def keep_good_state(self) -> None:
        """Remember the current state as the one non-finite weights are rolled back to."""
        self._good = self.state()

    def _rollback(self) -> int:
        """Back to the last good state (history, RNG and all); returns its iteration."""
        self._pending.clear()
        good = self._good
        self.load_state(good, history=False)
        self.history = History.from_dict(good["history"])
        return self.iteration

    # ------------------------------------------------------------------ running
    def _critical_begin(self, *_: Any) -> None:
        if self._guard is not None:
            self._guard.begin()

    def run(self, until: Optional[int] = None, max_seconds: Optional[float] = None) -> History:
        """Train until iteration ``until`` (default ``iterations``) from where the run stands;
        ``max_seconds``: or until the end of the first iteration that ends after that many seconds."""
        until = self.iterations if until is None else until
        if isinstance(until, bool) or not isinstance(until, int) or not 0 <= until <= self.iterations:
            raise ValueError(f"until must be an int in [0, iterations={self.iterations}], got {until!r}")
        if max_seconds is not None and (isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float))
                                        or not max_seconds >= 0):
            raise ValueError(f"max_seconds must be a number >= 0, got {max_seconds!r}")
        if self.learner.device.type == "cpu":
            tune_cpu_allocator()  # reuse freed activation memory (metalib.device.tune_cpu_allocator)
        if self._good is None or self._good["iteration"] > self.iteration:
            self.keep_good_state()
        for c in self.callbacks:
            c.on_run_start(self, until)
        hook = self.optimizer.register_step_pre_hook(self._critical_begin)
        guard = self._guard = _InterruptGuard()
        start, base = time.perf_counter(), self.history.seconds
        mark = None
        try:
            with guard:
                if self.pending_callbacks:
                    self._callbacks({})
                while self.iteration < until:
                    mark = self._mark()
                    metrics, held = self._iteration(mark, start, base, until)
                    mark = None  # complete: nothing to undo from here on
                    if held:  # a Ctrl-C came during the update: stop here, the callbacks run on resume
                        self.pending_callbacks = True
                        raise KeyboardInterrupt
                    self._callbacks(metrics)
                    if max_seconds is not None and time.perf_counter() - start >= max_seconds:
                        break
                self.sync()  # deferred: a run ends on checked iterations
        except KeyboardInterrupt:
            if mark is None:  # between iterations (e.g. in a validation): the iteration is complete
                self.history.seconds = base + time.perf_counter() - start
            elif guard.in_critical:  # raised (not signalled) while the weights changed: the last good state
                self._rollback()
            else:  # before the update: undo the iteration's partial work
                self._undo(mark)
            for c in self.callbacks:
                c.on_interrupt(self)
            raise
        except TrainingDiverged:
            raise  # already undone / rolled back
        except Exception:
            if mark is not None and not guard.in_critical:
                self._undo(mark)  # e.g. bad input found mid-iteration: the run stays where it was
            raise
        finally:
            hook.remove()
            self._guard = None
        for c in self.callbacks:
            c.on_run_end(self)
        return self.history

    def _callbacks(self, metrics: Dict[str, float]) -> None:
        self.pending_callbacks = True
        for c in self.callbacks:
            c.on_iteration_end(self, metrics)
        self.pending_callbacks = False
        if self.keep_every and self.iteration % self.keep_every == 0:
            self.keep_good_state()

    def _iteration(self, mark: Dict[str, Any], start: float, base: float,
                   until: Optional[int] = None) -> Tuple[Dict[str, Any], bool]:
        it = self.iteration
        ok = None
        try:
            batch = self.sample_batch()
            if self.deferred:
                with deferred_finite_checks() as checks:
                    out = self._step(batch)
                ok = checks.all_finite()
            else:
                out = self._step(batch)
        except NonFiniteLossError as err:  # raised before the update: the weights are untouched
            self._undo(mark)
            self._diverged(f"training stopped at iteration {it}: {err} The weights are those before that "
                           f"update (iteration {it}).", it, err)
        guard = self._guard
        guard.begin()  # from the update (or now, if the learner had none) to the end of the bookkeeping
        if self.scheduler is not None:
            self.scheduler.step()
        if self.deferred:  # no host sync: metrics stay device tensors until the next check
            metrics: Dict[str, Any] = {k: v.detach() for k, v in out.items()}
            self._pending.append((it, metrics, ok))
            self.iteration = it + 1
            if self.iteration % self.check_every == 0 or self.iteration in (self.iterations, until):
                self.sync()
            self.history.seconds = base + time.perf_counter() - start
            return metrics, guard.end()
        metrics = {k: float(v) for k, v in out.items()}
        if (it + 1) % self.check_every == 0 or it + 1 == self.iterations:
            self._check_weights(it)
        self.iteration = it + 1
        self.history.loss.append(metrics.get("loss", float("nan")))
        self.history.accuracy.append(metrics.get("accuracy", float("nan")))
        self.history.seconds = base + time.perf_counter() - start
        return metrics, guard.end()  # the iteration is complete; was a Ctrl-C held during the update?

    def sync(self) -> None:
        """Deferred mode: read the pending iterations' metrics and finiteness flags, and the weights'
        finiteness, in one host sync; record the metrics in the history. A non-finite loss or weight
        rolls the run back to the last good state and raises :class:`TrainingDiverged`. No-op when
        nothing is pending (and always on the non-deferred path)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        first = pending[0][0]
        nan = torch.tensor(float("nan"))
        rows = []
        for _, m, ok in pending:
            vals = [m.get("loss", nan), m.get("accuracy", nan), ok if ok is not None else torch.tensor(True)]
            dev = next((v.device for v in vals if v.device.type != "cpu"), torch.device("cpu"))
            rows.append(torch.stack([v.detach().to(dev, torch.float64).reshape(()) for v in vals]))
        params = dict(self.learner.named_parameters())
        finite = [torch.isfinite(p).all() for p in params.values()]
        dev = rows[0].device
        host = torch.cat([torch.stack(rows).flatten()] + ([torch.stack(finite).to(dev, torch.float64)] if finite else [])
                         ).cpu().tolist()  # the one sync
        table, weights_ok = host[:3 * len(rows)], host[3 * len(rows):]
        bad = [first + i for i in range(len(rows)) if table[3 * i + 2] < 0.5
               or not math.isfinite(table[3 * i])]
        bad_weights = [n for n, v in zip(params, weights_ok) if v < 0.5]
        if not bad and not bad_weights:
            for i in range(len(rows)):
                self.history.loss.append(table[3 * i])
                self.history.accuracy.append(table[3 * i + 1])
            return
        it = bad[0] if bad else pending[-1][0]
        if self._guard is not None:
            self._guard.in_critical = False
        back = self._rollback()
        what = (f"the loss became non-finite at iteration {it}" if bad
                else f"the weights became non-finite by iteration {it} ({', '.join(bad_weights[:3])})")
        self._diverged(f"{what} (found at the check after iteration {pending[-1][0]}: on this device the loop "
                       f"checks every {self.check_every} iterations without a host sync per iteration); the learner "
                       f"was rolled back to its last good state (iteration {back}). The learning rate is probably "
                       "too large.", it, None)

    def _check_weights(self, it: int) -> None:
        params = dict(self.learner.named_parameters())
        finite = torch.stack([torch.isfinite(p).all() for p in params.values()]) if params else torch.ones(1, dtype=torch.bool)
        if bool(finite.all()):
            return
        bad = [n for n, ok in zip(params, finite.tolist()) if not ok]
        if self._guard is not None:
            self._guard.in_critical = False
        back = self._rollback()
        self._diverged(f"the weights became non-finite after the update at iteration {it} ({', '.join(bad[:3])}); "
                       f"the learner was rolled back to its last good state (iteration {back}). The learning rate "
                       "is probably too large.", it, None)

    def _diverged(self, message: str, it: int, cause: Optional[Exception]):
        err = TrainingDiverged(message, it)
        for c in self.callbacks:
            c.on_diverged(self, err)
        raise err from cause


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
