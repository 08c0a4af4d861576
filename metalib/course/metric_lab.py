"""Notebook 09's computations: the metric-based family on one episode, and the exercise's check.

Three rules that classify a query by comparing it with the support set — attention over every
support image (Matching Networks), distance to a class mean (Prototypical Networks), a learned
similarity (Relation Networks)::

    from metalib.course import metric_lab as ml
    learners = ml.load_family(k_shot=1)                # {"Matching Networks": ..., "ProtoNet": ..., ...}
    ep = fewshot_lab.sample_episode(data, n_way=5, k_shot=1, n_query=2, seed=0, index=0)
    cmp = ml.compare_episode(learners, ep)             # EpisodeComparison: every rule on every query
    cmp.views["ProtoNet"].values[3]                    # what that rule compares, for query 3
    ml.agreement(learners, data, n_way=5, k_shot=1, episodes=50)   # how often the rules agree
    ml.check_matching_attention(fn)                    # the exercise (✓ or ✗ naming the mistake)

What each rule "compares" is read from the learner's :meth:`~metalib.algorithms.Learner.explain`
(no test of the learner's type): ``attention`` over the support images (Matching Networks), the
squared distances to ``prototypes`` (ProtoNet), relation ``scores`` in (0, 1) (Relation Networks);
any other learner shows its class probabilities.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import fewshot
from ..algorithms import Learner, squared_distances
from ..data import EpisodeSampler
from ..evaluation import images_of, mean_ci, seeded_episodes
from .exercises import Feedback
# the exercise lives with its solution, check and common mistakes in metalib.course.exercises.matching_attention
from .exercises.matching_attention import EXERCISE, check_matching_attention, matching_attention

__all__ = ["FAMILY", "load_family", "MethodView", "EpisodeComparison", "compare_episode", "Agreement",
           "agreement", "matching_attention", "check_matching_attention", "EXERCISE", "Feedback"]

# the shipped weights of the three rules, by shot (Omniglot 5-way)
FAMILY = {
    k: {"Matching Networks": f"matching-omniglot-5w{k}s", "ProtoNet": f"protonet-omniglot-5w{k}s",
        "Relation Networks": f"relation-omniglot-5w{k}s"}
    for k in (1, 5)
}

# what the bars of each kind of rule show, and which way is "more like this class"
KINDS = {
    "attention": ("attention on each support image (Matching Networks)", "higher"),
    "distance": ("squared distance to each class prototype (ProtoNet)", "lower"),
    "score": ("relation score of each class, 0 to 1 (Relation Networks)", "higher"),
    "probability": ("probability of each class", "higher"),
}




def load_family(k_shot: int = 1, device=None) -> Dict[str, Learner]:
    """``{rule name: shipped learner}`` of the Omniglot 5-way ``k_shot`` weights (``k_shot`` 1 or 5)."""
    if k_shot not in FAMILY:
        raise ValueError(f"shipped metric-based weights exist for k_shot 1 and 5, got {k_shot!r}")
    return {label: fewshot.pretrained_learner(name, device)[0] for label, name in FAMILY[k_shot].items()}


# ============================================================================ one episode, every rule
@dataclass
class MethodView:
    """One rule on one episode (CPU tensors).

    kind: ``"attention"`` (values ``[Q, N*K]``: the attention over the support images),
    ``"distance"`` (``[Q, N]``: squared distances to the prototypes), ``"score"`` (``[Q, N]``:
    relation scores) or ``"probability"`` (``[Q, N]``: the softmax of the logits).
    logits ``[Q, N]``; predictions ``[Q]``; class_values ``[Q, N]``: the per-class quantity the
    prediction is the arg-max (distances: arg-min) of — for attention, its sum over each class's
    support images (:math:`\\hat y`).
    """

    kind: str
    values: Tensor
    class_values: Tensor
    logits: Tensor
    predictions: Tensor
    y_q: Tensor

    @property
    def accuracy(self) -> float:
        """Fraction (0-1) of the episode's queries this rule classifies correctly."""
        return float((self.predictions == self.y_q).float().mean())

    @property
    def description(self) -> str:
        return KINDS[self.kind][0]

    @property
    def better(self) -> str:
        """``"higher"`` or ``"lower"``: which way of the values means "more like this class"."""
        return KINDS[self.kind][1]


@dataclass
class EpisodeComparison:
    """Every rule of ``views`` (``{name: MethodView}``) on one episode: ``x_s [N*K, ch, H, W]``,
    ``y_s [N*K]``, ``x_q [Q, ...]``, ``y_q [Q]`` (CPU)."""

    x_s: Tensor
    y_s: Tensor
    x_q: Tensor
    y_q: Tensor
    views: Dict[str, MethodView] = field(default_factory=dict)

    @property
    def n_way(self) -> int:
        return int(self.y_s.max()) + 1

    @property
    def k_shot(self) -> int:
        return self.y_s.numel() // self.n_way

    def agree(self) -> Tensor:
        """``[Q]`` bool: every rule predicts the same class for the query."""
        preds = torch.stack([v.predictions for v in self.views.values()])
        return (preds == preds[0]).all(0)


