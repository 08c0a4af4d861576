"""Few-shot image classification: one meta-training loop for MAML, Reptile and ProtoNet.

>>> from metalib.fewshot import default_config, FewShotTrainer
>>> cfg = default_config("protonet", n_way=5, k_shot=1, iterations=2000)
>>> trainer = FewShotTrainer(cfg, run_dir="runs/protonet-5w1s")   # loads Omniglot train/val
>>> trainer.fit()                     # Ctrl-C / "interrupt kernel" any time; fit() again resumes
>>> print(trainer.test())             # 600 seeded test episodes, mean ± 95% CI

- **The loop** (:class:`FewShotTrainer`): meta-batches from :class:`metalib.data.EpisodeSampler`
  drawn with a seeded generator; an Adam outer optimiser (optionally halving its learning rate every
  ``lr_decay_every`` iterations) for MAML and ProtoNet; Reptile's own interpolation step
  (:meth:`metalib.Reptile.meta_step`) with ε annealed linearly to ``outer_lr_final``; a
  ``tqdm.auto`` progress bar with the running loss and accuracy; validation on held-out classes
  every ``val_every`` iterations, keeping the best weights (``best.pt``); resumable checkpoints
  (``last.pt``, see :mod:`metalib.checkpoint`) every ``checkpoint_every`` iterations and whenever
  the run is interrupted; NaN/inf detection that stops the run with a clear message
  (:class:`TrainingDiverged`), leaves the model at its last good state and never writes a bad
  checkpoint.
- **The evaluation protocol** (:func:`evaluate`): mean accuracy over ``episodes`` (600) test
  episodes drawn from a generator seeded with ``seed`` — the very same episodes for every
  algorithm — with the 95% confidence interval 1.96·σ/√n (σ: the standard deviation over episodes,
  ``ddof=0`` as in Finn et al.'s code). MAML adapts with its stated number of test-time steps.
- **Defaults from the papers** (:func:`default_config`, table in :data:`PAPER_SETTINGS`).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import checkpoint as ckpt
from .algorithms import MAML, ProtoNet, Reptile
from .device import DeviceLike, default_device, describe_device, tune_cpu_allocator
from .functional import NonFiniteLossError, check_finite
from .io import PathLike

ALGORITHMS = ("protonet", "maml", "reptile")
DATASETS = ("omniglot", "miniimagenet", "custom")
TEST_SEED = 1000   # the seed of the test episodes, shared by every algorithm
VAL_SEED = 2000    # the seed of the validation episodes


# ============================================================================ configuration
@dataclass
class FewShotConfig:
    """Everything that defines a few-shot training run (saved as ``config.json`` beside its checkpoints).

    Episodes: ``n_way``-way ``k_shot``-shot at test (and validation) time, with ``test_query``
    queries per class; training episodes are ``train_way``-way ``train_shot``-shot with
    ``train_query`` queries per class (``None``: as at test), ``meta_batch`` of them per iteration.
    """

    algorithm: str
    iterations: int
    dataset: str = "omniglot"
    splits: str = "vinyals"          # Omniglot split scheme (metalib.data.Omniglot)
    image_size: int = 28
    in_channels: int = 1
    hidden: int = 64                 # Conv-4 filters
    n_way: int = 5
    k_shot: int = 1
    train_way: Optional[int] = None
    train_shot: Optional[int] = None
    train_query: int = 15
    meta_batch: int = 1
    # outer optimiser (Adam) for MAML / ProtoNet
    meta_lr: float = 1e-3
    lr_decay_every: int = 0          # halve (x lr_decay) the Adam lr every that many iterations; 0 = never
    lr_decay: float = 0.5
    # MAML / Reptile inner loop
    inner_lr: float = 0.0
    inner_steps: int = 0
    test_inner_steps: int = 0
    first_order: bool = False
    # Reptile outer step
    outer_lr: float = 0.0
    outer_lr_final: float = 0.0
    inner_optimizer: str = "adam"
    # validation / test / checkpoints
    val_every: int = 500
    val_episodes: int = 200
    val_seed: int = VAL_SEED
    test_episodes: int = 600
    test_query: int = 15
    test_seed: int = TEST_SEED
    checkpoint_every: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}; got {self.algorithm!r}")
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(DATASETS)}; got {self.dataset!r}")
        for name in ("iterations", "image_size", "in_channels", "hidden", "n_way", "k_shot", "train_query",
                     "meta_batch", "lr_decay_every", "inner_steps", "test_inner_steps", "val_every",
                     "val_episodes", "test_episodes", "test_query", "checkpoint_every", "seed",
                     "val_seed", "test_seed", "train_way", "train_shot"):
            v = getattr(self, name)
            if v is None and name in ("train_way", "train_shot"):
                continue
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{name} must be an int, got {v!r}")
            low = 1 if name in ("image_size", "in_channels", "hidden", "n_way", "k_shot", "meta_batch",
                                "test_query", "train_way", "train_shot") else 0
            if v < low:
                raise ValueError(f"{name} must be >= {low}, got {v}")
        for name in ("meta_lr", "lr_decay", "inner_lr", "outer_lr", "outer_lr_final"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if self.algorithm in ("maml", "reptile") and (self.inner_lr <= 0 or self.inner_steps < 1):
            raise ValueError(f"{self.algorithm} needs inner_lr > 0 and inner_steps >= 1 "
                             f"(got {self.inner_lr}, {self.inner_steps})")
        if self.algorithm != "reptile" and self.meta_lr <= 0:
            raise ValueError(f"meta_lr must be > 0 for {self.algorithm}")
        if self.algorithm == "reptile" and self.inner_optimizer not in ("sgd", "adam"):
            raise ValueError(f"inner_optimizer must be 'sgd' or 'adam', got {self.inner_optimizer!r}")
        if self.algorithm == "maml" and self.train_way_ != self.n_way:
            raise ValueError("MAML's linear head has n_way outputs: train_way must equal n_way")
        if self.algorithm == "reptile" and self.train_way_ != self.n_way:
            raise ValueError("Reptile's linear head has n_way outputs: train_way must equal n_way")

    @property
    def train_way_(self) -> int:
        return self.train_way or self.n_way

    @property
    def train_shot_(self) -> int:
        return self.train_shot or self.k_shot

    @property
    def test_steps(self) -> int:
        """Inner steps at validation/test time (MAML, Reptile); ``inner_steps`` if not set."""
        return self.test_inner_steps or self.inner_steps

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "FewShotConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config key(s): {', '.join(unknown)}")
        return cls(**d)

    def describe(self) -> str:
        """One line: the algorithm and its episodes, e.g. for a progress bar or a table."""
        s = f"{self.algorithm} {self.dataset} {self.n_way}-way {self.k_shot}-shot"
        if self.algorithm == "maml":
            s += f" ({'first' if self.first_order else 'second'}-order)"
        return s


# Per-algorithm defaults, from the papers and their official code (see /work/shared/REFERENCES.md):
#   MAML (Finn et al. 2017, main.py usage + appendix A.1): Omniglot 5-way — inner lr 0.4, 1 step,
#     3 steps at test, meta-batch 32, 40,000 iterations, Adam 1e-3, query = K images per class
#     (update_batch_size*2 samples per class). 20-way — inner lr 0.1, 5 steps (5 at test),
#     meta-batch 16. miniImageNet — inner lr 0.01, 5 steps (10 at test), meta-batch 4, 15 queries,
#     32 filters, 60,000 iterations. Second-order by default.
#   ProtoNet (Snell et al. 2017): Adam 1e-3 halved every 2,000 episodes; one episode per update;
#     Omniglot: 60-way training episodes, 5 queries per class, shots as at test; miniImageNet:
#     30-way (1-shot) / 20-way (5-shot), 15 queries. (The paper trains until validation stops
#     improving; 20,000 episodes is metalib's bound, not the paper's.)
#   Reptile (Nichol et al. 2018, supervised-reptile README, non-transductive commands): Adam
#     inner optimiser with beta1 = 0; Omniglot 5w5s — train-shots 10, 5 inner steps at lr 0.0015,
#     meta-step 0.7 -> 0, meta-batch 5, 100,000 iterations, 100 steps at test; 5w1s — train-shots
#     12, 12 steps at lr 0.00044, meta-step 1 -> 0, meta-batch 3, 200,000 iterations, 86 at test;
#     20w1s/20w5s — train-shots 9/12, 12 steps at lr 0.00046, meta-step 1 -> 0, meta-batch 3,
#     200,000 iterations, 97 at test; miniImageNet 5w5s — train-shots 15, 8 steps at 0.00022,
#     meta-step 1 -> 0, meta-batch 5, 88 at test; 5w1s — train-shots 12, 19 steps at 0.0012,
#     meta-step 0.235 -> 0, meta-batch 2, 55 at test. Difference: the official inner loop takes
#     mini-batch steps (inner-batch 5-25) over the train-shots; metalib's Reptile takes full-batch
#     steps on them.
PAPER_SETTINGS: Dict[Tuple[str, str, int, int], Dict[str, Any]] = {}


def _settings() -> None:
    S = PAPER_SETTINGS
    for k in (1, 5):
        S[("maml", "omniglot", 5, k)] = dict(inner_lr=0.4, inner_steps=1, test_inner_steps=3, meta_batch=32,
                                             iterations=40_000, train_query=k, meta_lr=1e-3)
        S[("maml", "omniglot", 20, k)] = dict(inner_lr=0.1, inner_steps=5, test_inner_steps=5, meta_batch=16,
                                              iterations=40_000, train_query=k, meta_lr=1e-3)
        S[("maml", "miniimagenet", 5, k)] = dict(inner_lr=0.01, inner_steps=5, test_inner_steps=10, meta_batch=4,
                                                 iterations=60_000, train_query=15, meta_lr=1e-3, hidden=32)
        for n in (5, 20):
            S[("protonet", "omniglot", n, k)] = dict(train_way=60, train_query=5, meta_batch=1, meta_lr=1e-3,
                                                     lr_decay_every=2000, iterations=20_000)
        S[("protonet", "miniimagenet", 5, k)] = dict(train_way=30 if k == 1 else 20, train_query=15, meta_batch=1,
                                                     meta_lr=1e-3, lr_decay_every=2000, iterations=20_000)
    S[("reptile", "omniglot", 5, 5)] = dict(train_shot=10, inner_steps=5, inner_lr=0.0015, outer_lr=0.7,
                                            meta_batch=5, iterations=100_000, test_inner_steps=100)
    S[("reptile", "omniglot", 5, 1)] = dict(train_shot=12, inner_steps=12, inner_lr=0.00044, outer_lr=1.0,
                                            meta_batch=3, iterations=200_000, test_inner_steps=86)
    S[("reptile", "omniglot", 20, 1)] = dict(train_shot=9, inner_steps=12, inner_lr=0.00046, outer_lr=1.0,
                                             meta_batch=3, iterations=200_000, test_inner_steps=97)
    S[("reptile", "omniglot", 20, 5)] = dict(train_shot=12, inner_steps=12, inner_lr=0.00046, outer_lr=1.0,
                                             meta_batch=3, iterations=200_000, test_inner_steps=97)
    S[("reptile", "miniimagenet", 5, 5)] = dict(train_shot=15, inner_steps=8, inner_lr=0.00022, outer_lr=1.0,
                                                meta_batch=5, iterations=200_000, test_inner_steps=88)
    S[("reptile", "miniimagenet", 5, 1)] = dict(train_shot=12, inner_steps=19, inner_lr=0.0012, outer_lr=0.235,
                                                meta_batch=2, iterations=200_000, test_inner_steps=55)
    for key, s in S.items():
        if key[0] == "reptile":
            s.update(train_query=1, inner_optimizer="adam", outer_lr_final=0.0)  # query: monitoring only


_settings()


def default_config(algorithm: str, n_way: int = 5, k_shot: int = 1, dataset: str = "omniglot",
                   **overrides: Any) -> FewShotConfig:
    """The paper's settings for ``algorithm`` on ``dataset`` N-way K-shot (see :data:`PAPER_SETTINGS`
    and the comment above it for the sources), with ``overrides`` applied on top."""
    algorithm = algorithm.lower()
    if algorithm in ("fomaml", "maml-fo"):
        algorithm, overrides = "maml", {"first_order": True, **overrides}
    base: Dict[str, Any] = dict(algorithm=algorithm, dataset=dataset, n_way=n_way, k_shot=k_shot)
    if dataset == "miniimagenet":
        base.update(image_size=84, in_channels=3)
    key = (algorithm, dataset, n_way, k_shot)
    if key in PAPER_SETTINGS:
        base.update(PAPER_SETTINGS[key])
    elif algorithm in ALGORITHMS and dataset != "custom":
        # no paper setting: the closest one (same algorithm and dataset, nearest way/shot)
        near = [k for k in PAPER_SETTINGS if k[:2] == (algorithm, dataset)]
        if near:
            base.update(PAPER_SETTINGS[min(near, key=lambda k: (abs(k[2] - n_way), abs(k[3] - k_shot)))])
    base.setdefault("iterations", 1000)
    base.update(overrides)
    return FewShotConfig(**base)


# ============================================================================ data and learners
def load_split(config: FewShotConfig, split: str, progress: bool = False):
    """The ``split`` ("train" / "val" / "test") of ``config.dataset`` (a :class:`metalib.data.ClassImageSet`)."""
    from . import data

    if config.dataset == "omniglot":
        return data.Omniglot(split, splits=config.splits, image_size=config.image_size, progress=progress)
    if config.dataset == "miniimagenet":
        return data.MiniImageNet(split, image_size=config.image_size, progress=progress)
    raise ValueError("dataset='custom': pass the images yourself (train_data=, val_data=, dataset=)")


def _images(data) -> Tensor:
    images = data if isinstance(data, Tensor) else getattr(data, "images", None)
    if not isinstance(images, Tensor):
        raise TypeError(f"expected a dataset with .images or a uint8 tensor [C, P, ch, H, W], got {type(data).__name__}")
    return images


def build_model(config: FewShotConfig) -> nn.Module:
    """Conv-4 for ``config``: with an ``n_way`` linear head for MAML/Reptile, without for ProtoNet."""
    from .models import Conv4

    return Conv4(**model_kwargs(config))


def model_kwargs(config: FewShotConfig) -> Dict[str, Any]:
    return dict(in_channels=config.in_channels, n_classes=None if config.algorithm == "protonet" else config.n_way,
                hidden=config.hidden, image_size=config.image_size)


def build_learner(config: FewShotConfig, model: nn.Module):
    """Wrap ``model`` in the algorithm of ``config`` (MAML / Reptile / ProtoNet) with its settings."""
    if config.algorithm == "protonet":
        return ProtoNet(model)
    if config.algorithm == "maml":
        return MAML(model, inner_lr=config.inner_lr, inner_steps=config.inner_steps, first_order=config.first_order)
    return Reptile(model, inner_lr=config.inner_lr, inner_steps=config.inner_steps,
                   outer_lr=config.outer_lr, inner_optimizer=config.inner_optimizer)


def _module(learner) -> nn.Module:
    return learner.encoder if isinstance(learner, ProtoNet) else learner.model


# ============================================================================ evaluation
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
    """The ``episodes`` episodes of ``sampler.episodes(episodes, seed)`` (one task drawn at a time
    from ``torch.Generator().manual_seed(seed)``), yielded in batches of up to ``chunk`` tasks.

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


