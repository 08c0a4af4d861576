"""MAML per meta-iteration: a plain loop over tasks versus torch.func.vmap over tasks.

Workloads (issue #2):
  sinusoid   — MLP 1-40-40-1, meta-batch 25, K = 10 support + 10 query, 1 inner step (lr 0.01)
  conv4-5w1s — Conv-4 (64 filters, BatchNorm), 28x28 grey, 5-way 1-shot, 15 queries per class,
               meta-batch 32, 1 inner step (lr 0.4)
each second-order (MAML) and first-order (FOMAML). One meta-iteration = meta_loss + backward.
Inputs are random tensors of the workload's shapes (timing does not depend on pixel values).

Every configuration runs in a fresh subprocess so that its peak memory (peak RSS on CPU, peak
allocated on CUDA) is its own. Before timing, the vmap meta-gradient is compared with the loop's.

    python benchmarks/bench_maml.py            # all workloads, writes the table into benchmarks/README.md
    python benchmarks/bench_maml.py --no-write # print only
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys

import torch
import torch.nn.functional as F

from metalib import MAML, models, tasks
from metalib.device import (
    default_device, describe_device, peak_memory_mb, reset_peak_memory, time_it, tune_cpu_allocator,
)

WORKLOADS = {
    "sinusoid": dict(T=25, inner_lr=0.01),
    "conv4-5w1s": dict(T=32, inner_lr=0.4, n_way=5, k_shot=1, q_query=15),
}


def make(workload: str, device):
    g = torch.Generator().manual_seed(0)
    if workload == "sinusoid":
        torch.manual_seed(0)
        batch = tasks.Sinusoid().sample(25, 10, 10, generator=g, device=device)
        return models.sinusoid_mlp().to(device), batch, F.mse_loss
    cfg = WORKLOADS[workload]
    T, n, k, q = cfg["T"], cfg["n_way"], cfg["k_shot"], cfg["q_query"]
    x_s = torch.rand(T, n * k, 1, 28, 28, generator=g).to(device)
    x_q = torch.rand(T, n * q, 1, 28, 28, generator=g).to(device)
    y_s = torch.arange(n).repeat_interleave(k).repeat(T, 1).to(device)
    y_q = torch.arange(n).repeat_interleave(q).repeat(T, 1).to(device)
    torch.manual_seed(0)
    return models.Conv4(1, n).to(device), (x_s, y_s, x_q, y_q), F.cross_entropy


def learner(model, workload, path, first_order):
    maml = MAML(model, inner_lr=WORKLOADS[workload]["inner_lr"], inner_steps=1, first_order=first_order, batching="loop")
    if path == "vmap":
        # Force vmap even where metalib refuses it (second order through BatchNorm), to measure it.
        maml.uses_vmap = lambda: True
    return maml


def meta_grad(maml, batch, loss_fn):
    maml.model.zero_grad(set_to_none=True)
    maml.meta_loss(batch, loss_fn).backward()
    return torch.cat([p.grad.flatten() for p in maml.model.parameters()])


def run_one(workload: str, path: str, first_order: bool, repeats: int, warmup: int) -> dict:
    device = default_device()
    if device.type == "cpu":
        tune_cpu_allocator()  # as metalib's trainers do on the CPU, for both paths
    model, batch, loss_fn = make(workload, device)
    maml = learner(model, workload, path, first_order)
    ref = meta_grad(learner(model, workload, "loop", first_order), batch, loss_fn)
    got = meta_grad(maml, batch, loss_fn)
    rel = float((got - ref).norm() / ref.norm())
    reset_peak_memory(device)
    timing = time_it(lambda: meta_grad(maml, batch, loss_fn), repeats=repeats, warmup=warmup, device=device)
    return dict(workload=workload, path=path, first_order=first_order, median_ms=timing.median_ms,
                min_ms=timing.min_ms, max_ms=timing.max_ms, repeats=repeats, warmup=warmup,
                peak_mb=peak_memory_mb(device), rel_err_vs_loop=rel)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--one", nargs=3, metavar=("WORKLOAD", "PATH", "ORDER"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        w, p, o = args.one
        print(json.dumps(run_one(w, p, o == "first", args.repeats, args.warmup)))
        return
    rows = []
    for workload in WORKLOADS:
        for order in ("second", "first"):
            for path in ("loop", "vmap"):
                out = subprocess.run(
                    [sys.executable, __file__, "--one", workload, path, order, "--repeats", str(args.repeats),
                     "--warmup", str(args.warmup)], capture_output=True, text=True, check=True)
                row = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(f"{workload:11s} {order:6s}-order {path:4s}: {row['median_ms']:8.1f} ms  "
                      f"peak {row['peak_mb']:7.0f} MiB  grad rel.err vs loop {row['rel_err_vs_loop']:.1e}", flush=True)
    table = render(rows, args)
    print(table)
    if not args.no_write:
        sys.path.insert(0, os.path.dirname(__file__))
        from _table import write_section

        write_section("bench_maml", table)


def render(rows, args) -> str:
    dev = default_device()
    lines = [
        "## MAML: loop over tasks vs `torch.func.vmap` (`benchmarks/bench_maml.py`)",
        "",
        f"Measured {datetime.date.today().isoformat()} on {describe_device(dev)}, torch {torch.__version__}. "
        f"One meta-iteration = `meta_loss` + `backward`; median (min–max) of {args.repeats} after {args.warmup} "
        "warm-up; peak = peak RSS of the process while timing on CPU (peak allocated on CUDA). Random inputs of the "
        "workload's shapes. CPU: both paths after `metalib.device.tune_cpu_allocator()`, as metalib's trainers run; "
        "the loop takes its inner gradients with `torch.autograd.grad`, vmap with `torch.func.grad`.",
        "",
        "| workload | order | path | ms / meta-iteration | peak MiB | meta-grad rel. error vs loop | default path |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        model = r["workload"]
        order = "first" if r["first_order"] else "second"
        maml = MAML(make(r["workload"], "cpu")[0], first_order=r["first_order"])
        try:
            default = "vmap" if maml.uses_vmap() else "loop"
        except ValueError:
            default = "loop"
        refused = r["path"] == "vmap" and not r["first_order"] and r["workload"].startswith("conv4")
        err = f"{r['rel_err_vs_loop']:.1e}" + (" (**wrong**: refused by metalib)" if refused else "")
        lines.append(
            f"| {model} | {order} | {r['path']} | {r['median_ms']:.1f} ({r['min_ms']:.1f}–{r['max_ms']:.1f}) | "
            f"{r['peak_mb']:.0f} | {err} | {'✓' if default == r['path'] else ''} |"
        )
    lines += [
        "",
        "Workloads: sinusoid = MLP 1-40-40-1, meta-batch 25, K = 10 (+10 query), 1 inner step; "
        "conv4-5w1s = Conv-4 (64 filters, BatchNorm), 28×28, 5-way 1-shot, 15 queries/class, meta-batch 32, 1 inner step.",
        "`batching=\"auto\"` picks the default path shown (✓): vmap for models without convolutions/BatchNorm, the loop otherwise.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
