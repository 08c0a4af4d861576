"""metalib against the textbook MAML loop and `higher`, side by side in one run (issue #8).

Workloads (the papers' training settings, as in ``metalib.fewshot``):
  W1  sinusoid: MLP 1-40-40-1, meta-batch 25, K = 10 support + 10 query, 1 inner step (lr 0.01)
  W2  Omniglot 5-way 1-shot: Conv-4 (64 filters), 28x28, 1 query/class, meta-batch 32, 1 step (lr 0.4)
  W2b Omniglot 20-way 1-shot: Conv-4, 1 query/class, meta-batch 16, 5 steps (lr 0.1)
  W3  miniImageNet 5-way 1-shot: Conv-4 (32 filters), 84x84x3, 15 query/class, meta-batch 4, 5 steps (lr 0.01)
  W4  ProtoNet Omniglot 60-way 5-shot, 5 query/class, one episode per iteration (no order)
MAML workloads run second order (MAML) and first order (FOMAML). Inputs are random tensors of the
workload's shapes (time does not depend on pixel values); fixed seeds, so every implementation sees
the same model and batch.

Implementations:
  metalib           ``MAML(...).meta_backward(batch, loss_fn)``: the default training step (what
                    ``FewShotTrainer`` and ``metalib.training.meta_train`` run; ``batching="auto"``): vmap over tasks
                    for MLPs; for conv nets a task loop with ``torch.autograd.grad`` inner steps and
                    per-task backward (one task's graph alive at a time)
  metalib meta_loss ``MAML(...).meta_loss(batch).backward()``: the same objective, all T task graphs
                    alive until one backward (the API for custom objectives)
  textbook          ``peers.textbook_meta_step``: autograd.grad(create_graph=True) over a
                    parameter list per task, functional forward, per-task backward (learn2learn style)
  textbook + tuned allocator   the textbook loop after ``metalib.device.tune_cpu_allocator()`` (CPU):
                    what the allocator setting alone is worth to any implementation
  higher            ``peers.higher_meta_step`` (``pip install --no-deps higher``), if installed
  (W4: ``ProtoNet.meta_loss`` vs ``peers.textbook_protonet_step``, Snell et al.'s code)

CPU allocator: on the CPU, every ``metalib`` row runs after ``metalib.device.tune_cpu_allocator()``,
as metalib's trainers and ``evaluate`` do (glibc keeps freed memory for reuse instead of returning it
to the OS and page-faulting it back in the next task); peers run with glibc's defaults, as in a plain
Python process, and once more with the setting (``+ tuned allocator``). The levers table shows
metalib with ``METALIB_CPU_ALLOCATOR=system``.

Correctness gate: before an implementation is timed, its meta-gradient (float32) is compared with
metalib's default path on the same model and batch; a relative error >= 1e-4 refuses the row.

Every row runs in a fresh subprocess; peak memory = peak RSS minus the RSS after building the model
and the batch (CPU), or peak minus current allocated memory (CUDA) — the memory one meta-iteration
needs. ``--part`` picks what to run (default: all): ``peers`` (the main table), ``memory`` (second-
order memory vs inner steps, with and without ``recompute_steps``), ``levers`` (channels-last,
bf16 autocast, torch.compile, vmap, one backward over all tasks).

Speed-up: rows run one after another in fresh processes, so a change of machine load between two
rows moves their ratio (±8 % seen here). The "paired" column therefore times metalib and the
textbook loop alternately in one process, round after round, and reports the median of the per-round
ratios with its range: load drift then hits both sides of each ratio alike (both sides share the
process, so the allocator setting too: the paired ratio is metalib's code against the textbook's).

    python benchmarks/bench_peers.py                 # everything; writes benchmarks/README.md
    python benchmarks/bench_peers.py --part peers --no-write
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

from metalib import MAML, ProtoNet, models, tasks
from metalib.device import (
    current_memory_mb, default_device, describe_device, peak_memory_mb, release_freed_cpu_memory,
    reset_peak_memory, tune_cpu_allocator,
)
from peers import higher_available, higher_meta_step, textbook_meta_step, textbook_protonet_step

HERE = os.path.dirname(os.path.abspath(__file__))
TOL = 1e-4
TUNED = " + tuned allocator"  # a peer row run after metalib.device.tune_cpu_allocator()

WORKLOADS = {
    "W1": dict(name="W1 sinusoid, mb 25, K=10, 1 step", kind="sinusoid", T=25, steps=1, lr=0.01),
    "W2": dict(name="W2 Omniglot 5w1s, mb 32, 1 step", kind="omniglot", T=32, n=5, k=1, q=1, steps=1, lr=0.4),
    "W2b": dict(name="W2b Omniglot 20w1s, mb 16, 5 steps", kind="omniglot", T=16, n=20, k=1, q=1, steps=5, lr=0.1),
    "W3": dict(name="W3 miniImageNet 5w1s, 32 filters, mb 4, 5 steps", kind="mini", T=4, n=5, k=1, q=15, steps=5,
               lr=0.01),
    "W4": dict(name="W4 ProtoNet Omniglot 60w5s, 5 query", kind="protonet", n=60, k=5, q=5),
}
# The memory-vs-steps table: W3's shapes with one task per meta-batch (the memory of one task's graph).
WORKLOADS["W3-1"] = dict(WORKLOADS["W3"], name="W3 shapes, meta-batch 1", T=1)
# scripts/gpu_run.py --smoke: the device table's code paths at CPU-test sizes
WORKLOADS["W2-smoke"] = dict(WORKLOADS["W2"], name="W2 shapes, meta-batch 2 (smoke)", T=2)
WORKLOADS["W4-smoke"] = dict(WORKLOADS["W4"], name="W4 shapes, 10-way (smoke)", n=10)
MAIN = ["W1", "W2", "W2b", "W3", "W4"]
# (warm-up, timed) iterations after the priming call and the gate's call (which warm up too). On CPU
# the Conv-4 workloads take seconds per iteration, so they get few repetitions.
REPS = {"W1": (5, 20), "W2": (2, 5), "W2b": (1, 3), "W3": (0, 2), "W4": (1, 3)}
# Rounds of the paired (interleaved) metalib-vs-textbook timing, on CPU (20 on a GPU).
PAIRED_ROUNDS = {"W1": 30, "W2": 12, "W2b": 5, "W3": 5, "W4": 8}


# ----------------------------------------------------------------------------- building blocks
def make(w: str, device, steps=None):
    """Model, batch and loss of workload ``w`` (same seeds every time)."""
    cfg = WORKLOADS[w]
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    if cfg["kind"] == "sinusoid":
        batch = tasks.Sinusoid().sample(cfg["T"], 10, 10, generator=g, device=device)
        return models.sinusoid_mlp().to(device), tuple(batch), F.mse_loss
    n, k, q = cfg["n"], cfg["k"], cfg["q"]
    ch, size, hidden = (3, 84, 32) if cfg["kind"] == "mini" else (1, 28, 64)
    if cfg["kind"] == "protonet":
        x_s = torch.rand(1, n * k, ch, size, size, generator=g)
        x_q = torch.rand(1, n * q, ch, size, size, generator=g)
        y_s, y_q = torch.arange(n).repeat_interleave(k)[None], torch.arange(n).repeat_interleave(q)[None]
        model = models.Conv4(ch, None, hidden=hidden, image_size=size)
        return model.to(device), tuple(t.to(device) for t in (x_s, y_s, x_q, y_q)), None
    T = cfg["T"]
    x_s = torch.rand(T, n * k, ch, size, size, generator=g)
    x_q = torch.rand(T, n * q, ch, size, size, generator=g)
    y_s = torch.arange(n).repeat_interleave(k).repeat(T, 1)
    y_q = torch.arange(n).repeat_interleave(q).repeat(T, 1)
    model = models.Conv4(ch, n, hidden=hidden, image_size=size)
    return model.to(device), tuple(t.to(device) for t in (x_s, y_s, x_q, y_q)), F.cross_entropy


def compiled_meta_step(model, loss_fn, lr, steps, first_order, vmapped):
    """torch.compile of the per-task MAML function (inner loop + query loss); the outer backward
    goes through the compiled graph (the inner gradient is traced into its forward)."""
    from torch.func import vmap

    from metalib.functional import buffers_of, forward, inner_loop, params_of, transductive_batchnorm

    buffers = buffers_of(model)

    def one(theta, xs, ys, xq, yq):
        phi, _ = inner_loop(model, theta, buffers, xs, ys, loss_fn, lr, steps, first_order, engine="func")
        return loss_fn(forward(model, phi, buffers, xq), yq)

    if vmapped:
        fn = torch.compile(lambda th, *b: vmap(one, in_dims=(None, 0, 0, 0, 0))(th, *b).mean())

        def step(batch):
            with transductive_batchnorm(model):
                fn(params_of(model), *batch).backward()
    else:
        fn = torch.compile(one)

        def step(batch):
            with transductive_batchnorm(model):
                th = params_of(model)
                (sum(fn(th, *t) for t in zip(*batch)) / batch[0].shape[0]).backward()
    return step


def build(w: str, impl: str, order: str, device, steps=None):
    """``(model, batch, step)``: ``step(batch)`` fills ``model``'s ``.grad`` with one meta-gradient."""
    if device.type == "cpu" and (impl.startswith("metalib") or impl.endswith(TUNED)):
        # what FewShotTrainer / training.meta_train / evaluate do on the CPU (METALIB_CPU_ALLOCATOR=system: not)
        tune_cpu_allocator()
    impl = impl.removesuffix(TUNED)
    cfg = WORKLOADS[w]
    model, batch, loss_fn = make(w, device)
    fo = order == "first"
    steps = cfg.get("steps") if steps is None else steps
    lr = cfg.get("lr")
    if cfg["kind"] == "protonet":
        net = ProtoNet(model)
        if impl == "metalib":
            return model, batch, lambda b: net.meta_loss(b).backward()
        if impl == "textbook":
            return model, batch, lambda b: textbook_protonet_step(model, b[0][0], b[2][0], cfg["n"])
        raise KeyError(impl)
    if impl == "channels-last":
        model = model.to(memory_format=torch.channels_last)
        batch = tuple(torch.stack([x.contiguous(memory_format=torch.channels_last) for x in t]) if t.dim() == 5 else t
                      for t in batch)
    maml = MAML(model, inner_lr=lr, inner_steps=steps, first_order=fo,
                recompute_steps=impl == "metalib checkpoint")
    if impl in ("metalib", "metalib, system allocator", "channels-last", "metalib checkpoint"):
        return model, batch, lambda b: maml.meta_backward(b, loss_fn)
    if impl == "metalib meta_loss":
        return model, batch, lambda b: maml.meta_loss(b, loss_fn).backward()
    if impl == "vmap":
        maml.uses_vmap = lambda: True  # forced, also where metalib refuses it (to show why)
        return model, batch, lambda b: maml.meta_loss(b, loss_fn).backward()
    if impl == "bf16 autocast":
        def step(b):
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = maml.meta_loss(b, loss_fn)
            loss.backward()
        return model, batch, step
    if impl == "textbook":
        return model, batch, lambda b: textbook_meta_step(model, b, loss_fn, lr, steps, fo)
    if impl == "higher":
        return model, batch, lambda b: higher_meta_step(model, b, loss_fn, lr, steps, fo)
    if impl == "torch.compile":
        return model, batch, compiled_meta_step(model, loss_fn, lr, steps, fo, vmapped=cfg["kind"] == "sinusoid")
    raise KeyError(impl)


