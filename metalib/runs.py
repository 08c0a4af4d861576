"""Run folders and shipping, checked before use: the logic the trainer and the command lines call in
one line each (so that nothing in a run folder is lost, swapped or used unchecked).

* :func:`check_fresh_start` — a new run never deletes a ``best.pt`` it did not write: a folder that
  holds ``best.pt`` but no ``last.pt`` (e.g. a corrupt ``last.pt`` moved aside) is started over only
  with ``resume=False`` (``--fresh``).
* :func:`check_resumable` — a checkpoint that holds weights only (a ``best.pt`` copied to ``last.pt``)
  is named as such, not "does not fit this run ('optimizer')".
* :func:`check_run_checkpoint` — a checkpoint's config must be the run's (but for ``iterations``,
  which ``--longer`` changes, and the test protocol): a ``best.pt`` or ``last.pt`` of another run, algorithm or architecture
  is refused in one line (:class:`ForeignCheckpointError`) naming the differences, architecture first.
* :func:`load_for_eval` — ``--eval-only``: the run's ``best.pt`` (and ``last.pt`` where there is one)
  checked, loaded into a trainer that writes nothing; a damaged or foreign ``best.pt`` is an error.
* :func:`record_validation` — one validation entry per iteration in a run's history (a resume that
  repeats an interrupted iteration's validation replaces its entry).
* :func:`check_ship` — a ``--ship`` name is a plain name, not shipped yet unless ``--overwrite``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from . import checkpoint as ckpt
from .config import FewShotConfig
from .io import PathLike

# the config keys that change the network or what it computes, named first in a mismatch
_ARCHITECTURE = ("algorithm", "dataset", "image_size", "in_channels", "hidden", "n_way", "k_shot", "train_way",
                 "first_order", "options")
# what may differ between a run's checkpoint and the config it is used with: the planned length (--longer)
# and the test protocol (--eval-only measures the run's weights with the protocol it is given)
_SAME_RUN_ANYWAY = ("iterations", "test_episodes", "test_query", "test_seed", "test_inner_steps")


class ForeignCheckpointError(ckpt.ConfigMismatchError):
    """A checkpoint in a run folder was written by another run (another config)."""


class RunFolderError(ckpt.CheckpointError):
    """A run folder is in a state where going on would lose data (e.g. a ``best.pt`` without ``last.pt``)."""


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def check_run_checkpoint(state: Mapping[str, Any], config: Mapping[str, Any], path: PathLike) -> None:
    """Raise :class:`ForeignCheckpointError` (one line) unless the checkpoint ``state`` (a dict from
    :func:`metalib.checkpoint.load_checkpoint`) was written by a run of ``config`` (a dict): every key
    equal but ``iterations`` and the test protocol (``test_episodes``, ``test_query``, ``test_seed``,
    ``test_inner_steps``)."""
    saved = state.get("config") if isinstance(state, Mapping) else None
    if not isinstance(saved, Mapping):
        raise ForeignCheckpointError(f"{path} records no config, so it cannot be checked against this run: "
                                     "refusing to use it")
    saved = FewShotConfig.normalized(saved)  # a config saved before per-learner configs (issue #23) reads as today's
    keys = [k for k in sorted(set(saved) | set(config)) if k not in _SAME_RUN_ANYWAY
            and saved.get(k, "<missing>") != config.get(k, "<missing>")]
    if not keys:
        return
    keys.sort(key=lambda k: (_ARCHITECTURE.index(k) if k in _ARCHITECTURE else len(_ARCHITECTURE), k))
    diffs = ", ".join(f"{k} {_show(saved.get(k, '<missing>'))} (this run: {_show(config.get(k, '<missing>'))})"
                      for k in keys[:6]) + (f" and {len(keys) - 6} more" if len(keys) > 6 else "")
    raise ForeignCheckpointError(f"{path} is not a checkpoint of this run: it was written with {diffs}. Refusing to "
                                 "use it; put the run's own checkpoint back, or use the run folder it came from")


def check_fresh_start(run_dir: PathLike, resume: bool) -> None:
    """Before a new run in ``run_dir`` deletes its checkpoints: refuse (one line,
    :class:`RunFolderError`) when the folder holds a ``best.pt`` but no ``last.pt`` and ``resume`` is
    true — starting over is meant only with ``resume=False`` (``--fresh``)."""
    run_dir = Path(run_dir)
    if resume and (run_dir / "best.pt").exists() and not (run_dir / "last.pt").exists():
        raise RunFolderError(
            f"{run_dir} holds best.pt but no last.pt: a new run here would delete best.pt (the run's best-validation "
            "weights). Test it with --eval-only (or fewshot.load_run), move it aside to keep it, or start over "
            "with --fresh (resume=False), which deletes it")


def check_resumable(state: Mapping[str, Any], path: PathLike) -> None:
    """Raise :class:`metalib.checkpoint.CheckpointError` (one line) if ``state`` cannot resume training
    because it holds weights only (a ``best.pt``: no optimiser, RNG or history)."""
    if "optimizer" not in state or "history" not in state:
        what = "best-validation weights only" if "validation" in state else "no optimiser state or history"
        raise ckpt.CheckpointError(
            f"{path} holds {what}, so training cannot resume from it (a best.pt copied to last.pt?): move it "
            "aside; --eval-only (fewshot.load_run) tests best.pt as it is")


def load_checked(path: PathLike, config: Mapping[str, Any], map_location: Any = "cpu") -> Dict[str, Any]:
    """:func:`metalib.checkpoint.load_checkpoint` followed by :func:`check_run_checkpoint`."""
    state = ckpt.load_checkpoint(path, map_location=map_location)
    check_run_checkpoint(state, config, path)
    return state


def load_weights(module, state_dict: Mapping[str, Any], path: PathLike) -> None:
    """``module.load_state_dict(state_dict)``, one line (naming the first mismatching key) if they do not fit."""
    why = ckpt.state_mismatch(module, state_dict)
    if why:
        raise ForeignCheckpointError(f"the weights in {path} do not fit this run's network ({why})")
    module.load_state_dict(state_dict)


def load_for_eval(trainer, run_dir: PathLike) -> Dict[str, Any]:
    """``--eval-only``: put the run's checked weights into ``trainer`` (built without a run folder, so it
    writes nothing): ``last.pt`` if there is one (iteration, history, best validation), then ``best.pt``
    (the weights :meth:`FewShotTrainer.test` evaluates). A damaged or foreign checkpoint is an error
    (one line): never a test of other weights than the run's best. Returns the best-validation record."""
    run_dir = Path(run_dir)
    config = trainer.config.to_dict()
    last, best = run_dir / "last.pt", run_dir / "best.pt"
    if not last.exists() and not best.exists():
        raise ckpt.CheckpointError(f"--eval-only, but {run_dir} holds no checkpoint (no last.pt, no best.pt)")
    if last.exists():
        state = load_checked(last, config, trainer.device)
        check_resumable(state, last)
        trainer.load_state(state)
    if best.exists():
        state = load_checked(best, config, trainer.device)
        load_weights(trainer.learner, state["model"], best)  # it must fit before it is kept
        v = trainer._validation  # noqa: SLF001 - the trainer's best-weights keeper
        v.best_state = state["model"]
        if v.best is None or v.best.get("iteration") != state["iteration"]:
            val = state.get("validation") or {}
            v.best = {"iteration": state["iteration"], "accuracy": val.get("mean"), "ci95": val.get("ci95")}
        if not last.exists():
            trainer.loop.iteration = int(state["iteration"])
    elif trainer.config.val_every:
        raise ckpt.CheckpointError(f"--eval-only: {run_dir} holds no best.pt (no validation has run yet); "
                                   "train the run first")
    return trainer.best


