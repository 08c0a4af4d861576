"""Shipped meta-RL policies (``metalib/weights/rl/NAME.pt``): a parameter dict and a small ``meta``
dict (how it was trained, what it measured), written atomically and read with
``torch.load(weights_only=True)`` — nothing in the file can run code. Kept apart from the supervised
weights' ``MANIFEST.json`` (those are ``Learner`` s; these are parameter dicts of :mod:`metalib.rl`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Tuple

import torch
from torch import Tensor

from ..io import PathLike, atomic_open

RL_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights" / "rl"
FORMAT = "metalib-rl-policy-1"


def save_policy(name: str, params: Dict[str, Tensor], meta: Dict[str, Any], directory: PathLike = RL_WEIGHTS_DIR) -> Path:
    """Write ``{format, params, meta}`` to ``directory/name.pt`` atomically; ``meta`` holds only plain
    numbers, strings, lists and dicts."""
    path = Path(directory) / f"{name}.pt"
    blob = {"format": FORMAT, "params": {k: v.detach().cpu().contiguous() for k, v in params.items()}, "meta": meta}
    with atomic_open(path) as f:
        torch.save(blob, f)
    return path


def load_policy(name: str, directory: PathLike = RL_WEIGHTS_DIR) -> Tuple[Dict[str, Tensor], Dict[str, Any]]:
    """``(params, meta)`` of a shipped policy; a missing, unreadable or non-finite file is one-line ValueError."""
    path = Path(directory) / f"{name}.pt"
    if not path.is_file():
        known = sorted(p.stem for p in Path(directory).glob("*.pt"))
        raise ValueError(f"no shipped RL policy {name!r} in {directory} (known: {', '.join(known) or 'none'})")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # never pass on torch's advice to set weights_only=False
        raise ValueError(f"{path} is not a readable metalib RL policy ({type(err).__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT or not isinstance(blob.get("params"), dict):
        raise ValueError(f"{path} is not a metalib RL policy (format tag {FORMAT!r} missing)")
    bad = [k for k, v in blob["params"].items() if not isinstance(v, Tensor) or not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"{path}: non-finite or non-tensor parameters {bad}")
    return dict(blob["params"]), dict(blob.get("meta", {}))
