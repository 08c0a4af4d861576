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
_CHUNK = 1 << 20


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files 0600; finished files get the usual 0666 & ~umask so a shared folder
# stays readable by others. Read once at import: os.umask can only be read by setting it.
_FILE_MODE = 0o666 & ~_current_umask()


@contextlib.contextmanager
def atomic_open(path: PathLike) -> Iterator[BinaryIO]:
    """Open a temp file next to ``path`` for binary writing; on success fsync and rename it over
    ``path``. On any error (or Ctrl-C) the temp file is removed and ``path`` is left untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)
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
    """JSON (indented, sorted keys) via :func:`atomic_open`."""
    with atomic_open(path) as f:
        f.write((json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def _hash_file(path: PathLike, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_file(path: PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    return _hash_file(path, "sha256")


def md5_file(path: PathLike) -> str:
    """Hex md5 of a file (only to compare with published checksums, not for security)."""
    return _hash_file(path, "md5")
