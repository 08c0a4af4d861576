"""The typed configuration of a few-shot run: :class:`FewShotConfig` (what every run has: the data,
the episodes, the outer optimiser, validation) and, declared in each learner's own file, its subclass
with the learner's hyperparameters (``MAMLConfig``: ``inner_lr``, ``inner_steps``, ...).

``FewShotConfig(algorithm="maml", ...)`` is a ``MAMLConfig``: the registered class's
``config_class`` says which. Everything else is derived from that one dataclass: the fields passed
to the learner's ``__init__`` (:meth:`metalib.algorithms.Learner.from_config`), the command-line
flags of ``scripts/train_fewshot.py``, the printed run config, ``config.json``, the checkpoints'
config and the weights manifest (:meth:`FewShotConfig.to_dict`). A learner's paper and budget
settings are instances of its config (with ``algorithm=""``: templates, completed by
:func:`metalib.config.default_config`). Configs saved before this (a flat union of every learner's
fields plus an ``options`` dict) still load: :meth:`FewShotConfig.from_dict` converts them.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import InitVar, dataclass
from typing import Any, ClassVar, Dict, Optional, Tuple

from ..data.protocol import TEST_SEED, VAL_SEED
from .base import entry

DATASETS = ("omniglot", "miniimagenet", "custom")

#: the learner fields of configs saved before per-learner configs (issue #23): dropped on loading
#: where the learner does not take them (they were saved for every learner, used by some)
LEGACY_FIELDS = ("inner_lr", "inner_steps", "test_inner_steps", "first_order", "outer_lr", "outer_lr_final",
                 "inner_optimizer")


def setting(default: Any, help: str, low: Optional[float] = None) -> Any:
    """A learner's hyperparameter: ``default``, a one-line ``help`` (the command-line flag's) and, for
    numbers, the lowest allowed value ``low``. ``bool``/``int``/``float``/``str`` fields are checked
    against the default's type; ranges beyond ``low`` are the learner's ``__init__``'s to check."""
    return dataclasses.field(default=default, metadata={"help": help, "low": low})


def retemplate(templates: Dict[Any, "FewShotConfig"], cls: type) -> Dict[Any, "FewShotConfig"]:
    """Another learner's paper/budget templates as ``cls`` templates: the fields both configs have
    (PLATIPUS and MetaGAN start a few-shot run from MAML's settings)."""
    def one(t):
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        return cls(**{f.name: getattr(t, f.name) for f in dataclasses.fields(t) if f.init and f.name in names})
    return {key: one(t) for key, t in templates.items()}


def config_class(algorithm: str) -> type:
    """The config dataclass of a registered algorithm (:class:`FewShotConfig` if its class declares none)."""
    return getattr(entry(algorithm).cls, "config_class", None) or FewShotConfig


def learner_fields(cls: type) -> Tuple[dataclasses.Field, ...]:
    """The fields a learner's config class adds to :class:`FewShotConfig` (its hyperparameters), but those
    it declares ``unused`` (Meta-SGD, a ``MAMLConfig`` whose step sizes are learned: ``inner_lr``)."""
    base = {f.name for f in dataclasses.fields(FewShotConfig)}
    return tuple(f for f in dataclasses.fields(cls) if f.name not in base and f.name not in cls.unused)


