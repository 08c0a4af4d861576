r"""The bandit baselines RL² (Duan et al. 2016, Table 1) compares against, batched over trials.

Each plays ``B`` independent trials of ``n`` pulls on bandits ``probs [B, k]`` and returns the
rewards ``[B, n]`` and arms ``[B, n]``. Beliefs are the Beta(1, 1) posterior of each arm,
:math:`\mathrm{Beta}(1 + w_i, 1 + n_i - w_i)` after :math:`w_i` successes in :math:`n_i` pulls.

* ``random`` — a uniform arm every pull;
* ``greedy`` / ``epsilon_greedy`` — the arm of highest posterior mean :math:`(w_i + 1)/(n_i + 2)`,
  a uniform arm with probability ε (ties broken at random);
* ``ucb1`` (Auer et al. 2002) — each arm once, then :math:`\arg\max_i \hat\mu_i + c\sqrt{2\ln t / n_i}`;
* ``thompson`` (Thompson 1933) — a sample from each posterior, the arm of the largest.

Gittins indices are not included (the finite-horizon Bayes-optimal index needs a dynamic program
per (n, k); RL²'s table lists them as the reference).
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

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
