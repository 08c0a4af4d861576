"""MAML per meta-iteration: the loop over tasks versus the batched path (vmap over tasks).

Workloads (issue #2; W2 of issue #18):
  sinusoid   — MLP 1-40-40-1, meta-batch 25, K = 10 support + 10 query, 1 inner step (lr 0.01)
  conv4-5w1s — Conv-4 (64 filters, BatchNorm), 28x28 grey, 5-way 1-shot, 15 queries per class,
               meta-batch 32, 1 inner step (lr 0.4)
  conv4-W2   — the same with 1 query per class, as metalib.fewshot trains MAML on Omniglot
each second-order (MAML) and first-order (FOMAML). One meta-iteration = ``MAML.meta_backward``
(the trainers' step). Paths: ``loop`` (``batching="loop"``), ``vmap`` (``batching="vmap"``: the
batched path, BatchNorm as plain tensor ops), ``vmap F.batch_norm`` (vmap with torch's BatchNorm,
forced, to show its wrong second-order gradient). Inputs are random tensors of the workload's shapes
(timing does not depend on pixel values).

Every configuration runs in a fresh subprocess so that its peak memory (peak RSS on CPU, peak
allocated on CUDA) is its own. Before timing, each path's meta-gradient is compared with the loop's.
The "paired" rows time loop and vmap alternately in one process (the median of per-round ratios is
immune to load drift on a shared machine): they decide ``metalib.engine.BATCHED_BY_DEFAULT``.

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
    "conv4-W2": dict(T=32, inner_lr=0.4, n_way=5, k_shot=1, q_query=1),
}
PATHS = ("loop", "vmap", "vmap F.batch_norm")


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
    maml = MAML(model, inner_lr=WORKLOADS[workload]["inner_lr"], inner_steps=1, first_order=first_order,
                batching="vmap" if path.startswith("vmap") else "loop")
    if path == "vmap F.batch_norm":
        # vmap with torch's BatchNorm (not metalib's plain-ops BatchNorm), to show its wrong gradient;
        # each row runs in its own process, so the module-level switch touches no other row
        import contextlib

        import metalib.engine as me

        me.plain_batchnorm = lambda model: contextlib.nullcontext()
    return maml


def meta_grad(maml, batch, loss_fn):
    maml.model.zero_grad(set_to_none=True)
    maml.meta_backward(batch, loss_fn)
    return torch.cat([p.grad.flatten() for p in maml.model.parameters()])


def run_paired(workload: str, first_order: bool, rounds: int) -> dict:
    """loop and vmap timed alternately in this one process; the median of per-round ratios."""
    device = default_device()
    if device.type == "cpu":
        tune_cpu_allocator()
    model, batch, loss_fn = make(workload, device)
    sides = {p: learner(model, workload, p, first_order) for p in ("loop", "vmap")}
    ratios, times = [], {p: [] for p in sides}
    for r in range(rounds + 1):
        t = {}
        for p in (("loop", "vmap") if r % 2 == 0 else ("vmap", "loop")):
            t[p] = time_it(lambda: meta_grad(sides[p], batch, loss_fn), repeats=1, warmup=0, device=device).median_ms
        if r:  # round 0 warms both up
            ratios.append(t["loop"] / t["vmap"])
            for p in t:
                times[p].append(t[p])
    import statistics

    return dict(workload=workload, first_order=first_order, rounds=rounds, median_ratio=statistics.median(ratios),
                min_ratio=min(ratios), max_ratio=max(ratios),
                loop_ms=statistics.median(times["loop"]), vmap_ms=statistics.median(times["vmap"]))


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
    ap.add_argument("--rounds", type=int, default=8, help="rounds of the paired loop/vmap timing (conv workloads)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--one", nargs=3, metavar=("WORKLOAD", "PATH", "ORDER"), help=argparse.SUPPRESS)
    ap.add_argument("--paired", nargs=2, metavar=("WORKLOAD", "ORDER"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        w, p, o = args.one
        print(json.dumps(run_one(w, p, o == "first", args.repeats, args.warmup)))
        return
    if args.paired:
        w, o = args.paired
        print(json.dumps(run_paired(w, o == "first", args.rounds)))
        return
    rows, paired = [], []
    extra = ["--threads", str(args.threads)] if args.threads else []
    for workload in args.workloads:
        for order in ("second", "first"):
            paths = PATHS if workload.startswith("conv4") else ("loop", "vmap")
            for path in paths:
                out = subprocess.run(
                    [sys.executable, __file__, "--one", workload, path, order, "--repeats", str(args.repeats),
                     "--warmup", str(args.warmup), *extra], capture_output=True, text=True, check=True)
                row = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(f"{workload:11s} {order:6s}-order {path:18s}: {row['median_ms']:8.1f} ms  "
                      f"peak {row['peak_mb']:7.0f} MiB  grad rel.err vs loop {row['rel_err_vs_loop']:.1e}", flush=True)
            if workload.startswith("conv4"):
                out = subprocess.run([sys.executable, __file__, "--paired", workload, order, "--rounds",
                                      str(args.rounds), *extra], capture_output=True, text=True, check=True)
                pr = json.loads(out.stdout.strip().splitlines()[-1])
                paired.append(pr)
                print(f"{workload:11s} {order:6s}-order paired loop/vmap: {pr['median_ratio']:.3f} "
                      f"({pr['min_ratio']:.2f}-{pr['max_ratio']:.2f})", flush=True)
    table = render(rows, paired, args)
    print(table)
    if not args.no_write:
        sys.path.insert(0, os.path.dirname(__file__))
        from _table import write_section

        write_section("bench_maml", table)


def render(rows, paired, args) -> str:
    from metalib.engine import BATCHED_BY_DEFAULT

    dev = default_device()
    load = os.getloadavg()[0]
    lines = [
        "## Batched MAML: loop over tasks vs the batched path (`benchmarks/bench_maml.py`)",
        "",
        f"Measured {datetime.date.today().isoformat()} on {describe_device(dev)} (torch threads: "
        f"{torch.get_num_threads()}), torch {torch.__version__}; 1-min load average {load:.1f} at the end. "
        f"One meta-iteration = `MAML.meta_backward` (the trainers' step); median (min–max) of {args.repeats} "
        f"after {args.warmup} warm-up, each row in a fresh process; peak = peak RSS of the process while timing on "
        "CPU (peak allocated on CUDA). Random inputs of the workload's shapes. CPU: every path after "
        "`metalib.device.tune_cpu_allocator()`. `loop`: `batching=\"loop\"` (per-task backward, "
        "`torch.autograd.grad` inner steps, `F.batch_norm`); `vmap`: `batching=\"vmap\"`, the batched path "
        "(`torch.func.vmap` over tasks, one backward, BatchNorm as plain tensor ops); `vmap F.batch_norm`: "
        "the same with torch's BatchNorm, forced, to show its wrong second-order meta-gradient.",
        "",
        "| workload | order | path | ms / meta-iteration | peak MiB | meta-grad rel. error vs loop | default on this device |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        order = "first" if r["first_order"] else "second"
        maml = MAML(make(r["workload"], "cpu")[0], first_order=r["first_order"])
        maml.to(dev)
        default = "vmap" if maml.uses_vmap() else "loop"
        err = f"{r['rel_err_vs_loop']:.1e}"
        if r["rel_err_vs_loop"] > 1e-4:
            err += " (**wrong**)"
        lines.append(
            f"| {r['workload']} | {order} | {r['path']} | {r['median_ms']:.1f} ({r['min_ms']:.1f}–{r['max_ms']:.1f}) | "
            f"{r['peak_mb']:.0f} | {err} | {'✓' if default == r['path'] else ''} |"
        )
    if paired:
        lines += ["", "Paired (loop and vmap alternately in one process; ratio > 1: the batched path is faster):", "",
                  "| workload | order | loop ms | vmap ms | loop / vmap, median (min–max, rounds) |",
                  "|---|---|---:|---:|---:|"]
        for pr in paired:
            lines.append(f"| {pr['workload']} | {'first' if pr['first_order'] else 'second'} | {pr['loop_ms']:.0f} | "
                         f"{pr['vmap_ms']:.0f} | **{pr['median_ratio']:.3f}×** ({pr['min_ratio']:.2f}–"
                         f"{pr['max_ratio']:.2f}, {pr['rounds']}) |")
    lines += [
        "",
        "Workloads: sinusoid = MLP 1-40-40-1, meta-batch 25, K = 10 (+10 query), 1 inner step; "
        "conv4-5w1s = Conv-4 (64 filters, BatchNorm), 28×28, 5-way 1-shot, 15 queries/class, meta-batch 32, 1 inner step; "
        "conv4-W2 = the same with 1 query/class (how `metalib.fewshot` trains MAML on Omniglot).",
        f"`batching=\"auto\"` picks the path marked ✓: vmap for models without convolutions/BatchNorm; for conv nets "
        f"`metalib.engine.BATCHED_BY_DEFAULT` = `{BATCHED_BY_DEFAULT}`.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