def float64_rel_err(w, impl, order, device, steps) -> float:
    """Relative error of ``impl``'s meta-gradient against metalib's, both in float64."""
    grads = []
    for name in ("metalib", impl):
        model, batch, step_on = build(w, name, order, device, steps)
        model.double()
        step_on(tuple(t.double() if t.is_floating_point() else t for t in batch))
        grads.append(torch.cat([p.grad.detach().flatten().cpu() for p in model.parameters()]))
    return float((grads[1] - grads[0]).norm() / grads[0].norm())


def flat_grad(model) -> torch.Tensor:
    return torch.cat([p.grad.detach().flatten().float().cpu() for p in model.parameters()])


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_one(w, impl, order, ref_path, warmup, repeats, steps=None) -> dict:
    """One row, in this (fresh) process: gate, warm-up, timing, memory."""
    device = default_device()
    model, batch, step_on = build(w, impl, order, device, steps)

    def step():
        step_on(batch)

    out = dict(workload=w, impl=impl, order=order, steps=steps or WORKLOADS[w].get("steps"), warmup=warmup,
               repeats=repeats)
    t0 = time.perf_counter()
    # Prime on the first task only: loads the code paths (and compiles) before the memory baseline,
    # so that "peak" is the memory of a meta-iteration, not of importing torch's internals.
    step_on(tuple(t[:1] for t in batch))
    sync(device)
    # the priming call's freed-but-resident memory would otherwise be reused by the gate's call
    # without growing the resident set, hiding it from "peak - baseline"
    release_freed_cpu_memory()
    base = current_memory_mb(device)
    reset_peak_memory(device)
    model.zero_grad(set_to_none=True)
    step()  # the gate's meta-gradient
    sync(device)
    out["first_call_s"] = time.perf_counter() - t0
    g = flat_grad(model)
    if not bool(torch.isfinite(g).all()):
        out.update(refused="non-finite meta-gradient")
        return out
    if ref_path and os.path.exists(ref_path):
        ref = torch.load(ref_path)
        out["rel_err"] = float((g - ref).norm() / ref.norm())
    else:  # this is the reference
        torch.save(g, ref_path)
        out["rel_err"] = 0.0
    if out["rel_err"] >= TOL and impl != "bf16 autocast":
        # Tiny BatchNorm batches (1 query per class) make the meta-gradient ill-conditioned: a
        # different but exact kernel (e.g. channels-last) can differ by more than 1e-4 in float32.
        # Decide in float64 whether the implementation is wrong or only rounds differently.
        out["rel_err64"] = float64_rel_err(w, impl, order, device, steps)
        if out["rel_err64"] < 1e-9:
            out["note"] = f"float32 rounding: float64 rel. error {out['rel_err64']:.0e}"
    if out["rel_err"] >= TOL and "note" not in out:
        out["refused"] = f"meta-gradient rel. error {out['rel_err']:.1e} >= {TOL:.0e}"
        if impl not in ("vmap", "bf16 autocast"):  # shown with their time, to say why they are rejected
            return out
    for _ in range(warmup):
        model.zero_grad(set_to_none=True)
        step()
    times = []
    for _ in range(repeats):
        model.zero_grad(set_to_none=True)
        sync(device)
        t = time.perf_counter()
        step()
        sync(device)
        times.append((time.perf_counter() - t) * 1e3)
    out.update(median_ms=statistics.median(times), min_ms=min(times), max_ms=max(times),
               peak_mb=peak_memory_mb(device) - base)
    return out