def record_validation(history, iteration: int, mean: float, ci95: float) -> None:
    """Append ``(iteration, mean, ci95)`` to ``history.val`` — or replace the entry of that iteration: a
    resume that repeats the validation of an interrupted iteration must not record it twice."""
    entry = (iteration, mean, ci95)
    for i, (it, _, _) in enumerate(history.val):
        if it == iteration:
            history.val[i] = entry
            return
    history.val.append(entry)


def improves(best: Optional[Mapping[str, Any]], iteration: int, mean: float) -> bool:
    """Whether a validation of ``iteration`` with accuracy ``mean`` becomes the best: better than ``best``
    — or the validation of the best's own iteration repeated (a resume after an interrupt between the
    record and best.pt's save), so that best.pt is written after all."""
    return best is None or mean > best["accuracy"] or best.get("iteration") == iteration


def untrained_note(trainer) -> Optional[str]:
    """A line to print before testing weights that were never trained (``--iterations 0``, ``--until 0``
    on a fresh run); ``None`` otherwise."""
    if trainer.iteration == 0:
        return ("note: 0 iterations trained: the test below measures the untrained (initial) weights, "
                "a baseline, not a trained model")
    return None


def check_ship(name: Optional[str], directory: Optional[PathLike] = None, overwrite: bool = False) -> None:
    """Raise (one line) unless ``name`` can be shipped into ``directory`` (default ``metalib/weights``):
    ``ValueError`` for a name that is not a plain name, ``FileExistsError`` for one the manifest has
    (unless ``overwrite``). ``None`` (nothing to ship) passes."""
    if name is None:
        return
    from .pretrained import WEIGHTS_DIR, check_ship_name

    check_ship_name(name, WEIGHTS_DIR if directory is None else directory, overwrite)


def run_name(config: Mapping[str, Any], paper: Mapping[str, Any]) -> tuple:
    """The default run folder's name for ``config`` (a ``FewShotConfig.to_dict()``), keyed by the whole config.

    ``paper`` is the paper's config for the same algorithm, dataset, N and K. Returns ``(name, changed)``:
    ``<algorithm>-<dataset>-<N>w<K>s`` when ``config`` is the paper's but for ``iterations`` (which
    ``--longer`` changes in a run), else that name plus ``-`` and 8 hex digits of the sha256 of every
    setting but ``iterations`` — so a changed setting starts its own folder instead of stopping on
    the other run's config; ``changed`` lists the settings that differ from the paper's (sorted).
    """
    import hashlib
    import json

    base = f"{config['algorithm']}-{config['dataset']}-{config['n_way']}w{config['k_shot']}s"
    keyed = {k: v for k, v in config.items() if k != "iterations"}
    changed = sorted(k for k in keyed if keyed[k] != paper.get(k))
    if not changed:
        return base, changed
    digest = hashlib.sha256(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{base}-{digest}", changed
