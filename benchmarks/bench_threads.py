"""Issue #29, item 6: torch threads for metalib's small models on a shared CPU — 1 against 2.

    python benchmarks/bench_threads.py [--rounds 3] [--no-write]

Two workloads, in one process, the thread counts interleaved (1, 2, 1, 2, ...) so that a change of
machine load hits both alike; each reported as the median over rounds of wall and process-CPU
seconds, with the load average before and after (the machine is shared):

* **sinusoid**: 50 MAML iterations on the sinusoid family (Finn et al.'s 1-40-40-1 MLP, meta-batch
  25, 10 support / 10 query points, 1 inner step, second order) — notebook 02/03's loop;
* **evaluation**: 50 seeded 5-way 1-shot test episodes (15 queries/class) of the shipped
  ``protonet-omniglot-5w1s`` weights with :func:`metalib.evaluation.evaluate` (Conv-4 on 28x28).

Writes its table between ``<!-- bench_threads:start -->`` and ``<!-- bench_threads:end -->`` in
benchmarks/README.md (unless ``--no-write``). The policy drawn from it: docs/threads.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import metalib  # noqa: E402
from metalib import models, tasks  # noqa: E402
from metalib.algorithms import MAML  # noqa: E402
from metalib.evaluation import TEST_SEED, evaluate  # noqa: E402


def sinusoid(iterations: int = 50) -> None:
    torch.manual_seed(0)
    learner = MAML(models.sinusoid_mlp(), inner_lr=0.01, inner_steps=1, loss_fn=F.mse_loss)
    opt = learner.outer_optimizer(1e-3)
    g, fam = torch.Generator().manual_seed(0), tasks.Sinusoid()
    for _ in range(iterations):
        learner.train_step(fam.sample(25, 10, 10, generator=g), opt)


def evaluation(learner, data, episodes: int = 50) -> None:
    evaluate(learner, data, 5, 1, 15, episodes, TEST_SEED, device="cpu")


def timed(fn, threads: int):
    torch.set_num_threads(threads)
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    from metalib.data import Omniglot

    learner = metalib.pretrained("protonet-omniglot-5w1s")
    data = Omniglot("test", progress=False)
    work = {"sinusoid (50 MAML iterations)": sinusoid,
            "evaluation (50 ProtoNet episodes)": lambda: evaluation(learner, data)}
    load_before = os.getloadavg()
    for fn in work.values():                      # warm-up at 1 thread (allocator, first calls)
        timed(fn, 1)
    res = {(w, t): [] for w in work for t in (1, 2)}
    for _ in range(args.rounds):
        for name, fn in work.items():
            for t in (1, 2):
                res[(name, t)].append(timed(fn, t))
                print(f"{name}, {t} thread(s): {res[(name, t)][-1][0]:.2f} s wall, "
                      f"{res[(name, t)][-1][1]:.2f} s CPU", flush=True)
    load_after = os.getloadavg()
    torch.set_num_threads(1)
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores, torch {torch.__version__}; shared machine: load average "
             f"{load_before[0]:.1f} before, {load_after[0]:.1f} after; medians of {args.rounds} interleaved rounds "
             "(wall / process CPU seconds).", "",
             "| workload | 1 thread | 2 threads | 2 threads / 1 (wall) |", "|---|---|---|---|"]
    for name in work:
        one = [statistics.median(v) for v in zip(*res[(name, 1)])]
        two = [statistics.median(v) for v in zip(*res[(name, 2)])]
        lines.append(f"| {name} | {one[0]:.2f} / {one[1]:.2f} | {two[0]:.2f} / {two[1]:.2f} | {two[0] / one[0]:.2f}x |")
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        from _table import write_section

        write_section("bench_threads", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