def _learner_name(learner) -> str:
    if isinstance(learner, MAML):
        return f"MAML ({'first' if learner.first_order else 'second'}-order)"
    return type(learner).__name__


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
    progress: bool = False,
) -> EvalResult:
    """Mean accuracy of ``learner`` over ``episodes`` seeded N-way K-shot episodes of ``data``, ± 95% CI.

    Args:
        learner: a :class:`metalib.ProtoNet`, :class:`metalib.MAML` (or ``Pretrain``) or
            :class:`metalib.Reptile`. MAML/Reptile adapt a copy of the weights to each task's
            support set with ``steps`` inner steps (default: the learner's ``inner_steps``;
            pass the paper's test-time number, e.g. 3 for MAML 5-way Omniglot), then classify its
            queries; BatchNorm uses the statistics of the batch it sees (transductive, as in the papers).
        data: the classes to test on: a dataset with ``.images`` (e.g. ``Omniglot("test")``) or a
            uint8 tensor ``[C, P, ch, H, W]``.
        q_query: queries per class in each episode.
        seed: seeds the episode generator; the same seed gives the same episodes for every algorithm.
    Returns:
        :class:`EvalResult` (accuracies in %); the CI is 1.96·σ/√n with σ the standard deviation of
        the per-episode accuracies (``ddof=0``, as in Finn et al.'s code).
    """
    from .data import EpisodeSampler

    module = _module(learner)
    if device is None:
        first = next(iter([*module.parameters(), *module.buffers()]), None)
        device = first.device if first is not None else "cpu"
    dev = torch.device(device)
    if dev.type == "cpu":
        tune_cpu_allocator()
    sampler = EpisodeSampler(_images(data), n_way, k_shot, q_query, device=dev)
    steps = None if isinstance(learner, ProtoNet) else (learner.inner_steps if steps is None else steps)
    accs: List[Tensor] = []
    bar = _progress(episodes, progress, f"evaluating {_learner_name(learner)}")
    start = time.perf_counter()
    for batch in seeded_episodes(sampler, episodes, seed, chunk):
        preds = _predict(learner, batch, steps)
        accs.append((preds == batch[3]).double().mean(1).cpu())
        if bar is not None:
            bar.update(batch[0].shape[0])
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - start
    acc = torch.cat(accs).double() * 100 if accs else torch.zeros(0, dtype=torch.float64)
    n = acc.numel()
    std = float(acc.std(unbiased=False)) if n else float("nan")
    return EvalResult(
        mean=float(acc.mean()) if n else float("nan"), ci95=1.96 * std / math.sqrt(n) if n else float("nan"),
        std=std, episodes=n, n_way=n_way, k_shot=k_shot, q_query=q_query, seed=seed, split=split,
        algorithm=_learner_name(learner), inner_steps=steps, seconds=seconds,
        device=describe_device(dev), accuracies=acc.tolist(),
    )


