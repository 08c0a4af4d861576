"""Data-parallel meta-training on the CPU: 1 process vs 2 processes (torchrun, gloo), one thread each.

    python benchmarks/bench_ddp.py             # writes its section into benchmarks/README.md
    python benchmarks/bench_ddp.py --no-write

The workload is W2's shape (MAML Omniglot 5-way 1-shot, Conv-4 with 64 filters, 28x28, 1 query per
class, 1 inner step, second order) at meta-batch 8, on synthetic images (time does not depend on
pixel values), through ``FewShotTrainer`` — what ``torchrun ... scripts/train_fewshot.py`` runs.
Each process count is launched fresh; the median seconds per iteration after 2 warm-up iterations.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(ROOT), str(ROOT / "tests")):
    if p not in sys.path:
        sys.path.insert(0, p)


def worker(iterations: int, out: str) -> None:
    import torch

    from metalib import distributed
    from metalib.fewshot import FewShotTrainer, default_config
    from metalib.training import Callback
    from _nets import synthetic_images

    torch.set_num_threads(1)
    rank, size, _ = distributed.setup(backend="gloo")
    finished = False
    try:
        # MAML's Omniglot 5-way 1-shot settings (the custom dataset has no paper defaults), meta-batch 8
        cfg = default_config("maml", 5, 1, dataset="custom", iterations=iterations, meta_batch=8, val_every=0,
                             checkpoint_every=0, inner_lr=0.4, inner_steps=1, test_inner_steps=3, train_query=1)
        t = FewShotTrainer(cfg, synthetic_images(40, per_class=20, size=28), device="cpu", progress=False)
        stamps = []

        class Clock(Callback):
            def on_iteration_end(self, loop, metrics):
                stamps.append(time.perf_counter())

        t.loop.callbacks.append(Clock())
        start = time.perf_counter()
        t.fit()
        if rank == 0:
            times = [b - a for a, b in zip([start] + stamps, stamps)][2:]
            Path(out).write_text(json.dumps({"processes": size, "median_s": statistics.median(times),
                                             "min_s": min(times), "max_s": max(times), "n": len(times)}))
        finished = True
    finally:
        distributed.teardown(finished)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=8)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(int(args.worker[0]), args.worker[1])
        return
    import tempfile

    import torch

    rows = []
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        for n in (1, 2):
            out = os.path.join(tmp, f"{n}.json")
            env = dict(os.environ, OMP_NUM_THREADS="1")
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}", __file__,
                   "--worker", str(args.iterations), out]
            subprocess.run(cmd, env=env, check=True, capture_output=True)
            rows.append(json.loads(Path(out).read_text()))
            print(rows[-1], flush=True)
    one = rows[0]["median_s"]
    lines = [
        "## Across processes: 1 → 2 on the CPU (`benchmarks/bench_ddp.py`)",
        "",
        f"Measured {datetime.date.today().isoformat()} on {os.cpu_count()} CPU cores, one torch thread per process, "
        f"torch {torch.__version__}, gloo; 1-min load average {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at "
        "the end (other work shared the cores when above ~0.5). W2's shape (MAML Omniglot 5w1s, Conv-4 64 filters, "
        "1 query/class, second order) at meta-batch 8 through `FewShotTrainer` on synthetic images; median seconds "
        f"per iteration after 2 warm-up iterations ({args.iterations} in all), each process count launched fresh "
        "with `torchrun --standalone`.",
        "",
        "| processes | s / iteration, median (min–max) | speed-up vs 1 |",
        "|---:|---|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['processes']} | {r['median_s']:.2f} ({r['min_s']:.2f}–{r['max_s']:.2f}) | "
                     f"{one / r['median_s']:.2f}× |")
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        sys.path.insert(0, str(HERE))
        from _table import write_section

        write_section("bench_ddp", text)


if __name__ == "__main__":
    main()
