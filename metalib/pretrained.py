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

A manifest is data and never runs code: its ``builder`` must be one of :data:`BUILDERS` (metalib's
networks), called with keyword arguments checked against that constructor's schema (known keys,
types, ranges); the file must match the recorded sha256, hold plain tensors only
(``weights_only=True``), all finite, that fit the network. Each failure is one
:class:`CorruptWeightsError` line. Ship names are plain names (:func:`check_ship_name`), and a
shipped name is replaced only with ``overwrite=True``.
"""
from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from .checkpoint import nonfinite_tensors, state_mismatch
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


# ----------------------------------------------------------------------------- the constructors a manifest may name
# A manifest is data: loading weights calls only a constructor of this list, with keyword arguments
# of the types and ranges below (the bounds keep a crafted entry from allocating a huge network).
# Each value: ("int", low, high) | ("int?", low, high) (an int or None) | ("bool",) | ("ints", low, high, max_len).
_CHANNELS, _WIDTH, _SIDE = ("int", 1, 64), ("int", 1, 4096), ("int", 16, 1024)
BUILDERS: Dict[str, Dict[str, tuple]] = {
    "metalib.models:Conv4": {"in_channels": _CHANNELS, "n_classes": ("int?", 1, 100_000), "hidden": _WIDTH,
                             "image_size": _SIDE, "track_running_stats": ("bool",)},
    "metalib.models:MLP": {"in_features": ("int", 1, 100_000), "hidden": ("ints", 1, 100_000, 64),
                           "out_features": ("int", 1, 100_000)},
    "metalib.models:sinusoid_mlp": {},
    "metalib.algorithms.mann:PixelInput": {"in_channels": _CHANNELS, "image_size": ("int", 1, 1024)},
    "metalib.algorithms.snail:ConvEmbedding": {"in_channels": _CHANNELS, "hidden": _WIDTH, "image_size": _SIDE},
    "metalib.algorithms.relation:RelationEncoder": {"in_channels": _CHANNELS, "hidden": _WIDTH, "image_size": _SIDE},
}


MAX_PARAMETERS = 100_000_000  # 400 MB of float32: far above any shipped network (SNAIL: 3.2 M)


def _parameters(builder: str, kw: Dict[str, Any]) -> int:
    """An upper estimate of the number of parameters ``builder(**kw)`` allocates (checked before it is built,
    so that a crafted manifest cannot ask for terabytes within each argument's range)."""
    def convs(c: int, h: int) -> int:  # four 3x3 conv blocks with BatchNorm/GroupNorm
        return 9 * c * h + 3 * 9 * h * h + 4 * 3 * h
    if builder in ("metalib.models:Conv4", "metalib.algorithms.snail:ConvEmbedding",
                   "metalib.algorithms.relation:RelationEncoder"):
        c, h, side = kw.get("in_channels", 1), kw.get("hidden", 64), kw.get("image_size", 28)
        n = kw.get("n_classes") or 0
        return convs(c, h) + (h * (side // 16) ** 2 + 1) * n
    if builder == "metalib.models:MLP":
        sizes = [kw.get("in_features", 1), *kw.get("hidden", (40, 40)), kw.get("out_features", 1)]
        return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))
    return 0  # sinusoid_mlp (1,761), PixelInput (none)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_argument(builder: str, key: str, v: Any, rule: tuple) -> None:
    kind = rule[0]
    where = f"{builder}: {key}"
    if kind == "bool":
        if not isinstance(v, bool):
            raise CorruptWeightsError(f"{where} must be true or false, got {v!r}")
    elif kind in ("int", "int?"):
        low, high = rule[1], rule[2]
        if v is None and kind == "int?":
            return
        what = f"None or between {low} and {high}" if kind == "int?" else f"between {low} and {high}"
        if not _is_int(v):
            raise CorruptWeightsError(f"{where} must be an int ({what}), got {v!r}"[:300])
        if not low <= v <= high:
            raise CorruptWeightsError(f"{where} must be {what}, got {v}")
    elif kind == "ints":
        low, high, most = rule[1:]
        if (not isinstance(v, (list, tuple)) or not 1 <= len(v) <= most
                or not all(_is_int(x) and low <= x <= high for x in v)):
            raise CorruptWeightsError(f"{where} must be a list of ints between {low} and {high} (1 to {most} of "
                                      f"them), got {v!r}"[:300])
    else:  # pragma: no cover - a mistake in BUILDERS
        raise AssertionError(rule)


def check_builder(builder: Any, kwargs: Any) -> Dict[str, Any]:
    """Check that a manifest's ``builder`` is a constructor of :data:`BUILDERS` and ``kwargs`` fit its
    schema (known keys, types, ranges); returns the keyword arguments. Raises
    :class:`CorruptWeightsError` (one line) otherwise. Nothing is imported or called."""
    if not isinstance(builder, str) or builder not in BUILDERS:
        raise CorruptWeightsError(f"{str(builder)[:100]!r} is not a model constructor metalib allows in a manifest "
                                  f"(only metalib's networks: {', '.join(BUILDERS)}): refusing to build it")
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, dict):
        raise CorruptWeightsError(f"{builder}: builder_kwargs must be a JSON object, got {type(kwargs).__name__}")
    schema = BUILDERS[builder]
    for key, v in kwargs.items():
        if key not in schema:
            raise CorruptWeightsError(f"{builder}: unknown argument {str(key)[:60]!r} in the manifest; it takes "
                                      f"{', '.join(schema) or 'none'}")
        _check_argument(builder, key, v, schema[key])
    n = _parameters(builder, kwargs)
    if n > MAX_PARAMETERS:
        raise CorruptWeightsError(f"{builder} with {json.dumps(kwargs, sort_keys=True)[:200]} would have about "
                                  f"{n:,} parameters, more than any metalib network ({MAX_PARAMETERS:,}): refusing to build it")
    return dict(kwargs)


