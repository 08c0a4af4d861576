"""Few-shot image classification runs: a config, the paper's defaults, a resumable trainer, shipping.

>>> from metalib.fewshot import default_config, FewShotTrainer
>>> cfg = default_config("protonet", n_way=5, k_shot=1, iterations=2000)
>>> trainer = FewShotTrainer(cfg, run_dir="runs/protonet-5w1s")   # loads Omniglot train/val
>>> trainer.fit()                     # Ctrl-C / "interrupt kernel" any time; fit() again resumes
>>> print(trainer.test())             # 600 seeded test episodes, mean ± 95% CI

- **Any registered algorithm** (:mod:`metalib.algorithms`): the config names it; its class says
  which config it takes (``config_class``: its hyperparameters, declared in its file), what network
  it needs (``default_model``) and the paper's settings (``paper_settings``), which
  :func:`default_config` starts from.
- **The loop** is :class:`metalib.training.TrainingLoop` (one for everything): meta-batches from
  :class:`metalib.data.EpisodeSampler` drawn with a seeded generator, ``learner.train_step`` (Adam
  on the meta-gradient; Reptile's interpolation), the learner's own schedule or Adam's rate halved
  every ``lr_decay_every`` iterations; :class:`FewShotTrainer` adds validation on held-out classes
  every ``val_every`` iterations keeping the best weights (``best.pt``), resumable checkpoints
  (``last.pt``, :mod:`metalib.checkpoint`) every ``checkpoint_every`` iterations and when
  interrupted, and stops on NaN/inf with a clear message (:class:`TrainingDiverged`).
- **The evaluation protocol** is :func:`metalib.evaluation.evaluate`: 600 seeded episodes shared by
  every algorithm, mean ± 95% CI.
"""
from __future__ import annotations

import copy
import math
import shlex
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from . import checkpoint as ckpt
from . import runs
from .device import CPU_THREADS, DeviceLike, cpu_threads, default_device, describe_device, tune_cpu_allocator
from .evaluation import TEST_SEED, VAL_SEED, EvalResult, evaluate, images_of, seeded_episodes
from .io import PathLike
from .training import Callback, History, ProgressBar, TrainingDiverged, TrainingLoop, log_line
from .config import (DATASETS, FewShotConfig, budget_settings, build_learner, default_config, model_kwargs,  # noqa: F401
                     paper_settings)

__all__ = [
    "FewShotConfig", "default_config", "paper_settings", "load_split", "build_learner", "FewShotTrainer",
    "pretrained_learner", "evaluate_pretrained", "ship", "load_run", "evaluate", "EvalResult", "seeded_episodes",
    "TrainingDiverged", "History", "TEST_SEED", "VAL_SEED", "DATASETS",
]


# ============================================================================ data and learners
def load_split(config: FewShotConfig, split: str, progress: Optional[bool] = False):
    """The ``split`` ("train" / "val" / "test") of ``config.dataset`` (a :class:`metalib.data.ClassImageSet`)."""
    from . import data

    if config.dataset == "omniglot":
        return data.Omniglot(split, splits=config.splits, image_size=config.image_size, progress=progress)
    if config.dataset == "miniimagenet":
        return data.MiniImageNet(split, image_size=config.image_size, progress=progress)
    raise ValueError("dataset='custom': pass the images yourself (train_data=, val_data=, dataset=)")


# ============================================================================ the trainer
def cosine_factor(iteration: int, length: int, final: float) -> float:
    r"""The cosine schedule's multiplier of ``meta_lr`` after ``iteration`` steps:
    :math:`f + (1 - f)\,\tfrac12\,(1 + \cos(\pi \min(t, T) / T))` with ``T = length``, ``f = final``."""
    t = min(iteration, length) / length
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * t))


def lr_scheduler(optimizer: torch.optim.Optimizer, config: FewShotConfig):
    """The outer learning-rate schedule of ``config``: ``StepLR`` (x ``lr_decay`` every ``lr_decay_every``)
    or the cosine anneal (:func:`cosine_factor`). Both are resumable (their state is the step count)."""
    if config.lr_schedule == "cosine":
        length, final = config.lr_decay_every, config.lr_decay
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: cosine_factor(it, length, final))
    return torch.optim.lr_scheduler.StepLR(optimizer, config.lr_decay_every, config.lr_decay)


