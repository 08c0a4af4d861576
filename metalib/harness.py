"""The production harness of the training loop (:class:`metalib.training.TrainingLoop` inherits it):
what makes a run safe to interrupt, to resume and to run fast on a GPU, kept out of the loop a
student reads. The loop calls these at its steps; every guarantee is listed in
:mod:`metalib.training`'s docstring and tested in ``tests/test_checkpoint.py``,
``test_hardening_checkpoint.py`` and ``test_sync_free.py``:

* **Ctrl-C atomicity** (:meth:`Harness.protected`, :meth:`Harness.hold_interrupts`): a Ctrl-C while
  the weights change is held to the end of the iteration; one before it undoes the iteration's
  partial work (:meth:`Harness.undo`: generator, random state, history);
* **rollback** (:meth:`Harness.keep_good_state`, :meth:`Harness.rollback`): non-finite weights go
  back to the last good state;
* **resumable runs** (:meth:`Harness.state`, :meth:`Harness.load_state`);
* **no host sync per iteration on a GPU** (``deferred``: :meth:`Harness.checked_step`,
  :meth:`Harness.log`, :meth:`Harness.sync`), and **graph capture / compile** of the step
  (``capture``: :class:`metalib.engine.CudaGraphStep`, ``torch.compile``). DDP is a ``step_fn``
  (:class:`metalib.distributed.DistributedStep`).
"""
from __future__ import annotations

import contextlib
import copy
import math
import signal
import threading
import time
import warnings
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from . import checkpoint as ckpt
from .device import tune_cpu_allocator
from .engine import CudaGraphStep
from .functional import NonFiniteLossError, deferred_finite_checks


class TrainingDiverged(NonFiniteLossError):
    """The loss (or the weights) became NaN/inf; training stopped, the learner is at a good state.
    ``bad_data``: the cause was NaN/inf in the batch's inputs (not divergence), so no learning-rate advice."""

    def __init__(self, message: str, iteration: int, checkpoint=None, bad_data: bool = False) -> None:
        super().__init__(message)
        self.iteration, self.checkpoint, self.bad_data = iteration, checkpoint, bad_data


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


