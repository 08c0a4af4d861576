#!/usr/bin/env python
"""The prepared GPU run (issue #18): one device call of at most 9 minutes turns a lent GPU into
benchmarks, paper-setting Omniglot trainings and shippable weights. Run it through
``scripts/gpu_run.sh`` (which sets the data and cache folders); ``--smoke`` runs the same steps on
the CPU with tiny settings in under two minutes (tests/test_gpu_run.py).

Steps, in order, each bounded in time and written to ``OUT/results.json`` as soon as it finishes:

1. ``bench``: ``benchmarks/bench_peers.py --part device`` in-process: W1–W4, the textbook loop vs
   metalib's task loop vs the batched path vs CUDA graphs (TF32/bf16 rows on W2), meta-gradients
   gated before timing;
2. ``maml``: MAML Omniglot 5-way 1-shot, second order, the paper's settings (meta-batch 32, inner
   lr 0.4, 1 step, 3 at test, Adam 1e-3), the path the bench found fastest among those it gated,
   for as many of the official 60,000 iterations as the time slice allows; a time-to-accuracy log
   (validation accuracy against training seconds);
3. ``protonet``: ProtoNet Omniglot with the paper's 60-way schedule (5 queries/class, Adam 1e-3
   halved every 2,000 episodes), tested 5-way 1-shot and 20-way 1-shot (one model, as Snell et al.);
   ``reptile``: Reptile Omniglot 5-way 1-shot with the paper's settings (tasks batched);
4. the standard test of each (600 seeded episodes, 15 queries/class) and the weights, shipped with
   :func:`metalib.fewshot.ship` into ``OUT/weights`` (their MANIFEST.json entries are ready to
   merge into ``metalib/weights/``).

Files under OUT (the device tool returns at most 8): results.json, log.txt (from gpu_run.sh),
weights/MANIFEST.json and one .pt per shipped model (4).
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (str(ROOT), str(ROOT / "benchmarks")):
    if p not in sys.path:
        sys.path.insert(0, p)

import torch  # noqa: E402

from metalib import fewshot  # noqa: E402
from metalib.device import describe_device  # noqa: E402
from metalib.io import atomic_write_json  # noqa: E402
from metalib.training import Callback  # noqa: E402

# Seconds per step on the GPU (9 minutes in all, minus start-up, data and the tests). Each step
# also stops early if the run's overall deadline comes closer than its reserve.
SLICES = {"bench": 60, "maml": 190, "protonet": 60, "reptile": 45}
SMOKE_SLICES = {"bench": 30, "maml": 6, "protonet": 4, "reptile": 4}
TOTAL_S = 530


def ship_name(name: str, smoke: bool) -> str:
    """The name a model is shipped under: a smoke run's weights never take a real shipped name."""
    return f"smoke-{name}" if smoke else name


def ship_note(template: str, smoke: bool, **fmt) -> str:
    """The manifest note: the step's description of the full run, or — for a smoke run — what it really was."""
    if smoke:
        return (f"SMOKE RUN (scripts/gpu_run.py --smoke): tiny settings (8 filters, a few episodes) for {fmt['its']} "
                f"iterations ({fmt['secs']:.0f} s on {fmt['dev']}), only to check that every step runs; not a trained "
                "model: never merge these weights into metalib/weights/.")
    return template.format(**fmt)


class TimeToAccuracy(Callback):
    """(iteration, training seconds, wall seconds since the step began, validation accuracy %, ci95)
    after every validation."""

    def __init__(self, trainer, log) -> None:
        self.t, self.rows, self.log, self.start = trainer, [], log, time.perf_counter()

    def on_iteration_end(self, loop, metrics):
        h = loop.history
        if len(h.val) > len(self.rows):
            it, acc, ci = h.val[-1]
            self.rows.append([it, round(h.seconds, 2), round(time.perf_counter() - self.start, 2), round(acc, 3),
                              round(ci, 3)])


