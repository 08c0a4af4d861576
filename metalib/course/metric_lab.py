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

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import fewshot
from ..algorithms import Learner, squared_distances
from ..data import EpisodeSampler
from ..evaluation import images_of, mean_ci, seeded_episodes
from .exercises import CheckFailed, Exercise, Feedback, Mistake, call_checked, close, register, run_check

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


# ============================================================================ the exercise
def matching_attention(z_s, y_s, z_q, n_way):
    r"""Matching Networks' prediction (Vinyals et al. 2016, eq. 1-2): cosine similarities between each
    query and each support embedding, a softmax over the support set, the attention-weighted sum of
    one-hot labels. ``z_s [N*K, d]``, ``y_s [N*K]`` (any order), ``z_q [Q, d]`` -> :math:`\hat y` ``[Q, N]``."""
    cos = F.normalize(z_q, dim=-1) @ F.normalize(z_s, dim=-1).T        # [Q, N*K]
    a = cos.softmax(dim=1)                                              # over the support images
    return a @ F.one_hot(y_s, n_way).to(a.dtype)                        # [Q, N]


def _matching_case(seed: int, n_way: int, k_shot: int, n_query: int, d: int):
    gen = torch.Generator().manual_seed(seed)
    y_s = torch.arange(n_way).repeat_interleave(k_shot)
    y_s = y_s[torch.randperm(y_s.numel(), generator=gen)]            # shuffled: not sorted by class
    scale = torch.rand(n_way * k_shot, 1, generator=gen, dtype=torch.float64) * 3 + 0.5   # norms differ
    z_s = torch.randn(n_way * k_shot, d, generator=gen, dtype=torch.float64) * scale
    z_q = torch.randn(n_query, d, generator=gen, dtype=torch.float64) * (torch.rand(n_query, 1, generator=gen,
                                                                                   dtype=torch.float64) * 3 + 0.5)
    return z_s, y_s, z_q


def _diagnose(got: Tensor, z_s: Tensor, y_s: Tensor, z_q: Tensor, n: int, k: int) -> str:
    """Name the mistake behind a wrong answer (compared with the usual wrong versions)."""
    one_hot = F.one_hot(y_s, n).double()
    cos = F.normalize(z_q, dim=-1) @ F.normalize(z_s, dim=-1).T
    a = cos.softmax(1)
    dot = z_q @ z_s.T
    if got.shape == a.shape and got.shape != (z_q.shape[0], n) and close(got, a):
        return ("you returned the attention over the N·K support images; finish with the label mixture: "
                "ŷ = Σᵢ a(x̂, xᵢ) yᵢ with one-hot yᵢ, i.e. `a @ F.one_hot(y_s, n_way)` -> [n_query, n_way].")
    if got.shape == a.T.shape and got.shape != (z_q.shape[0], n) and close(got, a.T):
        return "you returned the attention transposed ([N·K, n_query]); make it [n_query, N·K], then mix the labels."
    if got.shape == (n, z_q.shape[0]) and got.shape != (z_q.shape[0], n):
        return f"the shape is [n_way, n_query] = {tuple(got.shape)}; return one row per query: [n_query, n_way]."
    if got.shape != (z_q.shape[0], n):
        return f"expected ŷ of shape [n_query, n_way] = {(z_q.shape[0], n)}, got {tuple(got.shape)}."
    if k == 1 and close(got, a):
        return ("you returned the attention over the N·K support images, not the label mixture: with K = 1 the "
                "shape fits, but column i is support image i, which is class i only if the support set is sorted by "
                "class. Mix the labels: ŷ = a @ F.one_hot(y_s, n_way).")
    if close(got, dot.softmax(1) @ one_hot):
        return ("you used the dot product z_q · z_s; Matching Networks use the cosine similarity — divide by both "
                "norms (F.normalize each side, or F.cosine_similarity) so long embeddings do not dominate.")
    if close(got, (F.normalize(z_q, dim=-1) @ z_s.T).softmax(1) @ one_hot) or \
            close(got, (z_q @ F.normalize(z_s, dim=-1).T).softmax(1) @ one_hot):
        return "only one side is normalised: the cosine divides the dot product by the norms of *both* embeddings."
    if close(got, cos.softmax(0) @ one_hot):
        return ("the softmax runs over the wrong axis (over the queries, dim=0): the attention of one query must "
                "sum to 1 over the support images — softmax over dim=1 of the [n_query, N·K] similarities.")
    if close(got, cos @ one_hot):
        return "the softmax is missing: the attention is softmax(cosine similarities) over the support images."
    if close(got, (a @ one_hot).log()):
        return "you returned log ŷ; return the probabilities ŷ themselves (each row sums to 1)."
    if close(got, a.view(-1, n, k).sum(-1)) or close(got, a.view(-1, k, n).sum(1)):
        return ("your sum over each class's support images assumes the support set is sorted by class; mix the "
                "one-hot labels instead: ŷ = a @ F.one_hot(y_s, n_way) works for any order.")
    if close(got, a @ one_hot / k):
        return "you averaged the attention over a class's K images; ŷ is the sum (a probability: rows sum to 1)."
    err = float((got - a @ one_hot).abs().max())
    return f"ŷ differs from the reference by up to {err:.2e} (cosine → softmax over the support → one-hot mixture)."