def build_model(builder: str, kwargs: Optional[Dict[str, Any]] = None) -> nn.Module:
    """Build the network ``"package.module:Constructor"`` with ``kwargs`` (how the manifest records an
    architecture): only a constructor of :data:`BUILDERS`, with arguments checked by :func:`check_builder`."""
    kwargs = check_builder(builder, kwargs)
    module, _, attr = builder.partition(":")
    return getattr(importlib.import_module(module), attr)(**kwargs)


# ----------------------------------------------------------------------------- names and files
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_ship_name(name: Any, directory: PathLike = WEIGHTS_DIR, overwrite: bool = True) -> str:
    """``name`` if it can name shipped weights in ``directory``: a plain name (letters, digits, ``.``, ``_``,
    ``-``; no path separators, no ``..``, nothing absolute, at most 100 characters). Unless ``overwrite``,
    a name the manifest already has is refused too (``FileExistsError``). One-line errors."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"{str(name)[:120]!r} is not a plain name for shipped weights: use letters, digits, '.', "
                         "'_' and '-' (at most 100, starting with a letter or digit; no '/', no '..')")
    if not overwrite and name in _manifest(directory):
        raise FileExistsError(f"{Path(directory)} already ships {name!r}: choose another name, or pass "
                              "overwrite=True (--overwrite) to replace it")
    return name


def _check_finite(path: Path, blob: Any) -> None:
    if not isinstance(blob, dict) or not isinstance(blob.get("state_dict"), dict):
        raise CorruptWeightsError(f"{path} holds no 'state_dict': restore it from the repository (git checkout -- <file>)")
    parts = [("", blob["state_dict"])]
    snaps = blob.get("snapshots", {})
    if isinstance(snaps, dict):
        parts += [(f"snapshot {k}: ", v) for k, v in snaps.items() if isinstance(v, dict)]
    for where, state in parts:
        bad = nonfinite_tensors(state)
        if bad:
            raise CorruptWeightsError(f"{path} holds non-finite (NaN/inf) weights ({where}{', '.join(bad[:3])}): "
                                      "metalib never ships such weights; restore it from the repository")


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
    expected = info.get("sha256")
    if not isinstance(expected, str) or len(expected) != 64:
        raise CorruptWeightsError(f"the manifest entry of {name!r} records no sha256 of its file (64 hex digits), so "
                                  f"{path} cannot be verified: refusing to load it; restore the manifest from the "
                                  "repository (git checkout -- metalib/weights/MANIFEST.json)")
    digest = sha256_file(path)
    if digest != expected:
        raise ChecksumMismatchError(
            f"{path} has sha256 {digest}, but the manifest records {expected}: the file is "
            "corrupt or was changed. Restore it from the repository (git checkout -- <file>)."
        )
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch's message advises weights_only=False: never pass that on to a user
        raise CorruptWeightsError(f"{path} holds something other than plain tensors and numbers "
                                  f"({type(err).__name__}), so it is not loaded; restore it from the repository "
                                  "(git checkout -- <file>)") from None
    _check_finite(path, blob)
    return blob


def _load_weights(module: nn.Module, state: Dict[str, Tensor], name: str, info: Dict[str, Any]) -> None:
    """``module.load_state_dict(state)``, with one line naming the first mismatch when the weights are those
    of another architecture (torch's error lists every key on many lines)."""
    why = state_mismatch(module, state)
    if why:
        raise CorruptWeightsError(
            f"the weights of {name!r} do not fit the network the manifest describes ({info.get('builder')} "
            f"{json.dumps(info.get('builder_kwargs') or {}, sort_keys=True)}): {why}. The file and its "
            "manifest entry belong to different architectures: restore both from the repository")
    module.load_state_dict(state)


# A manifest's learner settings ('config' with its options, 'learner.settings') are capped before anything is
# built: far above what any shipped entry holds (at most ~750 characters, 3 levels, 40 values)
MAX_SETTINGS_CHARS, MAX_SETTINGS_DEPTH, MAX_SETTINGS_VALUES = 16_000, 8, 1_000


def check_settings(value: Any, what: str) -> None:
    """Raise :class:`CorruptWeightsError` (one line) if the JSON value ``value`` (a manifest entry's learner
    settings) is larger than :data:`MAX_SETTINGS_CHARS` characters, nests deeper than
    :data:`MAX_SETTINGS_DEPTH` levels or holds more than :data:`MAX_SETTINGS_VALUES` values: a crafted entry
    cannot make the learner's constructor loop over a million-element list or recurse without end."""
    count = 0

    def walk(v: Any, depth: int) -> None:
        nonlocal count
        count += 1
        if depth > MAX_SETTINGS_DEPTH:
            raise CorruptWeightsError(f"{what} nest deeper than {MAX_SETTINGS_DEPTH} levels: refusing to build it")
        if count > MAX_SETTINGS_VALUES:
            raise CorruptWeightsError(f"{what} hold more than {MAX_SETTINGS_VALUES:,} values: refusing to build it")
        if isinstance(v, dict):
            for k, x in v.items():
                walk(k, depth + 1)
                walk(x, depth + 1)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x, depth + 1)

    walk(value, 0)
    try:
        size = len(json.dumps(value))
    except (TypeError, ValueError) as err:  # not JSON (a manifest is read with json: only if built in memory)
        raise CorruptWeightsError(f"{what} are not JSON ({err})"[:300]) from None
    if size > MAX_SETTINGS_CHARS:
        raise CorruptWeightsError(f"{what} take {size:,} characters, more than {MAX_SETTINGS_CHARS:,}: refusing to "
                                  "build it")


