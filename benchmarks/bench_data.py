"""Speed of the data layer: cold load, warm load, episode sampling vs one Conv-4 training step.

    METALIB_DATA=/path/to/data python benchmarks/bench_data.py [--no-write] [--skip-cold]

Measures, on the real data (Omniglot; miniImageNet as staged, i.e. "miniImageNet (train
400/class)" for the shared copy):

* cold load: archives -> decoded cache (into a fresh temporary cache folder; a single run, since
  that is what a user pays once),
* warm load: cache -> tensor (median of 5 after one warm-up), with the payload check every load
  does (CRC-32 of the image bytes, see metalib/data/cache.py) and, to show what that check costs,
  once more with it switched off (``cache.payload_ok`` replaced by a no-op for that measurement),
* episodes per second of ``EpisodeSampler.sample`` on CPU (and GPU when available), median of 50
  calls after 10 warm-up calls,
* one forward + backward of a Conv-4 (4 x [conv3x3 64, BN, ReLU, maxpool 2] + linear; defined
  here) on the same episode batch (support + query of all tasks), median of 10 after 2 warm-up
  on GPU, of 3 after 1 on CPU (where one pass takes seconds),
  and the ratio sampling time / step time. A real MAML step costs several such passes, so the
  ratio is an upper bound of the share of time spent sampling.

Writes a table between ``<!-- bench_data:start -->`` and ``<!-- bench_data:end -->`` in
benchmarks/README.md (unless ``--no-write``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

import metalib.data.cache as cache_mod
from metalib.data import EpisodeSampler, MiniImageNet, Omniglot, data_root

START, END = "<!-- bench_data:start -->", "<!-- bench_data:end -->"
PROJECT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def payload_check_off():
    """Measure a warm load without the payload CRC check (only here: loaders always check)."""
    real = cache_mod.payload_ok
    cache_mod.payload_ok = lambda images, digest: None
    try:
        yield
    finally:
        cache_mod.payload_ok = real


def shown_path(path: Path) -> str:
    """``path`` relative to the checkout when it is near it (no machine-specific prefix in the README)."""
    rel = os.path.relpath(Path(path).resolve(), PROJECT)
    return rel if rel.count("..") <= 2 else str(path)


def median_time(fn: Callable[[], object], repeat: int, warmup: int, device: str = "cpu") -> float:
    """Median wall time of ``fn()`` in seconds (CUDA work is synchronised before reading the clock)."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def conv4(in_ch: int, size: int, n_out: int, hidden: int = 64) -> nn.Module:
    """The classic Conv-4 backbone (Vinyals et al. / Finn et al.) with a linear head."""
    layers: list[nn.Module] = []
    for i in range(4):
        layers += [nn.Conv2d(in_ch if i == 0 else hidden, hidden, 3, padding=1),
                   nn.BatchNorm2d(hidden), nn.ReLU(), nn.MaxPool2d(2)]
    for _ in range(4):
        size //= 2
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(hidden * size * size, n_out))


