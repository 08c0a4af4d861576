"""The evaluation protocol: mean accuracy over seeded episodes, with a 95% confidence interval.

Every algorithm is measured on the very same episodes: they are drawn from a generator seeded with
``seed`` (:data:`TEST_SEED` for the test classes, :data:`VAL_SEED` for validation), one task at a
time, so they depend only on the data, N, K, the queries per class and the seed.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .data.protocol import TEST_SEED, VAL_SEED, images_of, mean_ci  # noqa: F401 - the protocol, re-exported
from .data.sequences import SequenceSampler
from .device import CPU_THREADS, DeviceLike, cpu_threads, describe_device, progress_bar, tune_cpu_allocator


@dataclass
class EvalResult:
    """Accuracy over seeded episodes, with how it was measured. Accuracies in % (0-100)."""

    mean: float
    ci95: float
    std: float
    episodes: int
    n_way: int
    k_shot: int
    q_query: int
    seed: int
    split: str
    algorithm: str
    inner_steps: Optional[int]
    seconds: float
    device: str
    accuracies: List[float] = field(default_factory=list, repr=False)

    def __str__(self) -> str:
        steps = f", {self.inner_steps} inner steps" if self.inner_steps else ""
        return (f"{self.mean:.2f}% ± {self.ci95:.2f}% (95% CI = 1.96·σ/√n over {self.episodes} seeded "
                f"{self.split} episodes, {self.n_way}-way {self.k_shot}-shot, {self.q_query} queries/class, "
                f"seed {self.seed}{steps}; {self.algorithm}; {self.seconds:.0f} s on {self.device})")

    def as_dict(self, with_accuracies: bool = False) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        if not with_accuracies:
            d.pop("accuracies")
        return d


def seeded_episodes(sampler, episodes: int, seed: int, chunk: int = 25) -> Iterator[Tuple[Tensor, ...]]:
    """The ``episodes`` episodes of ``sampler`` drawn one task at a time from
    ``torch.Generator().manual_seed(seed)``, yielded in batches of up to ``chunk`` tasks.

    The episodes depend only on the sampler's dataset, way/shot/query and ``seed`` — not on
    ``chunk`` nor on the algorithm — so every algorithm sees the very same test episodes.
    """
    g = torch.Generator().manual_seed(seed)
    done = 0
    while done < episodes:
        n = min(chunk, episodes - done)
        idx = [sampler.sample_indices(1, g) for _ in range(n)]
        yield sampler.gather(torch.cat([c for c, _ in idx]), torch.cat([p for _, p in idx]))
        done += n


@torch.no_grad()
def evaluate(
    learner,
    data,
    n_way: int = 5,
    k_shot: int = 1,
    q_query: int = 15,
    episodes: int = 600,
    seed: int = TEST_SEED,
    steps: Optional[int] = None,
    device: DeviceLike = None,
    split: str = "test",
    chunk: int = 25,
    progress: Optional[bool] = None,
    dtype: Optional[torch.dtype] = None,
    threads: Optional[int] = CPU_THREADS,
) -> EvalResult:
    """Mean accuracy of ``learner`` over ``episodes`` seeded N-way K-shot episodes of ``data``, ± 95% CI.

    Args:
        learner: any :class:`metalib.algorithms.Learner` (or shipped weights from
            :func:`metalib.pretrained`): each episode's queries are classified by
            ``learner.predict(x_s, y_s, x_q, n_way, steps)`` — learners that adapt by gradient steps
            adapt a copy of their weights with ``steps`` inner steps (default: the learner's
            ``eval_steps``, e.g. 3 for MAML 5-way Omniglot); BatchNorm uses the statistics of the
            batch it sees (transductive, as in the papers).
        data: the classes to test on: a dataset with ``.images`` (e.g. ``Omniglot("test")``) or a
            uint8 tensor ``[C, P, ch, H, W]``.
        q_query: queries per class in each episode.
        seed: seeds the episode generator; the same seed gives the same episodes for every algorithm.
        progress: a progress bar over the episodes; ``None`` (default): when someone is watching — in a
            terminal or a Jupyter notebook, not under pytest, nbval or in a log
            (:func:`metalib.device.interactive`; ``METALIB_PROGRESS=0`` turns it off).
        dtype: evaluate a copy of the learner in this dtype (the images converted to it), e.g.
            ``torch.float64``: a query whose two best logits lie within float32's rounding error then no
            longer flips class between CPUs whose kernels round differently (docs/notebooks.md); ``None``
            (default): the learner as it is.
        threads: torch CPU threads during the evaluation, the caller's count restored afterwards
            (default :data:`metalib.device.CPU_THREADS` = 1, the policy of ``docs/threads.md``; ``None``:
            torch's current setting). The result does not depend on it beyond float rounding.
    Returns:
        :class:`EvalResult` (accuracies in %); the CI is 1.96·σ/√n with σ the standard deviation of
        the per-episode accuracies (``ddof=0``, as in Finn et al.'s code).
    """
    with cpu_threads(threads):
        return _evaluate(learner, data, n_way, k_shot, q_query, episodes, seed, steps, device, split, chunk,
                         progress, dtype)


def _evaluate(learner, data, n_way, k_shot, q_query, episodes, seed, steps, device, split, chunk, progress,
              dtype) -> EvalResult:
    from .data import EpisodeSampler

    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be an int >= 1, got {episodes!r}")
    predict = getattr(learner, "predict", None)
    if not callable(predict):
        raise TypeError(f"evaluate() needs a metalib learner (with .predict), got {type(learner).__name__}; "
                        "wrap a bare network in its algorithm, e.g. metalib.ProtoNet(net), or load shipped "
                        "weights with metalib.pretrained(name)")
    learner.check_task(n_way)
    if dtype is not None:
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise ValueError(f"dtype must be a floating-point torch.dtype (e.g. torch.float64), got {dtype!r}")
        learner = copy.deepcopy(learner).to(dtype)     # the caller's learner keeps its own dtype
    dev = torch.device(device) if device is not None else learner.device
    if dev.type == "cpu":
        tune_cpu_allocator()
    sampler = EpisodeSampler(images_of(data), n_way, k_shot, q_query, device=dev)
    steps = learner.eval_steps if steps is None else steps
    accs: List[Tensor] = []
    name = learner.describe()
    bar = progress_bar(episodes, progress, f"evaluating {name}")
    start = time.perf_counter()
    for batch in seeded_episodes(sampler, episodes, seed, chunk):
        if dtype is not None:
            batch = tuple(b.to(dtype) if b.is_floating_point() else b for b in batch)
        preds = learner.predict(batch[0], batch[1], batch[2], n_way, steps=steps).argmax(-1)
        accs.append((preds == batch[3]).double().mean(1).cpu())
        if bar is not None:
            bar.update(batch[0].shape[0])
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - start
    acc = torch.cat(accs).double() * 100
    mean, ci95, std = mean_ci(acc)
    return EvalResult(
        mean=mean, ci95=ci95, std=std, episodes=acc.numel(), n_way=n_way, k_shot=k_shot, q_query=q_query,
        seed=seed, split=split, algorithm=name, inner_steps=steps, seconds=seconds,
        device=describe_device(dev), accuracies=acc.tolist(),
    )


# ============================================================================ accuracy by instance (sequences)
REPORTED_INSTANCES = (1, 2, 3, 5, 10)   # the columns of Santoro et al.'s Table 1 that metalib reports

@dataclass
class InstanceAccuracy:
    """Accuracy (%) at each presentation of a class, over seeded sequences, with 95% CIs.

    ``mean[k]``, ``ci95[k]``: the accuracy at the ``k``-th instance (1-based) — per episode the
    fraction of the ``N`` steps that show a class for the ``k``-th time classified right, then the
    mean over episodes ± 1.96·σ/√episodes (σ over episodes, ddof 0, as the standard protocol).
    ``overall``: all steps. ``per_episode[k]``: the per-episode accuracies.
    """

    mean: Dict[int, float]
    ci95: Dict[int, float]
    overall: float
    overall_ci95: float
    episodes: int
    n_way: int
    instances: int
    seed: int
    split: str
    name: str
    per_episode: Dict[int, List[float]] = field(default_factory=dict, repr=False)

    def row(self, columns: Sequence[int] = REPORTED_INSTANCES, ci: bool = True) -> str:
        """``"36.4 ± 1.2 | 82.8 ± 0.9 | …"`` for the instances ``columns``."""
        return " | ".join(f"{self.mean[k]:.1f}" + (f" ± {self.ci95[k]:.1f}" if ci else "") for k in columns)

    def __str__(self) -> str:
        cols = [k for k in REPORTED_INSTANCES if k <= self.instances]
        return (f"{self.name}: accuracy (%) at instance {', '.join(map(str, cols))}: {self.row(cols)} "
                f"(± 95% CI over {self.episodes} seeded {self.split} sequences of {self.n_way} classes x "
                f"{self.instances} instances, seed {self.seed})")


@torch.no_grad()
def accuracy_by_instance(learner: Any, data: Any, n_way: int = 5, instances: int = 10, episodes: int = 600,
                         seed: Optional[int] = None, chunk: int = 25, split: str = "test",
                         predict: Optional[Callable[[Tensor, Tensor], Tensor]] = None,
                         name: Optional[str] = None, device=None) -> InstanceAccuracy:
    """Accuracy at the 1st, 2nd, … presentation of a class (Santoro et al.'s Table 1), measured on
    ``episodes`` seeded sequences (:meth:`SequenceSampler.episodes`; ``seed`` default
    :data:`metalib.evaluation.TEST_SEED`).

    Args:
        learner: a learner with ``predict_sequence(x [B, L, ...], y [B, L]) -> logits [B, L, N]``
            (the label of step ``t`` fed at ``t + 1`` only), or anything when ``predict`` is given.
        data: the classes (e.g. ``Omniglot("test")``).
        predict: a function ``(x, y) -> logits [B, L, N]`` to use instead of ``learner.predict_sequence``
            (e.g. a metric learner restricted to the classes seen so far, in the course layer).
    """
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be an int >= 1, got {episodes!r}")
    fn = predict if predict is not None else getattr(learner, "predict_sequence", None)
    if not callable(fn):
        raise TypeError(f"{type(learner).__name__} has no predict_sequence(x, y): pass predict=(x, y) -> logits")
    seed = TEST_SEED if seed is None else seed
    sampler = SequenceSampler(images_of(data), n_way, instances, device=device)
    per: Dict[int, List[Tensor]] = {k: [] for k in range(1, instances + 1)}
    overall: List[Tensor] = []
    for ep in sampler.episodes(episodes, seed, chunk):
        logits = fn(ep.x, ep.y)
        if tuple(logits.shape[:2]) != tuple(ep.y.shape) or logits.dim() != 3:
            raise ValueError(f"predict must return logits [B, L, N] = [{ep.y.shape[0]}, {ep.y.shape[1]}, N], "
                             f"got {tuple(logits.shape)}")
        right = (logits.argmax(-1) == ep.y).double().cpu()
        inst = ep.instance.cpu()
        for k in per:
            per[k].append((right * (inst == k)).sum(1) / (inst == k).sum(1))
        overall.append(right.mean(1))
    means, cis, lists = {}, {}, {}
    for k, v in per.items():
        acc = torch.cat(v) * 100
        means[k], cis[k], _ = mean_ci(acc)
        lists[k] = acc.tolist()
    o_mean, o_ci, _ = mean_ci(torch.cat(overall) * 100)
    label = name or (learner.describe() if callable(getattr(learner, "describe", None)) else type(learner).__name__)
    return InstanceAccuracy(means, cis, o_mean, o_ci, episodes, n_way, instances, seed, split, label, lists)
