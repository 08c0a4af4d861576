"""Fetch a missing dataset when the network allows: what the image notebooks call before loading.

:func:`fetch_if_missing` does nothing (and prints nothing) when the dataset is found, so a notebook's
stored outputs do not change. When Omniglot is missing and its host answers, it says what it fetches
and how large, then downloads both archives with the verified download of
:mod:`metalib.data.download` (MD5 checked before anything is renamed into place, written atomically,
a progress bar where someone watches) into:

* the data root (``$METALIB_DATA``, else ``<project>/data``) when it is the user's own and writable —
  a student's checkout, Binder, Colab;
* else the per-user data folder (``platformdirs.user_data_dir("metalib")``, ``~/.local/share/metalib``
  on Linux), and ``METALIB_DATA`` is set to it for this process (said in one line) so that the loaders
  that follow find it.

Offline (the host does not answer within ``timeout`` seconds) it does nothing: the loader's own
"not found" message follows, unchanged. A corrupt download is refused (nothing written) and said in one
line. miniImageNet has no public download: a missing copy gets one line saying so; the loader's message
says where to put the files.
"""
from __future__ import annotations

import os
import urllib.request
from pathlib import Path
from typing import Callable, Dict, Optional
from urllib.parse import urlparse

from .download import ChecksumError, DownloadError
from .paths import ENV_DATA, data_root, may_write, users_own

__all__ = ["fetch_if_missing", "user_data_dir", "remote_size"]


def user_data_dir() -> Path:
    """The per-user data folder: ``platformdirs.user_data_dir("metalib")`` (Linux: ``~/.local/share/metalib``)."""
    try:
        import platformdirs

        return Path(platformdirs.user_data_dir("metalib", appauthor=False))
    except ImportError:  # not a dependency of the library (Jupyter brings it); Linux's rule
        base = os.environ.get("XDG_DATA_HOME")
        return (Path(base) if base else Path.home() / ".local" / "share") / "metalib"


def remote_size(url: str, timeout: float = 3.0) -> Optional[int]:
    """``url``'s size in bytes from a HEAD request (``-1``: it answered without a size); ``None`` when it
    does not answer within ``timeout`` seconds or answers with an error — offline, for the caller."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout) as r:
            length = r.headers.get("Content-Length")
            return int(length) if length and length.isdigit() else -1
    except (OSError, ValueError):  # URLError, HTTPError and timeouts are OSErrors
        return None


def _omniglot_present(root) -> bool:
    from .omniglot import PARTS, find_source

    return all(find_source(part, root) is not None for part in PARTS)


def fetch_if_missing(dataset: str = "omniglot", *, root=None, urls: Optional[Dict[str, str]] = None,
                     md5: Optional[Dict[str, str]] = None, timeout: float = 3.0, progress: Optional[bool] = None,
                     say: Callable[[str], None] = print) -> str:
    """Make ``dataset`` available if it is missing and can be fetched; returns what happened.

    Returns ``"present"`` (found: nothing done, nothing printed), ``"downloaded"``, ``"offline"`` (the
    host did not answer: nothing done, nothing printed — the loader's message follows), ``"refused"``
    (a download failed its checksum or broke off: nothing written, one line said) or ``"manual"``
    (miniImageNet: no public download, one line said). ``urls`` / ``md5``: ``{part: ...}`` overrides of
    Omniglot's two archives' addresses and checksums (tests serve a copy from 127.0.0.1). ``progress``: a download bar (default:
    :func:`metalib.device.interactive`).
    """
    if dataset in ("mini-imagenet", "miniimagenet"):
        from .miniimagenet import miniimagenet_dir

        folder = miniimagenet_dir(root)
        if (folder / "images.zip").is_file() or (folder / "images").is_dir() or any(folder.glob("*.pickle")):
            return "present"
        say(f"miniImageNet is not in {folder} and has no public download: the next cell's message says "
            "where to put the files (docs/data.md)")
        return "manual"
    if dataset != "omniglot":
        raise ValueError(f"dataset must be 'omniglot' or 'mini-imagenet', got {dataset!r}")
    if _omniglot_present(root):
        return "present"
    from .omniglot import URLS, download_omniglot

    urls = {**URLS, **(urls or {})}
    sizes = [remote_size(u, timeout) for u in urls.values()]
    if any(size is None for size in sizes):
        return "offline"
    target = was = data_root(root)
    if not (users_own(target) and (may_write(target) or not target.exists() and may_write(target.parent))):
        target = user_data_dir()
        if root is None:
            os.environ[ENV_DATA] = str(target)  # the loaders that follow look here
            say(f"the data folder {was} is not yours to write: using the per-user data folder "
                f"{target} (METALIB_DATA set to it for this session)")
        if _omniglot_present(target):
            return "present"
    size = f"{sum(sizes) / 1e6:.1f} MB" if all(s >= 0 for s in sizes) else "size not given by the server"
    say(f"Omniglot is missing: downloading its two archives (images_background.zip, images_evaluation.zip; "
        f"{size}, MD5-checked) from {urlparse(next(iter(urls.values()))).hostname} into {target / 'omniglot'}")
    if progress is None:
        from ..device import interactive

        progress = interactive()
    try:
        download_omniglot(target, urls=urls, md5=md5, progress=progress)
    except ChecksumError as err:
        say(f"download refused, nothing was written: {' '.join(str(err).split('. ')[0].split())}")
        return "refused"
    except DownloadError as err:
        say(f"download failed, nothing was written: {' '.join(str(err).split())[:300]}")
        return "refused"
    say(f"Omniglot downloaded and verified in {target / 'omniglot'}")
    return "downloaded"