def _predict(learner, batch, steps: Optional[int]) -> Tensor:
    """Predicted query labels ``[T, n_query]`` for a batch of episodes."""
    x_s, y_s, x_q, y_q = batch
    if isinstance(learner, ProtoNet):
        return learner.logits(x_s, y_s, x_q).argmax(-1)
    if isinstance(learner, Reptile):
        out = []
        for xs, ys, xq in zip(x_s, y_s, x_q):
            phi = learner.adapt(xs, ys, F.cross_entropy, steps=steps)
            out.append(learner.forward(phi, xq).argmax(-1))
        return torch.stack(out)
    _, preds = learner.task_losses(batch, F.cross_entropy, steps=steps)  # MAML, Pretrain
    return preds.argmax(-1)


# ============================================================================ the training loop
class TrainingDiverged(NonFiniteLossError):
    """The loss (or the weights) became NaN/inf; training stopped, the model is at its last good state."""

    def __init__(self, message: str, iteration: int, checkpoint: Optional[Path]) -> None:
        super().__init__(message)
        self.iteration, self.checkpoint = iteration, checkpoint


@dataclass
class History:
    """What a run recorded: per iteration the training loss and accuracy (%; NaN where the
    algorithm does not report one — Reptile), and the validation results ``(iteration, acc %, ci95)``."""

    loss: List[float] = field(default_factory=list)
    accuracy: List[float] = field(default_factory=list)
    val: List[Tuple[int, float, float]] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> Dict[str, Any]:
        return {"loss": list(self.loss), "accuracy": list(self.accuracy),
                "val": [list(v) for v in self.val], "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "History":
        return cls(list(d["loss"]), list(d["accuracy"]), [tuple(v) for v in d["val"]], float(d["seconds"]))


class FewShotTrainer:
    """Meta-train a Conv-4 with MAML, Reptile or ProtoNet on few-shot episodes, resumably.

    Args:
        config: a :class:`FewShotConfig` (e.g. from :func:`default_config`).
        train_data / val_data: the classes to train / validate on (a dataset with ``.images`` or a
            uint8 tensor ``[C, P, ch, H, W]``); by default ``config.dataset``'s "train" / "val"
            splits. ``val_data=False`` (or ``config.val_every=0``) turns validation off.
        run_dir: where ``config.json``, ``last.pt`` (resumable state) and ``best.pt`` (best
            validation weights) go; ``None`` keeps everything in memory (no checkpoints).
        resume: if ``run_dir`` holds a checkpoint, continue from it (its config must equal
            ``config``, else :class:`metalib.checkpoint.ConfigMismatchError`); ``False`` starts over
            and overwrites the run's checkpoints.
        device: where to train (default :func:`metalib.device.default_device`). On the CPU the
            trainer calls :func:`metalib.device.tune_cpu_allocator` (freed memory is reused, not
            returned to the OS: 1.04-1.7x faster Conv-4 steps; ``METALIB_CPU_ALLOCATOR=system`` opts out).
        progress: show a ``tqdm`` progress bar.

    One MAML iteration back-propagates task by task (:meth:`metalib.MAML.meta_backward`), so it
    needs the memory of one task's graph, not of the whole meta-batch.

    Reproducibility: the model is initialised from ``torch.manual_seed(config.seed)``; training
    episodes come from a generator seeded with ``config.seed``; validation and test episodes from
    their own seeded generators (so validating never changes the training run). Given the same
    device and thread count, a run interrupted and resumed ends with bit-identical weights to an
    uninterrupted one.
    """

    def __init__(
        self,
        config: FewShotConfig,
        train_data=None,
        val_data=None,
        run_dir: Optional[PathLike] = None,
        resume: bool = True,
        device: DeviceLike = None,
        progress: bool = True,
    ) -> None:
        from .data import EpisodeSampler

        if not isinstance(config, FewShotConfig):
            raise TypeError(f"config must be a FewShotConfig, got {type(config).__name__}")
        self.config = config
        self.device = default_device(device)
        if self.device.type == "cpu":
            tune_cpu_allocator()  # reuse freed activation memory: 1.04-1.7x faster Conv-4 steps on CPU
        self.progress = progress
        self.run_dir = Path(run_dir) if run_dir is not None else None
        train = _images(train_data if train_data is not None else load_split(config, "train", progress))
        self._check_images(train, "train_data")
        self.train_sampler = EpisodeSampler(train, config.train_way_, config.train_shot_, config.train_query,
                                            device=self.device)
        self.val_data = None
        if config.val_every and val_data is not False:
            self.val_data = _images(val_data if val_data is not None else load_split(config, "val", progress))
            self._check_images(self.val_data, "val_data")

        torch.manual_seed(config.seed)
        self.model = build_model(config).to(self.device)
        self.learner = build_learner(config, self.model)
        self.is_reptile = config.algorithm == "reptile"
        self.optimizer = None if self.is_reptile else torch.optim.Adam(self.model.parameters(), lr=config.meta_lr)
        self.scheduler = (torch.optim.lr_scheduler.StepLR(self.optimizer, config.lr_decay_every, config.lr_decay)
                          if self.optimizer is not None and config.lr_decay_every else None)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.iteration = 0
        self.history = History()
        self.best: Optional[Dict[str, Any]] = None      # {"iteration", "accuracy", "ci95"}
        self.best_state: Optional[Dict[str, Tensor]] = None
        self.last_checkpoint_iteration: Optional[int] = None

        if self.run_dir is not None:
            last = self.run_dir / "last.pt"
            if resume and last.exists():
                self._resume(last)
            else:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                for name in ("last.pt", "best.pt"):
                    (self.run_dir / name).unlink(missing_ok=True)
                ckpt.save_config(self.run_dir / "config.json", config.to_dict())

    def _check_images(self, images: Tensor, what: str) -> None:
        c = self.config
        if images.dim() != 5 or tuple(images.shape[2:]) != (c.in_channels, c.image_size, c.image_size):
            raise ValueError(f"{what} has images of shape {tuple(images.shape[2:])} per image, but the config "
                             f"says ({c.in_channels}, {c.image_size}, {c.image_size}) (in_channels, image_size)")

    # ------------------------------------------------------------------ state
    def state(self) -> Dict[str, Any]:
        """The complete resumable state (what ``last.pt`` holds)."""
        return {
            "config": self.config.to_dict(),
            "iteration": self.iteration,
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()) if self.optimizer is not None else None,
            "scheduler": copy.deepcopy(self.scheduler.state_dict()) if self.scheduler is not None else None,
            "generator": self.generator.get_state(),
            "rng": ckpt.rng_state(),
            "history": self.history.as_dict(),
            "best": dict(self.best) if self.best else None,
            "device": str(self.device),
        }

    def _load_core(self, state: Dict[str, Any]) -> None:
        """Model, optimiser, scheduler, episode generator, global RNG and iteration from ``state``."""
        self.model.load_state_dict(state["model"])
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        ckpt.set_rng_state(state["rng"])
        self.iteration = int(state["iteration"])

    def load_state(self, state: Dict[str, Any]) -> None:
        """Restore a state from :meth:`state` (or a checkpoint)."""
        self._load_core(state)
        self.history = History.from_dict(state["history"])
        self.best = dict(state["best"]) if state.get("best") else None

    def _resume(self, path: Path) -> None:
        cfg_file = self.run_dir / "config.json"
        if cfg_file.exists():
            ckpt.check_same_config(ckpt.load_config(cfg_file), self.config.to_dict(), self.run_dir)
        state = ckpt.load_checkpoint(path, map_location=self.device)
        ckpt.check_same_config(state["config"], self.config.to_dict(), path)
        try:
            self.load_state(state)
        except (KeyError, RuntimeError, ValueError, TypeError) as err:
            raise ckpt.CorruptCheckpointError(f"{path} does not fit this run ({err})") from err
        best = self.run_dir / "best.pt"
        if best.exists():
            self.best_state = ckpt.load_checkpoint(best, map_location=self.device)["model"]
        self.last_checkpoint_iteration = self.iteration
        self._log(f"resumed {self.config.describe()} from {path} at iteration {self.iteration}/{self.config.iterations}")

    def save(self) -> Optional[Path]:
        """Write ``last.pt`` (atomically); returns its path (None without a ``run_dir``)."""
        if self.run_dir is None:
            return None
        state = self.state()
        state["elapsed_seconds"] = self.history.seconds
        path = ckpt.save_checkpoint(self.run_dir / "last.pt", state)
        self.last_checkpoint_iteration = self.iteration
        return path

    def load_best(self) -> Optional[Dict[str, Any]]:
        """Put the best-validation weights into the model (if validation ran); returns ``best``."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        return self.best

    # ------------------------------------------------------------------ one iteration
    def _step(self, it: int) -> Tuple[float, float]:
        c = self.config
        batch = self.train_sampler.sample(c.meta_batch, generator=self.generator)
        if self.is_reptile:
            eps = self.learner.annealed_outer_lr(it, c.iterations, c.outer_lr_final)
            loss = self.learner.meta_step(batch, F.cross_entropy, outer_lr=eps)
            check_finite(loss.detach(), f"the query loss at iteration {it}")
            acc = float("nan")  # Reptile.meta_step reports the loss only
        else:
            self.optimizer.zero_grad(set_to_none=True)
            if isinstance(self.learner, ProtoNet):
                losses, out = self.learner.task_losses(batch)
                loss = losses.mean()
                check_finite(loss.detach(), f"the meta-loss at iteration {it}")
                loss.backward()
            else:  # per-task backward: one task's graph alive at a time (the textbook loop's memory)
                loss, out = self.learner.meta_backward(batch, F.cross_entropy, with_predictions=True)
                check_finite(loss, f"the meta-loss at iteration {it}")
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            acc = float((out.detach().argmax(-1) == batch[3]).float().mean()) * 100
        params = dict(self.model.named_parameters())
        finite = torch.stack([torch.isfinite(p).all() for p in params.values()])
        if not bool(finite.all()):  # one device sync per iteration
            bad = [n for n, ok in zip(params, finite.tolist()) if not ok]
            raise NonFiniteLossError(f"the weights became non-finite after the update at iteration {it} "
                                     f"({', '.join(bad[:3])}); the learning rate is probably too large.")
        return float(loss.detach()), acc

    def validate(self, episodes: Optional[int] = None) -> EvalResult:
        """Accuracy on the validation classes: ``val_episodes`` seeded episodes (``val_seed``),
        N-way K-shot as at test, ``test_query`` queries per class."""
        c = self.config
        if self.val_data is None:
            raise RuntimeError("this trainer has no validation data (val_data=False or val_every=0)")
        return evaluate(self.learner, self.val_data, c.n_way, c.k_shot, c.test_query,
                        episodes or c.val_episodes, c.val_seed, self._test_steps(), self.device, split="val")

    def test(self, data=None, episodes: Optional[int] = None, best: bool = True, progress: Optional[bool] = None) -> EvalResult:
        """The evaluation protocol on the test classes: ``test_episodes`` (600) seeded episodes
        (``test_seed``), ``test_query`` queries per class, MAML/Reptile with ``test_inner_steps``.

        ``best``: evaluate the best-validation weights (if validation ran), as the papers select models.
        """
        c = self.config
        if best:
            self.load_best()
        data = data if data is not None else load_split(c, "test", False)
        return evaluate(self.learner, data, c.n_way, c.k_shot, c.test_query, episodes or c.test_episodes,
                        c.test_seed, self._test_steps(), self.device, split="test",
                        progress=self.progress if progress is None else progress)

    def _test_steps(self) -> Optional[int]:
        return None if self.config.algorithm == "protonet" else self.config.test_steps

    # ------------------------------------------------------------------ the loop
    def _capture(self) -> Dict[str, Any]:
        """What :meth:`_restore` needs to undo an unfinished iteration (cheap: no history copy)."""
        return {
            "iteration": self.iteration,
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()) if self.optimizer is not None else None,
            "scheduler": copy.deepcopy(self.scheduler.state_dict()) if self.scheduler is not None else None,
            "generator": self.generator.get_state(),
            "rng": ckpt.rng_state(),
            "lengths": (len(self.history.loss), len(self.history.accuracy), len(self.history.val)),
            "seconds": self.history.seconds,
            "best": (dict(self.best) if self.best else None, self.best_state),
        }

    def _restore(self, good: Dict[str, Any]) -> None:
        self._load_core(good)
        n_loss, n_acc, n_val = good["lengths"]
        del self.history.loss[n_loss:], self.history.accuracy[n_acc:], self.history.val[n_val:]
        self.best, self.best_state = good["best"]

    def fit(self, until: Optional[int] = None) -> History:
        """Train until iteration ``until`` (default ``config.iterations``), from where the run stands.

        Interrupting (Ctrl-C, a notebook's "interrupt kernel") rolls the trainer back to the end of
        the last completed iteration (its validation and checkpoint included), writes ``last.pt``
        and re-raises ``KeyboardInterrupt``: calling ``fit()`` again — or building a new trainer on
        the same ``run_dir`` — continues exactly where it stopped, with nothing lost.

        Raises:
            TrainingDiverged: a loss or the weights became NaN/inf. The model is restored to the
                weights before the bad update; checkpoints on disk are left as they were (always finite).
        """
        c = self.config
        until = c.iterations if until is None else until
        if isinstance(until, bool) or not isinstance(until, int) or until > c.iterations:
            raise ValueError(f"until must be an int <= config.iterations={c.iterations}, got {until!r}")
        bar = _progress(c.iterations, self.progress, c.describe(), initial=self.iteration)
        if bar is not None and self.iteration < until:
            self._log(f"{c.describe()} on {describe_device(self.device)}: the bar shows loss/acc = means over the last "
                      f"20 iterations on the training episodes' queries"
                      + (f", val = accuracy on {c.val_episodes} seeded validation episodes every {c.val_every} "
                         "iterations" if self.val_data is not None else ""))
        start = time.perf_counter()
        base_seconds = self.history.seconds
        good: Optional[Dict[str, Any]] = None
        try:
            while self.iteration < until:
                good = self._capture()
                it = self.iteration
                try:
                    loss, acc = self._step(it)
                except NonFiniteLossError as err:
                    self._restore(good)
                    good = None
                    self._diverged(it, err)
                self.iteration = it + 1
                self.history.loss.append(loss)
                self.history.accuracy.append(acc)
                self.history.seconds = base_seconds + time.perf_counter() - start
                if self.val_data is not None and c.val_every and (
                        self.iteration % c.val_every == 0 or self.iteration == c.iterations):
                    self._validate_and_keep_best()
                if self.run_dir is not None and (
                        (c.checkpoint_every and self.iteration % c.checkpoint_every == 0) or self.iteration == until):
                    self.save()
                good = None  # the iteration and its bookkeeping are complete
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(self._postfix(), refresh=False)
        except KeyboardInterrupt:
            if good is not None:
                self._restore(good)  # interrupted inside an iteration: undo its partial work
            self.history.seconds = base_seconds + time.perf_counter() - start
            where = self.save()
            if bar is not None:
                bar.close()
                bar = None
            self._log(f"interrupted: {c.describe()} stopped after iteration {self.iteration}/{c.iterations}"
                      + (f"; state saved to {where}" if where else "")
                      + ". Call fit() again (or run the same command) to resume exactly from there.")
            raise
        finally:
            if bar is not None:
                bar.close()
        return self.history

    def _validate_and_keep_best(self) -> None:
        res = self.validate()
        self.history.val.append((self.iteration, res.mean, res.ci95))
        improved = self.best is None or res.mean > self.best["accuracy"]
        if improved:
            self.best = {"iteration": self.iteration, "accuracy": res.mean, "ci95": res.ci95}
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            if self.run_dir is not None:
                ckpt.save_checkpoint(self.run_dir / "best.pt", {
                    "config": self.config.to_dict(), "iteration": self.iteration, "model": self.best_state,
                    "rng": {}, "validation": res.as_dict(),
                })
        self._log(f"iteration {self.iteration}: validation {res.mean:.2f}% ± {res.ci95:.2f}% "
                  f"({res.episodes} seeded val episodes, {self.config.n_way}-way {self.config.k_shot}-shot)"
                  + (" — best so far" if improved else f" (best {self.best['accuracy']:.2f}% at {self.best['iteration']})"))

    def _diverged(self, it: int, err: Exception):
        where = None
        if self.run_dir is not None and (self.run_dir / "last.pt").exists():
            where = self.run_dir / "last.pt"
        c = self.config
        lrs = (f"meta_lr={c.meta_lr}" if not self.is_reptile else f"outer_lr={c.outer_lr}") + (
            f", inner_lr={c.inner_lr}" if c.algorithm != "protonet" else "")
        msg = (f"training stopped at iteration {it}: {err} The model was restored to its weights before "
               f"that update (iteration {it}). "
               + (f"The last good checkpoint on disk is {where} (iteration {self.last_checkpoint_iteration})"
                  if where else "No checkpoint was written (no run_dir, or none saved yet)")
               + (f"; the best validation weights are in {self.run_dir / 'best.pt'}" if self.best and self.run_dir else "")
               + f". Try smaller learning rates (now {lrs}) or check the data for NaN/inf.")
        self._log(msg)
        raise TrainingDiverged(msg, it, where) from err

    def _postfix(self) -> Dict[str, str]:
        h = self.history
        tail = h.loss[-20:]
        out = {"loss": f"{sum(tail) / len(tail):.3f}"}
        accs = [a for a in h.accuracy[-20:] if not math.isnan(a)]
        if accs:
            out["acc"] = f"{sum(accs) / len(accs):.1f}%"
        if h.val:
            out["val"] = f"{h.val[-1][1]:.1f}%"
        return out

    def _log(self, msg: str) -> None:
        if self.progress:
            from tqdm.auto import tqdm

            tqdm.write(msg, file=sys.stderr)

    def __repr__(self) -> str:
        return (f"FewShotTrainer({self.config.describe()}, iteration {self.iteration}/{self.config.iterations}, "
                f"device={self.device}, run_dir={self.run_dir})")


def _progress(total: int, enabled: bool, desc: str, initial: int = 0):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True)


# ============================================================================ shipped weights
def pretrained_learner(name: str, device: DeviceLike = None, directory: Optional[PathLike] = None):
    """``(learner, config)`` for shipped few-shot weights ``name`` (e.g. ``"protonet-omniglot-5w1s"``):
    the checksum-verified model wrapped in its algorithm with the settings it was trained with."""
    from .pretrained import pretrained as load_pretrained, pretrained_info

    kw = {} if directory is None else {"directory": directory}
    info = pretrained_info(name, **kw)
    if "config" not in info:
        raise ValueError(f"{name!r} is not a few-shot classifier (its manifest entry has no 'config')")
    config = FewShotConfig.from_dict(info["config"])
    model = load_pretrained(name, device=default_device(device), **kw)
    return build_learner(config, model), config


def evaluate_pretrained(name: str, data=None, episodes: Optional[int] = None, device: DeviceLike = None,
                        progress: bool = False, directory: Optional[PathLike] = None) -> EvalResult:
    """Re-measure shipped weights with the protocol their manifest records (same seeded test episodes)."""
    learner, config = pretrained_learner(name, device, directory)
    data = data if data is not None else load_split(config, "test", False)
    return evaluate(learner, data, config.n_way, config.k_shot, config.test_query,
                    episodes or config.test_episodes, config.test_seed,
                    None if config.algorithm == "protonet" else config.test_steps,
                    default_device(device), progress=progress)


def ship(name: str, trainer: FewShotTrainer, result: EvalResult, command: Optional[str] = None,
         note: str = "", directory: Optional[PathLike] = None,
         config: Optional[FewShotConfig] = None) -> Dict[str, Any]:
    """Save ``trainer``'s model (as evaluated in ``result``) to ``metalib/weights/`` via
    :func:`metalib.pretrained.save_pretrained`, with a manifest entry saying how it was made.

    ``config``: the config to record instead of the trainer's — e.g. a ProtoNet trained for 5-way
    validation, shipped for 20-way testing (only the test-time ``n_way`` may differ).
    """
    from .pretrained import save_pretrained

    c = trainer.config if config is None else config
    if config is not None:
        diff = {k for k, v in config.to_dict().items() if trainer.config.to_dict()[k] != v}
        if diff - {"n_way"} or (diff and c.algorithm != "protonet"):
            raise ValueError(f"ship(config=...) may only change n_way, and only for ProtoNet; it changes {sorted(diff)}")
    if (result.n_way, result.k_shot) != (c.n_way, c.k_shot):
        raise ValueError(f"the result is {result.n_way}-way {result.k_shot}-shot but the config {c.n_way}-way {c.k_shot}-shot")
    info = {
        "kind": "fewshot",
        "description": f"{c.describe()} Conv-4 ({c.hidden} filters), {c.splits} split",
        "algorithm": c.algorithm, "dataset": c.dataset, "n_way": c.n_way, "k_shot": c.k_shot,
        "first_order": c.first_order if c.algorithm == "maml" else None,
        "command": command or " ".join(shlex.quote(a) for a in sys.argv),
        "seed": c.seed,
        "iterations": trainer.iteration,
        "paper_iterations": default_config(c.algorithm, c.n_way, c.k_shot, c.dataset).iterations
        if c.dataset != "custom" else None,
        "selected_iteration": trainer.best["iteration"] if trainer.best else trainer.iteration,
        "device": describe_device(trainer.device),
        "torch": torch.__version__,
        "minutes": round(trainer.history.seconds / 60, 2),
        "metrics": {
            "test_accuracy": round(result.mean, 4), "ci95": round(result.ci95, 4), "std": round(result.std, 4),
            "episodes": result.episodes, "query_per_class": result.q_query, "seed": result.seed,
            "inner_steps": result.inner_steps, "split": f"{c.splits}/{result.split}",
            "how": "mean accuracy (%) over seeded test episodes, 95% CI = 1.96*std/sqrt(episodes)",
            "eval_seconds": round(result.seconds, 1), "eval_device": result.device,
        },
        "validation": trainer.best,
        "config": c.to_dict(),
        "note": note,
    }
    kw = {} if directory is None else {"directory": directory}
    return save_pretrained(name, trainer.model, "metalib.models:Conv4", model_kwargs(c), info=info, **kw)
