"""The decoded-image cache: safe tensor files, written atomically, tied to their sources.

A cache entry is one ``.pt`` file written with ``torch.save`` that holds only plain tensors and
plain Python values (``{"format": int, "meta": dict, "images": uint8 tensor}``); it is read back
with ``torch.load(weights_only=True, mmap=True)``, so loading it can never execute code and the
images are memory-mapped (a warm load costs milliseconds). A JSON sidecar with the same ``meta``
sits next to it for humans and for ``python -m metalib.data info``.

``meta["sources"]`` records what the cache was decoded from: for a file its size, mtime and
sha256; for a folder a digest of its sorted listing (relative path, size, mtime). A cache is used
only while its sources still match; otherwise it is rebuilt.

``meta["payload_digest"]`` records a CRC-32 of the image bytes (one per 64 MiB block), computed
when the file is written and recomputed on every load. ``torch.load`` does not notice changed
bytes inside tensor data, so without it a flipped bit or a forged file of blank images with a
valid header would be used as data. CRC-32 (zlib's, the fastest checksum in the standard library)
is enough here: the cache is not a security boundary (it is loaded with ``weights_only=True``, and
whoever can write it could also write a matching digest); the check is against accidental damage
(disk, copies, interrupted tools), where a mismatch is missed with probability 2**-32. The cost is
one read of the file per load; the measured warm loads with and without it are in
benchmarks/README.md. A cache that fails any check is rebuilt from the sources, with a
:class:`DamagedCacheWarning` naming the file.

Writing is atomic (:func:`metalib.io.atomic_open`). On a full disk :func:`save_cache` raises
:class:`metalib.io.AtomicWriteError` (an ``OSError``) and leaves neither a partial ``.pt`` nor a
temporary file; the loaders catch it, warn and return the decoded data anyway.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from ..io import AtomicWriteError, atomic_open, md5_file, remove_stale_temp_files, sha256_file

__all__ = [
    "CACHE_FORMAT",
    "DamagedCacheWarning",
    "AtomicWriteError",
    "atomic_open",
    "sha256_file",
    "md5_file",
    "fingerprint",
    "sources_match",
    "payload_digest",
    "payload_ok",
    "save_cache",
    "load_cache",
    "warn_not_cached",
    "path_tag",
]

# Bump when the layout of cache files changes: older files are then ignored and rebuilt.
# 2: meta["payload_digest"] (CRC-32 of the image bytes) is required and checked.
CACHE_FORMAT = 2
DIGEST_BLOCK = 1 << 26  # 64 MiB per CRC: blocks are checked on up to 4 threads (zlib releases the GIL)


class DamagedCacheWarning(UserWarning):
    """A cache file was unreadable or failed its checks and is being rebuilt from the sources."""


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


def _blocks(images: torch.Tensor) -> list[memoryview]:
    flat = memoryview(images.contiguous().reshape(-1).view(torch.uint8).numpy())
    return [flat[i:i + DIGEST_BLOCK] for i in range(0, len(flat), DIGEST_BLOCK)] or [flat]


def _crcs(images: torch.Tensor) -> list[int]:
    blocks = _blocks(images)
    workers = min(len(blocks), os.cpu_count() or 1, 4)
    if workers <= 1:
        return [zlib.crc32(b) for b in blocks]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(zlib.crc32, blocks))


def payload_digest(images: torch.Tensor) -> dict[str, Any]:
    """``{"algorithm": "crc32", "block_bytes": ..., "crc32": [one per block]}`` of the tensor's bytes."""
    return {"algorithm": "crc32", "block_bytes": DIGEST_BLOCK, "crc32": _crcs(images)}


def payload_ok(images: torch.Tensor, digest: Any) -> str | None:
    """None if ``images`` matches ``digest`` (from :func:`payload_digest`), else what is wrong."""
    if not isinstance(digest, dict) or digest.get("algorithm") != "crc32" or not isinstance(digest.get("crc32"), list):
        return "no payload digest recorded"
    if digest.get("block_bytes") != DIGEST_BLOCK:
        return "payload digest of another block size"
    got = _crcs(images)
    if got != digest["crc32"]:
        want = digest["crc32"]
        bad = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        return (f"the image bytes do not match the CRC-32 recorded when it was written "
                f"(first difference in bytes {bad * DIGEST_BLOCK:,}..{(bad + 1) * DIGEST_BLOCK:,} of the images)")
    return None


