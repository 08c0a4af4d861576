"""The configuration of a few-shot run: :class:`FewShotConfig`, the papers' settings
(:func:`default_config`) and the learner a config builds (:func:`build_learner`).

Below :mod:`metalib.fewshot` (the trainer) and :mod:`metalib.pretrained` (shipped weights), which
both read it, so neither needs the other to rebuild a learner from a saved config.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from torch import nn

from . import algorithms
from .data.protocol import TEST_SEED, VAL_SEED

DATASETS = ("omniglot", "miniimagenet", "custom")


# ============================================================================ configuration
@dataclass
class FewShotConfig:
    """Everything that defines a few-shot training run (saved as ``config.json`` beside its checkpoints).

    Episodes: ``n_way``-way ``k_shot``-shot at test (and validation) time, with ``test_query``
    queries per class; training episodes are ``train_way``-way ``train_shot``-shot with
    ``train_query`` queries per class (``None``: as at test), ``meta_batch`` of them per iteration.
    The learner's hyperparameters are the fields its class lists in ``config_keys`` (MAML:
    ``inner_lr``, ``inner_steps``, ``first_order``) and ``options`` (anything else it takes).
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
    # outer optimiser (Adam) for the learners that use it
    meta_lr: float = 1e-3
    lr_decay_every: int = 0          # halve (x lr_decay) the Adam lr every that many iterations; 0 = never
    lr_decay: float = 0.5
    # "step": the above; "cosine": anneal meta_lr -> meta_lr * lr_decay over the first lr_decay_every
    # iterations along a half cosine, then hold it (budget schedules, issue #29)
    lr_schedule: str = "step"
    # inner loop (optimisation-based learners)
    inner_lr: float = 0.0
    inner_steps: int = 0
    test_inner_steps: int = 0
    first_order: bool = False
    # Reptile's outer step
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
    options: Dict[str, Any] = field(default_factory=dict)  # algorithm-specific settings (JSON values)

    def __post_init__(self) -> None:
        algorithms.entry(self.algorithm)  # a registered algorithm, or a ValueError naming them
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
        if not isinstance(self.options, dict):
            raise TypeError(f"options must be a dict of algorithm settings, got {type(self.options).__name__}")
        if self.lr_schedule not in ("step", "cosine"):
            raise ValueError(f"lr_schedule must be 'step' or 'cosine', got {self.lr_schedule!r}")
        if self.lr_schedule == "cosine" and not self.lr_decay_every:
            raise ValueError("lr_schedule='cosine' needs lr_decay_every >= 1 (the length of the anneal in iterations)")
        self.learner_class.check_config(self)

    @property
    def learner_class(self) -> type:
        return algorithms.entry(self.algorithm).cls

    @property
    def train_way_(self) -> int:
        return self.train_way or self.n_way

    @property
    def train_shot_(self) -> int:
        return self.train_shot or self.k_shot

    @property
    def test_steps(self) -> int:
        """Inner steps at validation/test time (gradient-based learners); ``inner_steps`` if not set."""
        return self.test_inner_steps or self.inner_steps

    #: the fields only some learners take: a run uses those its class lists in ``config_keys``
    #: (``test_inner_steps`` with ``inner_steps``); the others are neither printed nor meaningful for it
    LEARNER_FIELDS = ("inner_lr", "inner_steps", "test_inner_steps", "first_order", "outer_lr", "outer_lr_final",
                      "inner_optimizer")

    def used(self) -> Dict[str, Any]:
        """:meth:`to_dict` without the :data:`LEARNER_FIELDS` this run's learner does not take (what a run prints)."""
        keys = set(self.learner_class.config_keys)
        if "inner_steps" in keys:
            keys.add("test_inner_steps")
        return {k: v for k, v in self.to_dict().items() if k not in self.LEARNER_FIELDS or k in keys}

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
        if "first_order" in self.learner_class.config_keys:
            s += f" ({'first' if self.first_order else 'second'}-order)"
        return s


