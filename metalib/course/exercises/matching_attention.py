"""Exercise of ``09_metric_based_learning``: Matching Networks' attention and label mixture (Vinyals et al. 2016, eq. 1-2)."""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import CheckFailed, Exercise, Feedback, Mistake, call_checked, close, run_check


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
    if close(got, F.one_hot((a @ one_hot).argmax(1), n).double()) or close(got, F.one_hot(y_s[cos.argmax(1)], n).double()):
        return ("your ŷ is one-hot — a hard argmax (the nearest support image's label, or the best class); ŷ is the "
                "soft mixture Σᵢ a(x̂, xᵢ) yᵢ, a probability over the classes that training can differentiate.")
    means = torch.stack([z_s[y_s == c].mean(0) for c in range(n)])                      # [n, d]
    to_means = F.normalize(z_q, dim=-1) @ F.normalize(means, dim=-1).T                  # [Q, n]
    if close(got, to_means.softmax(1)) or close(got, to_means):
        return ("you compared each query with the class *means* (ProtoNet's prototypes); Matching Networks attend "
                "to every support image: softmax over the N·K cosines, then ŷ = a @ F.one_hot(y_s, n_way).")
    dist2 = ((z_q[:, None] - z_s[None]) ** 2).sum(-1)                                   # [Q, N·K]
    if any(close(got, (-d).softmax(1) @ one_hot) for d in (dist2, dist2.sqrt())):
        return ("you used a negative Euclidean distance as the similarity; Matching Networks use the cosine "
                "similarity c(a, b) = a·b / (‖a‖ ‖b‖) (eq. 1) — it ignores the embeddings' lengths.")
    t = _temperature(got, cos, one_hot)
    if t is not None:
        return (f"your cosines are scaled by a temperature (× {t:.3g}) before the softmax; eq. 1 uses the plain "
                "cosine, softmax(c) — no factor (the model was trained without one).")
    err = float((got - a @ one_hot).abs().max())
    return f"ŷ differs from the reference by up to {err:.2e} (cosine → softmax over the support → one-hot mixture)."


def _temperature(got: Tensor, cos: Tensor, one_hot: Tensor):
    """The factor t (not 1) with ``got == softmax(t · cos) @ one_hot``, or None: a grid over 10^-2 … 10^2,
    refined by golden-section search on log t."""
    def err(log_t: float) -> float:
        return float(((cos * math.exp(log_t)).softmax(1) @ one_hot - got).abs().max())

    grid = [i / 50 for i in range(-100, 101)]                       # log10 t from -2 to 2
    best = min(grid, key=lambda g: err(g * math.log(10))) * math.log(10)
    lo, hi = best - math.log(10) / 50, best + math.log(10) / 50
    r = (math.sqrt(5) - 1) / 2
    for _ in range(60):
        m1, m2 = hi - r * (hi - lo), lo + r * (hi - lo)
        lo, hi = (lo, m2) if err(m1) < err(m2) else (m1, hi)
    log_t = (lo + hi) / 2
    if abs(log_t) > 1e-3 and close(got, (cos * math.exp(log_t)).softmax(1) @ one_hot):
        return math.exp(log_t)
    return None


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


EXERCISE = Exercise(
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
        Mistake("a temperature (the cosines × 10)", lambda z_s, y_s, z_q, n: _mix((10 * _cos(z_q, z_s)).softmax(1), y_s, n),
                "temperature (× 10)"),
        Mistake("a temperature (the cosines / 0.3)", lambda z_s, y_s, z_q, n: _mix((_cos(z_q, z_s) / 0.3).softmax(1), y_s, n),
                "temperature (× 3.33)"),
        Mistake("the cosine to the class means", lambda z_s, y_s, z_q, n: (F.normalize(z_q, dim=-1) @ F.normalize(
                torch.stack([z_s[y_s == c].mean(0) for c in range(n)]), dim=-1).T).softmax(1), "class *means*"),
        Mistake("the negative Euclidean distance",
                lambda z_s, y_s, z_q, n: _mix((-torch.cdist(z_q, z_s)).softmax(1), y_s, n), "negative Euclidean"),
        Mistake("the negative squared Euclidean distance",
                lambda z_s, y_s, z_q, n: _mix((-torch.cdist(z_q, z_s) ** 2).softmax(1), y_s, n), "negative Euclidean"),
        Mistake("a hard argmax of ŷ", lambda z_s, y_s, z_q, n: F.one_hot(matching_attention(z_s, y_s, z_q, n).argmax(1),
                n).to(z_q.dtype), "hard argmax"),
        Mistake("the nearest support image's label", lambda z_s, y_s, z_q, n: F.one_hot(y_s[_cos(z_q, z_s).argmax(1)],
                n).to(z_q.dtype), "hard argmax"),
        Mistake("a float32 one-hot (`.float()`, as in section 2's float32 cell)",
                lambda z_s, y_s, z_q, n: _cos(z_q, z_s).softmax(1) @ F.one_hot(y_s, n).float(), "float64 tensors"),
    ),
)