def run_paired(w, order, rounds) -> dict:
    """metalib's default step and the textbook loop timed alternately in this one process.

    Each round times both once (which goes first alternates), after one warm-up call each; the
    per-round ratio textbook / metalib is then free of the load drift that moves rows measured in
    separate processes. Returns the ratios and both sides' times."""
    device = default_device()
    # one process, so one allocator setting for both sides: metalib's (tuned on the CPU)
    sides = {impl: build(w, impl, order, device) for impl in ("metalib", "textbook")}
    times = {impl: [] for impl in sides}
    for r in range(rounds + 1):
        order_ = list(sides) if r % 2 == 0 else list(sides)[::-1]
        for impl in order_:
            model, batch, step_on = sides[impl]
            model.zero_grad(set_to_none=True)
            sync(device)
            t = time.perf_counter()
            step_on(batch)
            sync(device)
            if r:  # round 0 is the warm-up
                times[impl].append((time.perf_counter() - t) * 1e3)
    ratios = [tb / ml for tb, ml in zip(times["textbook"], times["metalib"])]
    return dict(workload=w, impl="paired", order=order, rounds=rounds, ratios=ratios,
                median_ratio=statistics.median(ratios), min_ratio=min(ratios), max_ratio=max(ratios),
                metalib_ms=statistics.median(times["metalib"]), textbook_ms=statistics.median(times["textbook"]))


