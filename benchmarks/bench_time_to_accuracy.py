"""Issue #29: validation accuracy against PROCESS CPU time, one thread, Omniglot 5-way 1-shot.

Three parts, all resumable, all appending to JSON files under ``benchmarks/results/`` (atomic writes):

* ``--search LEARNER ...`` — the budget schedule search, on the VALIDATION split only: for each
  learner, peak Adam learning rate in {1e-3, 2e-3, 4e-3} x {step, cosine} decay, each point trained
  for ``--search-minutes`` (1) CPU-minute and validated on the seeded validation episodes. The
  schedule's length T is the number of iterations that fit in the budget (calibrated once per learner
  and recorded): "step" halves the rate every T/4 iterations, "cosine" anneals it to 2% over T.
  Results: ``budget_search.json``. The chosen point (best validation accuracy) is stretched to a
  30-CPU-minute schedule (T30 = 30 x the iterations of a 1-minute run): the learner's
  ``budget_settings``.
* ``--race LEARNER ...`` (default) — each learner trained with its budget settings, validation
  accuracy at 2, 5, 10, 20, 30 and 40 minutes of process CPU time spent *training* (sampling,
  forward, backward, update; the validations and checkpoint writes at the marks are not counted), a
  checkpoint at each mark (``cpuNN.pt`` in the run folder; the 30-minute one is the candidate to ship),
  ``--until MINUTES`` stops at a mark and a later invocation continues from ``last.pt``. Results:
  ``time_to_accuracy.json``. With ``--test-at 30`` the learner at that mark is also measured on the
  600 seeded test episodes (the standard protocol) for shipping.
* ``--table`` — the table (learner x CPU-minutes, the paper's number beside it) into
  ``benchmarks/README.md`` between markers, and the figure ``benchmarks/time_to_accuracy.png``.
* ``--ship LEARNER`` — ship the 30-minute checkpoint under a new name (``<algo>-omniglot-5w1s-budget30``).
* ``--smoke`` — seconds: synthetic images, budgets of a few CPU-seconds, everything above into a
  temporary folder (CI: ``tests/test_bench_time_to_accuracy.py``).

Validation protocol (every mark, every learner): 200 seeded validation episodes (seed
``metalib.evaluation.VAL_SEED``), 5-way 1-shot, 15 queries per class, the standard evaluator.

Reproducibility: the training trajectory is a function of the iteration (seeded episodes, saved RNG
and generator states, resumable schedule), so a run interrupted and resumed is the same run; *which*
iteration a CPU mark falls on depends on the machine's speed (it is recorded with each result).

    OMP_NUM_THREADS=1 python benchmarks/bench_time_to_accuracy.py --search matching
    OMP_NUM_THREADS=1 python benchmarks/bench_time_to_accuracy.py --race matching protonet --until 30
    python benchmarks/bench_time_to_accuracy.py --table
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import torch  # noqa: E402

from metalib import checkpoint as ckpt  # noqa: E402
from metalib import algorithms, fewshot  # noqa: E402
from metalib.evaluation import TEST_SEED, VAL_SEED, EvalResult, evaluate  # noqa: E402
from metalib.io import atomic_write_json  # noqa: E402
from metalib.training import Callback  # noqa: E402

MARKS = (2, 5, 10, 20, 30, 40)          # CPU-minutes
VAL_EPISODES = 200
SEARCH_LRS = (1e-3, 2e-3, 4e-3)
SEARCH_SCHEDULES = ("step", "cosine")
SEARCH_MINUTES = 1.0
SHIP_MARK = 30
RESULTS = HERE / "results"
RUNS = HERE.parent / "runs" / "time_to_accuracy"
FIGURE = HERE / "time_to_accuracy.png"
# the papers' Omniglot 5-way 1-shot numbers and their protocol notes, from docs/references.md
PAPER = {
    "protonet": ("98.8", "P: Snell et al. Table 1; Vinyals split, 60-way training episodes, 15 test queries/class"),
    "matching": ("98.1", "P: Vinyals et al. Table 1 (no FCE), as quoted by Snell et al.; test protocol not recorded; "
                 "ours: the original implementation's attention (query not normalised)"),
    "relation": ("99.6 ± 0.2", "S: Sung et al. Table 1; Vinyals split; 1 query/class, 1,000 test episodes, "
                 "transductive BatchNorm (code)"),
    "r2d2": ("—", "not verified (?): no Omniglot number printed as the paper's"),
    "maml": ("98.7 ± 0.4", "P: Finn et al. Table 1; MAML's own split (easier protocol), 600 episodes"),
    "metasgd": ("99.53 ± 0.26", "S: Li et al.'s classification table, as quoted by later papers; protocol not recorded"),
    "anil": ("—", "no Omniglot 5-way 1-shot number (20-way 1-shot 96.2 ± 0.5, S)"),
    "fomaml": ("—", "Finn et al. Table 1's Omniglot first-order cells were not found (?)"),
    "reptile": ("97.68 ± 0.04", "S: Nichol et al. (arXiv v3), transductive as ours (batch statistics); 1 query/class, "
                "10,000 test tasks (not transductive: 95.39 ± 0.09)"),
    "snail": ("99.07", "S: Mishra et al.'s Omniglot table; ± and test protocol not found"),
    "mann": ("—", "Santoro et al. report accuracy by instance on their own sequences, not N-way K-shot episodes"),
    "lstm-baseline": ("—", "Santoro et al.'s LSTM baseline: accuracy by instance on their own sequences, as MANN"),
    "lstm-meta": ("—", "Ravi & Larochelle report miniImageNet only (43.44 ± 0.77 5-way 1-shot, P)"),
}
EPISODE = dict(train_way=5, train_shot=1, train_query=15, meta_batch=1)   # every learner's training episodes
# Learners whose outer step is not Adam at ``meta_lr`` search the step they do take. Reptile: its
# meta-step epsilon (SGD on theta - mean(phi)), annealed linearly to 0 over T (the paper's) or held
# constant; it trains on more shots than it is tested on (the paper's 1-shot runs: 12 train-shots), and
# its queries only monitor the loss (one per class). The inner loop is the one the earlier shipped run
# used (5 Adam steps at 1e-3, 50 at test: docs/references.md, Reptile), and so is its meta-batch of 3
# tasks (paper: 5): with one task per update each step chases that task, and a race at meta-batch 1
# stayed flat near 59.5% validation from 5 to 20 CPU-minutes (benchmarks/README.md).
GRIDS = {"reptile": dict(lrs=(0.25, 0.5, 1.0), schedules=("linear", "constant"),
                         episode=dict(train_way=5, train_shot=5, train_query=1, meta_batch=3, inner_steps=5,
                                      inner_lr=0.001, test_inner_steps=50))}


def episode(alg: str) -> Dict[str, Any]:
    """The training episode (and fixed inner loop) of ``alg`` in the search and the race."""
    return dict(GRIDS.get(alg, {}).get("episode", EPISODE))


# ============================================================================ small helpers
def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _load_json(path: Path, empty: Any) -> Any:
    return json.loads(path.read_text()) if path.exists() else empty


def _machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, " \
           f"{torch.get_num_threads()} thread(s)"


class CpuClock(Callback):
    """The training CPU time of a run (saved in its checkpoints with the loop's callbacks)."""

    def __init__(self) -> None:
        self.cpu, self.wall, self.marks = 0.0, 0.0, {}

    def state_dict(self) -> Dict[str, Any]:
        return {"cpu": self.cpu, "wall": self.wall, "marks": json.dumps(self.marks)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.cpu, self.wall = float(state["cpu"]), float(state["wall"])
        self.marks = json.loads(state["marks"])


class Bench:
    """Where the data and results are; ``smoke``: synthetic data, seconds, a temporary folder."""

    def __init__(self, results: Path, runs: Path, smoke: bool = False, val_episodes: int = VAL_EPISODES) -> None:
        self.results, self.runs, self.smoke, self.val_episodes = results, runs, smoke, val_episodes
        self.search_minutes = SEARCH_MINUTES
        self.results.mkdir(parents=True, exist_ok=True)
        self._data: Dict[str, Any] = {}

    def data(self, split: str):
        if split not in self._data:
            if self.smoke:
                g = torch.Generator().manual_seed({"train": 0, "val": 1, "test": 2}[split])
                self._data[split] = torch.randint(0, 256, (12, 20, 1, 28, 28), generator=g, dtype=torch.uint8)
            else:
                self._data[split] = fewshot.load_split(fewshot.default_config("protonet"), split).images
        return self._data[split]

    def validate(self, learner) -> EvalResult:
        return evaluate(learner, self.data("val"), 5, 1, 15, self.val_episodes, VAL_SEED, device="cpu", split="val")

    def append(self, name: str, record: Dict[str, Any], key: tuple) -> None:
        """Add ``record`` to ``results/<name>.json`` (replacing one with the same ``key`` fields)."""
        path = self.results / f"{name}.json"
        doc = _load_json(path, {"records": []})
        doc["records"] = [r for r in doc["records"] if tuple(r.get(k) for k in key) != tuple(record[k] for k in key)]
        doc["records"].append(record)
        atomic_write_json(doc, path)

    def records(self, name: str) -> List[Dict[str, Any]]:
        return _load_json(self.results / f"{name}.json", {"records": []})["records"]


def train_for_cpu(trainer, clock: CpuClock, target_seconds: float, on_save=None, save_every: float = 60.0) -> None:
    """Train until ``clock.cpu`` (process CPU seconds spent in training) reaches ``target_seconds``:
    chunks of iterations sized to land on the target, the clock counting only the training."""
    last_save = clock.cpu
    while clock.cpu < target_seconds:
        # the first chunk is one iteration: its cost (first calls included) sizes the next ones
        per = clock.cpu / trainer.iteration if trainer.iteration else float("inf")
        chunk = max(1, min(50, int((target_seconds - clock.cpu) / max(per, 1e-4))))
        until = min(trainer.iteration + chunk, trainer.config.iterations)
        if until == trainer.iteration:
            raise RuntimeError(f"the run's bound of {trainer.config.iterations} iterations was reached before "
                               f"{target_seconds / 60:.1f} CPU-minutes: raise --bound")
        c0, w0 = time.process_time(), time.perf_counter()
        trainer.fit(until=until)
        clock.cpu += time.process_time() - c0
        clock.wall += time.perf_counter() - w0
        if on_save is not None and clock.cpu - last_save >= save_every and clock.cpu < target_seconds:
            on_save()
            last_save = clock.cpu


def _trainer(cfg, bench: Bench, run_dir: Optional[Path]):
    trainer = fewshot.FewShotTrainer(cfg, train_data=bench.data("train"), val_data=False, run_dir=run_dir,
                                     device="cpu", progress=False, log=False)
    # checkpoints are written here, at the marks and every CPU-minute, outside the clock
    trainer.loop.callbacks = [c for c in trainer.loop.callbacks if type(c).__name__ != "_Checkpoints"]
    clock = CpuClock()
    trainer.loop.callbacks.append(clock)
    if run_dir is not None and (run_dir / "last.pt").exists():
        saved = (ckpt.load_checkpoint(run_dir / "last.pt").get("callbacks") or {}).get("CpuClock")
        if saved is None and trainer.iteration:
            raise RuntimeError(f"{run_dir / 'last.pt'} has no CPU clock: not a run of this benchmark")
        if saved is not None:
            clock.load_state_dict(saved)
    return trainer, clock


# ============================================================================ the search
def grid_settings(lr: float, schedule: str, length: int) -> Dict[str, Any]:
    """The schedule of one grid point over ``length`` iterations."""
    if schedule in ("linear", "constant"):                 # Reptile's epsilon (GRIDS)
        return dict(outer_lr=lr, outer_lr_final=0.0 if schedule == "linear" else lr, anneal_iterations=length)
    if schedule == "step":
        return dict(meta_lr=lr, lr_schedule="step", lr_decay_every=max(1, length // 4), lr_decay=0.5)
    return dict(meta_lr=lr, lr_schedule="cosine", lr_decay_every=max(1, length), lr_decay=0.02)


def calibrate(alg: str, bench: Bench, seconds: float) -> int:
    """Iterations of ``alg`` (5-way 1-shot, 15 queries) that fit in ``seconds`` of CPU on one thread."""
    cfg = fewshot.default_config(alg, 5, 1, **episode(alg), iterations=100_000, val_every=0, checkpoint_every=0)
    trainer, clock = _trainer(cfg, bench, None)
    trainer.fit(until=3)                                   # warm-up (allocator, first-call costs)
    target = min(15.0, seconds / 4)
    c0, it0 = time.process_time(), trainer.iteration
    while time.process_time() - c0 < target:
        trainer.fit(until=trainer.iteration + 1)
    per = (time.process_time() - c0) / (trainer.iteration - it0)
    return max(4, int(seconds / per))


def search(alg: str, bench: Bench, minutes: float, lrs=None, schedules=None) -> Dict[str, Any]:
    """Run the grid for ``alg`` (resumable: points already recorded are skipped); returns the chosen settings."""
    lrs = lrs or GRIDS.get(alg, {}).get("lrs", SEARCH_LRS)
    schedules = schedules or GRIDS.get(alg, {}).get("schedules", SEARCH_SCHEDULES)
    seconds = minutes * 60
    done = {(r["meta_lr"], r["schedule"]): r for r in bench.records("budget_search") if r["learner"] == alg
            and r["minutes"] == minutes}
    length = next((r["schedule_length"] for r in done.values()), None) or calibrate(alg, bench, seconds)
    for lr in lrs:
        for sch in schedules:
            if (lr, sch) in done:
                continue
            s = grid_settings(lr, sch, length)
            cfg = fewshot.default_config(alg, 5, 1, **episode(alg), **s, iterations=100 * length, val_every=0,
                                         checkpoint_every=0, seed=0)
            trainer, clock = _trainer(cfg, bench, None)
            train_for_cpu(trainer, clock, seconds)
            res = bench.validate(trainer.learner)
            rec = dict(learner=alg, meta_lr=lr, schedule=sch, minutes=minutes, schedule_length=length,
                       settings=s, episode=episode(alg), iterations=trainer.iteration, cpu_seconds=round(clock.cpu, 2),
                       wall_seconds=round(clock.wall, 2), val_accuracy=round(res.mean, 3), val_ci95=round(res.ci95, 3),
                       val_episodes=res.episodes, val_seed=res.seed, final_loss=round(sum(trainer.history.loss[-50:]) /
                                                                                      max(1, len(trainer.history.loss[-50:])), 4),
                       machine=_machine(), date=_now())
            bench.append("budget_search", rec, ("learner", "meta_lr", "schedule", "minutes"))
            done[(lr, sch)] = rec
            print(f"search {alg} lr={lr:g} {sch}: {res.mean:.2f}% ± {res.ci95:.2f}% val after {trainer.iteration} "
                  f"iterations ({clock.cpu:.0f} CPU-s, {clock.wall:.0f} wall-s)", flush=True)
    return chosen_from_search(alg, bench, minutes)


def chosen_from_search(alg: str, bench: Bench, minutes: Optional[float] = None, race_minutes: float = SHIP_MARK):
    """The best grid point (validation accuracy), its schedule stretched to ``race_minutes``."""
    minutes = bench.search_minutes if minutes is None else minutes
    recs = [r for r in bench.records("budget_search") if r["learner"] == alg and r["minutes"] == minutes]
    if not recs:
        return None
    best = max(recs, key=lambda r: (r["val_accuracy"], -r["meta_lr"]))
    mean_iters = sum(r["iterations"] for r in recs) / len(recs)
    length = int(round(mean_iters * race_minutes / minutes, -2 if not bench.smoke else 0))
    return dict(**episode(alg), **grid_settings(best["meta_lr"], best["schedule"], length), iterations=length)


def budget_settings_for(alg: str, bench: Bench) -> Dict[str, Any]:
    """The learner's ``budget_settings`` (in its class) or, before they are copied there, the search's choice."""
    found = chosen_from_search(alg, bench)
    if not bench.smoke:
        s = fewshot.budget_settings().get((algorithms.entry(alg).name, "omniglot", 5, 1))
        if s is not None:
            # the class holds a typed config (fewshot.budget_settings(): the fields off their defaults)
            cfg = fewshot.default_config(alg, 5, 1, settings="budget")
            if found is not None and any(getattr(cfg, k) != v for k, v in found.items()):
                raise SystemExit(f"{alg}'s budget_settings {s} differ from the search's choice {found}: "
                                 "update one of them (benchmarks/results/budget_search.json is the record)")
            return found if found is not None else s
    s = found
    if s is None:
        raise SystemExit(f"{alg} has no budget settings yet: run --search {alg} first")
    return s


# ============================================================================ the race
def race(alg: str, bench: Bench, until: float, marks=MARKS, test_at: Optional[float] = None, bound: float = 3.0) -> None:
    """Train ``alg`` with its budget settings to the CPU mark ``until`` (minutes), resumably."""
    s = dict(budget_settings_for(alg, bench))
    length = s.pop("iterations")
    cfg = fewshot.default_config(alg, 5, 1, **s, iterations=int(bound * length * max(marks) / SHIP_MARK) + 1,
                                 val_every=0, checkpoint_every=0, seed=0)
    run_dir = bench.runs / f"{alg}-omniglot-5w1s-budget"
    trainer, clock = _trainer(cfg, bench, run_dir)
    if trainer.iteration:
        print(f"race {alg}: resumed at iteration {trainer.iteration}, {clock.cpu / 60:.2f} CPU-min", flush=True)

    def save():
        trainer.save()

    for mark in [m for m in marks if m <= until]:
        key = f"{mark:g}"
        if key in clock.marks:
            continue
        train_for_cpu(trainer, clock, mark * 60, on_save=save)
        trainer.save()
        shutil.copyfile(run_dir / "last.pt", run_dir / f"cpu{key}.pt")
        res = bench.validate(trainer.learner)
        rec = dict(learner=alg, mark_minutes=mark, iteration=trainer.iteration, cpu_seconds=round(clock.cpu, 2),
                   wall_seconds=round(clock.wall, 2), val_accuracy=round(res.mean, 3), val_ci95=round(res.ci95, 3),
                   val_episodes=res.episodes, val_seed=res.seed, checkpoint=f"{run_dir.name}/cpu{key}.pt",
                   settings=budget_settings_for(alg, bench), machine=_machine(), date=_now())
        if test_at is not None and mark == test_at:
            test = evaluate(trainer.learner, bench.data("test"), 5, 1, 15, 20 if bench.smoke else 600, TEST_SEED,
                            device="cpu", split="test")
            rec["test"] = test.as_dict(with_accuracies=True)
            print(f"race {alg}: {mark} CPU-min test {test}", flush=True)
        clock.marks[key] = {k: rec[k] for k in ("iteration", "cpu_seconds", "val_accuracy")}
        trainer.save()                                     # the mark is recorded in last.pt too
        bench.append("time_to_accuracy", rec, ("learner", "mark_minutes"))
        print(f"race {alg}: {mark} CPU-min (iteration {trainer.iteration}, {clock.wall / 60:.1f} wall-min): "
              f"val {res.mean:.2f}% ± {res.ci95:.2f}%", flush=True)


# ============================================================================ table, figure, shipping
def table(bench: Bench, readme: Optional[Path] = None, figure: Optional[Path] = FIGURE) -> str:
    recs = bench.records("time_to_accuracy")
    learners = list(dict.fromkeys(r["learner"] for r in recs))
    marks = sorted({r["mark_minutes"] for r in recs} | (set() if bench.smoke else set(MARKS)))
    by = {(r["learner"], r["mark_minutes"]): r for r in recs}
    lines = ["| learner | " + " | ".join(f"{m:g} CPU-min" for m in marks) + " | test (600 ep.) | paper | paper's protocol |",
             "|---|" + "---|" * len(marks) + "---|---|---|"]
    for alg in learners:
        cells = []
        for m in marks:
            r = by.get((alg, m))
            cells.append(f"{r['val_accuracy']:.2f} ± {r['val_ci95']:.2f} ({r['iteration']:,} it.)" if r else "—")
        tests = [f"{r['test']['mean']:.2f} ± {r['test']['ci95']:.2f} at {r['mark_minutes']:g}"
                 for r in recs if r["learner"] == alg and "test" in r]
        paper, note = PAPER.get(alg, ("—", ""))
        lines.append(f"| {alg} | " + " | ".join(cells) + f" | {'; '.join(tests) or '—'} | {paper} | {note} |")
    search = bench.records("budget_search")
    if search:
        lines += ["", "Budget search (validation split only; each point "
                  f"{search[0]['minutes']:g} CPU-minute(s), 5-way 1-shot, 15 queries/class, one episode per update, "
                  f"{search[0]['val_episodes']} seeded validation episodes):", "",
                  "| learner | peak lr | schedule | iterations | val. accuracy |", "|---|---|---|---|---|"]
        if any(r["schedule"] in ("linear", "constant") for r in search):
            lines[-3:-2] = ["(Reptile's 'peak lr' is its meta-step ε — SGD on θ − φ̄ — annealed linearly to 0 or held "
                            "constant, on episodes of 5 train-shots per class with 5 Adam steps of 1e-3, 3 tasks per update; "
                            "every other learner's is Adam's.)", ""]
        for r in sorted(search, key=lambda r: (r["learner"], r["schedule"], r["meta_lr"])):
            lines.append(f"| {r['learner']} | {r['meta_lr']:g} | {r['schedule']} (T={r['schedule_length']:,}) | "
                         f"{r['iterations']:,} | {r['val_accuracy']:.2f} ± {r['val_ci95']:.2f} |")
    if recs:
        lines += ["", "Cells: validation accuracy (%) ± 95% CI on the same 200 seeded validation episodes, and the "
                  "training iterations done by then; 'test': the 600 seeded test episodes (seed 1000, 15 queries/class) "
                  "of the weights at that mark — the number to set beside the paper's. 'paper': the paper's test number "
                  "under its own protocol (docs/references.md; source letters as there). Equal budgets rank "
                  "*these schedules at this budget*, not the methods."]
    chosen = [(alg, budget_settings_for(alg, bench)) for alg in learners] if search else []
    if chosen:
        lines += ["", "Chosen budget settings (the best validation point, its schedule stretched to 30 CPU-minutes):", ""]
        lines += [f"- {alg}: `{s}`" for alg, s in chosen]
    text = "\n".join(lines)
    if readme is not None:
        from _table import write_section

        write_section("time-to-accuracy", text, readme)
    if figure is not None and recs:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from metalib.course import compare, plots

        fig, ax = plt.subplots(figsize=(8.0, 4.0))
        races = compare.race_results(bench.results / "time_to_accuracy.json")
        papers = {alg: (compare.PaperNumber(PAPER[alg][0], "", "", "") if PAPER.get(alg, ("—",))[0] not in ("—", "")
                        else None) for alg in learners}
        plots.race_curves(ax, races, papers)
        ax.set_title("Omniglot 5-way 1-shot, 1 thread: validation (lines), our test (◇), the paper's (★)", fontsize=9)
        fig.tight_layout()
        fig.savefig(figure, dpi=110)
        plt.close(fig)
    return text


def ship(alg: str, bench: Bench, mark: float = SHIP_MARK, name: Optional[str] = None,
         directory: Optional[Path] = None, overwrite: bool = False) -> Dict[str, Any]:
    """Ship the checkpoint at ``mark`` CPU-minutes as ``<algo>-omniglot-5w1s-budget<mark>`` with its
    recorded 600-episode test result (``overwrite``: replace weights already shipped under that name)."""
    rec = next((r for r in bench.records("time_to_accuracy") if r["learner"] == alg and r["mark_minutes"] == mark
                and "test" in r), None)
    if rec is None:
        raise SystemExit(f"no test result recorded for {alg} at {mark} CPU-minutes (run --race {alg} --test-at {mark})")
    run_dir = bench.runs / f"{alg}-omniglot-5w1s-budget"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shutil.copyfile(run_dir / "config.json", tmp / "config.json")
        shutil.copyfile(run_dir / f"cpu{mark:g}.pt", tmp / "last.pt")
        cfg = fewshot.FewShotConfig.from_dict(ckpt.load_config(tmp / "config.json"))
        trainer, clock = _trainer(cfg, bench, tmp)
        if trainer.iteration != rec["iteration"]:
            raise SystemExit(f"cpu{mark:g}.pt is at iteration {trainer.iteration}, the record says {rec['iteration']}")
        t = dict(rec["test"])
        result = EvalResult(**t)
        n = min(50, len(result.accuracies))
        check = evaluate(trainer.learner, bench.data("test"), 5, 1, 15, n, TEST_SEED, device="cpu")
        if check.accuracies != result.accuracies[:n]:
            raise SystemExit(f"cpu{mark:g}.pt does not reproduce the recorded test accuracies (first {n} episodes)")
        name = name or f"{alg}-omniglot-5w1s-budget{mark:g}"
        command = (f"OMP_NUM_THREADS=1 python benchmarks/bench_time_to_accuracy.py --race {alg} --until {mark:g} "
                   f"--test-at {mark:g} && python benchmarks/bench_time_to_accuracy.py --ship {alg}")
        note = (f"CPU-budget run (issue #29): {rec['iteration']:,} training episodes in {rec['cpu_seconds'] / 60:.1f} "
                f"minutes of process CPU time on one thread ({rec['wall_seconds'] / 60:.1f} wall-minutes on a shared "
                "2-core machine), the budget schedule chosen on the validation split (benchmarks/README.md, "
                "'time-to-accuracy'); the weights at the 30-CPU-minute mark, not selected by validation.")
        return fewshot.ship(name, trainer, result, command=command, note=note, directory=directory,
                            overwrite=overwrite, extra=dict(
            cpu_minutes=round(rec["cpu_seconds"] / 60, 2), wall_minutes=round(rec["wall_seconds"] / 60, 2),
            budget_settings=rec["settings"], threads=1))


# ============================================================================ command line
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--search", nargs="+", metavar="LEARNER", help="run the budget-schedule grid for these learners")
    p.add_argument("--race", nargs="+", metavar="LEARNER", help="race these learners (default: none)")
    p.add_argument("--until", type=float, default=max(MARKS), help="stop at this CPU-minute mark (default 40)")
    p.add_argument("--test-at", type=float, default=None, help="measure the 600 test episodes at this mark")
    p.add_argument("--pipeline", nargs="+", metavar="LEARNER",
                   help="for each learner in turn: --search, then --race to --until with --test-at")
    p.add_argument("--then-until", type=float, default=None, help="--pipeline: then race each learner on to this mark")
    p.add_argument("--search-minutes", type=float, default=SEARCH_MINUTES)
    p.add_argument("--table", action="store_true", help="write the table into benchmarks/README.md and the figure")
    p.add_argument("--ship", nargs="+", metavar="LEARNER", help="ship the 30-CPU-minute weights under a new name")
    p.add_argument("--overwrite", action="store_true", help="--ship: replace weights already shipped under the name")
    p.add_argument("--smoke", action="store_true", help="seconds: synthetic data, tiny budgets, a temporary folder")
    p.add_argument("--out", default=None, help="results folder (default benchmarks/results; --smoke: a temp folder)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.smoke:
        return smoke(Path(args.out) if args.out else None)
    bench = Bench(Path(args.out) if args.out else RESULTS, RUNS)
    bench.search_minutes = args.search_minutes
    for alg in args.search or ():
        print("chosen:", search(alg, bench, args.search_minutes), flush=True)
    for alg in args.race or ():
        race(alg, bench, args.until, test_at=args.test_at)
    for alg in args.pipeline or ():
        print("chosen:", search(alg, bench, args.search_minutes), flush=True)
        race(alg, bench, args.until, test_at=args.test_at)
    for alg in (args.pipeline or ()) if args.then_until else ():
        race(alg, bench, args.then_until)
    for alg in args.ship or ():
        info = ship(alg, bench, overwrite=args.overwrite)
        print(f"shipped {alg}: {info.get('file', info)}")
    if args.table:
        print(table(bench, readme=HERE / "README.md"))
    return 0


def smoke(out: Optional[Path]) -> int:
    """Every part on synthetic data in seconds; raises (exit != 0) if anything is off."""
    from metalib.pretrained import pretrained

    out = out or Path(tempfile.mkdtemp(prefix="tta-smoke-"))
    bench = Bench(out / "results", out / "runs", smoke=True, val_episodes=5)
    bench.search_minutes = 0.01
    marks = (0.01, 0.02, 0.03)                              # 0.6, 1.2, 1.8 CPU-seconds
    alg = "protonet"
    chosen = search(alg, bench, 0.01, lrs=(1e-3, 4e-3), schedules=("cosine",))
    assert chosen["lr_schedule"] == "cosine" and chosen["iterations"] >= 1, chosen
    assert len(bench.records("budget_search")) == 2
    race(alg, bench, 0.02, marks=marks, test_at=0.02)       # stopped at a mark ...
    race(alg, bench, 0.03, marks=marks)                     # ... and continued in a new trainer
    mine = sorted(bench.records("time_to_accuracy"), key=lambda r: r["mark_minutes"])
    assert [r["mark_minutes"] for r in mine] == list(marks), mine
    its = [r["iteration"] for r in mine]
    assert its == sorted(its) and its[0] >= 1 and len(set(its)) == len(its), its
    assert all(r["cpu_seconds"] >= r["mark_minutes"] * 60 for r in mine)
    assert all(0 <= r["val_accuracy"] <= 100 for r in mine) and "test" in mine[1]
    # interrupted and resumed = one uninterrupted run, iteration for iteration
    run_dir = bench.runs / f"{alg}-omniglot-5w1s-budget"
    saved = ckpt.load_checkpoint(run_dir / "cpu0.03.pt")
    cfg = fewshot.FewShotConfig.from_dict(ckpt.load_config(run_dir / "config.json"))
    straight, _ = _trainer(cfg, bench, None)
    straight.fit(until=int(saved["iteration"]))
    for k, v in straight.learner.state_dict().items():
        assert torch.equal(v, saved["model"][k]), f"resumed run differs from an uninterrupted one at {k}"
    # shipping the mark's weights: they reproduce the recorded test accuracy
    info = ship(alg, bench, mark=0.02, directory=out / "weights")
    assert info["cpu_minutes"] >= 0.02 * 0.99 and info["metrics"]["test_accuracy"] == round(mine[1]["test"]["mean"], 4)
    learner = pretrained(f"{alg}-omniglot-5w1s-budget0.02", directory=out / "weights")
    again = evaluate(learner, bench.data("test"), 5, 1, 15, 20, TEST_SEED, device="cpu")
    assert again.accuracies == mine[1]["test"]["accuracies"], "the shipped weights do not reproduce the test result"
    readme = out / "README.md"
    text = table(bench, readme=readme, figure=out / "figure.png")
    assert "<!-- time-to-accuracy:start -->" in readme.read_text() and f"| {alg} |" in text
    assert (out / "figure.png").stat().st_size > 1000
    print(f"smoke OK ({out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
