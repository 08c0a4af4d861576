"""Run folders and shipping, checked before use: the logic the command lines call in one line each.

* :func:`check_ship` — a ``--ship`` name is a plain name, not shipped yet unless ``--overwrite``
  (checked before training, not after it).
"""
from __future__ import annotations

from typing import Optional

from .io import PathLike


def check_ship(name: Optional[str], directory: Optional[PathLike] = None, overwrite: bool = False) -> None:
    """Raise (one line) unless ``name`` can be shipped into ``directory`` (default ``metalib/weights``):
    ``ValueError`` for a name that is not a plain name, ``FileExistsError`` for one the manifest has
    (unless ``overwrite``). ``None`` (nothing to ship) passes."""
    if name is None:
        return
    from .pretrained import WEIGHTS_DIR, check_ship_name

    check_ship_name(name, WEIGHTS_DIR if directory is None else directory, overwrite)
