"""The configuration of a few-shot run: :class:`FewShotConfig`, the papers' settings
(:func:`default_config`) and the learner a config builds (:func:`build_learner`).

Below :mod:`metalib.fewshot` (the trainer) and :mod:`metalib.pretrained` (shipped weights), which
both read it, so neither needs the other to rebuild a learner from a saved config.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional, Tuple

from torch import nn

from . import algorithms
from .algorithms.settings import DATASETS, FewShotConfig, config_class  # noqa: F401  (the config lives below)


def _as_dict(template: FewShotConfig) -> Dict[str, Any]:
    """A paper/budget template's fields that differ from its class's defaults."""
    def plain(v):  # to_dict() writes tuples as lists
        return list(v) if isinstance(v, tuple) else v

    default = {f.name: plain(f.default) for f in dataclasses.fields(template) if f.default is not dataclasses.MISSING}
    return {k: v for k, v in template.to_dict().items() if k != "algorithm" and (k not in default or v != default[k])}


def templates(algorithm: str, which: str = "paper_settings") -> Dict[Tuple[str, int, int], FewShotConfig]:
    """``{(dataset, n_way, k_shot): template}`` of one registered name, from its class's table ``which``.

    A key with a fourth element, ``(dataset, n, k, name)``, belongs to that registered name only
    (``"fomaml"`` in MAML's file). A registry name that pins settings inherits its class's paper
    settings but not its budget schedules, nor does a subclass: a schedule is searched per learner,
    and MAML's would be the wrong one for first-order MAML or MetaGAN."""
    e = algorithms.entry(algorithm)
    # a budget schedule was searched for one class: a subclass (ANIL, MetaGAN of MAML) has its own or none
    table = vars(e.cls).get(which, {}) if which == "budget_settings" else getattr(e.cls, which, {})
    own = {key[:3]: s for key, s in table.items() if len(key) == 4 and key[3] == e.name}
    if which == "budget_settings" and e.fixed:
        return own
    return {**{key: s for key, s in table.items() if len(key) == 3}, **own}


def paper_settings(which: str = "paper_settings") -> Dict[Tuple[str, str, int, int], Dict[str, Any]]:
    """``{(algorithm, dataset, n_way, k_shot): settings}`` of every registered algorithm (each
    algorithm's file gives its paper's settings and their sources): the fields its templates set."""
    return {(name, dataset, n, k): _as_dict(s) for name in algorithms.learner_registry()
            for (dataset, n, k), s in templates(name, which).items()}


def budget_settings() -> Dict[Tuple[str, str, int, int], Dict[str, Any]]:
    """``{(algorithm, dataset, n_way, k_shot): settings}``: the CPU-budget schedules (each learner's
    ``budget_settings``, chosen on the validation split by ``benchmarks/bench_time_to_accuracy.py``;
    issue #29). ``iterations`` there is the length of the schedule (about 30 CPU-minutes on one thread)."""
    return paper_settings("budget_settings")


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
    cls = config_class(algorithm)
    name = e.name
    if e.fixed and set(e.fixed) <= {f.name for f in dataclasses.fields(cls)}:
        name, overrides = e.cls.name, {**e.fixed, **overrides}
    table = templates(algorithm, "paper_settings")
    key = (dataset, n_way, k_shot)
    if settings == "budget":
        table = templates(algorithm, "budget_settings")
        if key not in table:
            have = ", ".join(f"{d} {n}-way {k}-shot" for d, n, k in table) or "none"
            raise ValueError(f"{algorithm} has no budget settings for {dataset} {n_way}-way {k_shot}-shot (it has: {have})")
    elif key not in table:
        near = [k for k in table if k[0] == dataset] if dataset != "custom" else []
        key = min(near, key=lambda k: (abs(k[1] - n_way), abs(k[2] - k_shot))) if near else None
    base: Dict[str, Any] = dict(iterations=1000) if key is None else _as_dict(table[key])
    base.update(algorithm=name, dataset=dataset, n_way=n_way, k_shot=k_shot)
    if dataset == "miniimagenet":
        base.setdefault("image_size", 84)
        base.setdefault("in_channels", 3)
    return FewShotConfig(**{**base, **overrides})


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
