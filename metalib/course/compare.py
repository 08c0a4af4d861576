"""One table of every few-shot learner the project trained: accuracy from the manifest, cost measured live.

>>> from metalib.course import compare
>>> results = compare.shipped_results()              # every few-shot entry of metalib/weights/MANIFEST.json
>>> cost = compare.meta_iteration_cost_isolated(results[0].config)   # time + memory of one meta-iteration
>>> print(compare.markdown_table(results, {results[0].name: cost}))

- **Accuracy** (:func:`shipped_results`): what the manifest recorded when the weights were shipped
  (:func:`metalib.fewshot.ship`): mean over the seeded test episodes (600, seed 1000) ± the 95% CI
  1.96·σ/√n. Nothing is re-measured here; ``metalib.fewshot.evaluate_pretrained(name)`` does that.
- **Cost of one meta-iteration** (:func:`meta_iteration_cost`): the wall time of
  :class:`metalib.fewshot.FewShotTrainer`'s own training step (sample the meta-batch, inner loops,
  meta-gradient, optimiser / Reptile update) with the shipped run's config — median over
  ``repeats`` steps after ``warmup`` untimed ones (:func:`metalib.device.time_it`) — and its peak
  memory (:func:`metalib.device.peak_memory_mb`): on CUDA the peak of allocated tensor memory
  (reset just before); on CPU the process's peak resident set size, which earlier work in the
  process may have raised: :func:`meta_iteration_cost_isolated` runs the measurement in a fresh
  Python process, where the increase over the peak before the first step is the meta-iteration's
  own memory.
  The images are random uint8 of the dataset's shape (:func:`synthetic_images`): a Conv-4's cost
  does not depend on pixel values, and no dataset needs to be loaded to time it.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from .. import fewshot
from ..device import (
    DeviceLike, default_device, describe_device, peak_memory_mb, release_freed_cpu_memory, reset_peak_memory, time_it,
)
from ..io import PathLike
from ..pretrained import WEIGHTS_DIR, manifest as read_manifest
from .paper_results import PAPER_RESULTS, PaperNumber

__all__ = ["ShippedResult", "Cost", "method_label", "shipped_results", "synthetic_images", "PaperNumber",
           "PAPER_RESULTS", "load_paper_numbers", "paper_number", "FAMILIES", "by_family",
           "meta_iteration_cost", "meta_iteration_cost_isolated", "markdown_table", "mean_ci95",
           "episodes_for_ci"]

DATASET_LABELS = {"omniglot": "Omniglot", "miniimagenet": "miniImageNet", "custom": "custom"}


def method_label(config: fewshot.FewShotConfig) -> str:
    """The learner's own short name (``learner.short_name``): ``"ProtoNet"``, ``"MAML"``, ``"FOMAML"``, ..."""
    return fewshot.build_learner(config).short_name


@dataclass
class ShippedResult:
    """A shipped few-shot learner and the test accuracy its manifest entry records (in %)."""

    name: str
    method: str
    dataset: str
    n_way: int
    k_shot: int
    accuracy: float
    ci95: float
    episodes: int
    iterations: int
    paper_iterations: Optional[int]
    minutes: Optional[float]
    device: str
    config: fewshot.FewShotConfig
    cpu_minutes: Optional[float] = None   # a CPU-budget run's process CPU time (issue #29); None: not recorded

    @property
    def label(self) -> str:
        """e.g. ``"MAML, Omniglot 5-way 1-shot"``; a CPU-budget run says its budget: ``"... [30 CPU-min]"``."""
        budget = f" [{self.cpu_minutes:g} CPU-min]" if self.cpu_minutes is not None else ""
        return f"{self.method}, {DATASET_LABELS.get(self.dataset, self.dataset)} {self.n_way}-way {self.k_shot}-shot{budget}"

    def accuracy_text(self) -> str:
        """``"95.22 ± 0.40 % (600 ep.)"``."""
        return f"{self.accuracy:.2f} ± {self.ci95:.2f} % ({self.episodes} ep.)"