# ----------------------------------------------------------------------------- one process, time-bounded (GPU)
DEVICE_PLAN = [("W2", "second"), ("W2", "first"), ("W1", "second"), ("W2b", "second"), ("W3", "second"), ("W4", "-")]
PRECISION_TOL = 1e-3  # TF32 / bf16 are kept only where the meta-gradient stays this close to float32's


def _device_step(w, impl, order, device):
    """``(model, batch, step)`` for the device table; ``step(batch)`` fills ``.grad`` (gradients only)."""
    from metalib.engine import CudaGraphStep

    cfg = WORKLOADS[w]
    base = impl.split(" + ")[0].split(" TF32")[0].split(" bf16")[0]
    if cfg["kind"] == "protonet":
        model, batch, step = build(w, "metalib" if base != "textbook" else "textbook", order, device)
    elif base == "textbook":
        model, batch, step = build(w, "textbook", order, device)
    else:
        model, batch, loss_fn = make(w, device)
        maml = MAML(model, inner_lr=cfg["lr"], inner_steps=cfg["steps"], first_order=order == "first",
                    batching="vmap" if base == "batched" else "loop")
        step = lambda b: maml.meta_backward(b, loss_fn)  # noqa: E731
    if "bf16" in impl:
        plain = step

        def step(b):
            with torch.autocast(device.type, dtype=torch.bfloat16):
                plain(b)
    if "CUDA graph" in impl:
        if device.type != "cuda":
            raise RuntimeError("needs CUDA")
        inner = step

        def train_like(b, opt):
            opt.zero_grad(set_to_none=True)
            inner(b)
            return {"loss": torch.zeros((), device=device)}

        graphed = CudaGraphStep(train_like, torch.optim.SGD(model.parameters(), lr=0.0))
        step = lambda b: graphed(b)  # noqa: E731
        step.graphed = graphed
    return model, batch, step