class Run:
    def __init__(self, out: Path, smoke: bool, total_s: float) -> None:
        self.out, self.smoke = out, smoke
        self.start = time.perf_counter()
        self.deadline = self.start + total_s
        self.weights = out / "weights"
        self.results = {
            "what": "scripts/gpu_run.py" + (" --smoke" if smoke else ""),
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "device": describe_device(self.device()), "torch": torch.__version__,
            "python": platform.python_version(), "steps": {},
        }
        self.save()

    def device(self) -> torch.device:
        return torch.device("cuda" if torch.cuda.is_available() and not self.smoke else "cpu")

    def log(self, msg: str) -> None:
        print(f"[{time.perf_counter() - self.start:6.1f} s] {msg}", flush=True)

    def save(self) -> None:
        self.results["elapsed_s"] = round(time.perf_counter() - self.start, 1)
        atomic_write_json(self.results, self.out / "results.json")

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def step(self, name: str, fn, reserve: float) -> None:
        """Run step ``name`` with a time slice bounded by what the deadline leaves after ``reserve``."""
        slice_s = min((SMOKE_SLICES if self.smoke else SLICES)[name], self.left() - reserve)
        rec = self.results["steps"].setdefault(name, {})
        if slice_s <= 0:
            rec["skipped"] = f"no time left ({self.left():.0f} s before the deadline, {reserve:.0f} s reserved)"
            self.log(f"{name}: skipped ({rec['skipped']})")
            self.save()
            return
        t0 = time.perf_counter()
        self.log(f"{name}: {slice_s:.0f} s slice")
        try:
            fn(rec, slice_s)
        except Exception as err:  # noqa: BLE001 - a failed step is recorded; the run goes on
            rec["error"] = f"{type(err).__name__}: {err}"
            rec["traceback"] = traceback.format_exc()[-3000:]
            self.log(f"{name}: FAILED {rec['error']}")
        rec["seconds"] = round(time.perf_counter() - t0, 1)
        self.save()

    # ------------------------------------------------------------------ 1. bench
    def bench(self, rec, slice_s) -> None:
        import bench_peers

        torch.set_float32_matmul_precision("highest")
        plan = [("W2-smoke", "second"), ("W4-smoke", "-")] if self.smoke else None
        rows = bench_peers.device_rows(slice_s, plan=plan, log=self.log, smoke=self.smoke)
        rec["rows"] = rows
        meta = (f"Measured {datetime.date.today().isoformat()} on {describe_device(self.device())}, torch "
                f"{torch.__version__} (scripts/gpu_run.py{' --smoke' if self.smoke else ''}).")
        rec["markdown"] = bench_peers.render_device(rows, meta)
        w2 = [r for r in rows if r["workload"].startswith("W2") and r["order"] == "second" and "median_ms" in r
              and not r.get("refused") and r["impl"] in ("loop", "batched", "loop + CUDA graph", "batched + CUDA graph")]
        if w2:
            best = min(w2, key=lambda r: r["median_ms"])
            rec["fastest_w2_second_order"] = best["impl"]

    def maml_path(self):
        """(batching, capture) for MAML: the fastest gated W2 second-order path of the bench."""
        best = self.results["steps"].get("bench", {}).get("fastest_w2_second_order", "batched")
        batching = "vmap" if best.startswith("batched") else "loop"
        capture = "cuda_graph" if "CUDA graph" in best and self.device().type == "cuda" else None
        return batching, capture

    # ------------------------------------------------------------------ training steps
    def trainer(self, config, capture=None):
        t = fewshot.FewShotTrainer(config, device=self.device(), progress=False, log=True, run_dir=None,
                                   capture=capture, check_every=25 if self.smoke else 50)
        return t

    def train_and_test(self, rec, trainer, slice_s, tests, note):
        """Train within ``slice_s`` seconds, validate where it stopped, test, ship. ``tests``:
        ``[(ship name, n_way)]``."""
        tta = TimeToAccuracy(trainer, self.log)
        trainer.loop.callbacks.append(tta)
        trainer.fit(max_seconds=slice_s)
        trainer.validate_now()
        h = trainer.history
        rec.update(iterations=trainer.iteration, paper_iterations=trainer.config.iterations,
                   train_seconds=round(h.seconds, 1), iterations_per_s=round(trainer.iteration / max(h.seconds, 1e-9), 2),
                   time_to_accuracy=tta.rows, best_validation=trainer.best, config=trainer.config.to_dict(),
                   capture_error=trainer.loop.capture_error
                   or getattr(getattr(trainer.loop, "_step", None), "error", None))
        self.save()
        rec["tests"] = {}
        for name, n_way in tests:
            name = ship_name(name, self.smoke)
            cfg = trainer.config if n_way == trainer.config.n_way else fewshot.copy_config(trainer.config, n_way=n_way)
            result = trainer.test(n_way=n_way if n_way != trainer.config.n_way else None, progress=False)
            self.log(f"    {name}: {result}")
            rec["tests"][name] = result.as_dict()
            entry = fewshot.ship(name, trainer, result, command=self.command(), config=cfg if cfg is not trainer.config
                                 else None, directory=self.weights, overwrite=True,  # this run's own OUT/weights
                                 note=ship_note(note, self.smoke, its=trainer.iteration, paper=trainer.config.iterations,
                                                secs=h.seconds, dev=describe_device(trainer.device)))
            rec["tests"][name]["file"] = entry["file"]
            self.save()

    def command(self) -> str:
        return "bash scripts/gpu_run.sh" + (" --smoke" if self.smoke else "")

    def smoke_overrides(self, algorithm):
        if not self.smoke:
            return {}
        common = dict(val_every=4, val_episodes=4, test_episodes=6, hidden=8, checkpoint_every=0)
        return {"maml": dict(meta_batch=2, **common), "protonet": dict(train_way=10, **common),
                "reptile": dict(meta_batch=2, inner_steps=2, test_inner_steps=2, train_shot=2, **common)}[algorithm]

    def maml(self, rec, slice_s) -> None:
        batching, capture = self.maml_path()
        rec["path"] = {"batching": batching, "capture": capture}
        # The paper's settings (MAML.paper_settings); validation every 500 iterations on 100 episodes.
        cfg = fewshot.default_config("maml", 5, 1, **{**dict(val_every=500, val_episodes=100),
                                                      **self.smoke_overrides("maml")})
        trainer = self.trainer(cfg, capture)
        trainer.learner.batching = batching  # a run-time choice, not part of the shipped config
        self.train_and_test(rec, trainer, slice_s, [("maml-omniglot-5w1s", 5)],
                            "GPU run (scripts/gpu_run.py): the paper's settings (meta-batch 32, inner lr 0.4, 1 step, "
                            "3 at test, Adam 1e-3, second order) for {its} of the official code's {paper} iterations "
                            "({secs:.0f} s on {dev}; the time slice of a 9-minute device call); best of the "
                            "validations (100 seeded val episodes every 500 iterations).")

    def protonet(self, rec, slice_s) -> None:
        cfg = fewshot.default_config("protonet", 5, 1, **{**dict(val_every=1000, val_episodes=100),
                                                          **self.smoke_overrides("protonet")})
        trainer = self.trainer(cfg)
        self.train_and_test(rec, trainer, slice_s, [("protonet-omniglot-5w1s", 5), ("protonet-omniglot-20w1s", 20)],
                            "GPU run (scripts/gpu_run.py): the paper's 60-way schedule (60-way 1-shot episodes, 5 "
                            "queries/class, Adam 1e-3 halved every 2,000 episodes) for {its} episodes ({secs:.0f} s on "
                            "{dev}; metalib's bound is {paper}); one model tested 5-way and 20-way as Snell et al. do; "
                            "validated 5-way (100 seeded val episodes every 1,000).")

    def reptile(self, rec, slice_s) -> None:
        cfg = fewshot.default_config("reptile", 5, 1, **{**dict(val_every=1000, val_episodes=50),
                                                         **self.smoke_overrides("reptile")})
        trainer = self.trainer(cfg)
        trainer.learner.batching = "vmap"  # first order: exact under vmap with F.batch_norm; not in the config
        self.train_and_test(rec, trainer, slice_s, [("reptile-omniglot-5w1s", 5)],
                            "GPU run (scripts/gpu_run.py): the paper's settings (Adam inner loop beta1=0, 12 steps on "
                            "12 shots, meta-batch 3, epsilon 1 annealed to 0 over 200,000 iterations, 86 steps at "
                            "test; full-batch inner steps, tasks batched with vmap) for {its} of {paper} iterations "
                            "({secs:.0f} s on {dev}); the annealing schedule is the 200,000-iteration one, cut short.")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-run-out")))
    ap.add_argument("--smoke", action="store_true", help="the same steps on the CPU with tiny settings (< 2 min)")
    ap.add_argument("--total", type=float, default=None, help="seconds for the whole run (default 530; smoke 100)")
    ap.add_argument("--only", nargs="+", choices=list(SLICES), default=list(SLICES))
    args = ap.parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():  # the full program on a CPU would run for hours, silently
        print("error: no CUDA device here: the full GPU run needs one (scripts/gpu_run.sh --smoke runs the same steps "
              "on the CPU with tiny settings)", file=sys.stderr)
        return 2
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        probe = args.out / ".gpu_run-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        print(f"error: --out {args.out} cannot be written ({err.strerror or err})", file=sys.stderr)
        return 2
    if args.smoke:
        torch.set_num_threads(1)
    else:
        # exactness first: TF32 off unless the bench kept it (its rows say whether it stays within tolerance)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
    run = Run(args.out, args.smoke, args.total or (100 if args.smoke else TOTAL_S))
    run.log(f"gpu_run on {run.results['device']}, torch {torch.__version__}; output in {args.out}")
    # Reserve time for the steps after each one (their minimum slices and tests).
    reserves = {"bench": 330, "maml": 190, "protonet": 120, "reptile": 60} if not args.smoke else \
        {"bench": 30, "maml": 25, "protonet": 12, "reptile": 5}
    for name in ("bench", "maml", "protonet", "reptile"):
        if name in args.only:
            run.step(name, getattr(run, name), reserves[name])
    run.results["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    run.save()
    failed = [k for k, v in run.results["steps"].items() if "error" in v]
    run.log(f"done in {time.perf_counter() - run.start:.0f} s" + (f"; FAILED steps: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
