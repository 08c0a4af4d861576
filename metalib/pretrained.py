"""Weights the project trained and ships, loadable by name and verified by checksum.

All shipped weights live in one place, ``metalib/weights/``, described by
``metalib/weights/MANIFEST.json``: for each name the file, its sha256, how to build the model, and
how it was trained (command, seed, iterations, device, minutes, the measured test metrics).

>>> model = metalib.pretrained("sinusoid-maml")          # nn.Module with the weights loaded
>>> metalib.pretrained_info("sinusoid-maml")["metrics"]  # what the manifest says was measured
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from torch import Tensor, nn

from .io import PathLike, atomic_torch_save, atomic_write_json, sha256_file

WEIGHTS_DIR = Path(__file__).parent / "weights"
MANIFEST = "MANIFEST.json"


class ChecksumMismatchError(RuntimeError):
    """A weights file does not match the sha256 recorded in the manifest."""


def _manifest(directory: PathLike = WEIGHTS_DIR) -> Dict[str, Dict[str, Any]]:
    path = Path(directory) / MANIFEST
    if not path.exists():
        return {}
    with open(path) as f:
        return json.load(f)


def list_pretrained(directory: PathLike = WEIGHTS_DIR) -> List[str]:
    """Names of the shipped weights."""
    return sorted(_manifest(directory))


def pretrained_info(name: str, directory: PathLike = WEIGHTS_DIR) -> Dict[str, Any]:
    """The manifest entry of ``name``: how it was built, trained and measured."""
    entries = _manifest(directory)
    if name not in entries:
        raise KeyError(f"no shipped weights named {name!r}; available: {', '.join(sorted(entries)) or 'none'}")
    return dict(entries[name])


def build_model(builder: str, kwargs: Optional[Dict[str, Any]] = None) -> nn.Module:
    """Call ``"package.module:function"`` with ``kwargs`` (how the manifest records an architecture)."""
    module, _, attr = builder.partition(":")
    if not module.startswith("metalib"):
        raise ValueError(f"refusing to build {builder!r}: only metalib builders are allowed in a manifest")
    return getattr(importlib.import_module(module), attr)(**(kwargs or {}))


def _load_file(name: str, directory: PathLike) -> Dict[str, Any]:
    info = pretrained_info(name, directory)
    path = Path(directory) / info["file"]
    if not path.exists():
        raise FileNotFoundError(f"the weights file of {name!r} is missing: {path}")
    digest = sha256_file(path)
    if digest != info["sha256"]:
        raise ChecksumMismatchError(
            f"{path} has sha256 {digest}, but the manifest records {info['sha256']}: the file is "
            "corrupt or was changed. Restore it from the repository (git checkout -- <file>)."
        )
    return torch.load(path, map_location="cpu", weights_only=True)


def pretrained(name: str, directory: PathLike = WEIGHTS_DIR, device=None) -> nn.Module:
    """The model ``name`` with its shipped weights, checksum verified. See :func:`list_pretrained`."""
    info = pretrained_info(name, directory)
    blob = _load_file(name, directory)
    model = build_model(info["builder"], info.get("builder_kwargs"))
    model.load_state_dict(blob["state_dict"])
    return model.to(device) if device is not None else model


def pretrained_snapshots(name: str, directory: PathLike = WEIGHTS_DIR) -> Dict[int, Dict[str, Tensor]]:
    """``{iteration: state_dict}`` saved during the training of ``name`` (may be empty)."""
    blob = _load_file(name, directory)
    return {int(k): v for k, v in blob.get("snapshots", {}).items()}


def save_pretrained(
    name: str,
    model: nn.Module,
    builder: str,
    builder_kwargs: Optional[Dict[str, Any]] = None,
    info: Optional[Dict[str, Any]] = None,
    snapshots: Optional[Dict[int, Dict[str, Tensor]]] = None,
    directory: PathLike = WEIGHTS_DIR,
) -> Dict[str, Any]:
    """Write ``model``'s weights (and optional training snapshots) and record them in the manifest.

    ``info`` should say how the weights were made: command, seed, iterations, device, minutes,
    metrics (with how they were measured). Both files are written atomically.
    """
    directory = Path(directory)
    build_model(builder, builder_kwargs).load_state_dict(model.state_dict())  # the builder must fit
    file = f"{name}.pt"
    blob: Dict[str, Any] = {"state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
    if snapshots:
        blob["snapshots"] = {int(k): {n: t.detach().cpu().clone() for n, t in sd.items()} for k, sd in snapshots.items()}
    atomic_torch_save(blob, directory / file)
    entry = dict(info or {})
    entry.update(file=file, sha256=sha256_file(directory / file), builder=builder, builder_kwargs=builder_kwargs or {})
    manifest = _manifest(directory)
    manifest[name] = entry
    atomic_write_json(manifest, directory / MANIFEST)
    return entry