def _world() -> Tuple[int, int]:
    """``(rank, world_size)`` of a torch.distributed process group, ``(0, 1)`` without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _Validation(Callback):
    """Validate every ``val_every`` iterations (and at the last), keep the best weights (``best.pt``)."""

    def __init__(self, trainer: "FewShotTrainer") -> None:
        self.t = trainer
        self.best: Optional[Dict[str, Any]] = None          # {"iteration", "accuracy", "ci95"}
        self.best_state: Optional[Dict[str, Tensor]] = None

    def state_dict(self) -> Dict[str, Any]:
        return {"best": dict(self.best) if self.best else None}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.best = dict(state["best"]) if state.get("best") else None

    def on_iteration_end(self, loop, metrics):
        c, it = self.t.config, loop.iteration
        if self.t.val_data is not None and c.val_every and (it % c.val_every == 0 or it == c.iterations):
            self.validate_and_keep_best()

    def validate_and_keep_best(self) -> None:
        t, it = self.t, self.t.loop.iteration
        res = t.validate()
        runs.record_validation(t.history, it, res.mean, res.ci95)  # once per iteration, resumed or not
        improved = runs.improves(self.best, it, res.mean)
        if improved:
            self.best = {"iteration": it, "accuracy": res.mean, "ci95": res.ci95}
            self.best_state = {k: v.detach().clone() for k, v in t.learner.state_dict().items()}
            if t.run_dir is not None:
                ckpt.save_checkpoint(t.run_dir / "best.pt", {
                    "config": t.config.to_dict(), "iteration": it, "model": self.best_state,
                    "rng": {}, "validation": res.as_dict(),
                })
        t._log(f"iteration {it}: validation {res.mean:.2f}% ± {res.ci95:.2f}% ({res.episodes} seeded val "
               f"episodes, {t.config.n_way}-way {t.config.k_shot}-shot)"
               + (" — best so far" if improved else f" (best {self.best['accuracy']:.2f}% at {self.best['iteration']})"))


class _Checkpoints(Callback):
    """Write ``last.pt`` every ``checkpoint_every`` iterations, at the end of a run and when interrupted."""

    def __init__(self, trainer: "FewShotTrainer") -> None:
        self.t, self.until = trainer, None

    def on_run_start(self, loop, until):
        self.until = until

    def on_iteration_end(self, loop, metrics):
        c, it = self.t.config, loop.iteration
        if (c.checkpoint_every and it % c.checkpoint_every == 0) or it == self.until:
            self.t.save()

    def on_interrupt(self, loop):
        where = self.t.save()
        c = self.t.config
        self.t._log(f"interrupted: {c.describe()} stopped after iteration {loop.iteration}/{c.iterations}"
                    + (f"; state saved to {where}" if where else "")
                    + ". Call fit() again (or run the same command) to resume exactly from there.")


class FewShotTrainer:
    """Meta-train a learner on few-shot episodes, resumably (see the module docstring).

    Args:
        config: a :class:`FewShotConfig` (e.g. from :func:`default_config`).
        train_data / val_data: the classes to train / validate on (a dataset with ``.images`` or a
            uint8 tensor ``[C, P, ch, H, W]``); by default ``config.dataset``'s "train" / "val"
            splits. ``val_data=False`` (or ``config.val_every=0``) turns validation off.
        run_dir: where ``config.json``, ``last.pt`` (resumable state) and ``best.pt`` (best
            validation weights) go; ``None`` keeps everything in memory (no checkpoints).
        resume: if ``run_dir`` holds a checkpoint, continue from it (its config must equal
            ``config``, else :class:`metalib.checkpoint.ConfigMismatchError`); ``False`` starts over
            and overwrites the run's checkpoints.
        longer: resuming, accept a config that differs only by a larger ``iterations`` (train a
            finished run longer; the command line's ``--longer``).
        device: where to train (default :func:`metalib.device.default_device`). On the CPU the
            allocator is tuned (:func:`metalib.device.tune_cpu_allocator`).
        progress: show a ``tqdm`` progress bar. log: print the validation/resume/interrupt lines
            (default: as ``progress``).
        deferred, check_every, capture: the GPU options of :class:`metalib.training.TrainingLoop`
            (no host sync per iteration, the finiteness check interval, CUDA graphs / compile).
        distributed: train as one process of a ``torchrun`` job (:mod:`metalib.distributed`); default:
            when a process group of more than one process is initialised. Every rank builds the
            same trainer; rank 0 alone validates, logs and writes ``run_dir``, and the others start
            from its state (fresh or resumed).

    Reproducibility: the learner is initialised from ``torch.manual_seed(config.seed)``; training
    episodes come from a generator seeded with ``config.seed``; validation and test episodes from
    their own seeded generators (so validating never changes the training run). Given the same
    device and thread count, a run interrupted and resumed ends with bit-identical weights to an
    uninterrupted one.
    """

    def __init__(self, config: FewShotConfig, train_data=None, val_data=None, run_dir: Optional[PathLike] = None,
                 resume: bool = True, device: DeviceLike = None, progress: bool = True,
                 log: Optional[bool] = None, longer: bool = False, deferred: Optional[bool] = None, check_every: Optional[int] = None,
                 capture: Optional[str] = None, distributed: Optional[bool] = None) -> None:
        from .data import EpisodeSampler

        if not isinstance(config, FewShotConfig):
            raise TypeError(f"config must be a FewShotConfig, got {type(config).__name__}")
        self.config = c = config
        self.device = default_device(device)
        if self.device.type == "cpu":
            tune_cpu_allocator()
        rank, size = _world()
        self.distributed = size > 1 if distributed is None else bool(distributed)
        self.rank, self.world_size = (rank, size) if self.distributed else (0, 1)
        if self.rank != 0:  # rank 0 alone logs, validates and writes the run folder
            progress, log, run_dir, val_data = False, False, None, False
        self.progress = progress
        self.log = progress if log is None else bool(log)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.longer = bool(longer)
        train = images_of(train_data if train_data is not None else load_split(c, "train", None if progress else False))
        self._check_images(train, "train_data")
        self.train_sampler = EpisodeSampler(train, c.train_way_, c.train_shot_, c.train_query, device=self.device)
        self.val_data = None
        if c.val_every and val_data is not False:
            self.val_data = images_of(val_data if val_data is not None else load_split(c, "val", None if progress else False))
            self._check_images(self.val_data, "val_data")

        torch.manual_seed(c.seed)
        self.learner = build_learner(c).to(self.device)
        if self.val_data is not None:
            self.check_episodes(self.val_data, what="validation")  # before any training, not at the first validation
        optimizer = self.learner.outer_optimizer(c.meta_lr)
        scheduler = self.learner.outer_schedule(optimizer, c.iterations)
        if scheduler is None and c.lr_decay_every:
            scheduler = lr_scheduler(optimizer, c)
        self.generator = torch.Generator().manual_seed(c.seed)
        self._validation = _Validation(self)
        step_fn, sample = None, lambda: self.train_sampler.sample(c.meta_batch, generator=self.generator)
        if self.distributed:
            from .distributed import DistributedStep, shard_range

            step_fn = DistributedStep(self.learner, c.meta_batch)
            a, b = shard_range(c.meta_batch, self.rank, self.world_size)

            def sample():  # the same seeded indices on every rank; the images of this rank's share only
                classes, picks = self.train_sampler.sample_indices(c.meta_batch, generator=self.generator)
                return self.train_sampler.gather(classes[a:b], picks[a:b])
        self.loop = TrainingLoop(
            self.learner, sample, c.iterations,
            optimizer, scheduler, callbacks=[self._validation, _Checkpoints(self)], generator=self.generator,
            keep_every=c.checkpoint_every or None, deferred=deferred, check_every=check_every, step_fn=step_fn,
            capture=capture)
        self.last_checkpoint_iteration: Optional[int] = None

        if self.run_dir is not None:
            if self.run_dir.is_dir():
                ckpt.clean_orphan_temp_files(self.run_dir)  # left by a write killed half-way (kill -9)
            last = self.run_dir / "last.pt"
            if resume and last.exists():
                self._resume(last)
            else:
                runs.check_fresh_start(self.run_dir, resume)  # never delete a best.pt without resume=False
                self.run_dir.mkdir(parents=True, exist_ok=True)
                for name in ("last.pt", "best.pt"):
                    (self.run_dir / name).unlink(missing_ok=True)
                ckpt.save_config(self.run_dir / "config.json", c.to_dict())
        if self.distributed:  # every rank starts from rank 0's state (fresh or resumed)
            from .distributed import broadcast_state

            state = broadcast_state(self.loop.state() if self.rank == 0 else None)
            if self.rank != 0:
                self.loop.load_state(state)

    def check_episodes(self, data, n_way: Optional[int] = None, what: str = "test") -> None:
        """Raise ``ValueError`` (one line) if ``data`` cannot give this run's ``n_way``-way
        ``k_shot``-shot episodes with ``test_query`` queries per class, or the learner cannot
        classify them — before any training (the command line checks the test split this way)."""
        from .data import EpisodeSampler

        c, n = self.config, n_way or self.config.n_way
        images = images_of(data)
        self._check_images(images, f"the {what} data")
        try:
            EpisodeSampler(images, n, c.k_shot, c.test_query)
        except (ValueError, TypeError) as err:
            raise ValueError(f"the {what} episodes cannot be drawn: {err}") from None
        self.learner.check_task(n)

    def _check_images(self, images: Tensor, what: str) -> None:
        c = self.config
        if images.dim() != 5 or tuple(images.shape[2:]) != (c.in_channels, c.image_size, c.image_size):
            raise ValueError(f"{what} has images of shape {tuple(images.shape[2:])} per image, but the config "
                             f"says ({c.in_channels}, {c.image_size}, {c.image_size}) (in_channels, image_size)")

    # ------------------------------------------------------------------ the run's parts
    @property
    def model(self) -> nn.Module:
        """The learner's network."""
        return self.learner.model

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.loop.optimizer

    @property
    def scheduler(self):
        return self.loop.scheduler

    @property
    def iteration(self) -> int:
        return self.loop.iteration

    @property
    def history(self) -> History:
        return self.loop.history

    @property
    def best(self) -> Optional[Dict[str, Any]]:
        """``{"iteration", "accuracy", "ci95"}`` of the best validation so far (None before any)."""
        return self._validation.best

    @property
    def best_state(self) -> Optional[Dict[str, Tensor]]:
        return self._validation.best_state

    # ------------------------------------------------------------------ state
    def state(self) -> Dict[str, Any]:
        """The complete resumable state (what ``last.pt`` holds)."""
        return {**self.loop.state(), "config": self.config.to_dict(), "device": str(self.device)}

    def load_state(self, state: Dict[str, Any]) -> None:
        """Restore a state from :meth:`state` (or a checkpoint)."""
        self.loop.load_state(state)

    def _same_run(self, saved: Dict[str, Any], where: Path) -> None:
        """The saved config must equal this one — but for a larger ``iterations`` when ``longer``."""
        now = self.config.to_dict()
        saved = FewShotConfig.normalized(saved)  # older configs read as today's (issue #29: StepLR; issue #23)
        if self.longer and int(saved.get("iterations", 0)) <= now["iterations"]:
            saved = {**saved, "iterations": now["iterations"]}
        ckpt.check_same_config(saved, now, where)

    def _resume(self, path: Path) -> None:
        cfg_file = self.run_dir / "config.json"
        if cfg_file.exists():
            self._same_run(ckpt.load_config(cfg_file), self.run_dir)
        state = ckpt.load_checkpoint(path, map_location=self.device)
        self._same_run(state["config"], path)
        if self.longer and state["config"]["iterations"] != self.config.iterations:
            self._log(f"training the run longer: {state['config']['iterations']} -> {self.config.iterations} iterations"
                      " (a learning-rate schedule over the whole run is stretched to the new length)")
            state = {**state, "config": self.config.to_dict()}
            ckpt.save_config(cfg_file, self.config.to_dict())
        runs.check_resumable(state, path)  # weights only (a best.pt copied to last.pt)?
        try:
            self.load_state(state)
        except (KeyError, RuntimeError, ValueError, TypeError) as err:
            raise ckpt.CorruptCheckpointError(f"{path} does not fit this run ({err})") from err
        best = self.run_dir / "best.pt"
        if best.exists():
            try:
                self._validation.best_state = runs.load_checked(best, self.config.to_dict(), self.device)["model"]
            except ckpt.CheckpointError as err:
                import warnings

                why = str(err).splitlines()[0] if str(err) else type(err).__name__  # one line (scripts show one)
                warnings.warn(f"{best} cannot be used ({why}); resuming without the best-validation weights "
                              "(the next validation chooses them anew)", stacklevel=2)
                self._validation.best, self._validation.best_state = None, None
        self.last_checkpoint_iteration = self.iteration
        self._log(f"resumed {self.config.describe()} from {path} at iteration {self.iteration}/{self.config.iterations}")

    def save(self) -> Optional[Path]:
        """Write ``last.pt`` (atomically); returns its path (None without a ``run_dir``)."""
        if self.run_dir is None:
            return None
        state = self.state()
        state["elapsed_seconds"] = self.history.seconds
        path = ckpt.save_checkpoint(self.run_dir / "last.pt", state)
        self.last_checkpoint_iteration = self.iteration
        return path

    def load_best(self) -> Optional[Dict[str, Any]]:
        """Put the best-validation weights into the learner (if validation ran); returns ``best``."""
        if self.best_state is not None:
            self.learner.load_state_dict(self.best_state)
        return self.best

    # ------------------------------------------------------------------ training and evaluation
    def fit(self, until: Optional[int] = None, max_seconds: Optional[float] = None,
            threads: Optional[int] = CPU_THREADS) -> History:
        """Train until iteration ``until`` (default ``config.iterations``), from where the run stands.

        ``threads``: torch CPU threads while training (validation included), the caller's count restored
        afterwards — default :data:`metalib.device.CPU_THREADS` = 1 (``docs/threads.md``); ``None``: torch's
        current setting.

        ``max_seconds``: also stop at the end of the first iteration that ends after that many
        seconds of this call (a time budget; ``last.pt`` is written there). One process only: the
        ranks of a distributed run must agree on where to stop, so they stop at ``until``.

        Interrupting (Ctrl-C, a notebook's "interrupt kernel") stops at the end of a complete
        iteration (see :mod:`metalib.training`), writes ``last.pt`` and re-raises
        ``KeyboardInterrupt``: calling ``fit()`` again — or building a new trainer on the same
        ``run_dir`` — continues exactly where it stopped, with nothing lost.

        Raises:
            TrainingDiverged: a loss or the weights became NaN/inf. The learner is at a good state
                (see :mod:`metalib.training`); checkpoints on disk are left as they were (always finite).
        """
        c = self.config
        until = c.iterations if until is None else until
        if isinstance(until, bool) or not isinstance(until, int) or until > c.iterations:
            raise ValueError(f"until must be an int <= config.iterations={c.iterations}, got {until!r}")
        if max_seconds is not None and self.distributed:
            raise ValueError("max_seconds is for one process: the ranks of a distributed run stop at an iteration "
                             "(until=...)")
        bar = ProgressBar(c.describe()) if self.progress else None
        if self.iteration < until:
            self._log(f"{c.describe()} on {describe_device(self.device)}: the bar shows loss/acc = means over the "
                      "last 20 iterations on the training episodes' queries"
                      + (f", val = accuracy on {c.val_episodes} seeded validation episodes every {c.val_every} "
                         "iterations" if self.val_data is not None else ""))
        if bar is not None:
            self.loop.callbacks.append(bar)
        try:
            with cpu_threads(threads):
                history = self.loop.run(until, max_seconds=max_seconds)
            if self.iteration < until and self.last_checkpoint_iteration != self.iteration:
                self.save()  # stopped by the time budget: the state where it stopped
            return history
        except TrainingDiverged as err:
            raise self._diverged(err) from err
        finally:
            if bar is not None:
                bar.close()
                self.loop.callbacks.remove(bar)

    def validate_now(self) -> None:
        """Validate the weights where the run stands (unless that iteration was validated), keep them
        if best, and save: e.g. a run stopped early with ``fit(until=...)``."""
        if self.val_data is not None and self.iteration not in {it for it, _, _ in self.history.val}:
            self._validation.validate_and_keep_best()
            self.save()

    def _diverged(self, err: TrainingDiverged) -> TrainingDiverged:
        where = self.run_dir / "last.pt" if self.run_dir is not None and (self.run_dir / "last.pt").exists() else None
        c = self.config
        lrs = ", ".join(f"{k}={getattr(c, k)}" for k in ("meta_lr", "outer_lr", "inner_lr")
                        if getattr(c, k, 0) and k not in c.unused)
        msg = (f"{err} "
               + (f"The last good checkpoint on disk is {where} (iteration {self.last_checkpoint_iteration})"
                  if where else "No checkpoint was written (no run_dir, or none saved yet)")
               + (f"; the best validation weights are in {self.run_dir / 'best.pt'}" if self.best and self.run_dir else "")
               + ("." if err.bad_data  # the message already says: clean the data; the learning rates are not at fault
                  else f". Try smaller learning rates (now {lrs}) or check the data for NaN/inf."))
        self._log(msg)
        return TrainingDiverged(msg, err.iteration, where, bad_data=err.bad_data)

    def validate(self, episodes: Optional[int] = None) -> EvalResult:
        """Accuracy on the validation classes: ``val_episodes`` seeded episodes (``val_seed``),
        N-way K-shot as at test, ``test_query`` queries per class."""
        c = self.config
        if self.val_data is None:
            raise RuntimeError("this trainer has no validation data (val_data=False or val_every=0)")
        return evaluate(self.learner, self.val_data, c.n_way, c.k_shot, c.test_query,
                        episodes or c.val_episodes, c.val_seed, None, self.device, split="val",
                        threads=None)  # the thread count fit() runs with

    def test(self, data=None, episodes: Optional[int] = None, best: bool = True, progress: Optional[bool] = None,
             n_way: Optional[int] = None, threads: Optional[int] = CPU_THREADS) -> EvalResult:
        """The evaluation protocol on the test classes: ``test_episodes`` (600) seeded episodes
        (``test_seed``), ``test_query`` queries per class, the learner's test-time inner steps.

        ``best``: evaluate the best-validation weights (if validation ran), as the papers select models.
        ``n_way``: test with another N (learners without a fixed head, e.g. ProtoNet 5-way → 20-way).
        ``threads``: as :func:`metalib.evaluate`'s.
        """
        c = self.config
        if best:
            self.load_best()
        data = data if data is not None else load_split(c, "test", False)
        return evaluate(self.learner, data, n_way or c.n_way, c.k_shot, c.test_query, episodes or c.test_episodes,
                        c.test_seed, None, self.device, split="test",
                        progress=self.progress if progress is None else progress, threads=threads)

    def _log(self, msg: str) -> None:
        if self.log:
            log_line(msg)

    def __repr__(self) -> str:
        return (f"FewShotTrainer({self.config.describe()}, iteration {self.iteration}/{self.config.iterations}, "
                f"device={self.device}, run_dir={self.run_dir})")


def load_run(run_dir: PathLike, which: str = "best", device: DeviceLike = None):
    """``(learner, config)`` from a run folder: its ``best.pt`` (best validation weights; ``which="best"``)
    or ``last.pt`` (where training stands; ``which="last"``), built from the ``config.json`` beside it.

    >>> learner, config = fewshot.load_run("runs/protonet-omniglot-5w1s")
    >>> evaluate(learner, load_split(config, "test"), config.n_way, config.k_shot, config.test_query)
    """
    run_dir = Path(run_dir)
    if which not in ("best", "last"):
        raise ValueError(f"which must be 'best' or 'last', got {which!r}")
    if not (run_dir / "config.json").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no config.json)")
    config = FewShotConfig.from_dict(ckpt.load_config(run_dir / "config.json"))
    state = runs.load_checked(run_dir / f"{which}.pt", config.to_dict())  # this run's checkpoint, not another's
    learner = build_learner(config)
    runs.load_weights(learner, state["model"], run_dir / f"{which}.pt")
    return learner.to(default_device(device)), config


