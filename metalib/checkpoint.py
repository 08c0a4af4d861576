"""Resumable training checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts — nothing that needs
unpickling arbitrary classes — holding everything a run needs to continue exactly where it
stopped: the model, the optimiser (and learning-rate schedule), the iteration, the state of the
episode generator and of torch's global RNG (and Python's ``random``), the run's history and its
config. The config is also written beside the checkpoints as ``config.json``, to read and compare.

Files are written with :func:`metalib.io.atomic_torch_save` (a temporary file in the same folder,
then a rename), so an interrupted save leaves the previous checkpoint intact, and a full disk is one
:class:`metalib.io.AtomicWriteError` line ("... disk full? ..."). What is read back is checked, so
that nothing damaged is ever resumed silently (each failure is one :class:`CorruptCheckpointError`
line naming the file):

* the file must unpickle with ``weights_only=True`` and carry metalib's format tag and keys;
* a sha256 of the whole payload — every tensor's dtype, shape and bytes and every plain value,
  in order — is stored in the file when it is saved and recomputed when it is loaded: flipped or
  overwritten bytes (which ``torch.load`` itself does not notice inside tensor data) are refused;
* the model weights must be finite (saving refuses NaN/inf, so such a file was not written by
  metalib).

A process killed while saving (``kill -9``) leaves a temporary file ``.last.pt.<random>.tmp``;
:func:`clean_orphan_temp_files` removes such orphans (never a save in progress) and is called by
:func:`save_checkpoint` and :func:`load_checkpoint` for their folder.

>>> save_checkpoint("runs/demo/last.pt", {"model": model.state_dict(), "iteration": 10, ...})
>>> state = load_checkpoint("runs/demo/last.pt")
"""
from __future__ import annotations

import hashlib
import json
import random
import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import torch
from torch import Tensor

from .io import PathLike, atomic_torch_save, atomic_write_json, remove_stale_temp_files

FORMAT = "metalib-checkpoint"
# 2: the payload digest (DIGEST_KEY) is stored and checked. Version-1 files (no digest) are still
# read, with a warning that their contents cannot be verified.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
REQUIRED_KEYS = ("format", "version", "iteration", "model", "config", "rng")
DIGEST_KEY = "payload_sha256"


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


# ----------------------------------------------------------------------------- orphans
def clean_orphan_temp_files(run_dir: PathLike) -> List[Path]:
    """Remove temporary files that a killed save (``kill -9``, power loss) left in ``run_dir``.

    Only the atomic writer's temp files (``.<name>.<8 chars>.tmp``) that no living process is
    writing are removed (see :func:`metalib.io.remove_stale_temp_files`), so it is safe to call
    while another process saves into the same folder. Returns the removed paths; a missing or
    read-only folder gives ``[]``.
    """
    return remove_stale_temp_files(run_dir)


# ----------------------------------------------------------------------------- payload digest
def _feed(h: "hashlib._Hash", x: Any) -> None:
    """Hash ``x`` unambiguously: type tags and lengths around every value, tensors by dtype,
    shape and raw bytes (on the CPU, so the digest does not depend on ``map_location``)."""
    if isinstance(x, Tensor):
        t = x.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        h.update(f"T{t.dtype}{tuple(t.shape)}:".encode())
        if t.numel():
            h.update(t.reshape(-1).contiguous().view(torch.uint8).numpy())
    elif isinstance(x, dict):
        h.update(f"D{len(x)}:".encode())
        for k, v in x.items():
            _feed(h, k)
            _feed(h, v)
    elif isinstance(x, (list, tuple)):
        h.update(f"{'L' if isinstance(x, list) else 'U'}{len(x)}:".encode())
        for v in x:
            _feed(h, v)
    else:
        r = repr(x).encode()
        h.update(f"V{type(x).__name__}{len(r)}:".encode())
        h.update(r)


