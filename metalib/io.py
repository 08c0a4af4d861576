"""Files written atomically: a temporary file in the same folder, fsync'd, then renamed over the target.

An interrupted write (KeyboardInterrupt, a full disk, a crash) leaves the previous file untouched.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Union

import torch

PathLike = Union[str, os.PathLike]


@contextlib.contextmanager
def atomic_open(path: PathLike) -> Iterator[BinaryIO]:
    """``with atomic_open(p) as f: f.write(...)`` — ``p`` appears only once the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_torch_save(obj: Any, path: PathLike) -> None:
    """:func:`torch.save` via :func:`atomic_open`."""
    with atomic_open(path) as f:
        torch.save(obj, f)


def atomic_write_json(obj: Any, path: PathLike) -> None:
    with atomic_open(path) as f:
        f.write((json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