def check_matching_attention(fn: Callable) -> Feedback:
    """Exercise of ``09_metric_based_learning``: ``matching_attention(z_s, y_s, z_q, n_way)`` returns
    ŷ ``[n_query, n_way]``: cosine similarities → softmax over the support images → mixture of the
    one-hot labels. Compared with a loop over queries and support images; a wrong answer is matched
    against the usual mistakes (dot product instead of cosine, softmax over the wrong axis, the
    attention returned without the label mixture, a support set assumed sorted, ...)."""
    name = "matching_attention"

    def body() -> str:
        for seed, (n, k, q, d) in enumerate(((5, 1, 7, 6), (3, 4, 5, 8), (20, 2, 9, 5))):
            z_s, y_s, z_q = _matching_case(seed, n, k, q, d)
            before = (z_s.clone(), y_s.clone(), z_q.clone())
            out = call_checked(name, fn, z_s, y_s, z_q, n)
            if not isinstance(out, Tensor):
                raise CheckFailed(f"return a tensor ŷ [n_query, n_way]; got {type(out).__name__}.")
            if not (torch.equal(z_s, before[0]) and torch.equal(y_s, before[1]) and torch.equal(z_q, before[2])):
                raise CheckFailed("an input was modified in place; compute new tensors instead.")
            # independent computation: loops over queries and support images, in plain Python floats
            ref = torch.zeros(q, n, dtype=torch.float64)
            for j in range(q):
                cos = [float(z_q[j] @ z_s[i]) / (float(z_q[j].norm()) * float(z_s[i].norm())) for i in range(n * k)]
                e = [math.exp(c) for c in cos]
                for i in range(n * k):
                    ref[j, int(y_s[i])] += e[i] / sum(e)
            got = out.detach().double()
            if not close(got, ref):
                raise CheckFailed(_diagnose(got, z_s, y_s, z_q, n, k))
        return ("ŷ = softmax(cosine) over the support, mixed with one-hot labels — for 1- to 4-shot, 3- to "
                "20-way, support in any order; every row sums to 1.")

    return run_check(name, body)


# ---------------------------------------------------------------------------- common mistakes
def _cos(z_q: Tensor, z_s: Tensor) -> Tensor:
    return F.normalize(z_q, dim=-1) @ F.normalize(z_s, dim=-1).T


def _mix(a: Tensor, y_s: Tensor, n: int) -> Tensor:
    return a @ F.one_hot(y_s, n).to(a.dtype)


def _inplace(z_s, y_s, z_q, n):
    z_s.mul_(2.0)
    return matching_attention(z_s, y_s, z_q, n)


EXERCISE = register(Exercise(
    name="matching_attention", notebook="09_metric_based_learning", solution=matching_attention,
    check=check_matching_attention,
    mistakes=(
        Mistake("the dot product instead of the cosine", lambda z_s, y_s, z_q, n: _mix((z_q @ z_s.T).softmax(1), y_s, n),
                "dot product"),
        Mistake("the softmax over the queries (dim=0)", lambda z_s, y_s, z_q, n: _mix(_cos(z_q, z_s).softmax(0), y_s, n),
                "wrong axis"),
        Mistake("the attention returned without the one-hot mixture", lambda z_s, y_s, z_q, n: _cos(z_q, z_s).softmax(1),
                "attention over the N·K support images"),
        Mistake("only the query normalised",
                lambda z_s, y_s, z_q, n: _mix((F.normalize(z_q, dim=-1) @ z_s.T).softmax(1), y_s, n),
                "only one side is normalised"),
        Mistake("no softmax", lambda z_s, y_s, z_q, n: _mix(_cos(z_q, z_s), y_s, n), "softmax is missing"),
        Mistake("log ŷ returned", lambda z_s, y_s, z_q, n: _mix(_cos(z_q, z_s).softmax(1), y_s, n).log(), "log ŷ"),
        Mistake("a support set assumed sorted by class",
                lambda z_s, y_s, z_q, n: _cos(z_q, z_s).softmax(1).view(len(z_q), n, -1).sum(-1), "sorted by class"),
        Mistake("[n_way, n_query] (transposed)", lambda z_s, y_s, z_q, n: _mix(_cos(z_q, z_s).softmax(1), y_s, n).T,
                "[n_way, n_query]"),
        Mistake("the class's attention averaged, not summed",
                lambda z_s, y_s, z_q, n: _mix(_cos(z_q, z_s).softmax(1), y_s, n) / (len(y_s) // n),
                "averaged the attention"),
        Mistake("an input changed in place", _inplace, "modified in place"),
    ),
))
