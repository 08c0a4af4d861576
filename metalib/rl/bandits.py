r"""The bandit baselines RL² (Duan et al. 2016, Table 1) compares against, batched over trials.

Each plays ``B`` independent trials of ``n`` pulls on bandits ``probs [B, k]`` and returns the
rewards ``[B, n]`` and arms ``[B, n]``. Beliefs are the Beta(1, 1) posterior of each arm,
:math:`\mathrm{Beta}(1 + w_i, 1 + n_i - w_i)` after :math:`w_i` successes in :math:`n_i` pulls.

* ``random`` — a uniform arm every pull;
* ``greedy`` / ``epsilon_greedy`` — the arm of highest posterior mean :math:`(w_i + 1)/(n_i + 2)`,
  a uniform arm with probability ε (ties broken at random);
* ``ucb1`` (Auer et al. 2002) — each arm once, then :math:`\arg\max_i \hat\mu_i + c\sqrt{2\ln t / n_i}`;
* ``thompson`` (Thompson 1933) — a sample from each posterior, the arm of the largest.

* ``gittins_rule(gamma)`` (Gittins 1979) — the arm of the largest Gittins index of its posterior for
  discount γ (:func:`gittins_indices`). For discounted rewards over an infinite horizon it is the
  Bayes-optimal policy; for a finite trial of ``n`` pulls it is a heuristic whose γ is tuned per
  setting, as RL²'s official code did (γ ∈ {0.9, 0.99, 0.999, 0.9999}, the best one kept).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable, Dict, Optional, Tuple

import numpy as np

import torch
from torch import Tensor

from .envs import bandit_pull


def _argmax_random_ties(scores: Tensor, gen: Optional[torch.Generator]) -> Tensor:
    noise = torch.rand(scores.shape, generator=gen, dtype=scores.dtype) * 1e-6   # below any real gap
    return (scores + noise).argmax(-1)


def play(choose: Callable[[Tensor, Tensor, int, Optional[torch.Generator]], Tensor], probs: Tensor, n: int,
         generator: Optional[torch.Generator] = None) -> Tuple[Tensor, Tensor]:
    """Run a rule ``choose(successes [B, k], pulls [B, k], t, gen) -> arm [B]`` for ``n`` pulls;
    returns ``(rewards [B, n], arms [B, n])``."""
    B, k = probs.shape
    wins, pulls = torch.zeros(B, k, dtype=probs.dtype), torch.zeros(B, k, dtype=probs.dtype)
    R, A = [], []
    for t in range(n):
        arm = choose(wins, pulls, t, generator)
        r = bandit_pull(probs, arm, generator)
        wins.scatter_add_(1, arm[:, None], r[:, None])
        pulls.scatter_add_(1, arm[:, None], torch.ones_like(r)[:, None])
        R.append(r), A.append(arm)
    return torch.stack(R, 1), torch.stack(A, 1)


def random_rule(wins, pulls, t, gen):
    return torch.randint(wins.shape[1], (wins.shape[0],), generator=gen)


def epsilon_greedy_rule(eps: float):
    def rule(wins, pulls, t, gen):
        greedy = _argmax_random_ties((wins + 1) / (pulls + 2), gen)
        explore = torch.rand(wins.shape[0], generator=gen) < eps
        return torch.where(explore, random_rule(wins, pulls, t, gen), greedy)
    return rule


def ucb1_rule(c: float = 1.0):
    def rule(wins, pulls, t, gen):
        untried = pulls == 0
        bonus = c * torch.sqrt(2 * torch.log(torch.tensor(float(max(t, 1)))) / pulls.clamp(min=1))
        score = torch.where(untried, torch.full_like(wins, 1e9), wins / pulls.clamp(min=1) + bonus)
        return _argmax_random_ties(score, gen)
    return rule


def thompson_rule(wins, pulls, t, gen):
    # Beta(a, b) = X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b); torch's Gamma takes no generator, so
    # integer shapes are sampled as sums of exponentials (a, b are integers here)
    a, b = wins + 1, pulls - wins + 1
    m = int(max(a.max().item(), b.max().item()))
    e = -torch.log(torch.rand(*wins.shape, 2, m, generator=gen, dtype=wins.dtype).clamp(min=1e-12))
    idx = torch.arange(m, dtype=wins.dtype)
    x = (e[..., 0, :] * (idx < a[..., None])).sum(-1)
    y = (e[..., 1, :] * (idx < b[..., None])).sum(-1)
    return _argmax_random_ties(x / (x + y), gen)


BASELINES: Dict[str, Callable] = {
    "random": random_rule,
    "greedy": epsilon_greedy_rule(0.0),
    "epsilon_greedy": epsilon_greedy_rule(0.1),
    "ucb1": ucb1_rule(1.0),
    "thompson": thompson_rule,
}


def gittins_indices(gamma: float, depth: int, grid: int = 2001) -> Tensor:
    r"""Gittins indices of a Bernoulli arm with a Beta(1, 1) prior, by calibration (Gittins 1979;
    Gittins, Glazebrook & Weber 2011, ch. 8): ``G [depth, depth]`` (float64), ``G[a, b]`` the index after
    ``a`` successes and ``b`` failures (``a + b < depth``; other entries NaN).

    The index of a posterior state :math:`s` is the reward :math:`\lambda` of a known arm that makes
    retiring to it forever and pulling the unknown arm (and then acting optimally) equally good:

    .. math:: V_\lambda(a, b) = \max\Big(\frac{\lambda}{1-\gamma},\;
       p\,(1 + \gamma V_\lambda(a+1, b)) + (1-p)\,\gamma V_\lambda(a, b+1)\Big),
       \quad p = \frac{a+1}{a+b+2},

    computed by backward induction over the layers :math:`a + b = m` for all :math:`\lambda` of a
    grid of ``grid`` values in [0, 1] at once, from :math:`a + b = \text{depth}`, where the arm is
    no longer learned about: :math:`V_\lambda = \max(\lambda, p)/(1-\gamma)` (error
    :math:`O(\gamma^{\text{depth}})`). The index is the root of the decreasing difference
    "continue − retire" in :math:`\lambda`, linearly interpolated between grid points."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be an int >= 1, got {depth!r}")
    if not (isinstance(gamma, (int, float)) and 0 < gamma < 1):
        raise ValueError(f"gamma must be a discount factor in (0, 1), got {gamma!r}")
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 3:
        raise ValueError(f"grid must be an int >= 3, got {grid!r}")
    lam = np.linspace(0.0, 1.0, grid)
    retire = lam / (1.0 - gamma)                                   # [grid]
    G = np.full((depth, depth), np.nan)
    a = np.arange(depth + 1)[:, None]
    V = np.maximum(lam[None, :], (a + 1) / (depth + 2)) / (1.0 - gamma)   # layer a + b = depth, [depth + 1, grid]
    for m in range(depth - 1, -1, -1):
        a = np.arange(m + 1)[:, None]                              # successes a, failures m - a
        p = (a + 1) / (m + 2)
        cont = p * (1.0 + gamma * V[1:m + 2]) + (1 - p) * gamma * V[:m + 1]
        d = cont - retire[None, :]                                 # decreasing in lambda; > 0 at lambda = 0
        j = np.argmax(d <= 0, axis=1)                              # first grid point where retiring is as good
        j = np.where((d <= 0).any(axis=1), j, grid - 1)
        j0 = np.maximum(j - 1, 0)
        rows = np.arange(m + 1)
        d0, d1 = d[rows, j0], d[rows, j]
        frac = np.where(d0 > d1, d0 / np.where(d0 > d1, d0 - d1, 1.0), 0.0)
        G[rows, m - rows] = lam[j0] + frac * (lam[j] - lam[j0])
        V = np.maximum(cont, retire[None, :])
    return torch.from_numpy(G)


@lru_cache(maxsize=8)
def _cached_indices(gamma: float, depth: int) -> Tensor:
    return gittins_indices(gamma, depth)


def gittins_rule(gamma: float, depth: int = 102):
    """The Gittins index rule for discount ``gamma``: the arm of the largest index of its Beta posterior
    (ties at random). Indices are computed once per ``(gamma, depth)``; ``depth`` must exceed the trial's
    number of pulls (a rule asked for a state beyond it says so)."""
    G = _cached_indices(float(gamma), int(depth))

    def rule(wins, pulls, t, gen):
        a, b = wins.long(), (pulls - wins).long()
        if int((a + b).max()) >= depth:
            raise ValueError(f"gittins_rule(depth={depth}) met an arm pulled {int((a + b).max())} times; "
                             f"use a depth above the trial's length")
        return _argmax_random_ties(G[a, b].to(wins.dtype), gen)
    return rule