def shipped_results(names: Optional[Sequence[str]] = None, directory: PathLike = WEIGHTS_DIR) -> List[ShippedResult]:
    """The few-shot entries of the manifest (``names``: these, in this order; default all, sorted by
    dataset, method, way and shot), with the test accuracy recorded when each was shipped.

    Raises ``KeyError`` for a name the manifest lacks, ``ValueError`` for an entry that is not a
    few-shot classifier or records no test accuracy (a number we do not have is never made up).
    """
    manifest = read_manifest(directory)
    sort = names is None
    if names is None:
        names = [n for n, e in manifest.items() if "config" in e]
    out = []
    for name in names:
        if name not in manifest:
            raise KeyError(f"no shipped weights named {name!r}; available: {', '.join(sorted(manifest)) or 'none'}")
        e = manifest[name]
        if "config" not in e:
            raise ValueError(f"{name!r} is not a few-shot classifier (its manifest entry has no 'config')")
        m = e.get("metrics") or {}
        missing = [k for k in ("test_accuracy", "ci95", "episodes") if k not in m]
        if missing:
            raise ValueError(f"the manifest entry of {name!r} records no {', '.join(missing)}: ship it with "
                             "metalib.fewshot.ship (or re-measure it with fewshot.evaluate_pretrained)")
        config = fewshot.FewShotConfig.from_dict(e["config"])
        out.append(ShippedResult(
            name=name, method=method_label(config), dataset=config.dataset, n_way=config.n_way,
            k_shot=config.k_shot, accuracy=float(m["test_accuracy"]), ci95=float(m["ci95"]),
            episodes=int(m["episodes"]), iterations=int(e.get("iterations", 0)),
            paper_iterations=e.get("paper_iterations"), minutes=e.get("minutes"),
            device=str(e.get("device", "?")), config=config, cpu_minutes=e.get("cpu_minutes")))
    if sort:
        family = {f: i for i, f in enumerate(FAMILIES)}
        out.sort(key=lambda r: (r.dataset != "omniglot", r.dataset, family.get(r.config.learner_class.family, 9),
                                r.method, r.n_way, r.k_shot, r.name))
    return out


# ============================================================================ the papers' numbers

def load_paper_numbers() -> Dict[Tuple[str, str, int, int], PaperNumber]:
    """:data:`PAPER_RESULTS` (:mod:`metalib.course.paper_results`: every family's numbers, declared in one place)."""
    return PAPER_RESULTS


def paper_number(result: "ShippedResult") -> Optional[PaperNumber]:
    """The paper's number for a shipped result's method and setting (:data:`PAPER_RESULTS`, every
    course module's entries included: :func:`load_paper_numbers`), or None."""
    return load_paper_numbers().get((result.method, result.dataset, result.n_way, result.k_shot))


FAMILIES = ("metric-based", "optimisation-based", "model-based", "generative")


def by_family(results: Sequence["ShippedResult"]) -> Dict[str, List["ShippedResult"]]:
    """``{family: results}`` in the order of :data:`FAMILIES` (then any other family), each list in
    the given order; the family is the learner class's ``family`` attribute."""
    groups: Dict[str, List[ShippedResult]] = {}
    for r in results:
        groups.setdefault(getattr(r.config.learner_class, "family", "other"), []).append(r)
    order = [f for f in FAMILIES if f in groups] + sorted(f for f in groups if f not in FAMILIES)
    return {f: groups[f] for f in order}


