"""Resumable training checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts — nothing that needs
unpickling arbitrary classes — holding everything a run needs to continue exactly where it
stopped: the model, the optimiser (and learning-rate schedule), the iteration, the state of the
episode generator and of torch's global RNG (and Python's ``random``), the run's history and its
config. The config is also written beside the checkpoints as ``config.json``, to read and compare.

Files are written with :func:`metalib.io.atomic_torch_save` (a temporary file in the same folder,
then a rename), so an interrupted save leaves the previous checkpoint intact.

>>> save_checkpoint("runs/demo/last.pt", {"model": model.state_dict(), "iteration": 10, ...})
>>> state = load_checkpoint("runs/demo/last.pt")
"""
from __future__ import annotations

import json
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import torch
from torch import Tensor

from .io import PathLike, atomic_torch_save, atomic_write_json

FORMAT = "metalib-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "version", "iteration", "model", "config", "rng")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used (missing, unreadable, or not a metalib checkpoint)."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint file exists but cannot be read: truncated, overwritten, or not a checkpoint."""


class ConfigMismatchError(ValueError):
    """Resuming a run with a config that differs from the one it was started with."""


# ----------------------------------------------------------------------------- RNG state
def rng_state() -> Dict[str, Any]:
    """The global random states: torch (CPU and every CUDA device) and Python's ``random``.

    (NumPy's global RNG is not saved: metalib never draws from it.)
    """
    state: Dict[str, Any] = {"torch": torch.get_rng_state(), "python": _to_lists(random.getstate())}
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    if "python" in state:
        random.setstate(_to_tuples(state["python"]))
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(x):
    return [_to_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuples(x):
    return tuple(_to_tuples(v) for v in x) if isinstance(x, (tuple, list)) else x


# ----------------------------------------------------------------------------- save / load
def _nonfinite_tensors(state_dict: Mapping[str, Tensor]) -> list:
    return [k for k, v in state_dict.items() if isinstance(v, Tensor) and v.is_floating_point()
            and not bool(torch.isfinite(v).all())]


def save_checkpoint(path: PathLike, state: Dict[str, Any]) -> Path:
    """Write ``state`` (a dict with at least ``iteration``, ``model``, ``config``, ``rng``) atomically.

    Refuses to write a model with NaN/inf weights: a checkpoint on disk is always a good one.
    """
    path = Path(path)
    missing = [k for k in REQUIRED_KEYS if k not in state and k not in ("format", "version")]
    if missing:
        raise ValueError(f"a checkpoint needs the keys {', '.join(missing)}")
    bad = _nonfinite_tensors(state["model"])
    if bad:
        raise ValueError(f"refusing to save a checkpoint with non-finite weights ({', '.join(bad[:3])})")
    blob = dict(state, format=FORMAT, version=FORMAT_VERSION)
    blob["model"] = {k: v.detach().cpu().clone() for k, v in state["model"].items()}
    atomic_torch_save(blob, path)
    return path


def load_checkpoint(path: PathLike, map_location: Any = "cpu") -> Dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, with ``torch.load(weights_only=True)``.

    Raises:
        FileNotFoundError: no such file.
        CorruptCheckpointError: the file cannot be unpickled safely or is not a metalib checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, KeyError,
            AttributeError, IndexError, OSError) as err:
        raise CorruptCheckpointError(
            f"{path} is not a readable checkpoint ({type(err).__name__}: {str(err).splitlines()[0][:200]}). "
            "The file is truncated or corrupt; delete it (or the run folder) and start the run again, "
            "or resume from another checkpoint."
        ) from err
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CorruptCheckpointError(f"{path} is not a metalib training checkpoint (no format={FORMAT!r} tag)")
    if blob.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {blob.get('version')}, this metalib reads {FORMAT_VERSION}"
        )
    missing = [k for k in REQUIRED_KEYS if k not in blob]
    if missing:
        raise CorruptCheckpointError(f"{path} lacks {', '.join(missing)}")
    return blob


# ----------------------------------------------------------------------------- config beside the checkpoints
def save_config(path: PathLike, config: Mapping[str, Any]) -> Path:
    """Write the run's config as JSON (atomically)."""
    atomic_write_json(dict(config), path)
    return Path(path)


def load_config(path: PathLike) -> Dict[str, Any]:
    path = Path(path)
    try:
        with open(path) as f:
            cfg = json.load(f)
    except json.JSONDecodeError as err:
        raise CorruptCheckpointError(f"{path} is not valid JSON ({err})") from err
    if not isinstance(cfg, dict):
        raise CorruptCheckpointError(f"{path} does not hold a config (a JSON object)")
    return cfg


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> Dict[str, tuple]:
    """``{key: (saved value, current value)}`` for every key whose value differs (or is missing)."""
    keys = sorted(set(saved) | set(current))
    return {k: (saved.get(k, "<missing>"), current.get(k, "<missing>"))
            for k in keys if saved.get(k, "<missing>") != current.get(k, "<missing>")}


def check_same_config(saved: Mapping[str, Any], current: Mapping[str, Any], where: Optional[PathLike] = None) -> None:
    """Raise :class:`ConfigMismatchError` naming every differing key, if the configs differ."""
    diff = config_differences(saved, current)
    if diff:
        lines = ", ".join(f"{k}: saved {a!r} vs now {b!r}" for k, (a, b) in diff.items())
        raise ConfigMismatchError(
            f"cannot resume the run in {where or 'this folder'}: its config differs from the one given "
            f"({lines}). Resume with the saved config, use another run folder, or start over with "
            "resume=False (this overwrites the run's checkpoints)."
        )