def paper_settings() -> Dict[Tuple[str, str, int, int], Dict[str, Any]]:
    """``{(algorithm, dataset, n_way, k_shot): settings}`` of every registered algorithm (each
    algorithm's file gives its paper's settings and their sources)."""
    out = {}
    for name, (cls, _) in algorithms.learner_registry().items():
        for (dataset, n, k), s in cls.paper_settings.items():
            out[(name, dataset, n, k)] = dict(s)
    return out


def budget_settings() -> Dict[Tuple[str, str, int, int], Dict[str, Any]]:
    """``{(algorithm, dataset, n_way, k_shot): settings}``: the CPU-budget schedules (each learner's
    ``budget_settings``, chosen on the validation split by ``benchmarks/bench_time_to_accuracy.py``;
    issue #29). ``iterations`` there is the length of the schedule (about 30 CPU-minutes on one thread)."""
    out = {}
    for name, (cls, _) in algorithms.learner_registry().items():
        for (dataset, n, k), s in getattr(cls, "budget_settings", {}).items():
            out[(name, dataset, n, k)] = dict(s)
    return out


def default_config(algorithm: str, n_way: int = 5, k_shot: int = 1, dataset: str = "omniglot",
                   settings: str = "paper", **overrides: Any) -> FewShotConfig:
    """The paper's settings for ``algorithm`` on ``dataset`` N-way K-shot (the algorithm's
    ``paper_settings``; where the paper has none for this N/K, those of the nearest N/K), with
    ``overrides`` applied on top. A registry name that pins settings (``"fomaml"`` = MAML with
    ``first_order=True``) gives its class's name with those settings.

    ``settings="budget"``: the learner's ``budget_settings`` for this dataset/N/K (a schedule for a
    CPU budget, chosen on the validation split; issue #29) on top of the paper's; a ValueError if it has none."""
    if settings not in ("paper", "budget"):
        raise ValueError(f"settings must be 'paper' or 'budget', got {settings!r}")
    e = algorithms.entry(algorithm)
    fields = {f.name for f in dataclasses.fields(FewShotConfig)}
    name = e.name
    if e.fixed and set(e.fixed) <= fields:
        name, overrides = e.cls.name, {**e.fixed, **overrides}
    base: Dict[str, Any] = dict(algorithm=name, dataset=dataset, n_way=n_way, k_shot=k_shot)
    if dataset == "miniimagenet":
        base.update(image_size=84, in_channels=3)
    table = e.cls.paper_settings
    if (dataset, n_way, k_shot) in table:
        base.update(table[(dataset, n_way, k_shot)])
    elif dataset != "custom":
        near = [k for k in table if k[0] == dataset]
        if near:
            base.update(table[min(near, key=lambda k: (abs(k[1] - n_way), abs(k[2] - k_shot)))])
    base.setdefault("iterations", 1000)
    if settings == "budget":
        budget = getattr(e.cls, "budget_settings", {})
        if (dataset, n_way, k_shot) not in budget:
            have = ", ".join(f"{d} {n}-way {k}-shot" for d, n, k in budget) or "none"
            raise ValueError(f"{algorithm} has no budget settings for {dataset} {n_way}-way {k_shot}-shot (it has: {have})")
        base.update(budget[(dataset, n_way, k_shot)])
    base.update(overrides)
    return FewShotConfig(**base)


def model_kwargs(config: FewShotConfig) -> Dict[str, Any]:
    """What :meth:`metalib.algorithms.Learner.default_model` is built with."""
    return dict(in_channels=config.in_channels, image_size=config.image_size, hidden=config.hidden,
                n_way=config.n_way)


def build_learner(config: FewShotConfig, model: Optional[nn.Module] = None) -> algorithms.Learner:
    """The learner of ``config`` (its algorithm, settings and, unless given, its default network)."""
    e = algorithms.entry(config.algorithm)
    if model is None:
        model = e.cls.default_model(**model_kwargs(config))
    return e.cls.from_config(config, model, **e.fixed)