# ============================================================================ cost of one meta-iteration
def synthetic_images(config: fewshot.FewShotConfig, n_classes: Optional[int] = None,
                     per_class: Optional[int] = None, seed: int = 0) -> torch.Tensor:
    """Random uint8 images ``[C, P, ch, H, W]`` shaped like ``config``'s dataset, enough for its
    training episodes (default: C = max(train way, 20) classes of P = shots + queries + 4 images)."""
    need_c, need_p = config.train_way_, config.train_shot_ + config.train_query
    c = max(need_c, 20) if n_classes is None else n_classes
    p = need_p + 4 if per_class is None else per_class
    if c < need_c or p < need_p:
        raise ValueError(f"{config.describe()} training episodes need >= {need_c} classes of >= {need_p} images "
                         f"({config.train_shot_} shots + {config.train_query} queries); asked for {c} x {p}")
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (c, p, config.in_channels, config.image_size, config.image_size),
                         dtype=torch.uint8, generator=g)


@dataclass
class Cost:
    """Wall time (ms) and peak memory (MiB) of one meta-iteration, with how they were measured."""

    median_ms: float
    min_ms: float
    max_ms: float
    repeats: int
    warmup: int
    peak_mb: float      # the peak after the steps (CUDA: allocated tensors; CPU: process peak RSS)
    before_mb: float    # the same quantity just before the first step
    device: str
    memory_kind: str    # "CUDA allocated" or "CPU peak RSS"

    @property
    def memory_mb(self) -> float:
        """The meta-iteration's own memory: ``peak_mb - before_mb``."""
        return self.peak_mb - self.before_mb

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _config_for_timing(config: fewshot.FewShotConfig) -> fewshot.FewShotConfig:
    d = config.to_dict()
    d.update(val_every=0, iterations=max(config.iterations, 10_000))  # no validation inside a timed step
    return fewshot.FewShotConfig.from_dict(d)