# ============================================================================ shipped weights
def pretrained_learner(name: str, device: DeviceLike = None, directory: Optional[PathLike] = None):
    """``(learner, config)`` for shipped few-shot weights ``name`` (e.g. ``"protonet-omniglot-5w1s"``):
    the checksum-verified learner, with the settings it was trained and evaluated with."""
    from .pretrained import pretrained, pretrained_info

    kw = {} if directory is None else {"directory": directory}
    info = pretrained_info(name, **kw)
    if "config" not in info:
        raise ValueError(f"{name!r} is not a few-shot classifier (its manifest entry has no 'config')")
    return pretrained(name, device=default_device(device), **kw), FewShotConfig.from_dict(info["config"])


def evaluate_pretrained(name: str, data=None, episodes: Optional[int] = None, device: DeviceLike = None,
                        progress: Optional[bool] = None, directory: Optional[PathLike] = None) -> EvalResult:
    """Re-measure shipped weights with the protocol their manifest records (same seeded test episodes)."""
    learner, config = pretrained_learner(name, device, directory)
    data = data if data is not None else load_split(config, "test", False)
    return evaluate(learner, data, config.n_way, config.k_shot, config.test_query,
                    episodes or config.test_episodes, config.test_seed, device=default_device(device),
                    progress=progress)


