"""metalib.device: device choice, determinism switch, timer, memory and to_device."""
import subprocess
import sys
import time

import pytest
import torch

from metalib import TaskBatch
from metalib.data.base import ClassImageSet
from metalib.data.episodes import EpisodeSampler
from metalib.device import (
    Timer, current_memory_mb, default_device, describe_device, deterministic, is_deterministic,
    peak_memory_mb, seed_everything, time_it, to_device,
)


def test_default_device_choice(monkeypatch):
    monkeypatch.delenv("METALIB_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert default_device().type == expected
    assert default_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("METALIB_DEVICE", "cpu")
    assert default_device().type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error when CUDA is missing")
def test_asking_for_missing_cuda_is_an_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        default_device("cuda")


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="checks the error when MPS is missing")
def test_asking_for_missing_mps_is_an_error():
    with pytest.raises(ValueError, match="MPS is not available"):
        default_device("mps")


def test_deterministic_switch_and_context():
    before = (is_deterministic(), torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        with deterministic():
            assert is_deterministic() and torch.backends.cudnn.deterministic
            assert not torch.backends.cudnn.benchmark
            with deterministic(False):
                assert not is_deterministic()
            assert is_deterministic()
        assert (is_deterministic(), torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark) == before
        deterministic(True)  # plain call: stays on
        assert is_deterministic()
    finally:
        deterministic(False)
        torch.backends.cudnn.benchmark = before[2]
    with pytest.raises(TypeError):
        deterministic("yes")


def test_seed_everything_repeats_and_switches():
    g1 = seed_everything(3)
    a = torch.rand(4), torch.rand(4, generator=g1)
    g2 = seed_everything(3)
    b = torch.rand(4), torch.rand(4, generator=g2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    try:
        seed_everything(3, deterministic=True)
        assert is_deterministic()
    finally:
        deterministic(False)


def test_timer_and_time_it_measure_wall_time():
    with Timer("cpu") as t:
        time.sleep(0.02)
    assert 0.015 < t.seconds < 1.0
    calls = []
    timing = time_it(lambda: calls.append(time.sleep(0.005)), repeats=3, warmup=2, device="cpu")
    assert len(calls) == 5 and timing.repeats == 3 and timing.min_ms <= timing.median_ms <= timing.max_ms
    assert timing.min_ms >= 4.0
    with pytest.raises(ValueError):
        time_it(lambda: None, repeats=0)


def _vmrss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_current_memory_is_the_resident_set_size():
    """Against the kernel's own VmRSS line (an independent reading of the same number)."""
    a, rss, b = current_memory_mb("cpu"), _vmrss_mb(), current_memory_mb("cpu")
    assert min(a, b) - 8 <= rss <= max(a, b) + 8
    assert peak_memory_mb("cpu") >= rss - 8  # the peak is at least what is held now
    assert "CPU" in describe_device("cpu")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_memory_reports_see_a_large_allocation():
    # In a fresh process: in this one, earlier tests may have left freed-but-resident memory that
    # a new tensor reuses without growing the resident set.
    code = (
        "import torch; from metalib.device import current_memory_mb, peak_memory_mb\n"
        "b = current_memory_mb('cpu'); x = torch.ones(64 * 2**20 // 4); a = current_memory_mb('cpu')\n"
        "print(a - b, peak_memory_mb('cpu') - b)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    grew, peak_grew = map(float, out.stdout.split())
    assert 56 < grew < 128 and peak_grew > 56


def test_to_device_moves_datasets_batches_and_tensors():
    images = torch.randint(0, 256, (6, 4, 1, 8, 8), dtype=torch.uint8)
    ds = ClassImageSet(images, [f"c{i}" for i in range(6)], name="toy")
    moved = to_device(ds, "cpu")
    assert moved is not ds and moved.images.device.type == "cpu" and moved.name == "toy"
    assert ds.images is images  # the original is untouched
    ep = EpisodeSampler(moved, 3, 1, 2).sample(2, torch.Generator().manual_seed(0))
    assert ep.x_s.shape == (2, 3, 1, 8, 8)
    batch = to_device(TaskBatch(*ep), "cpu")
    assert isinstance(batch, TaskBatch) and torch.equal(batch.x_q, ep.x_q)
    assert isinstance(to_device(tuple(ep), "cpu"), tuple)
    assert to_device([images], "cpu")[0] is images  # already there: no copy
    assert set(to_device({"a": images, "n": 3}, "cpu")) == {"a", "n"}
    with pytest.raises(TypeError, match="to_device"):
        to_device(3, "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
def test_to_device_cuda_and_sampler_on_gpu():
    images = torch.randint(0, 256, (6, 4, 1, 8, 8), dtype=torch.uint8)
    ds = to_device(ClassImageSet(images, [str(i) for i in range(6)]), "cuda")
    sampler = EpisodeSampler(ds, 3, 1, 2)
    assert sampler.device.type == "cuda"
    ep = sampler.sample(2, torch.Generator().manual_seed(0))
    cpu = EpisodeSampler(images, 3, 1, 2).sample(2, torch.Generator().manual_seed(0))
    assert torch.equal(ep.x_s.cpu(), cpu.x_s)  # same seed, same episodes on every device


ALLOCATOR_PROBE = r"""
import json, torch
from metalib.device import current_memory_mb, tune_cpu_allocator

def freed_mb():
    x = torch.ones(200 * 2**20 // 4)        # 200 MiB, touched
    before = current_memory_mb("cpu")
    del x
    return before - current_memory_mb("cpu")  # how much went back to the OS when it was freed

default = freed_mb()
tuned = tune_cpu_allocator()
print(json.dumps({"default": default, "tuned": tuned, "after": freed_mb()}))
"""


def run_probe(code, **env):
    import json
    import os

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **env})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc: Linux only")
def test_tune_cpu_allocator_keeps_freed_memory_for_reuse():
    """In a fresh process: glibc returns a freed 200 MiB tensor to the OS by default; once tuned,
    the memory stays in the process (and the next allocation reuses it without page faults)."""
    r = run_probe(ALLOCATOR_PROBE, METALIB_CPU_ALLOCATOR="")
    assert r["default"] > 150, r
    assert r["tuned"] is True
    assert r["after"] < 50, r


def test_tune_cpu_allocator_opt_out_and_bad_threshold(monkeypatch):
    from metalib.device import tune_cpu_allocator

    monkeypatch.setenv("METALIB_CPU_ALLOCATOR", "system")
    assert tune_cpu_allocator() is False
    for bad in (0, 4096, 1.5, True):
        with pytest.raises(ValueError, match="threshold_mb"):
            tune_cpu_allocator(bad)


def test_trainer_on_cpu_tunes_the_allocator():
    code = r"""
import json, torch
from metalib import fewshot
from metalib.device import cpu_allocator_tuned
images = (torch.rand(6, 4, 1, 16, 16) * 255).to(torch.uint8)
before = cpu_allocator_tuned()
cfg = fewshot.default_config("maml", 3, 1, dataset="custom", image_size=16, hidden=8, iterations=1, val_every=0,
                             inner_lr=0.4, inner_steps=1, train_query=2)
fewshot.FewShotTrainer(cfg, images, progress=False, device="cpu")
print(json.dumps({"before": before, "after": cpu_allocator_tuned()}))
"""
    r = run_probe(code, METALIB_CPU_ALLOCATOR="")
    assert r == {"before": False, "after": sys.platform.startswith("linux")}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM and clear_refs: Linux only")
def test_cpu_peak_can_be_reset_and_is_not_inherited_from_the_parent():
    """The CI failure this guards against: a measuring subprocess started by a pytest process that
    held ~1.1 GB reported that as its own peak (``ru_maxrss`` survives fork + exec on Linux)."""
    code = r"""
import json, subprocess, sys, torch
from metalib.device import peak_memory_mb, reset_peak_memory
x = torch.ones(400 * 2**20 // 4)                      # 400 MiB, touched
held = peak_memory_mb("cpu")
child = subprocess.run([sys.executable, "-c",
                        "from metalib.device import peak_memory_mb; print(peak_memory_mb('cpu'))"],
                       capture_output=True, text=True, check=True)
del x                                                 # glibc returns a block this large to the OS
reset_peak_memory("cpu")
print(json.dumps({"held": held, "child": float(child.stdout), "after_reset": peak_memory_mb("cpu")}))
"""
    r = run_probe(code, METALIB_CPU_ALLOCATOR="system")
    assert r["held"] > 400, r
    assert r["child"] < r["held"] - 250, r        # the child's own peak, not its parent's
    assert r["after_reset"] < r["held"] - 300, r  # the peak starts again from the current RSS
