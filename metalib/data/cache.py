"""The decoded-image cache: safe tensor files, written atomically, tied to their sources.

A cache entry is one ``.pt`` file written with ``torch.save`` that holds only plain tensors and
plain Python values (``{"format": int, "meta": dict, "images": uint8 tensor}``); it is read back
with ``torch.load(weights_only=True, mmap=True)``, so loading it can never execute code and the
images are memory-mapped (a warm load costs milliseconds). A JSON sidecar with the same ``meta``
sits next to it for humans and for ``python -m metalib.data info``.

``meta["sources"]`` records what the cache was decoded from: for a file its size, mtime and
sha256; for a folder a digest of its sorted listing (relative path, size, mtime). A cache is used
only while its sources still match; otherwise it is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from ..io import atomic_open, md5_file, sha256_file

__all__ = [
    "CACHE_FORMAT",
    "atomic_open",
    "sha256_file",
    "md5_file",
    "fingerprint",
    "sources_match",
    "save_cache",
    "load_cache",
    "path_tag",
]

# Bump when the layout of cache files changes: older files are then ignored and rebuilt.
CACHE_FORMAT = 1


def _folder_listing(folder: Path) -> tuple[int, str]:
    """``(number of files, sha256 of the sorted 'relpath size mtime_ns' lines)`` of a tree."""
    lines = []
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            p = os.path.join(dirpath, name)
            st = os.stat(p)
            lines.append(f"{os.path.relpath(p, folder)}\t{st.st_size}\t{st.st_mtime_ns}")
    lines.sort()
    return len(lines), hashlib.sha256("\n".join(lines).encode()).hexdigest()


def fingerprint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Describe a source file or folder so that a later change can be detected."""
    path = Path(path).resolve()
    if path.is_dir():
        n, digest = _folder_listing(path)
        return {"path": str(path), "kind": "folder", "n_files": n, "listing_sha256": digest}
    st = path.stat()
    return {
        "path": str(path),
        "kind": "file",
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "sha256": sha256_file(path),
    }


def _still_matches(rec: dict[str, Any]) -> bool:
    path = Path(rec["path"])
    try:
        if rec["kind"] == "folder":
            return path.is_dir() and _folder_listing(path) == (rec["n_files"], rec["listing_sha256"])
        st = path.stat()
    except OSError:
        return False
    if st.st_size != rec["size"]:
        return False
    # Same size and mtime: trust it (hashing a 170 MB zip on every warm load would cost ~0.5 s).
    # A touched or copied file with the same size gets the full sha256 comparison.
    return st.st_mtime_ns == rec["mtime_ns"] or sha256_file(path) == rec["sha256"]


def sources_match(recorded: list[dict[str, Any]], current: list[Path]) -> bool:
    """True when the cache was built from exactly ``current`` and none of them changed since."""
    if sorted(r["path"] for r in recorded) != sorted(str(Path(p).resolve()) for p in current):
        return False
    return all(_still_matches(r) for r in recorded)


def path_tag(path: str | os.PathLike[str]) -> str:
    """8 hex digits naming a data folder, so caches of different copies never overwrite each other."""
    return hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:8]


def save_cache(path: str | os.PathLike[str], images: torch.Tensor, meta: dict[str, Any]) -> None:
    """Write ``images`` (any uint8 tensor) and ``meta`` (JSON-able) atomically to ``path`` and
    its ``.json`` sidecar. Readers never see a half-written file."""
    path = Path(path)
    meta = dict(meta, format=CACHE_FORMAT, shape=list(images.shape), dtype=str(images.dtype))
    with atomic_open(path) as f:
        torch.save({"format": CACHE_FORMAT, "meta": meta, "images": images.contiguous()}, f)
    side = dict(meta, cache_file=path.name, cache_bytes=path.stat().st_size)
    with atomic_open(path.with_suffix(".json")) as f:
        f.write(json.dumps(side, indent=1).encode())


def load_cache(
    path: str | os.PathLike[str], expect: dict[str, Any], sources: list[Path]
) -> tuple[torch.Tensor, dict[str, Any]] | None:
    """Load a cache entry if it exists, is readable, has the current format, agrees with every
    key of ``expect`` and was built from unchanged ``sources``; otherwise return None."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, weights_only=True, mmap=True, map_location="cpu")
    except Exception:  # truncated/corrupt cache file: it is only derived data, rebuild it
        return None
    if not isinstance(blob, dict) or blob.get("format") != CACHE_FORMAT:
        return None
    meta, images = blob.get("meta"), blob.get("images")
    if not isinstance(meta, dict) or not isinstance(images, torch.Tensor):
        return None
    if any(meta.get(k) != v for k, v in expect.items()):
        return None
    if list(images.shape) != meta.get("shape") or images.dtype != torch.uint8:
        return None
    if not sources_match(meta.get("sources", []), sources):
        return None
    return images, meta
