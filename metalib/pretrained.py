"""Weights the project trained and ships, loadable by name and verified by checksum.

All shipped weights live in one place, ``metalib/weights/``, described by
``metalib/weights/MANIFEST.json``: for each name the file, its sha256, how to build the model, and
how it was trained (command, seed, iterations, device, minutes, the measured test metrics).

>>> maml = metalib.pretrained("sinusoid-maml")           # a Learner (MAML) with the weights loaded
>>> maml.model                                           # its network
>>> metalib.pretrained_info("sinusoid-maml")["metrics"]  # what the manifest says was measured
>>> metalib.evaluation.evaluate(metalib.pretrained("protonet-omniglot-5w1s"), Omniglot("test"))

A manifest entry says how to rebuild the learner: few-shot entries carry their run's ``config``
(:class:`metalib.fewshot.FewShotConfig`); others ``learner = {"algorithm", "settings"}``. The file
holds the state of the network (``"state": "model"``, the default) or of the whole learner
(``"state": "learner"``: learners with meta-learned tensors outside the network).
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from .io import PathLike, atomic_torch_save, atomic_write_json, sha256_file

WEIGHTS_DIR = Path(__file__).parent / "weights"
MANIFEST = "MANIFEST.json"


class ChecksumMismatchError(RuntimeError):
    """A weights file does not match the sha256 recorded in the manifest."""


class CorruptWeightsError(RuntimeError):
    """The manifest or a weights file cannot be used (unreadable, malformed, or pointing elsewhere)."""


def _manifest(directory: PathLike = WEIGHTS_DIR) -> Dict[str, Dict[str, Any]]:
    path = Path(directory) / MANIFEST
    if not path.exists():
        return {}
    try:
        with open(path) as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptWeightsError(f"{path} is not valid JSON ({err}): restore it from the repository "
                                  "(git checkout -- metalib/weights/MANIFEST.json)") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise CorruptWeightsError(f"{path} is not a manifest ({{name: entry}}): restore it from the repository")
    return data


def manifest(directory: PathLike = WEIGHTS_DIR) -> Dict[str, Dict[str, Any]]:
    """The whole manifest: ``{name: entry}`` (a copy)."""
    return {k: dict(v) for k, v in _manifest(directory).items()}


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
    file = info.get("file")
    # a manifest names a file *in* its folder: no path separators, no "..", nothing absolute
    if not isinstance(file, str) or Path(file).name != file or file in ("", ".", ".."):
        raise CorruptWeightsError(f"the manifest entry of {name!r} names the file {file!r}, which is not a file in "
                                  f"{Path(directory)}: refusing to load it")
    path = Path(directory) / file
    if not path.exists():
        raise FileNotFoundError(f"the weights file of {name!r} is missing: {path}")
    digest = sha256_file(path)
    if digest != info["sha256"]:
        raise ChecksumMismatchError(
            f"{path} has sha256 {digest}, but the manifest records {info['sha256']}: the file is "
            "corrupt or was changed. Restore it from the repository (git checkout -- <file>)."
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch's message advises weights_only=False: never pass that on to a user
        raise CorruptWeightsError(f"{path} holds something other than plain tensors and numbers "
                                  f"({type(err).__name__}), so it is not loaded; restore it from the repository "
                                  "(git checkout -- <file>)") from None


# the task losses a manifest may name (settings are JSON: a loss is stored by its name)
_LOSSES = {"mse_loss": "mse_loss", "cross_entropy": "cross_entropy", "l1_loss": "l1_loss"}


def _learner_for(info: Dict[str, Any], model: nn.Module):
    if "config" in info:
        from .config import FewShotConfig, build_learner

        return build_learner(FewShotConfig.from_dict(info["config"]), model)
    spec = info.get("learner")
    if not isinstance(spec, dict) or "algorithm" not in spec:
        raise ValueError("the manifest entry says neither its few-shot 'config' nor its 'learner' "
                         "({'algorithm', 'settings'}): it cannot be rebuilt")
    from . import algorithms

    settings = dict(spec.get("settings") or {})
    if "loss_fn" in settings:
        import torch.nn.functional as F

        loss = settings["loss_fn"]
        if loss not in _LOSSES:
            raise ValueError(f"unknown loss {loss!r} in the manifest; known: {', '.join(_LOSSES)}")
        settings["loss_fn"] = getattr(F, _LOSSES[loss])
    return algorithms.get(spec["algorithm"], model, **settings)


def pretrained(name: str, directory: PathLike = WEIGHTS_DIR, device=None):
    """The learner ``name`` (a :class:`metalib.algorithms.Learner`) with its shipped weights,
    checksum verified, ready to ``predict``/``adapt``/evaluate; ``.model`` is its network.
    See :func:`list_pretrained`."""
    info = pretrained_info(name, directory)
    blob = _load_file(name, directory)
    model = build_model(info["builder"], info.get("builder_kwargs"))
    learner = _learner_for(info, model)
    if info.get("state", "model") == "learner":
        learner.load_state_dict(blob["state_dict"])
    else:
        learner.model.load_state_dict(blob["state_dict"])
    return learner.to(device) if device is not None else learner


def pretrained_snapshots(name: str, directory: PathLike = WEIGHTS_DIR) -> Dict[int, Dict[str, Tensor]]:
    """``{iteration: state_dict}`` saved during the training of ``name`` (may be empty)."""
    blob = _load_file(name, directory)
    return {int(k): v for k, v in blob.get("snapshots", {}).items()}


def _builder_of(model: nn.Module) -> Tuple[str, Dict[str, Any]]:
    """``("module:function", kwargs)`` that rebuild ``model``: from ``model.builder_spec()`` if it has one."""
    spec = getattr(model, "builder_spec", None)
    if not callable(spec):
        raise ValueError(f"cannot tell how to rebuild a {type(model).__name__}: pass builder= and builder_kwargs=")
    return spec()


def save_pretrained(
    name: str,
    learner,
    builder: Optional[str] = None,
    builder_kwargs: Optional[Dict[str, Any]] = None,
    info: Optional[Dict[str, Any]] = None,
    snapshots: Optional[Dict[int, Dict[str, Tensor]]] = None,
    directory: PathLike = WEIGHTS_DIR,
) -> Dict[str, Any]:
    """Write ``learner``'s weights (and optional training snapshots of its network) and record them
    in the manifest, so that :func:`pretrained` gives the same learner back (checked before writing).

    ``info`` must say how to rebuild the learner (a few-shot ``config``, or ``learner =
    {"algorithm", "settings"}``) and should say how the weights were made: command, seed,
    iterations, device, minutes, metrics (with how they were measured). ``builder``/``builder_kwargs``
    rebuild the network (default: ``learner.model.builder_spec()``). The learner's whole state is
    stored (``"state": "learner"``). Both files are written atomically.
    """
    directory = Path(directory)
    if builder is None:
        builder, builder_kwargs = _builder_of(learner.model)
    entry = dict(info or {})
    entry.update(builder=builder, builder_kwargs=builder_kwargs or {}, state="learner")
    state = {k: v.detach().cpu().clone() for k, v in learner.state_dict().items()}
    _learner_for(entry, build_model(builder, builder_kwargs)).load_state_dict(state)  # it must rebuild
    file = f"{name}.pt"
    blob: Dict[str, Any] = {"state_dict": state}
    if snapshots:
        blob["snapshots"] = {int(k): {n: t.detach().cpu().clone() for n, t in sd.items()} for k, sd in snapshots.items()}
    atomic_torch_save(blob, directory / file)
    entry.update(file=file, sha256=sha256_file(directory / file))
    manifest = _manifest(directory)
    manifest[name] = entry
    atomic_write_json(manifest, directory / MANIFEST)
    return entry