def _rebuild(name: str, info: Dict[str, Any], model: nn.Module):
    """The learner of a manifest entry around ``model``: its settings capped (:func:`check_settings`), then
    built once on the ``meta`` device (no memory) to count its tensors (:data:`MAX_PARAMETERS`, as the
    network's), then for real. Every failure is one :class:`CorruptWeightsError` line."""
    for part in ("config", "learner"):
        if part in info:
            check_settings(info[part], f"the {part} of the manifest entry {name!r}")
    try:
        with torch.device("meta"):
            probe = _learner_for(info, build_model(info.get("builder"), info.get("builder_kwargs")))
        n = sum(t.numel() for t in (*probe.parameters(), *probe.buffers()))
        if n > MAX_PARAMETERS:
            raise CorruptWeightsError(f"the manifest entry of {name!r} asks for a learner of {n:,} parameters and "
                                      f"buffers, more than any metalib learner ({MAX_PARAMETERS:,}): refusing to build it")
        return _learner_for(info, model)
    except CorruptWeightsError:
        raise
    except Exception as err:  # noqa: BLE001 - the entry's config / learner settings: one line, never a traceback
        text = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CorruptWeightsError(f"the manifest entry of {name!r} cannot rebuild its learner ({text[:300]}): "
                                  "restore the manifest from the repository") from None