def device_rows(budget_s: float = 60.0, plan=None, log=print, row_s: float = 2.5, smoke: bool = False):
    """The device table in this one process, within ``budget_s`` seconds: per workload, the textbook
    loop, metalib's task loop, the batched path, each with a CUDA graph of the meta-gradient
    (on CUDA), and the batched path with TF32 / bf16 autocast; each meta-gradient gated against the
    task loop's (float32, TF32 off) before it is timed. Returns the rows (dicts)."""
    device = default_device()
    cuda = device.type == "cuda"
    start = time.perf_counter()
    rows = []
    for w, order in (plan or DEVICE_PLAN):
        if time.perf_counter() - start > budget_s:
            rows.append(dict(workload=w, order=order, impl="*", refused="not run: the time budget was spent"))
            continue
        if WORKLOADS[w]["kind"] == "protonet":
            impls = ["metalib", "textbook"] + (["metalib + CUDA graph"] if cuda else [])
        else:
            impls = ["loop", "textbook"]
            if w in ("W2", "W2-smoke") and order == "second":  # reduced precision, gated against float32
                impls += (["batched TF32"] if cuda else []) + ["batched bf16 autocast"]
            impls += ["batched"] + (["loop + CUDA graph", "batched + CUDA graph"] if cuda else [])
        ref, eager = None, {}
        for impl in impls:
            if time.perf_counter() - start > budget_s:
                break
            tf32 = "TF32" in impl
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
            row = dict(workload=w, order=order, impl=impl)
            rows.append(row)
            try:
                model, batch, step = _device_step(w, impl, order, device)
                t0 = time.perf_counter()
                for _ in range(4 if "CUDA graph" in impl else 1):  # graphs: 3 eager warm-ups, then capture
                    model.zero_grad(set_to_none=True)
                    step(batch)
                sync(device)
                row["first_call_s"] = time.perf_counter() - t0
                graphed = getattr(step, "graphed", None)
                if graphed is not None and graphed.error:
                    row["refused"] = f"capture failed: {graphed.error[:150]}"
                    continue
                g = flat_grad(model)
                eager[impl] = g
                if ref is None:
                    ref, row["rel_err"] = g, 0.0
                else:
                    row["rel_err"] = float((g - ref).norm() / ref.norm())
                tol = PRECISION_TOL if ("TF32" in impl or "bf16" in impl) else TOL
                if "CUDA graph" in impl and impl.split(" + ")[0] in eager:
                    # a graph replays its eager path's kernels: gate it against that path, tightly
                    own = eager[impl.split(" + ")[0]]
                    row["rel_err_vs_eager"] = float((g - own).norm() / own.norm())
                    if row["rel_err_vs_eager"] < 1e-5:
                        row["rel_err"] = min(row["rel_err"], TOL / 2) if row["rel_err"] >= TOL else row["rel_err"]
                        row.setdefault("note", "gated against its eager path")
                elif row["rel_err"] >= tol and tol == TOL and w != "W1":
                    # 1 query per class makes BatchNorm's meta-gradient ill-conditioned: an exact but
                    # differently ordered computation can differ by > 1e-4 in float32. Decide in float64.
                    grads = []
                    for name in ("loop", impl):
                        m64, b64, s64 = _device_step(w, name, order, device)
                        m64.double()
                        s64(tuple(t.double() if t.is_floating_point() else t for t in b64))
                        grads.append(flat_grad(m64).double())
                    row["rel_err64"] = float((grads[1] - grads[0]).norm() / grads[0].norm())
                    if row["rel_err64"] < 1e-9:
                        row["rel_err"] = row["rel_err"]  # kept for the table
                        row["note"] = f"float32 rounding: float64 rel. error {row['rel_err64']:.0e}"
                if (not bool(torch.isfinite(g).all()) or row["rel_err"] >= tol) and "note" not in row:
                    row["refused"] = f"meta-gradient rel. error {row['rel_err']:.1e} >= {tol:.0e}"
                    if "TF32" not in impl and "bf16" not in impl:
                        continue
                reset_peak_memory(device)
                base = current_memory_mb(device)
                times, t_row = [], time.perf_counter()
                for i in range(23 if not smoke else 2):
                    model.zero_grad(set_to_none=True) if graphed is None else None
                    sync(device)
                    t = time.perf_counter()
                    step(batch)
                    sync(device)
                    if i >= (3 if not smoke else 0):
                        times.append((time.perf_counter() - t) * 1e3)
                    if time.perf_counter() - t_row > row_s and len(times) >= 3:
                        break
                row.update(median_ms=statistics.median(times), min_ms=min(times), max_ms=max(times),
                           repeats=len(times), peak_mb=peak_memory_mb(device) - base)
            except Exception as err:  # noqa: BLE001 - a row that fails says why; the table goes on
                row["refused"] = f"failed: {type(err).__name__}: {str(err).splitlines()[0][:150] if str(err) else ''}"
            finally:
                torch.backends.cuda.matmul.allow_tf32 = False
                torch.backends.cudnn.allow_tf32 = False
                log(f"  {w:4s} {order:6s} {impl:24s} " + (fmt_time(row) + f" ms, rel.err {row.get('rel_err', float('nan')):.1e}"
                    if "median_ms" in row else row.get("refused", "")))
    return rows


