"""The notebooks' exercises, each in one place: its reference solution, its automatic check and its
common mistakes (one module per exercise, e.g. :mod:`metalib.course.exercises.inner_step`).

A check calls the student's function on a few cases, compares it with an independent computation and
returns a :class:`Feedback` — shown as a one-paragraph message in a notebook, truthy when solved::

    from metalib.course.exercises import check_inner_step, solution
    check_inner_step(inner_step)     # ✓ ... or ✗ <what is wrong> + a hint
    solution("inner_step")           # prints the reference solution (try first!)

=================  ============================  ==============================
exercise           notebook                      check
=================  ============================  ==============================
split_task         00_welcome                    :func:`check_split_task`
sample_sinusoid    01_sinusoid_tasks             :func:`check_sinusoid_sampler`
inner_step         02_maml_from_scratch          :func:`check_inner_step`
reptile_update     03_reptile_and_comparison     :func:`check_reptile_update`
mean_ci95          04_few_shot_data              :func:`check_mean_ci95`
proto_logits       05_prototypical_networks      :func:`check_proto_logits`
adapt_ce           06_maml_on_omniglot           :func:`check_adapt_ce`
episodes_for_ci    07_miniimagenet               :func:`check_episodes_for_ci`
anil_adapt         08_compare_and_next           :func:`check_anil_adapt`
matching_attention 09_metric_based_learning      :func:`check_matching_attention`
metasgd_step       10_learning_the_update        :func:`check_metasgd_step`
lrua_write         11_model_based_learning       :func:`check_lrua_write`
kl_diagonal        12_generative_meta_learning   :func:`check_kl_diagonal`
=================  ============================  ==============================

Every notebook's *Solution* block shows the source of its exercise's reference solution, and
``tests/test_exercise_solutions.py`` checks that they are the same code, that it passes its check,
and that every listed :class:`Mistake` fails it with a message that names it. Other course modules
add their exercises with :func:`register`.
"""
from __future__ import annotations

from typing import Callable, Dict, Mapping, Optional, Union

from . import (
    adapt_ce, anil_adapt, episodes_for_ci, gaussian_kl, inner_step, lrua_write, matching_attention, mean_ci95,
    metasgd_step, proto_logits, reptile_update, sample_sinusoid, split_task,
)
from .adapt_ce import check_adapt_ce
from .anil_adapt import check_anil_adapt
from .base import (
    STUDENT_HINT, CheckFailed, Exercise, Feedback, Mistake, as_float, call_checked, close, run_check, stuck_hint,
)
from .episodes_for_ci import check_episodes_for_ci
from .gaussian_kl import check_kl_diagonal
from .inner_step import check_inner_step
from .lrua_write import check_lrua_write
from .matching_attention import check_matching_attention
from .mean_ci95 import check_mean_ci95
from .metasgd_step import check_metasgd_step
from .proto_logits import check_proto_logits
from .reptile_update import check_reptile_update
from .sample_sinusoid import check_sinusoid_sampler
from .split_task import check_split_task

__all__ = [
    "Feedback", "CheckFailed", "call_checked", "run_check", "close", "as_float", "Mistake", "Exercise",
    "REGISTRY", "EXERCISES", "register", "get", "solution", "stuck_hint", "STUDENT_HINT",
    "check_split_task", "check_sinusoid_sampler", "check_inner_step", "check_reptile_update", "check_mean_ci95",
    "check_proto_logits", "check_adapt_ce", "check_episodes_for_ci", "check_anil_adapt", "check_matching_attention",
    "check_metasgd_step", "check_lrua_write", "check_kl_diagonal",
]

#: every exercise by name (the order of the notebooks)
REGISTRY: Dict[str, Exercise] = {}


def register(exercise: Exercise) -> Exercise:
    """Add an exercise to :data:`REGISTRY` (so that :func:`solution` prints it and the tests check it)."""
    if not isinstance(exercise, Exercise):
        raise TypeError(f"register() takes a metalib.course.exercises.Exercise, got {type(exercise).__name__}")
    if exercise.name in REGISTRY and REGISTRY[exercise.name] is not exercise:
        raise ValueError(f"an exercise named {exercise.name!r} is registered already")
    REGISTRY[exercise.name] = exercise
    return exercise


for _module in (split_task, sample_sinusoid, inner_step, reptile_update, mean_ci95, proto_logits, adapt_ce,
                episodes_for_ci, anil_adapt, matching_attention, metasgd_step, lrua_write, gaussian_kl):
    register(_module.EXERCISE)


def get(name: str) -> Exercise:
    """The registered exercise ``name`` (``KeyError`` naming the others if there is none)."""
    if name not in REGISTRY:
        raise KeyError(f"no exercise named {name!r}; there are: {', '.join(REGISTRY)}")
    return REGISTRY[name]


class _Solutions(Mapping):
    """``{name: reference solution function}`` — a live view of :data:`REGISTRY`."""

    def __getitem__(self, name: str) -> Callable:
        return REGISTRY[name].solution

    def __iter__(self):
        return iter(REGISTRY)

    def __len__(self) -> int:
        return len(REGISTRY)


#: ``{name: reference solution}`` of every registered exercise
EXERCISES: Mapping[str, Callable] = _Solutions()


def solution(name: str, show: bool = True,
             exercises: Optional[Mapping[str, Union[Callable, Exercise]]] = None) -> Optional[str]:
    """Print (``show=True``) or return the source of the reference solution of exercise ``name``
    (from ``exercises`` — ``{name: function or Exercise}`` — if given, else the registry)."""
    import inspect

    if exercises is None:
        src = get(name).source()
    else:
        if name not in exercises:
            raise KeyError(f"no exercise named {name!r}; there are: {', '.join(exercises)}")
        item = exercises[name]
        src = item.source() if isinstance(item, Exercise) else inspect.getsource(item)
    if show:
        print(src)
        return None
    return src