# the task losses a manifest may name (settings are JSON: a loss is stored by its name)
_LOSSES = {"mse_loss": "mse_loss", "cross_entropy": "cross_entropy", "l1_loss": "l1_loss"}


def _learner_for(info: Dict[str, Any], model: nn.Module):
    if "config" in info:
        from .config import FewShotConfig, build_learner

        if not isinstance(info["config"], dict):
            raise ValueError(f"its 'config' is not a JSON object but {type(info['config']).__name__}")
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
    model = build_model(info.get("builder"), info.get("builder_kwargs"))
    learner = _rebuild(name, info, model)
    kind = info.get("state", "model")
    if kind not in ("model", "learner"):
        raise CorruptWeightsError(f"the manifest entry of {name!r} says state={str(kind)[:40]!r}; it must be "
                                  "'model' or 'learner'")
    _load_weights(learner if kind == "learner" else learner.model, blob["state_dict"], name, info)
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
    overwrite: bool = False,
) -> Dict[str, Any]:
    """Write ``learner``'s weights (and optional training snapshots of its network) and record them
    in the manifest, so that :func:`pretrained` gives the same learner back (checked before writing).

    ``info`` must say how to rebuild the learner (a few-shot ``config``, or ``learner =
    {"algorithm", "settings"}``) and should say how the weights were made: command, seed,
    iterations, device, minutes, metrics (with how they were measured). ``builder``/``builder_kwargs``
    rebuild the network (default: ``learner.model.builder_spec()``). The learner's whole state is
    stored (``"state": "learner"``). Both files are written atomically.

    ``name`` must be a plain name (:func:`check_ship_name`); a name the manifest already has is replaced
    only with ``overwrite=True``. Weights with NaN/inf are refused (``ValueError``), as is a ``builder``
    outside :data:`BUILDERS`.
    """
    directory = Path(directory)
    check_ship_name(name, directory, overwrite)
    if builder is None:
        builder, builder_kwargs = _builder_of(learner.model)
    if builder not in BUILDERS:
        raise ValueError(f"refusing to record {builder!r} as a builder: only metalib's model constructors "
                         f"({', '.join(BUILDERS)}) are allowed in a manifest")
    entry = dict(info or {})
    entry.update(builder=builder, builder_kwargs=builder_kwargs or {}, state="learner")
    state = {k: v.detach().cpu().clone() for k, v in learner.state_dict().items()}
    bad = nonfinite_tensors(state) + [f"snapshot {i}: {k}" for i, sd in (snapshots or {}).items() for k in nonfinite_tensors(sd)]
    if bad:
        raise ValueError(f"refusing to ship {name!r}: its weights are non-finite (NaN/inf in {', '.join(bad[:3])})")
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