def render_device(rows, meta) -> str:
    lines = [
        "## The batched path and CUDA graphs on the device (`benchmarks/bench_peers.py --part device`)",
        "",
        meta,
        "",
        "One process, time-bounded. `loop` = `MAML(batching=\"loop\").meta_backward` (per-task backward); `batched` = "
        "`batching=\"vmap\"` (vmap over tasks, BatchNorm as plain tensor ops, one backward); `+ CUDA graph` = the "
        "meta-gradient captured once and replayed (`metalib.engine.CudaGraphStep`); `TF32` = TF32 matmul/conv; "
        "`bf16 autocast` = `torch.autocast(bfloat16)`. Meta-gradients gated against `loop` (float32, TF32 off) before "
        f"timing: rel. error < {TOL:.0e}, or < {PRECISION_TOL:.0e} for the reduced-precision rows (kept only if "
        "within it). Speed-up = textbook / row.",
        "",
        "| workload | order | implementation | ms / meta-iteration, median (min–max) | peak MiB (+) | meta-grad rel. error vs loop | speed-up vs textbook |",
        "|---|---|---|---|---:|---|---:|",
    ]
    for r in rows:
        tb = next((x for x in rows if x["workload"] == r["workload"] and x["order"] == r["order"]
                   and x["impl"] == "textbook" and "median_ms" in x), None)
        sp = f"{tb['median_ms'] / r['median_ms']:.2f}×" if tb and "median_ms" in r else "—"
        peak = f"{r['peak_mb']:.0f}" if "peak_mb" in r else "—"
        name = WORKLOADS[r["workload"]]["name"] if r["workload"] in WORKLOADS else r["workload"]
        lines.append(f"| {name} | {r['order']} | {r['impl']} | {fmt_time(r)} | {peak} | {fmt_err(r)} | {sp} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- driver
def spawn(args, w, impl, order, ref, warmup, repeats, steps=None, env=None) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--one", w, impl, order, "--ref", ref, "--warmup", str(warmup),
           "--repeats", str(repeats), "--threads", str(args.threads)]
    if steps is not None:
        cmd += ["--steps", str(steps)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return dict(workload=w, impl=impl, order=order, steps=steps, refused=f"failed: {tail[:160]}")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    msg = row.get("refused") or ""
    if "median_ms" in row:
        msg = f"{row['median_ms']:9.1f} ms (min {row['min_ms']:.1f}, max {row['max_ms']:.1f})  peak +{row['peak_mb']:.0f} MiB  " \
              f"rel.err {row['rel_err']:.1e}  first call {row['first_call_s']:.1f} s " + msg
    print(f"  {w:4s} {order:6s} {impl:28s} {'steps=' + str(steps) if steps else ''} {msg}", flush=True)
    return row


def spawn_paired(args, w, order) -> dict:
    rounds = PAIRED_ROUNDS[w] if default_device().type == "cpu" else 20
    cmd = [sys.executable, os.path.abspath(__file__), "--paired", w, order, str(rounds), "--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return dict(workload=w, impl="paired", order=order, refused=f"failed: {tail[:160]}")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"  {w:4s} {order:6s} {'paired (interleaved)':28s} textbook/metalib median {row['median_ratio']:.3f} "
          f"(min {row['min_ratio']:.3f}, max {row['max_ratio']:.3f}) over {rounds} rounds", flush=True)
    return row


def reps(w):
    """(warm-up, timed) iterations: few on CPU for the seconds-long Conv-4 workloads; more on a GPU."""
    return (5, 20) if default_device().type != "cpu" else REPS[w]


def part_peers(args, tmp):
    rows = []
    cpu = default_device().type == "cpu"
    impls = (["metalib", "metalib meta_loss", "textbook"] + (["textbook" + TUNED] if cpu else [])
             + (["higher"] if higher_available() else []))
    for w in args.workloads:
        warmup, repeats = reps(w)
        orders = ["-"] if WORKLOADS[w]["kind"] == "protonet" else ["second", "first"]
        for order in orders:
            ref = os.path.join(tmp, f"ref-{w}-{order}.pt")
            for impl in (["metalib", "textbook"] + (["textbook" + TUNED] if cpu else []) if order == "-" else impls):
                rows.append(spawn(args, w, impl, order, ref, warmup, repeats))
            rows.append(spawn_paired(args, w, order))
    return rows


def part_memory(args, tmp):
    rows = []
    for steps in (1, 2, 5, 10):
        ref = os.path.join(tmp, f"ref-mem-{steps}.pt")
        # glibc's default allocator on every row: this table is about the autograd graph's memory, and
        # the tuned allocator keeps freed blocks resident, which blurs peak RSS
        env = dict(os.environ, METALIB_CPU_ALLOCATOR="system")
        for impl in ("metalib", "metalib checkpoint", "textbook"):
            rows.append(spawn(args, "W3-1", impl, "second", ref, 0, 2, steps=steps, env=env))
    return rows


def part_levers(args, tmp):
    rows = []
    for order in ("second", "first"):
        ref = os.path.join(tmp, f"ref-lever-W2-{order}.pt")
        # torch.compile is tried on W1 only: on W2 its cold compile of the 32-task loop took more
        # than 5 minutes on this CPU (see the notes below), beyond this run's time budget.
        w2 = ("metalib", "metalib, system allocator", "metalib meta_loss", "vmap", "channels-last", "bf16 autocast") + (("torch.compile",) if args.compile_w2 else ())
        for impl in w2:
            if order == "first" and impl in ("channels-last", "bf16 autocast", "torch.compile"):
                continue  # measured once, second order (time budget)
            env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=tempfile.mkdtemp(dir=tmp)) if impl == "torch.compile" else None
            if impl == "metalib, system allocator":
                env = dict(os.environ, METALIB_CPU_ALLOCATOR="system")
            rows.append(spawn(args, "W2", impl, order, ref, 1, 3, env=env))
    ref = os.path.join(tmp, "ref-lever-W1-second.pt")
    for impl in ("metalib", "metalib meta_loss", "torch.compile"):
        env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=tempfile.mkdtemp(dir=tmp)) if impl == "torch.compile" else None
        rows.append(spawn(args, "W1", impl, "second", ref, 5, 20, env=env))
    return rows