def ship(name: str, trainer: FewShotTrainer, result: EvalResult, command: Optional[str] = None,
         note: str = "", directory: Optional[PathLike] = None,
         config: Optional[FewShotConfig] = None, overwrite: bool = False,
         extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Save ``trainer``'s learner (as evaluated in ``result``) to ``metalib/weights/`` via
    :func:`metalib.pretrained.save_pretrained`, with a manifest entry saying how it was made.

    ``config``: the config to record instead of the trainer's — e.g. a ProtoNet trained for 5-way
    validation, shipped for 20-way testing (only the test-time ``n_way`` may differ, and only for
    learners without a fixed head). ``name``: a plain name; one the manifest has is replaced only with
    ``overwrite=True`` (:func:`metalib.pretrained.check_ship_name`). ``extra``: more manifest fields (e.g.
    ``cpu_minutes`` of a CPU-budget run); they may not replace the ones written here.
    """
    from .pretrained import WEIGHTS_DIR, check_ship_name, save_pretrained

    check_ship_name(name, WEIGHTS_DIR if directory is None else directory, overwrite)

    c = trainer.config if config is None else config
    if config is not None:
        diff = {k for k, v in config.to_dict().items() if trainer.config.to_dict()[k] != v}
        if diff - {"n_way"} or (diff and trainer.learner.fixed_way is not None):
            raise ValueError("ship(config=...) may only change n_way, and only for a learner without a fixed "
                             f"head; it changes {sorted(diff)}")
    if (result.n_way, result.k_shot) != (c.n_way, c.k_shot):
        raise ValueError(f"the result is {result.n_way}-way {result.k_shot}-shot but the config {c.n_way}-way {c.k_shot}-shot")
    info = {
        "kind": "fewshot",
        "description": f"{c.describe()} Conv-4 ({c.hidden} filters), {c.splits} split",
        "algorithm": c.algorithm, "dataset": c.dataset, "n_way": c.n_way, "k_shot": c.k_shot,
        "learner": trainer.learner.describe(),
        "command": command or " ".join(shlex.quote(a) for a in sys.argv),
        "seed": c.seed,
        "iterations": trainer.iteration,
        "paper_iterations": default_config(c.algorithm, c.n_way, c.k_shot, c.dataset).iterations
        if c.dataset != "custom" else None,
        "selected_iteration": trainer.best["iteration"] if trainer.best else trainer.iteration,
        "device": describe_device(trainer.device),
        "torch": torch.__version__,
        "minutes": round(trainer.history.seconds / 60, 2),
        "metrics": {
            "test_accuracy": round(result.mean, 4), "ci95": round(result.ci95, 4), "std": round(result.std, 4),
            "episodes": result.episodes, "query_per_class": result.q_query, "seed": result.seed,
            "inner_steps": result.inner_steps, "split": f"{c.splits}/{result.split}",
            "how": "mean accuracy (%) over seeded test episodes, 95% CI = 1.96*std/sqrt(episodes)",
            "eval_seconds": round(result.seconds, 1), "eval_device": result.device,
        },
        "validation": trainer.best,
        "config": c.to_dict(),
        "note": note,
    }
    if extra:
        clash = sorted(set(extra) & set(info))
        if clash:
            raise ValueError(f"ship(extra=...) may not replace {clash}")
        info.update(extra)
    kw = {} if directory is None else {"directory": directory}
    return save_pretrained(name, trainer.learner, info=info, overwrite=overwrite, **kw)


def copy_config(config: FewShotConfig, **changes: Any) -> FewShotConfig:
    """``config`` with ``changes`` (validated like a new config)."""
    return FewShotConfig.from_dict({**copy.deepcopy(config.to_dict()), **changes})
