"""Issue 17, checkpoints: nothing corrupt is ever resumed silently; a full disk gives one clear line.

Every test builds its checkpoint directly with :func:`metalib.checkpoint.save_checkpoint` (a small
linear model with a real Adam state), so none of them depends on the trainer.
"""
from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from metalib import checkpoint as ckpt
from metalib.io import atomic_open

PROJECT = Path(__file__).resolve().parents[1]


def _state(seed: int = 0, width: int = 96) -> dict:
    """A checkpoint-shaped state whose bulk is the Adam moments (as in a real run)."""
    torch.manual_seed(seed)
    model = torch.nn.Linear(width, width)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(4, width)).square().mean().backward()
    opt.step()
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "iteration": 7,
            "config": {"algorithm": "maml", "seed": seed}, "rng": ckpt.rng_state(),
            "history": {"loss": [1.5, 1.25, float("nan")]}}


def _one_line(err: BaseException) -> str:
    msg = str(err)
    assert msg and "\n" not in msg, f"not one line: {msg!r}"
    return msg


def _run(code: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(PROJECT))
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                          cwd=PROJECT, timeout=120)


# ----------------------------------------------------------------------------- payload digest


@pytest.mark.parametrize("where", [0.3, 0.5, 0.7])
def test_flipped_bytes_in_a_checkpoint_are_refused(tmp_path, where):
    path = ckpt.save_checkpoint(tmp_path / "last.pt", _state())
    raw = bytearray(path.read_bytes())
    start = int(len(raw) * where)
    for i in range(start, start + 200):
        raw[i] ^= 0x5A
    path.write_bytes(bytes(raw))
    with pytest.raises(ckpt.CorruptCheckpointError) as e:
        ckpt.load_checkpoint(path)
    msg = _one_line(e.value)
    assert str(path) in msg


def test_a_good_checkpoint_round_trips_exactly(tmp_path):
    state = _state()
    loaded = ckpt.load_checkpoint(ckpt.save_checkpoint(tmp_path / "last.pt", state))
    for k, v in state["model"].items():
        assert torch.equal(loaded["model"][k], v)
    assert torch.equal(loaded["optimizer"]["state"][0]["exp_avg_sq"], state["optimizer"]["state"][0]["exp_avg_sq"])
    assert loaded["iteration"] == 7 and loaded["history"]["loss"][:2] == [1.5, 1.25]


def test_a_checkpoint_with_a_changed_number_is_refused(tmp_path):
    """The digest covers the plain values too: an edited iteration is not resumed."""
    path = ckpt.save_checkpoint(tmp_path / "last.pt", _state())
    blob = torch.load(path, weights_only=True)
    blob["iteration"] = 8
    torch.save(blob, path)
    with pytest.raises(ckpt.CorruptCheckpointError, match="digest"):
        ckpt.load_checkpoint(path)


@pytest.mark.parametrize("keep", [0, 1, 100, 0.5, -22])
def test_empty_or_truncated_checkpoint_is_a_clear_error(tmp_path, keep):
    path = ckpt.save_checkpoint(tmp_path / "best.pt", _state())
    raw = path.read_bytes()
    n = int(len(raw) * keep) if isinstance(keep, float) else (keep if keep >= 0 else len(raw) + keep)
    path.write_bytes(raw[:n])
    with pytest.raises(ckpt.CorruptCheckpointError) as e:
        ckpt.load_checkpoint(path)
    msg = _one_line(e.value)
    assert str(path) in msg
    if n == 0:
        assert "empty (0 bytes)" in msg


def test_crafted_checkpoint_with_nan_weights_is_refused(tmp_path, monkeypatch):
    state = _state()
    state["model"]["weight"][0, 0] = float("nan")
    monkeypatch.setattr(ckpt, "nonfinite_tensors", lambda sd: [])  # a writer that does not check
    path = ckpt.save_checkpoint(tmp_path / "last.pt", state)
    monkeypatch.undo()
    with pytest.raises(ckpt.CorruptCheckpointError, match=r"non-finite.*weight") as e:
        ckpt.load_checkpoint(path)
    _one_line(e.value)