def _view(learner: Learner, x_s: Tensor, y_s: Tensor, x_q: Tensor, y_q: Tensor) -> MethodView:
    v = learner.explain(x_s, y_s, x_q)
    logits = v["logits"].detach().cpu()
    n = logits.shape[-1]
    if "attention" in v:
        att = v["attention"].detach().cpu()
        kind, values = "attention", att
        class_values = att @ F.one_hot(y_s.cpu(), n).to(att.dtype)
    elif "prototypes" in v:
        kind = "distance"
        values = class_values = squared_distances(v["z_q"].detach(), v["prototypes"].detach()).cpu()
    elif "scores" in v:
        kind, values = "score", v["scores"].detach().cpu()
        class_values = values
    else:
        kind, values = "probability", logits.softmax(-1)
        class_values = values
    return MethodView(kind, values, class_values, logits, logits.argmax(-1), y_q.cpu())


@torch.no_grad()
def compare_episode(learners: Mapping[str, Learner], episode: Sequence[Tensor], task: int = 0) -> EpisodeComparison:
    """Classify one episode (``task`` of a batch from :func:`metalib.course.fewshot_lab.sample_episode`,
    or one task without the task dimension) with every learner; see :class:`EpisodeComparison`."""
    x_s, y_s, x_q, y_q = episode
    if y_s.dim() == 2:
        x_s, y_s, x_q, y_q = x_s[task], y_s[task], x_q[task], y_q[task]
    n = int(y_s.max()) + 1
    views = {}
    for name, learner in learners.items():
        learner.check_task(n)
        views[name] = _view(learner, x_s, y_s, x_q, y_q)
    return EpisodeComparison(x_s.cpu(), y_s.cpu(), x_q.cpu(), y_q.cpu(), views)


@dataclass
class Agreement:
    """How often the rules agree on the queries of seeded episodes (accuracies in %).

    accuracy ``{name: %}`` and ci95 ``{name: %}``: mean over the episodes and its 95% CI
    1.96·σ/√n (:func:`metalib.evaluation.mean_ci` — the numbers :func:`metalib.evaluation.evaluate`
    gives on the same episodes); all_agree: % of queries on which every rule predicts the same class;
    all_agree_right / all_agree_wrong: % of queries where they agree and are right / wrong;
    only_right ``{name: %}``: % of queries that this rule alone gets right. Measured on ``episodes``
    seeded test episodes (``seed``), N-way K-shot, ``q_query`` queries per class.
    """

    accuracy: Dict[str, float]
    ci95: Dict[str, float]
    all_agree: float
    all_agree_right: float
    all_agree_wrong: float
    only_right: Dict[str, float]
    queries: int
    episodes: int
    n_way: int
    k_shot: int
    q_query: int
    seed: int
    seconds: float

    def __str__(self) -> str:
        return (f"{self.queries} queries of {self.episodes} seeded test episodes ({self.n_way}-way {self.k_shot}-shot, "
                f"{self.q_query} queries/class, seed {self.seed}): all rules agree on {self.all_agree:.1f}% "
                f"(right {self.all_agree_right:.1f}%, wrong {self.all_agree_wrong:.1f}%)")


@torch.no_grad()
def agreement(learners: Mapping[str, Learner], data, n_way: int = 5, k_shot: int = 1, q_query: int = 15,
              episodes: int = 50, seed: int = fewshot.TEST_SEED) -> Agreement:
    """Classify the first ``episodes`` seeded test episodes (the evaluator's, for ``seed``) with every
    learner and count agreements (see :class:`Agreement`)."""
    if len(learners) < 2:
        raise ValueError("agreement needs at least two learners")
    start = time.perf_counter()
    preds_all: List[Tensor] = []
    truth: List[Tensor] = []
    device = next(iter(learners.values())).device
    sampler = EpisodeSampler(images_of(data), n_way, k_shot, q_query, device=device)
    for x_s, y_s, x_q, y_q in seeded_episodes(sampler, episodes, seed):   # the evaluator's episodes
        preds = torch.stack([learner.predict(x_s, y_s, x_q, n_way).argmax(-1).cpu() for learner in learners.values()])
        preds_all.append(preds.flatten(1))
        truth.append(y_q.cpu().flatten())
    preds = torch.cat(preds_all, 1)                     # [methods, all queries], episode-major
    y = torch.cat(truth)
    correct = preds == y
    per_episode = correct.view(len(learners), episodes, -1).double().mean(-1) * 100   # [methods, episodes]
    stats = [mean_ci(acc) for acc in per_episode]
    same = (preds == preds[0]).all(0)
    names = list(learners)
    only = {name: 100 * float((correct[i] & ~torch.cat([correct[:i], correct[i + 1:]]).any(0)).float().mean())
            for i, name in enumerate(names)}
    return Agreement(
        accuracy={name: stats[i][0] for i, name in enumerate(names)},
        ci95={name: stats[i][1] for i, name in enumerate(names)},
        all_agree=100 * float(same.float().mean()), all_agree_right=100 * float((same & correct[0]).float().mean()),
        all_agree_wrong=100 * float((same & ~correct[0]).float().mean()), only_right=only, queries=int(y.numel()),
        episodes=episodes, n_way=n_way, k_shot=k_shot, q_query=q_query, seed=seed,
        seconds=time.perf_counter() - start)
