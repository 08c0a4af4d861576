"""Where the data and the decoded caches live, and the errors for missing or broken data.

Resolution rules (the contract CI relies on):

* data root: the ``root=`` argument, else ``$METALIB_DATA``, else ``<project>/data``
  (``<project>`` is the folder that holds the ``metalib`` package, i.e. the git checkout).
* cache dir: the ``cache_dir=`` argument, else ``$METALIB_CACHE``, else ``<root>/cache`` when the
  data root is the user's own and may be written, else the per-user cache dir (``platformdirs``'
  ``user_cache_dir("metalib")``: ``$XDG_CACHE_HOME/metalib`` or ``~/.cache/metalib`` on Linux).
  "The user's own": the default ``<project>/data``, or a folder owned by the user that neither the
  group nor others may write — a lab's shared copy (another owner, or group-writable) never gets a
  cache written into it.

"May be written" honours the permission bits even for root: a folder marked ``r-x`` (like a shared,
read-only data copy) is never written to, although root could technically do it — neither to put a
cache into it nor to create a requested cache folder inside it.

The default data folder works without any environment variable; :func:`where_to_put` words every
"where do the files go" hint the same way: the absolute default folder first, then ``$METALIB_DATA``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = [
    "ENV_DATA",
    "ENV_CACHE",
    "DataNotFoundError",
    "CorruptDataError",
    "project_dir",
    "data_root",
    "data_root_origin",
    "cache_dir",
    "where_to_put",
    "is_ci",
]

ENV_DATA = "METALIB_DATA"
ENV_CACHE = "METALIB_CACHE"


class DataNotFoundError(FileNotFoundError):
    """The dataset files are not where metalib looks; the message says what to put where."""


class CorruptDataError(RuntimeError):
    """A dataset file exists but is damaged or incomplete; the message names it and the fix."""


def project_dir() -> Path:
    """The folder holding the ``metalib`` package (the repository root in a checkout)."""
    return Path(__file__).resolve().parents[2]


def data_root_origin(root: str | os.PathLike[str] | None = None) -> tuple[Path, str]:
    """Return ``(data root, how it was chosen)``; see the module docstring for the order."""
    if root is not None:
        return Path(root).expanduser(), "argument root="
    env = os.environ.get(ENV_DATA)
    if env:
        return Path(env).expanduser(), f"${ENV_DATA}"
    return project_dir() / "data", f"the default data folder, <project>/data; {ENV_DATA} is not set"


def data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The data root: ``root`` > ``$METALIB_DATA`` > ``<project>/data``."""
    return data_root_origin(root)[0]


def _same(a: Path, b: Path) -> bool:
    try:
        return a.expanduser().resolve() == b.expanduser().resolve()
    except OSError:  # pragma: no cover
        return a == b


def where_to_put(sub: str, droot: str | os.PathLike[str]) -> str:
    """The end of a "put the files ..." sentence for ``<data root>/<sub>``, naming the absolute
    default data folder first and ``$METALIB_DATA`` second, and matching how ``droot`` was chosen."""
    droot = Path(droot)
    default = project_dir() / "data"
    env = os.environ.get(ENV_DATA)
    if _same(droot, default):
        return (f"into {default / sub}/ (the default data folder: {ENV_DATA} is not needed), "
                f"or set {ENV_DATA} to a folder whose {sub}/ holds them")
    if env and _same(droot, Path(env)):
        return (f"into {default / sub}/ (the default data folder, used when {ENV_DATA} is unset), "
                f"or into {droot / sub}/ ({ENV_DATA} is set to {droot})")
    return (f"into {droot / sub}/ (under the data root given; without one, metalib uses the default "
            f"data folder {default}/ unless {ENV_DATA} names another)")


def _user_cache_dir() -> Path:
    try:  # the platform's per-user cache folder (macOS: ~/Library/Caches, Windows: %LOCALAPPDATA%)
        import platformdirs

        return Path(platformdirs.user_cache_dir("metalib", appauthor=False))
    except ImportError:  # not a dependency of the library (Jupyter brings it); Linux's rule
        base = os.environ.get("XDG_CACHE_HOME")
        return (Path(base) if base else Path.home() / ".cache") / "metalib"


def users_own(droot: Path) -> bool:
    """True for a data root that is the user's own: the default ``<project>/data``, or a folder this
    user owns that neither group nor others may write (not a lab's shared copy)."""
    if _same(droot, project_dir() / "data"):
        return True
    try:
        st = droot.stat()
    except OSError:
        return False
    uid = os.geteuid() if hasattr(os, "geteuid") else st.st_uid
    return st.st_uid == uid and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def may_write(folder: Path) -> bool:
    """True when ``folder`` exists and its permissions allow us to create files in it.

    ``os.access`` alone is not enough: for root it ignores the mode bits, and we must not drop a
    cache into a data copy that was deliberately made read-only (``r-x``).
    """
    try:
        st = folder.stat()
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode) or not os.access(folder, os.W_OK | os.X_OK):
        return False
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return bool(st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return True


def _usable(folder: Path) -> bool:
    """Create ``folder`` if needed and check that we may write there.

    A missing folder is created only when its nearest existing parent may be written (by the
    permission bits, even for root): a requested cache folder never appears inside a read-only copy.
    """
    if not folder.exists():
        parent = folder.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not may_write(parent):
            return False
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return may_write(folder)


def cache_dir(
    root: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[Path, str]:
    """Return ``(cache folder, why this one)``, creating the folder.

    Order: the ``cache_dir`` argument, ``$METALIB_CACHE``, ``<root>/cache`` if the data root is the
    user's own (:func:`users_own`) and may be written, the per-user cache dir. Raises ``PermissionError``
    if an explicitly requested folder (argument or env var) cannot be written.
    """
    if cache_dir is not None:
        chosen, why = Path(cache_dir).expanduser(), "argument cache_dir="
    elif os.environ.get(ENV_CACHE):
        chosen, why = Path(os.environ[ENV_CACHE]).expanduser(), f"${ENV_CACHE}"
    else:
        droot = data_root(root)
        in_root = droot / "cache"
        own = users_own(droot)
        if own and ((in_root.is_dir() and may_write(in_root)) or (not in_root.exists() and may_write(droot))):
            if _usable(in_root):
                return in_root, "<data root>/cache (data root is writable)"
        user = _user_cache_dir()
        state = ("does not exist" if not droot.exists() else "is read-only" if own or not may_write(droot)
                 else "is shared: another owner's, or group-writable")
        if _usable(user):
            return user, f"user cache dir (the data root {state})"
        raise PermissionError(
            f"no writable cache folder: {in_root} and {user} cannot be written; "
            f"set {ENV_CACHE} to a writable folder"
        )
    if not _usable(chosen):
        raise PermissionError(
            f"cache folder {chosen} (from {why}) cannot be written; choose a writable folder "
            f"(--cache-dir / cache_dir=, or {ENV_CACHE})"
        )
    return chosen, why


def is_ci() -> bool:
    """True when the ``CI`` environment variable is set to something other than empty/0/false/no."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def show_progress(progress) -> bool:
    """``progress`` if given; by default a decode bar only where stderr is a terminal."""
    import sys

    return bool(progress) if progress is not None else bool(getattr(sys.stderr, "isatty", lambda: False)())
