"""metalib.io.exclusive_lock: while held, no one else can take the lock on that file (what keeps two
weight-shipping processes from interleaving their manifest updates); released after the block, also
when it raises; ``None`` locks nothing."""
import fcntl

import pytest

from metalib.io import exclusive_lock


def other_can_lock(path) -> bool:
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(fh, fcntl.LOCK_UN)
        return True


def test_held_inside_released_after(tmp_path):
    lock = tmp_path / "lock"
    with exclusive_lock(lock):
        assert not other_can_lock(lock)
    assert other_can_lock(lock)
    with pytest.raises(RuntimeError):
        with exclusive_lock(lock):
            raise RuntimeError("inside")
    assert other_can_lock(lock)


def test_none_locks_nothing(tmp_path):
    with exclusive_lock(None):
        assert other_can_lock(tmp_path / "lock")