def episode_row(name: str, ds, n_way: int, k: int, q: int, tasks: int, device: str) -> dict:
    sampler = EpisodeSampler(ds, n_way, k, q, device=device)
    g = torch.Generator().manual_seed(0)
    t_sample = median_time(lambda: sampler.sample(tasks, g), repeat=50, warmup=10, device=device)
    ep = sampler.sample(tasks, g)
    ch, h, _w = ep.x_s.shape[2:]
    model = conv4(ch, h, n_way).to(device)
    x = torch.cat([ep.x_s.flatten(0, 1), ep.x_q.flatten(0, 1)])
    y = torch.cat([ep.y_s.flatten(), ep.y_q.flatten()])

    def step() -> None:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    # A CPU Conv-4 pass over thousands of images takes seconds: fewer repeats there.
    reps, warm = (10, 2) if device.startswith("cuda") else (3, 1)
    t_step = median_time(step, repeat=reps, warmup=warm, device=device)
    return {"name": name, "device": device, "tasks": tasks, "images": x.shape[0], "step_reps": reps,
            "sample": t_sample, "eps": tasks / t_sample, "step": t_step, "ratio": t_sample / t_step}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fmt_s(t: float) -> str:
    return f"{t * 1e3:.1f} ms" if t < 1 else f"{t:.2f} s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--no-write", action="store_true", help="print only; do not update README.md")
    ap.add_argument("--skip-cold", action="store_true", help="skip the cold loads (slow)")
    args = ap.parse_args()
    torch.manual_seed(0)
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    loads: list[tuple[str, str, str]] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench_data_cache_"))
    try:
        # cold: a fresh cache folder, so both archives are decoded
        if not args.skip_cold:
            t = time.perf_counter()
            Omniglot("train", cache_dir=tmp, progress=False)
            loads.append(("Omniglot cold: 2 zips (32,460 PNGs) -> cache, + Vinyals train", fmt_s(time.perf_counter() - t), "single run"))
        omni = Omniglot("train", cache_dir=tmp, progress=False)
        t_warm = median_time(lambda: Omniglot("train", cache_dir=tmp, progress=False), repeat=5, warmup=1)
        with payload_check_off():
            t_off = median_time(lambda: Omniglot("train", cache_dir=tmp, progress=False), repeat=5, warmup=1)
        mib = sum(p.stat().st_size for p in omni.cache_paths) / 2**20
        loads.append((f"Omniglot warm: cache ({mib:.0f} MiB, 2 files) -> Vinyals train {list(omni.images.shape)} uint8, "
                      "with the payload CRC-32 check", fmt_s(t_warm), "median of 5"))
        loads.append(("Omniglot warm, the same without the payload check", fmt_s(t_off),
                      f"median of 5; the check costs {fmt_s(t_warm - t_off)}"))
        if not args.skip_cold:
            t = time.perf_counter()
            MiniImageNet("train", cache_dir=tmp, progress=False)
            loads.append(("miniImageNet (train 400/class) cold: images.zip (25,600 JPEGs) -> cache", fmt_s(time.perf_counter() - t), "single run"))
        mini = MiniImageNet("train", cache_dir=tmp, progress=False)
        t_warm = median_time(lambda: MiniImageNet("train", cache_dir=tmp, progress=False), repeat=5, warmup=1)
        with payload_check_off():
            t_off = median_time(lambda: MiniImageNet("train", cache_dir=tmp, progress=False), repeat=5, warmup=1)
        mib = mini.cache_path.stat().st_size / 2**20
        loads.append((f"miniImageNet (train 400/class) warm: cache ({mib:.0f} MiB) -> train {list(mini.images.shape)} "
                      "uint8 (memory-mapped), with the payload CRC-32 check", fmt_s(t_warm), "median of 5"))
        loads.append(("miniImageNet (train 400/class) warm, the same without the payload check", fmt_s(t_off),
                      f"median of 5; the check costs {fmt_s(t_warm - t_off)}"))

        rows = []
        for dev in devices:
            rows.append(episode_row("Omniglot 5-way 1-shot 15-query, meta-batch 32", omni, 5, 1, 15, 32, dev))
            rows.append(episode_row("miniImageNet (train 400/class) 5-way 1-shot 15-query, meta-batch 4", mini, 5, 1, 15, 4, dev))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU on this machine"
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    machine = (f"{cpu_model()}, {os.cpu_count()} cores (torch threads: {torch.get_num_threads()}; "
               f"1-min load average {load_start:.1f} at the start, {load_end:.1f} at the end: other "
               f"jobs shared the cores if above ~0.5); "
               f"{gpu}; torch {torch.__version__}; Python {platform.python_version()}; "
               f"{datetime.date.today().isoformat()}")
    lines = [
        START,
        "## Data layer (`benchmarks/bench_data.py`)",
        "",
        f"Machine: {machine}.  ",
        f"Data: `{shown_path(data_root())}`. Regenerate with `python benchmarks/bench_data.py`.",
        "",
        "| load | time | |",
        "|---|---:|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in loads],
        "",
        "| episodes | device | `sample()` (median of 50) | episodes/s | Conv-4 fwd+bwd on the batch | sample / step |",
        "|---|---|---:|---:|---:|---:|",
        *[f"| {r['name']} ({r['images']} images) | {r['device']} | {fmt_s(r['sample'])} | "
          f"{r['eps']:,.0f} | {fmt_s(r['step'])} (median of {r['step_reps']}) | {r['ratio']:.3f} |" for r in rows],
        "",
        "Medians after warm-up. Every warm load checks the cache's payload (a CRC-32 of the image "
        "bytes, one per 64 MiB block, on up to 4 threads; a mismatch rebuilds the cache): it reads "
        "the whole file once, so the memory-mapped miniImageNet load is no longer free; the rows "
        "\"without the payload check\" show the load without it (not an option of metalib). "
        "`sample / step` below 1 means sampling costs less than one "
        "forward+backward pass; MAML and ProtoNet steps cost one or more such passes, so sampling "
        "is not the bottleneck when this ratio is small.",
        END,
    ]
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _table import README, write_section

        write_section("bench_data", table.split(START, 1)[1].rsplit(END, 1)[0].strip())
        print(f"\nwritten to {README}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