@dataclass(kw_only=True)
class FewShotConfig:
    """Everything that defines a few-shot training run (saved as ``config.json`` beside its checkpoints).

    Episodes: ``n_way``-way ``k_shot``-shot at test (and validation) time, with ``test_query``
    queries per class; training episodes are ``train_way``-way ``train_shot``-shot with
    ``train_query`` queries per class (``None``: as at test), ``meta_batch`` of them per iteration.
    The learner's hyperparameters are the fields of its class's ``config_class`` (a subclass of this
    one, declared in the learner's file); ``options={...}`` sets them too (as configs before issue #23).
    """

    algorithm: str = ""              # "" only in a learner's paper/budget templates
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
    # validation / test / checkpoints
    val_every: int = 500
    val_episodes: int = 200
    val_seed: int = VAL_SEED
    test_episodes: int = 600
    test_query: int = 15
    test_seed: int = TEST_SEED
    checkpoint_every: int = 100
    seed: int = 0
    options: InitVar[Optional[Dict[str, Any]]] = None  # the learner's settings by name (older configs' channel)
    #: fields this learner does not read (Reptile: the Adam rate and its schedule; Meta-SGD: MAML's
    #: ``inner_lr``): never printed, saved or passed, and a value other than the default is refused
    unused: ClassVar[Tuple[str, ...]] = ()

    def __new__(cls, *args: Any, **kwargs: Any) -> "FewShotConfig":
        # FewShotConfig(algorithm="maml", ...) is a MAMLConfig; a setting the learner does not take is one line
        if cls is FewShotConfig and kwargs.get("algorithm"):
            cls = config_class(kwargs["algorithm"])
        if kwargs:
            known = {f.name for f in dataclasses.fields(cls)} | {"options"}
            unknown = sorted(set(kwargs) - known)
            if unknown:
                raise ValueError(_no_such_setting(cls, kwargs.get("algorithm"), unknown))
        return object.__new__(cls)

    def __post_init__(self, options: Optional[Dict[str, Any]]) -> None:
        if options is not None:
            if not isinstance(options, dict):
                raise TypeError(f"options must be a dict of the learner's settings, got {type(options).__name__}")
            unknown = sorted(set(options) - {f.name for f in learner_fields(type(self))})
            if unknown:
                raise ValueError(_no_such_setting(type(self), self.algorithm, unknown))
            for k, v in options.items():
                setattr(self, k, v)
        if not self.algorithm and type(self) is FewShotConfig:
            raise ValueError("a FewShotConfig needs algorithm=... (a registered name)")
        if self.algorithm and config_class(self.algorithm) is not type(self):
            raise ValueError(f"{self.algorithm}'s config is a {config_class(self.algorithm).__name__}, "
                             f"not a {type(self).__name__}")
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(DATASETS)}; got {self.dataset!r}")
        for name in ("iterations", "image_size", "in_channels", "hidden", "n_way", "k_shot", "train_query",
                     "meta_batch", "lr_decay_every", "val_every", "val_episodes", "test_episodes", "test_query",
                     "checkpoint_every", "seed", "val_seed", "test_seed", "train_way", "train_shot"):
            v = getattr(self, name)
            if v is None and name in ("train_way", "train_shot"):
                continue
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{name} must be an int, got {v!r}")
            low = 1 if name in ("image_size", "in_channels", "hidden", "n_way", "k_shot", "meta_batch",
                                "test_query", "train_way", "train_shot") else 0
            if v < low:
                raise ValueError(f"{name} must be >= {low}, got {v}")
        for name in ("meta_lr", "lr_decay"):
            _check_number(name, getattr(self, name), 0)
        if self.lr_schedule not in ("step", "cosine"):
            raise ValueError(f"lr_schedule must be 'step' or 'cosine', got {self.lr_schedule!r}")
        if self.lr_schedule == "cosine" and not self.lr_decay_every:
            raise ValueError("lr_schedule='cosine' needs lr_decay_every >= 1 (the length of the anneal in iterations)")
        for f in learner_fields(type(self)):
            setattr(self, f.name, _check_setting(f, getattr(self, f.name)))
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for name in self.unused:
            if getattr(self, name) != defaults[name]:
                have = ", ".join(f.name for f in learner_fields(type(self))) or "none"
                raise ValueError(f"{self.algorithm or type(self).__name__} does not use {name} (got {getattr(self, name)!r}; "
                                 f"its settings beyond the run's: {have})")
        if self.algorithm:
            self.learner_class.check_config(self)

    @property
    def learner_class(self) -> type:
        return entry(self.algorithm).cls

    @property
    def train_way_(self) -> int:
        return self.train_way or self.n_way

    @property
    def train_shot_(self) -> int:
        return self.train_shot or self.k_shot

    @property
    def test_steps(self) -> int:
        """Inner steps at validation/test time (gradient-based learners); ``inner_steps`` if not set."""
        return getattr(self, "test_inner_steps", 0) or getattr(self, "inner_steps", 0)

    def learner_settings(self) -> Dict[str, Any]:
        """``{name: value}`` of the learner's hyperparameters (the fields its config class adds)."""
        return {f.name: getattr(self, f.name) for f in learner_fields(type(self))}

    def to_dict(self) -> Dict[str, Any]:
        """The config as JSON values (tuples as lists): what is printed, saved and compared."""
        return {k: v for k, v in json.loads(json.dumps(dataclasses.asdict(self))).items() if k not in self.unused}

    def used(self) -> Dict[str, Any]:
        """What a run prints: :meth:`to_dict` (a config holds only what its learner uses)."""
        return self.to_dict()

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "FewShotConfig":
        """A config from :meth:`to_dict`, or from a config saved before per-learner configs (a flat
        union of :data:`LEGACY_FIELDS` and an ``options`` dict): converted, the fields its learner does
        not take dropped."""
        d = dict(d)
        target = config_class(d["algorithm"]) if isinstance(d.get("algorithm"), str) and d["algorithm"] else cls
        names = {f.name for f in dataclasses.fields(target)}
        for k in (*LEGACY_FIELDS, *getattr(target, "unused", ())):  # saved for every learner, used by some
            if k in d and (k not in names or k in target.unused):
                del d[k]
        options = d.pop("options", None)
        if isinstance(options, dict):
            d = {**d, **options}
        elif options is not None:
            d["options"] = options  # refused with its type named
        return cls(**d)

    @classmethod
    def normalized(cls, d: Any) -> Any:
        """A saved config dict as :meth:`to_dict` writes it today (an older config converted), to compare
        with a run's; ``d`` itself where it is no valid config (the comparison then names what differs)."""
        try:
            return cls.from_dict(d).to_dict()
        except (ValueError, TypeError, KeyError, AttributeError):
            return d

    def describe(self) -> str:
        """One line: the algorithm and its episodes, e.g. for a progress bar or a table."""
        s = f"{self.algorithm} {self.dataset} {self.n_way}-way {self.k_shot}-shot"
        if "first_order" in self.learner_settings():
            s += f" ({'first' if getattr(self, 'first_order') else 'second'}-order)"
        return s