# ============================================================================ the harness
class Harness:
    """The harness half of :class:`metalib.training.TrainingLoop` (see the module docstring)."""

    def setup_harness(self, deferred: Optional[bool], check_every: Optional[int], keep_every: Optional[int],
                      capture: Optional[str], compile_options: Optional[Dict[str, Any]]) -> None:
        """The GPU options (no host sync per iteration, the check interval, capture) and the rollback state."""
        if capture not in (None, "cuda_graph", "compile"):
            raise ValueError(f"capture must be None, 'cuda_graph' or 'compile', got {capture!r}")
        if check_every is not None and (isinstance(check_every, bool) or not isinstance(check_every, int)
                                        or check_every < 1):
            raise ValueError(f"check_every must be an int >= 1, got {check_every!r}")
        on_cuda = getattr(self.learner, "device", torch.device("cpu")).type == "cuda"
        self.deferred = bool(on_cuda if deferred is None else deferred) or capture is not None
        self.check_every = check_every if check_every is not None else (50 if self.deferred else 1)
        self.keep_every = keep_every
        self.pending_callbacks = False  # the last iteration's callbacks were interrupted: redo them first
        self._good: Optional[Dict[str, Any]] = None
        self._guard: Optional[_InterruptGuard] = None
        self._current: Optional[Dict[str, Any]] = None  # what undoing the running iteration needs
        self._pending: List[Tuple[int, Dict[str, Tensor], Optional[Tensor]]] = []  # deferred: (iteration, metrics, ok)
        self.capture, self.capture_error = capture, None
        self._step = self._plain_step
        if capture == "cuda_graph":
            if on_cuda:
                self._step = CudaGraphStep(self.step_fn, self.optimizer)
            else:
                self.capture_error = "capture='cuda_graph' needs a learner on a CUDA device; running without graphs"
                warnings.warn(self.capture_error, stacklevel=3)
        elif capture == "compile":
            compiled = torch.compile(lambda batch: self.step_fn(batch, self.optimizer), **(compile_options or {}))
            self._step = compiled

    def _plain_step(self, batch: Sequence[Tensor]) -> Dict[str, Tensor]:
        return self.step_fn(batch, self.optimizer)

    # ------------------------------------------------------------------ state
    def state(self) -> Dict[str, Any]:
        """The complete resumable state: learner, optimiser, schedule, generator, RNG, iteration, history
        (deferred: after :meth:`sync`, so that a state is never taken over unchecked iterations)."""
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
            self.history = type(self.history).from_dict(state["history"])
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
        self.history = type(self.history).from_dict(good["history"])
        return self.iteration

    # ------------------------------------------------------------------ running
    # ------------------------------------------------------------------ around a run and an iteration
    def _critical_begin(self, *_: Any) -> None:
        if self._guard is not None:
            self._guard.begin()

    def start_run(self, until: Optional[int], max_seconds: Optional[float]) -> int:
        """Check ``run``'s arguments, tune the CPU allocator, keep the state to roll back to; ``until``."""
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
        return until

    @contextlib.contextmanager
    def protected(self, start: float, base: float) -> Iterator[None]:
        """Around the iterations of a run: a Ctrl-C is held while the weights change (the optimiser's
        step pre-hook opens the critical section); on a Ctrl-C or an error the running iteration is
        undone (before its update) or the run rolled back (during it); between iterations nothing is lost."""
        hook = self.optimizer.register_step_pre_hook(self._critical_begin)
        guard = self._guard = _InterruptGuard()
        self._current = None
        try:
            with guard:
                yield
        except KeyboardInterrupt:
            if self._current is None:  # between iterations (e.g. in a validation): the iteration is complete
                self.history.seconds = base + time.perf_counter() - start
            elif guard.in_critical:  # raised (not signalled) while the weights changed: the last good state
                self._rollback()
            else:  # before the update: undo the iteration's partial work
                self._undo(self._current)
            for c in self.callbacks:
                c.on_interrupt(self)
            raise
        except TrainingDiverged:
            raise  # already undone / rolled back
        except Exception:
            if self._current is not None and not guard.in_critical:
                self._undo(self._current)  # e.g. bad input found mid-iteration: the run stays where it was
            raise
        finally:
            hook.remove()
            self._guard = None

    def begin_iteration(self) -> None:
        """Remember what undoing the coming iteration needs (small: no weights)."""
        self._current = self._mark()

    def end_iteration(self, held: bool) -> None:
        """The iteration is complete; a Ctrl-C held during its update stops the run here (its callbacks
        run on resume)."""
        self._current = None
        if held:
            self.pending_callbacks = True
            raise KeyboardInterrupt

    def checked_step(self, batch: Sequence[Tensor], it: int) -> Tuple[Dict[str, Tensor], Optional[Tensor]]:
        """``step_fn(batch, optimizer)`` (or its captured / compiled form); deferred, its finiteness
        checks are collected on the device (``ok``, read at the next :meth:`sync`). A non-finite loss
        found before the update undoes the iteration and stops the run (weights untouched)."""
        ok = None
        try:
            if self.deferred:
                with deferred_finite_checks() as checks:
                    out = self._step(batch)
                ok = checks.all_finite()
                data_ok = checks.inputs_finite()
                if data_ok is not None:  # -1: the batch's inputs held NaN/inf (bad data, not a divergence)
                    ok = torch.where(data_ok, ok.to(torch.float32), torch.full((), -1.0, device=ok.device))
            else:
                out = self._step(batch)
        except NonFiniteLossError as err:  # raised before the update: the weights are untouched
            self._undo(self._current)
            self._diverged(f"training stopped at iteration {it}: {err} The weights are those before that "
                           f"update (iteration {it}).", it, err)
        return out, ok

    def hold_interrupts(self) -> None:
        """From the update (or now, if the learner had none) to the end of the bookkeeping."""
        self._guard.begin()

    def release_interrupts(self) -> bool:
        """Leave the critical section; whether a Ctrl-C was held in it."""
        return self._guard.end()

    def log(self, it: int, out: Dict[str, Tensor], ok: Optional[Tensor], until: Optional[int]) -> Dict[str, Any]:
        """Record iteration ``it``'s metrics in the history and check the weights every ``check_every``
        iterations. Deferred (GPU), the metrics stay device tensors until the next :meth:`sync`."""
        if self.deferred:  # no host sync: metrics stay device tensors until the next check
            metrics: Dict[str, Any] = {k: v.detach() for k, v in out.items()}
            self._pending.append((it, metrics, ok))
            if self.iteration % self.check_every == 0 or self.iteration in (self.iterations, until):
                self.sync()
            return metrics
        metrics = {k: float(v) for k, v in out.items()}
        if self.iteration % self.check_every == 0 or self.iteration == self.iterations:
            self._check_weights(it)
        self.history.loss.append(metrics.get("loss", float("nan")))
        self.history.accuracy.append(metrics.get("accuracy", float("nan")))
        return metrics

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
        bad_data = [first + i for i in range(len(rows)) if table[3 * i + 2] < -0.5]
        if bad and bad_data and bad_data[0] == it:
            self._diverged(f"the loss became non-finite at iteration {it}: its inputs held NaN or inf values (bad data; "
                           f"found at the check after "
                           f"iteration {pending[-1][0]}: on this device the loop checks every {self.check_every} "
                           f"iterations without a host sync per iteration); the learner was rolled back to its last "
                           f"good state (iteration {back}). Clean or drop those examples.", it, None, bad_data=True)
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

    def _diverged(self, message: str, it: int, cause: Optional[Exception], bad_data: bool = False):
        err = TrainingDiverged(message, it, bad_data=bad_data)
        for c in self.callbacks:
            c.on_diverged(self, err)
        raise err from cause