# ----------------------------------------------------------------------------- orphan temp files

_KILLED_WRITER = r"""
import os, signal, sys
from metalib.io import atomic_open
with atomic_open(sys.argv[1]) as f:
    f.write(b"half a checkpoint" * 100)
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
"""


def _orphan(folder: Path, name: str = "last.pt") -> Path:
    res = _run(_KILLED_WRITER, str(folder / name))
    assert res.returncode == -9, res.stderr
    tmps = [p for p in folder.iterdir() if p.name.startswith(f".{name}.") and p.name.endswith(".tmp")]
    assert len(tmps) == 1, sorted(p.name for p in folder.iterdir())
    return tmps[0]


def test_orphan_temp_files_after_kill_9_are_cleaned(tmp_path):
    path = ckpt.save_checkpoint(tmp_path / "last.pt", _state())
    before = path.read_bytes()
    orphan = _orphan(tmp_path)
    (tmp_path / ".notes.tmp").write_text("not ours")  # no temp-file shape: left alone
    removed = ckpt.clean_orphan_temp_files(tmp_path)
    assert removed == [orphan] and not orphan.exists()
    assert path.read_bytes() == before and (tmp_path / ".notes.tmp").exists()
    assert ckpt.clean_orphan_temp_files(tmp_path / "no-such-folder") == []


def test_a_temp_file_being_written_is_not_removed(tmp_path):
    with atomic_open(tmp_path / "best.pt") as f:
        f.write(b"in progress")
        f.flush()
        live = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        assert len(live) == 1
        assert ckpt.clean_orphan_temp_files(tmp_path) == []
        assert live[0].exists()
    assert (tmp_path / "best.pt").read_bytes() == b"in progress"


def test_save_and_load_clean_orphans(tmp_path):
    orphan = _orphan(tmp_path)
    ckpt.save_checkpoint(tmp_path / "last.pt", _state())
    assert not orphan.exists()
    orphan = _orphan(tmp_path, "best.pt")
    ckpt.load_checkpoint(tmp_path / "last.pt")
    assert not orphan.exists()


# ----------------------------------------------------------------------------- full disk


def test_full_disk_at_fsync_is_one_clear_error_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = ckpt.save_checkpoint(tmp_path / "last.pt", _state(0))
    before = path.read_bytes()

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError) as e:
        ckpt.save_checkpoint(path, _state(1))
    monkeypatch.undo()
    msg = _one_line(e.value)
    assert e.value.errno == errno.ENOSPC and "disk full?" in msg and str(path) in msg
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


_FULL_DISK_SAVE = r"""
import resource, signal, sys
from pathlib import Path
import torch
from metalib import checkpoint as ckpt
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a file-size limit: writes fail with EFBIG
path = Path(sys.argv[1])
def state(width):
    m = torch.nn.Linear(width, width)
    return {"model": m.state_dict(), "iteration": width, "config": {}, "rng": {}}
ckpt.save_checkpoint(path, state(8))
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
try:
    ckpt.save_checkpoint(path, state(400))   # ~640 kB: does not fit
except OSError as e:
    print("ERROR", type(e).__name__, e.errno)
    print("MESSAGE", e)
print("ITERATION", ckpt.load_checkpoint(path)["iteration"])
"""


def test_full_disk_during_torch_save_is_one_clear_error(tmp_path):
    res = _run(_FULL_DISK_SAVE, str(tmp_path / "last.pt"))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == f"ERROR {lines[0].split()[1]} {errno.EFBIG}", res.stdout
    assert lines[1].startswith("MESSAGE") and "disk full?" in lines[1] and "last.pt" in lines[1]
    assert lines[2] == "ITERATION 8" and len(lines) == 3, res.stdout  # the previous checkpoint, intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temp file left