def _no_such_setting(cls: type, algorithm: Optional[str], unknown: list) -> str:
    have = ", ".join(f.name for f in learner_fields(cls)) or "none"
    return (f"{algorithm or cls.__name__} has no setting {', '.join(map(repr, unknown))} (unknown config key; its "
            f"settings beyond the run's: {have})")


def _check_number(name: str, v: Any, low: Optional[float]) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (low is not None and v < low):
        raise ValueError(f"{name} must be a finite number{f' >= {low}' if low is not None else ''}, got {v!r}")


def _check_setting(f: dataclasses.Field, v: Any) -> Any:
    """``v`` checked against the type of ``f``'s default (an int for a float field becomes a float)."""
    default, low = f.default, f.metadata.get("low")
    if isinstance(default, bool):
        if not isinstance(v, bool):
            raise TypeError(f"{f.name} must be true or false, got {v!r}")
    elif isinstance(default, int):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{f.name} must be an int, got {v!r}")
        if low is not None and v < low:
            raise ValueError(f"{f.name} must be >= {low}, got {v}")
    elif isinstance(default, float):
        _check_number(f.name, v, low)
        return float(v)
    elif isinstance(default, str) and not isinstance(v, str):
        raise TypeError(f"{f.name} must be a string, got {v!r}")
    if isinstance(v, (tuple, list, dict)):  # held as JSON holds it (lists), so a saved config compares equal
        return json.loads(json.dumps(v))
    return v
