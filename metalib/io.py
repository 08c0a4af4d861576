"""Files written atomically: a temporary file in the same folder, fsync'd, then renamed over the target.

An interrupted write (KeyboardInterrupt, a full disk, a crash) leaves the previous file untouched:

* every failure inside :func:`atomic_open` removes the temporary file;
* a failed write (disk full, quota exceeded, file-size limit, I/O error) is raised as one
  :class:`AtomicWriteError` — an ``OSError`` with the original ``errno`` and a one-line message
  naming the file, the cause ("disk full?") and that the previous file is intact — even when the
  writer in between (``torch.save``) turned the ``OSError`` into a ``RuntimeError``;
* a process killed outright (``kill -9``, power loss) cannot clean up: its temporary file stays.
  While a writer lives it holds an exclusive ``flock`` on its temporary file, so
  :func:`remove_stale_temp_files` can tell such orphans from writes in progress (in this or any
  other process) and removes only the orphans.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Iterator, List, Optional, Union

import torch

try:  # POSIX: temp files are locked while written, so orphans can be told from live writes
    import fcntl
except ImportError:  # pragma: no cover - Windows: an open file cannot be deleted there anyway
    fcntl = None  # type: ignore[assignment]

PathLike = Union[str, os.PathLike]
_CHUNK = 1 << 20
TEMP_SUFFIX = ".tmp"
# ".<target name>.<8 characters from tempfile.mkstemp>.tmp"
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp$")
# errno values that mean "no room": full disk, quota, file-size limit (RLIMIT_FSIZE)
_NO_ROOM = {errno.ENOSPC, errno.EFBIG} | ({errno.EDQUOT} if hasattr(errno, "EDQUOT") else set())


class AtomicWriteError(OSError):
    """Writing a file failed (disk full, quota, file-size limit, I/O error, ...).

    ``errno`` is the original error's; the message is one line naming the file and saying that
    the previous version of it (if any) is intact and no temporary file was left behind.
    """


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files 0600; finished files get the usual 0666 & ~umask so a shared folder
# stays readable by others. Read once at import: os.umask can only be read by setting it.
_FILE_MODE = 0o666 & ~_current_umask()


class _RecordingFile:
    """The temp file as given to the caller: remembers the first ``OSError`` of ``write``/``flush``.

    ``torch.save`` reports a failed write as ``RuntimeError: [enforce fail ...] unexpected pos``;
    the recorded ``OSError`` lets :func:`atomic_open` say what really happened (e.g. ENOSPC).
    """

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self.error: Optional[OSError] = None

    def write(self, data: Any) -> int:
        try:
            return self._f.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def flush(self) -> None:
        try:
            self._f.flush()
        except OSError as e:
            self.error = self.error or e
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def _first_line(err: BaseException) -> str:
    text = str(getattr(err, "strerror", None) or err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _write_error(path: Path, err: OSError) -> AtomicWriteError:
    if err.errno in _NO_ROOM:
        cause = "disk full? free some space or write to another folder, then try again"
    else:
        cause = "check that the folder exists, is writable and the disk is healthy"
    before = f"the previous {path.name} is intact" if path.exists() else f"no {path.name} was written"
    return AtomicWriteError(
        err.errno, f"could not write {path}: {_first_line(err)} ({cause}); {before}, no temporary file left"
    )


def _create_locked_temp(path: Path) -> tuple[int, str, Optional[int]]:
    """``mkstemp`` beside ``path``, locked (POSIX) before anyone can mistake it for an orphan.

    Returns ``(fd, temp path, lock fd)``; the lock fd is a duplicate that keeps the flock held
    until the rename is done, after the data fd was closed.
    """
    for _ in range(10):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
        if fcntl is None:  # pragma: no cover
            return fd, tmp, None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # pragma: no cover - a file system without locks: write unlocked
            return fd, tmp, None  # (the cleaner cannot lock such a file either, so it keeps it)
        # Between mkstemp and flock a cleaner may have taken the unlocked file for an orphan and
        # removed it; then our fd points to a deleted inode: start again with a new temp file.
        try:
            st = os.stat(tmp)
            ours = os.fstat(fd)
            if (st.st_dev, st.st_ino) == (ours.st_dev, ours.st_ino):
                return fd, tmp, os.dup(fd)
        except FileNotFoundError:
            pass
        os.close(fd)
    raise AtomicWriteError(errno.EAGAIN, f"could not create a temporary file beside {path}")  # pragma: no cover


@contextlib.contextmanager
def atomic_open(path: PathLike) -> Iterator[BinaryIO]:
    """Open a temp file next to ``path`` for binary writing; on success fsync and rename it over
    ``path``. On any error (or Ctrl-C) the temp file is removed and ``path`` is left untouched;
    a failed write is raised as :class:`AtomicWriteError` (one line, original ``errno``)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp, lock_fd = _create_locked_temp(path)
    except AtomicWriteError:  # pragma: no cover
        raise
    except OSError as e:  # no permission, read-only file system, no room for even an empty file
        raise _write_error(path, e) from e
    f = os.fdopen(fd, "wb")
    rec = _RecordingFile(f)
    stage = "body"
    try:
        try:
            yield rec  # type: ignore[misc]
            stage = "finish"
            f.flush()
            os.fsync(f.fileno())
        finally:
            try:
                f.close()
            except OSError:
                if stage == "finish":
                    raise
                # the body failed already; its error is the one to report
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, AtomicWriteError) or not isinstance(exc, Exception):  # e.g. Ctrl-C: as is
            raise
        if rec.error is not None:  # a write failed, whatever the caller made of it
            raise _write_error(path, rec.error) from exc
        if stage == "finish" and isinstance(exc, OSError):  # flush / fsync / close / rename failed
            raise _write_error(path, exc) from exc
        raise
    finally:
        if lock_fd is not None:
            os.close(lock_fd)


def remove_stale_temp_files(folder: PathLike) -> List[Path]:
    """Remove the temporary files that :func:`atomic_open` left in ``folder`` when its process
    was killed (``kill -9``, power loss) and return their paths.

    Only names of the writer's shape (``.<target>.<8 chars>.tmp``) are considered, and only files
    no living process is writing: a writer holds an exclusive ``flock`` on its temp file until
    the rename, so a file whose lock can be taken is an orphan. (Without ``fcntl``, i.e. on
    Windows, a file being written cannot be deleted, which gives the same guarantee.) Errors
    (a read-only folder, a file that vanished meanwhile) are ignored: cleaning is best effort.
    """
    folder = Path(folder)
    removed: List[Path] = []
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return removed
    for name in names:
        if not _TEMP_NAME.match(name):
            continue
        p = folder / name
        try:
            if fcntl is None:  # pragma: no cover
                os.unlink(p)
                removed.append(p)
                continue
            fd = os.open(p, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # locked: a live writer
            os.close(fd)
            continue
        try:
            st, ours = os.stat(p), os.fstat(fd)
            if (st.st_dev, st.st_ino) == (ours.st_dev, ours.st_ino):
                os.unlink(p)
                removed.append(p)
        except OSError:
            pass
        finally:
            os.close(fd)  # releases the lock
    return removed


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


@contextlib.contextmanager
def exclusive_lock(path: Optional[PathLike]) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the block, so that two processes
    shipping weights do not interleave their manifest updates; ``None``: no lock. Without ``fcntl``
    (not POSIX) the block runs unlocked."""
    if path is None or fcntl is None:
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
