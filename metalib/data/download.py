"""Verified downloads: stream into a temp file, check the MD5, only then rename into place.

A partial, interrupted or corrupt download never replaces an existing file: the bytes go to a temp
file in the destination folder and are moved over the destination with ``os.replace`` only after
their checksum matches the published one. The temp file is removed on every failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .cache import atomic_open

__all__ = ["DownloadError", "ChecksumError", "download_file"]


class DownloadError(RuntimeError):
    """A download failed (no network, HTTP error, ...); the message says how to place files by hand."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not have the expected checksum; nothing was replaced."""


Opener = Callable[..., Any]


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    *,
    md5: str,
    opener: Opener | None = None,
    progress: bool = True,
    timeout: float = 60.0,
    manual_hint: str = "",
) -> Path:
    """Download ``url`` to ``dest`` and return ``dest``.

    Args:
        url: any URL ``urllib`` opens (``https://``, ``file://``).
        dest: final path; its folder is created.
        md5: expected hex MD5 of the file (the published checksum).
        opener: ``opener(url, timeout=...)`` returning a file-like response; defaults to
            ``urllib.request.urlopen`` (tests pass a fake to stay off the network).
        progress: show a tqdm progress bar.
        timeout: socket timeout in seconds.
        manual_hint: appended to error messages (where to put the file by hand).

    Raises:
        DownloadError: the URL could not be read; ``dest`` is untouched.
        ChecksumError: the bytes arrived but their MD5 differs; ``dest`` is untouched.
    """
    dest = Path(dest)
    opener = opener or urllib.request.urlopen
    hint = f" {manual_hint}" if manual_hint else ""
    # atomic_open writes to a temp file beside dest and renames it over dest only if this block
    # finishes; the checksum error below therefore leaves dest untouched and removes the temp.
    with atomic_open(dest) as out:
        try:
            response = opener(url, timeout=timeout)
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise DownloadError(f"could not download {url}: {e}.{hint}") from e
        digest = hashlib.md5()
        with contextlib.closing(response):
            bar = _bar(_content_length(response), dest.name, progress)
            try:
                while True:
                    try:
                        chunk = response.read(1 << 16)
                    except (urllib.error.URLError, OSError) as e:
                        raise DownloadError(f"download of {url} broke off: {e}.{hint}") from e
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
            finally:
                bar.close()
        got = digest.hexdigest()
        if got != md5.lower():
            raise ChecksumError(
                f"{url}: MD5 {got} does not match the published {md5}; the download is corrupt "
                f"or the file changed upstream. {dest} was left as it was.{hint}"
            )
    return dest


def _content_length(response: Any) -> int | None:
    headers = getattr(response, "headers", None)
    value = headers.get("Content-Length") if headers is not None else None
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int | None, desc: str, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc)