def fmt_time(r):
    if "median_ms" not in r:
        return "—"
    return f"{r['median_ms']:.1f} ({r['min_ms']:.1f}–{r['max_ms']:.1f})"


def fmt_err(r):
    if "rel_err" not in r:
        return r.get("refused", "—")
    s = f"{r['rel_err']:.1e}"
    if "rel_err64" in r:
        s += f" (float64: {r['rel_err64']:.0e})"
    return s + (" **refused**" if r.get("refused") else "")


def render_peers(rows, meta) -> str:
    lines = [
        "## metalib vs the textbook loop vs `higher` (`benchmarks/bench_peers.py --part peers`)",
        "",
        meta,
        "",
        "`metalib` = `MAML.meta_backward` (the trainers' step: vmap for the MLP, else task loop + per-task "
        "backward); `metalib meta_loss` = `meta_loss(batch).backward()` (all task graphs alive at once). "
        "Speed-up = textbook median / this row's median (rows measured one after another in fresh processes). "
        "**Paired** = textbook / metalib timed alternately in one process (so with the same allocator setting, "
        "metalib's): median of the per-round ratios (min–max, rounds), immune to load drift between rows; "
        "it isolates what metalib's code does differently from the textbook loop's, the allocator aside.",
        "",
        "| workload | order | implementation | ms / meta-iteration, median (min–max) | peak MiB (+) | meta-grad rel. error vs metalib | speed-up vs textbook | paired speed-up (min–max, rounds) |",
        "|---|---|---|---|---:|---|---:|---:|",
    ]
    for r in rows:
        if r["impl"] == "paired":
            continue
        tb = next((x for x in rows if x["workload"] == r["workload"] and x["order"] == r["order"]
                   and x["impl"] == "textbook" and "median_ms" in x), None)
        sp = f"{tb['median_ms'] / r['median_ms']:.2f}×" if tb and "median_ms" in r and not r.get("refused") else "—"
        peak = f"{r['peak_mb']:.0f}" if "peak_mb" in r else "—"
        pr = next((x for x in rows if x["workload"] == r["workload"] and x["order"] == r["order"]
                   and x["impl"] == "paired"), None)
        paired = "—"
        if pr and r["impl"] == "metalib":
            paired = (f"**{pr['median_ratio']:.3f}×** ({pr['min_ratio']:.2f}–{pr['max_ratio']:.2f}, {pr['rounds']})"
                      if "median_ratio" in pr else pr.get("refused", "—"))
        lines.append(f"| {WORKLOADS[r['workload']]['name']} | {r['order']} | {r['impl']} | {fmt_time(r)} | {peak} | "
                     f"{fmt_err(r)} | {sp} | {paired} |")
    if not higher_available():
        lines += ["", "`higher`: not installed (`pip install --no-deps higher`), so no row."]
    return "\n".join(lines)


def render_memory(rows, meta) -> str:
    meta = meta.split(" CPU allocator:")[0]  # every row of this table runs with glibc's defaults
    lines = [
        "## Second-order memory vs inner steps: gradient checkpointing (`benchmarks/bench_peers.py --part memory`)",
        "",
        meta,
        "",
        "W3 shapes (miniImageNet 5-way 1-shot, 15 query/class, Conv-4 with 32 filters, 84×84) with meta-batch 1 "
        "(memory grows linearly with the meta-batch on the default path), second order; 2 timed iterations per cell "
        "after the priming and the gate's calls (median of 2 = their mean). Peak = extra memory of a meta-iteration "
        "over the process after setup (peak RSS on CPU). Every row with glibc's default allocator "
        "(`METALIB_CPU_ALLOCATOR=system`): the tuned one keeps freed blocks resident, which blurs peak RSS.",
        "",
        "| inner steps | implementation | peak MiB (+) | ms / meta-iteration | meta-grad rel. error vs metalib |",
        "|---:|---|---:|---:|---|",
    ]
    for r in rows:
        peak = f"{r['peak_mb']:.0f}" if "peak_mb" in r else "—"
        ms = f"{r['median_ms']:.0f}" if "median_ms" in r else "—"
        lines.append(f"| {r['steps']} | {r['impl']} | {peak} | {ms} | {fmt_err(r)} |")
    return "\n".join(lines)