def payload_digest(blob: Mapping[str, Any]) -> str:
    """Hex sha256 of everything in a checkpoint dict except the stored digest itself."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in blob.items() if k != DIGEST_KEY})
    return h.hexdigest()


# ----------------------------------------------------------------------------- save / load
def nonfinite_tensors(state_dict: Mapping[str, Any]) -> List[str]:
    """The keys of the floating-point tensors of ``state_dict`` that hold NaN or inf (checkpoints and shipped weights)."""
    return [k for k, v in state_dict.items() if isinstance(v, Tensor) and v.is_floating_point()
            and not bool(torch.isfinite(v).all())]


def state_mismatch(module: torch.nn.Module, state: Mapping[str, Any]) -> str:
    """Why ``module.load_state_dict(state)`` would fail, in one line naming the first key of each kind
    (torch's error lists every key on many lines); ``""`` when it fits."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and (not isinstance(state[k], Tensor) or state[k].shape != own[k].shape)]
    parts = []
    if shapes:
        k = shapes[0]
        got = tuple(state[k].shape) if isinstance(state[k], Tensor) else type(state[k]).__name__
        parts.append(f"{len(shapes)} of another shape (first {k}: file {got}, network {tuple(own[k].shape)})")
    if missing:
        parts.append(f"{len(missing)} missing (first {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (first {unexpected[0]})")
    return "; ".join(parts)


def save_checkpoint(path: PathLike, state: Dict[str, Any]) -> Path:
    """Write ``state`` (a dict with at least ``iteration``, ``model``, ``config``, ``rng``) atomically,
    with a sha256 of its payload (checked by :func:`load_checkpoint`).

    Refuses to write a model with NaN/inf weights: a checkpoint on disk is always a good one.
    Orphaned temp files of killed saves in the folder are removed first. A full disk raises
    :class:`metalib.io.AtomicWriteError` (an ``OSError``; one line, "disk full?") and leaves the
    previous file intact.
    """
    path = Path(path)
    missing = [k for k in REQUIRED_KEYS if k not in state and k not in ("format", "version")]
    if missing:
        raise ValueError(f"a checkpoint needs the keys {', '.join(missing)}")
    bad = nonfinite_tensors(state["model"])
    if bad:
        raise ValueError(f"refusing to save a checkpoint with non-finite weights ({', '.join(bad[:3])})")
    blob = {k: v for k, v in state.items() if k != DIGEST_KEY}
    blob.update(format=FORMAT, version=FORMAT_VERSION)
    blob["model"] = {k: v.detach().cpu().clone() for k, v in state["model"].items()}
    blob[DIGEST_KEY] = payload_digest(blob)
    clean_orphan_temp_files(path.parent)
    atomic_torch_save(blob, path)
    return path


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    if not lines:
        return type(err).__name__
    first = lines[0].split(". ")[0].rstrip(".")  # torch appends paragraphs of advice: keep the fact
    return f"{type(err).__name__}: {first[:200]}"


def _advice(path: Path) -> str:
    """What to do with the damaged checkpoint ``path``, said so that following it loses nothing: the file
    is moved aside (not deleted), and nothing suggests copying best.pt over last.pt (best.pt holds weights
    only, it cannot resume training)."""
    aside = f"move it aside (mv {path.name} {path.name}.corrupt)"
    if path.name == "best.pt":
        return f"{aside}: the run resumes from last.pt, and its next validation chooses the best weights anew"
    return (f"{aside}, which loses nothing else: the run's best.pt can still be tested (--eval-only, "
            "fewshot.load_run); to train again, start in another --run-dir (or here with --fresh, which deletes best.pt)")


def load_checkpoint(path: PathLike, map_location: Any = "cpu") -> Dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, with ``torch.load(weights_only=True)``,
    and check it: format tag and keys, the payload digest recorded at save time, finite weights.

    Raises:
        FileNotFoundError: no such file.
        CorruptCheckpointError: (one line naming the file) empty, truncated or unreadable; not a
            metalib checkpoint; bytes changed since it was saved; non-finite weights.
        CheckpointError: a format version this metalib cannot read.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    clean_orphan_temp_files(path.parent)
    if path.stat().st_size == 0:
        raise CorruptCheckpointError(
            f"{path} is empty (0 bytes): the save that wrote it was cut off (full disk or crash); {_advice(path)}"
        )
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except PermissionError:
        raise
    except Exception as err:  # noqa: BLE001 - whatever torch/pickle/zip raise, the file is unusable
        raise CorruptCheckpointError(
            f"{path} is not a readable checkpoint ({_first_line(err)}): it is truncated or corrupt; {_advice(path)}"
        ) from err
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CorruptCheckpointError(f"{path} is not a metalib training checkpoint (no format={FORMAT!r} tag)")
    version = blob.get("version")
    if version not in READABLE_VERSIONS:
        raise CheckpointError(
            f"{path} has checkpoint format version {version}, this metalib reads "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
        )
    missing = [k for k in REQUIRED_KEYS if k not in blob]
    if missing:
        raise CorruptCheckpointError(f"{path} lacks {', '.join(missing)}; {_advice(path)}")
    stored = blob.pop(DIGEST_KEY, None)
    if stored is None and version >= 2:
        raise CorruptCheckpointError(
            f"{path} has no payload digest ({DIGEST_KEY}), so it cannot be checked; {_advice(path)}"
        )
    if stored is None:
        warnings.warn(f"{path} was written before metalib stored payload digests (format version {version}): "
                      "its contents cannot be verified", stacklevel=2)
    elif payload_digest(blob) != stored:
        raise CorruptCheckpointError(
            f"{path} does not match the payload digest stored when it was saved: its bytes changed on "
            f"disk (damaged or edited); {_advice(path)}"
        )
    if not isinstance(blob["model"], dict):
        raise CorruptCheckpointError(f"{path}: 'model' is not a state dict; {_advice(path)}")
    bad = nonfinite_tensors(blob["model"])
    if bad:
        raise CorruptCheckpointError(
            f"{path} holds non-finite (NaN/inf) weights ({', '.join(bad[:3])}); metalib never saves "
            f"such a checkpoint, so the file was altered; {_advice(path)}"
        )
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