def save_cache(path: str | os.PathLike[str], images: torch.Tensor, meta: dict[str, Any]) -> None:
    """Write ``images`` (any uint8 tensor) and ``meta`` (JSON-able) atomically to ``path`` and
    its ``.json`` sidecar, with the payload digest. Readers never see a half-written file.

    Temp files of killed writers in the folder are removed first. Raises
    :class:`metalib.io.AtomicWriteError` (an ``OSError``) when the disk is full; then neither
    file is left (a ``.pt`` whose sidecar could not be written is removed too).
    """
    path = Path(path)
    images = images.contiguous()
    meta = dict(meta, format=CACHE_FORMAT, shape=list(images.shape), dtype=str(images.dtype),
                payload_digest=payload_digest(images))
    remove_stale_temp_files(path.parent)
    with atomic_open(path) as f:
        torch.save({"format": CACHE_FORMAT, "meta": meta, "images": images}, f)
    side = dict(meta, cache_file=path.name, cache_bytes=path.stat().st_size)
    try:
        with atomic_open(path.with_suffix(".json")) as f:
            f.write(json.dumps(side, indent=1).encode())
    except OSError:
        path.unlink(missing_ok=True)
        raise


def warn_not_cached(what: str, path: Path, err: OSError, stacklevel: int = 3) -> None:
    """The one-line warning of a loader whose cache could not be written (e.g. a full disk)."""
    reason = err.strerror if isinstance(err, AtomicWriteError) and err.strerror else f"could not write {path}: {err}"
    warnings.warn(
        f"{what} was decoded but not cached: {reason}. The data is used anyway; the next load "
        f"decodes it again (set METALIB_CACHE to a folder with room to keep the cache)",
        stacklevel=stacklevel,
    )


def _damaged(path: Path, what: str) -> None:
    warnings.warn(f"cache file {path} is damaged ({what}); rebuilding it from the sources",
                  DamagedCacheWarning, stacklevel=4)


def load_cache(
    path: str | os.PathLike[str], expect: dict[str, Any], sources: list[Path]
) -> tuple[torch.Tensor, dict[str, Any]] | None:
    """Load a cache entry if it exists, is readable, has the current format, agrees with every
    key of ``expect``, was built from unchanged ``sources`` and its images match the payload
    digest; otherwise return None (the caller rebuilds it). A file that exists but is damaged
    (unreadable, inconsistent, digest mismatch) also gives a :class:`DamagedCacheWarning`."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, weights_only=True, mmap=True, map_location="cpu")
    except Exception as e:  # truncated/corrupt cache file: it is only derived data, rebuild it
        try:
            with open(path, "rb") as f:
                zipped = f.read(2) == b"PK"
        except OSError:
            zipped = True
        if not zipped:
            _damaged(path, "unreadable: not the zip archive torch.save writes")
        else:
            first = (str(e).strip().splitlines() or [""])[0].split(". ")[0][:160]
            _damaged(path, f"unreadable: {type(e).__name__}{': ' + first if first else ''}")
        return None
    if not isinstance(blob, dict):
        _damaged(path, "not a metalib cache")
        return None
    if blob.get("format") != CACHE_FORMAT:  # an older metalib's cache: replace it quietly
        return None
    meta, images = blob.get("meta"), blob.get("images")
    if not isinstance(meta, dict) or not isinstance(images, torch.Tensor):
        _damaged(path, "no meta or no images tensor")
        return None
    if any(meta.get(k) != v for k, v in expect.items()):
        return None
    if list(images.shape) != meta.get("shape") or images.dtype != torch.uint8:
        _damaged(path, f"images {list(images.shape)} {images.dtype} disagree with the recorded "
                       f"{meta.get('shape')} uint8")
        return None
    if not sources_match(meta.get("sources", []), sources):
        return None
    problem = payload_ok(images, meta.get("payload_digest"))
    if problem is not None:
        _damaged(path, problem)
        return None
    return images, meta