def render_levers(rows, meta) -> str:
    lines = [
        "## Levers tried (`benchmarks/bench_peers.py --part levers`)",
        "",
        meta,
        "",
        "W2 (Omniglot 5-way 1-shot, meta-batch 32, 1 step) with 1 warm-up + 3 timed iterations; W1 (second order) "
        "with 5 + 20. "
        "`first call` includes torch.compile's compilation (a fresh inductor cache each time, i.e. a cold compile).",
        "",
        "| workload | order | lever | ms / meta-iteration, median (min–max) | vs metalib default | first call s | peak MiB (+) | meta-grad rel. error |",
        "|---|---|---|---|---:|---:|---:|---|",
    ]
    for r in rows:
        base = next((x for x in rows if x["workload"] == r["workload"] and x["order"] == r["order"]
                     and x["impl"] == "metalib" and "median_ms" in x), None)
        sp = f"{base['median_ms'] / r['median_ms']:.2f}×" if base and "median_ms" in r else "—"
        peak = f"{r['peak_mb']:.0f}" if "peak_mb" in r else "—"
        fc = f"{r['first_call_s']:.1f}" if "first_call_s" in r else "—"
        lines.append(f"| {r['workload']} | {r['order']} | {r['impl']} | {fmt_time(r)} | {sp} | {fc} | {peak} | {fmt_err(r)} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["all", "peers", "memory", "levers", "device"], default="all",
                    help="device: the time-bounded one-process table of the batched path and CUDA graphs (GPU)")
    ap.add_argument("--budget", type=float, default=60.0, help="--part device: seconds")
    ap.add_argument("--workloads", nargs="+", default=MAIN, choices=MAIN)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--compile-w2", action="store_true", help="also try torch.compile on W2 (minutes of compilation on CPU)")
    ap.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--paired", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--ref", help=argparse.SUPPRESS)
    ap.add_argument("--warmup", type=int, default=2, help=argparse.SUPPRESS)
    ap.add_argument("--repeats", type=int, default=5, help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(run_one(*args.one, args.ref, args.warmup, args.repeats, args.steps)))
        return
    if args.paired:
        w, order, rounds = args.paired
        print(json.dumps(run_paired(w, order, int(rounds))))
        return
    dev = default_device()
    load0, t0 = os.getloadavg()[0], time.perf_counter()
    sections = []
    if args.part == "device":
        rows = device_rows(args.budget)
        meta = (f"Measured {datetime.date.today().isoformat()} on {describe_device(dev)}, torch {torch.__version__}, "
                f"Python {sys.version.split()[0]}; this run took {(time.perf_counter() - t0) / 60:.1f} min.")
        text = render_device(rows, meta)
        print(text)
        if not args.no_write:
            sys.path.insert(0, HERE)
            from _table import write_section

            write_section("bench_peers_device", text)
        return
    with tempfile.TemporaryDirectory() as tmp:
        parts = ["peers", "memory", "levers"] if args.part == "all" else [args.part]
        results = {}
        for part in parts:
            print(f"== {part}", flush=True)
            results[part] = {"peers": part_peers, "memory": part_memory, "levers": part_levers,
                             }[part](args, tmp)
    minutes = (time.perf_counter() - t0) / 60
    meta = (f"Measured {datetime.date.today().isoformat()} on {describe_device(dev)} (torch threads: {args.threads}), "
            f"torch {torch.__version__}, Python {sys.version.split()[0]}; 1-min load average {load0:.1f} at the start, "
            f"{os.getloadavg()[0]:.1f} at the end (2 cores: above ~1 other work shared them); this run took "
            f"{minutes:.1f} min. Medians after warm-up; meta-gradients gated against metalib's (float32, "
            f"rel. error < {TOL:.0e}) before timing. Random inputs of the workload's shapes."
            + (" CPU allocator: `metalib` rows run after `metalib.device.tune_cpu_allocator()` (as metalib's trainers "
               "and `evaluate` do on the CPU); peer rows with glibc's defaults unless marked "
               f"`{TUNED.strip()}`." if dev.type == "cpu" else ""))
    render = {"peers": render_peers, "memory": render_memory, "levers": render_levers}
    for part, rows in results.items():
        text = render[part](rows, meta)
        sections.append((f"bench_peers_{part}", text))
        print(text, flush=True)
    if not args.no_write:
        sys.path.insert(0, HERE)
        from _table import write_section

        for key, text in sections:
            write_section(key, text)


if __name__ == "__main__":
    main()