def meta_iteration_cost(config: fewshot.FewShotConfig, repeats: int = 3, warmup: int = 1,
                        device: DeviceLike = None, seed: int = 0) -> Cost:
    """Time and memory of one training step of ``config`` (a :class:`metalib.fewshot.FewShotConfig`,
    e.g. a shipped learner's ``ShippedResult.config``) in this process.

    The step is :class:`metalib.fewshot.FewShotTrainer`'s own (episode sampling, inner loops,
    meta-gradient, update), on :func:`synthetic_images`. On CPU the memory numbers are the process's
    peak RSS, which earlier work in the same process may already have raised: use
    :func:`meta_iteration_cost_isolated` for a clean CPU measurement.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0, got {warmup!r}")
    if not isinstance(config, fewshot.FewShotConfig):
        raise TypeError(f"config must be a metalib.fewshot.FewShotConfig, got {type(config).__name__}")
    dev = default_device(device)
    cfg = _config_for_timing(config)
    trainer = fewshot.FewShotTrainer(cfg, train_data=synthetic_images(cfg, seed=seed), val_data=False,
                                     device=dev, progress=False)
    if dev.type == "cpu":
        release_freed_cpu_memory()  # the setup's freed blocks must not hide the step's own memory
    reset_peak_memory(dev)
    before = torch.cuda.memory_allocated(dev) / 2**20 if dev.type == "cuda" else peak_memory_mb(dev)
    def step():  # one iteration of the trainer's loop: sample a meta-batch, train_step (update included)
        trainer.learner.train_step(trainer.loop.sample_batch(), trainer.optimizer)

    timing = time_it(step, repeats=repeats, warmup=warmup, device=dev)
    return Cost(median_ms=timing.median_ms, min_ms=timing.min_ms, max_ms=timing.max_ms, repeats=repeats,
                warmup=warmup, peak_mb=peak_memory_mb(dev), before_mb=before, device=describe_device(dev),
                memory_kind="CUDA allocated" if dev.type == "cuda" else "CPU peak RSS")


def meta_iteration_cost_isolated(config: fewshot.FewShotConfig, repeats: int = 3, warmup: int = 1,
                                 device: Optional[str] = None, threads: int = 1, timeout: float = 600) -> Cost:
    """:func:`meta_iteration_cost` in a fresh Python process (``python -m metalib.course.compare``)
    with ``threads`` torch threads, so that the CPU peak RSS belongs to this measurement alone."""
    cmd = [sys.executable, "-m", "metalib.course.compare", "--config", json.dumps(config.to_dict()),
           "--repeats", str(repeats), "--warmup", str(warmup), "--threads", str(threads)]
    if device is not None:
        cmd += ["--device", str(device)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"measuring {config.describe()} in a fresh process failed:\n{proc.stderr[-2000:]}")
    return Cost(**json.loads(proc.stdout.strip().splitlines()[-1]))


# ============================================================================ the table
def markdown_table(results: Sequence[ShippedResult], costs: Optional[Mapping[str, Cost]] = None,
                   memory: bool = True) -> str:
    """One Markdown table: family, method, dataset, test accuracy ± 95% CI (from the manifest), training
    iterations (and the reference budget the manifest records: the paper's iteration count; for
    ProtoNet, which trains until validation stops improving, metalib's bound), and — for names in
    ``costs`` — ms per meta-iteration and (``memory``) the meta-iteration's memory: the growth of the
    peak over the baseline just before the first step, with the baseline (measure it with
    :func:`meta_iteration_cost_isolated` on a CPU, where the peak is the process's)."""
    costs = costs or {}
    head = ("| family | shipped name | method | dataset | test accuracy (%) ± 95% CI | iterations (reference) "
            "| ms / meta-iteration |" + (" MiB / meta-iteration (baseline MiB) |" if memory else ""))
    rows = [head, "|" + "---|" * (8 if memory else 7)]
    for r in results:
        c = costs.get(r.name)
        paper = f"{r.paper_iterations:,}" if r.paper_iterations else "?"
        ms = f"{c.median_ms:,.0f}" if c is not None else "not measured"
        row = (f"| {getattr(r.config.learner_class, 'family', 'other')} | `{r.name}` | {r.method} | "
               f"{DATASET_LABELS.get(r.dataset, r.dataset)} {r.n_way}-way {r.k_shot}-shot | {r.accuracy:.2f} ± "
               f"{r.ci95:.2f} ({r.episodes} ep.) | {r.iterations:,} ({paper}) | {ms} |")
        if memory:
            ok = c is not None and math.isfinite(c.memory_mb)
            row += f" {c.memory_mb:,.0f} ({c.before_mb:,.0f}) |" if ok else " not measured |"
        rows.append(row)
    return "\n".join(rows)


# ============================================================================ evaluation statistics
def mean_ci95(accuracies) -> Tuple[float, float]:
    r"""``(mean, half-width of the 95% CI)`` of per-episode accuracies ``[n]``: the half-width is
    :math:`1.96\,\sigma/\sqrt{n}` with :math:`\sigma` the standard deviation over episodes (``ddof=0``),
    as :func:`metalib.fewshot.evaluate` and Finn et al.'s code compute it."""
    acc = torch.as_tensor(accuracies, dtype=torch.float64).flatten()
    if acc.numel() < 2:
        raise ValueError(f"need at least 2 episode accuracies for a confidence interval, got {acc.numel()}")
    if not bool(torch.isfinite(acc).all()):
        raise ValueError("episode accuracies contain NaN/inf")
    return float(acc.mean()), 1.96 * float(acc.std(unbiased=False)) / math.sqrt(acc.numel())


def episodes_for_ci(std: float, half_width: float) -> int:
    r"""The fewest episodes whose 95% CI half-width :math:`1.96\,\sigma/\sqrt{n}` is at most
    ``half_width`` (same units as ``std``): :math:`n = \lceil (1.96\,\sigma / h)^2 \rceil`."""
    if not (std >= 0 and half_width > 0 and math.isfinite(std) and math.isfinite(half_width)):
        raise ValueError(f"need std >= 0 and half_width > 0 (finite), got {std}, {half_width}")
    n = max(1, math.ceil((1.96 * std / half_width) ** 2 - 1e-9))
    return n


def _main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m metalib.course.compare",
                                description="Time one meta-iteration of a few-shot config; print a JSON Cost.")
    p.add_argument("--config", required=True, help="a FewShotConfig as JSON")
    p.add_argument("--repeats", type=int, default=3, help="timed iterations (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed iterations first (default 1)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--device", default=None, help="cpu / cuda (default: the best available)")
    a = p.parse_args(argv)
    try:  # every mistake in the command is one line on stderr, exit 2
        for flag, value, low in (("--threads", a.threads, 1), ("--repeats", a.repeats, 1), ("--warmup", a.warmup, 0)):
            if value < low:
                raise ValueError(f"{flag} must be >= {low}, got {value}")
        try:
            spec = json.loads(a.config)
        except json.JSONDecodeError as err:
            raise ValueError(f"--config is not valid JSON ({err})") from None
        if not isinstance(spec, dict):
            raise ValueError(f"--config must be a JSON object (a FewShotConfig's fields), got {type(spec).__name__}")
        config = fewshot.FewShotConfig.from_dict(spec)
        from ..device import default_device

        default_device(a.device)  # a device torch knows, before anything is built
        torch.set_num_threads(a.threads)
        cost = meta_iteration_cost(config, a.repeats, a.warmup, a.device)
    except (ValueError, TypeError, KeyError, OSError) as err:
        text = str(err).strip().splitlines()
        print(f"error: {text[0] if text else type(err).__name__}", file=sys.stderr)
        return 2
    print(json.dumps(cost.as_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(_main())


# ============================================================================ the equal-budget race (issue 29)
RACE_RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "time_to_accuracy.json"
"""Where ``benchmarks/bench_time_to_accuracy.py`` records its race (in a clone of the repository)."""


@dataclass
class RacePoint:
    """One learner at one mark of the equal-budget race: validation accuracy (200 seeded validation
    episodes, 5-way 1-shot, 15 queries per class) after ``cpu_minutes`` of process CPU time on one thread,
    and, where the race measured it, the 600-episode test accuracy of the weights at that mark."""

    learner: str
    cpu_minutes: float
    iteration: int
    val_accuracy: float
    val_ci95: float
    test_accuracy: Optional[float] = None
    test_ci95: Optional[float] = None


def race_results(path: PathLike = RACE_RESULTS) -> Dict[str, List[RacePoint]]:
    """``{learner: its race points in CPU-time order}``, read from the race's record (JSON only, no code).

    Raises ``FileNotFoundError`` with one line saying how to make it when the file is missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no race record at {path.name}: run `python benchmarks/bench_time_to_accuracy.py "
                                "--pipeline LEARNER` in a clone of the repository")
    out: Dict[str, List[RacePoint]] = {}
    for r in json.loads(path.read_text())["records"]:
        test = r.get("test") or {}
        out.setdefault(r["learner"], []).append(RacePoint(
            r["learner"], r["cpu_seconds"] / 60, int(r["iteration"]), float(r["val_accuracy"]), float(r["val_ci95"]),
            test.get("mean"), test.get("ci95")))
    return {k: sorted(v, key=lambda p: p.cpu_minutes) for k, v in out.items()}


def race_paper_number(learner: str, method: Optional[str] = None) -> Optional[PaperNumber]:
    """The paper's Omniglot 5-way 1-shot number for a registered learner name (``"protonet"``) — looked up
    by its method name (``method``, or the shipped model's ``method`` for that learner), or None."""
    if method is not None:
        return load_paper_numbers().get((method, "omniglot", 5, 1))
    # the race's own shipped row first: another row of the same learner may be a variant with another label
    # (config.algorithm "maml" also ships first-order MAML, labelled "FOMAML")
    rows = [r for r in shipped_results() if r.config.algorithm == learner]
    own = [r for r in rows if r.name == f"{learner}-omniglot-5w1s-budget30"]
    numbers = (load_paper_numbers().get((r.method, "omniglot", 5, 1)) for r in (own or rows))
    return next((n for n in numbers if n is not None), None)
