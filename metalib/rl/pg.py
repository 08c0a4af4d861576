r"""Policy-gradient pieces shared by MAML-RL and RL²: discounted returns, rllab's linear feature
baseline, and the REINFORCE surrogate.

Trajectories are padded to a common horizon ``H``: every per-step tensor is ``[..., N, H]``
(``N`` trajectories; leading dims = tasks) with a 0/1 ``mask`` marking the steps actually taken.

The estimator (Williams 1992): for :math:`J(\theta) = \mathbb{E}_{\tau\sim\pi_\theta}[\sum_t r_t]`,

.. math:: \nabla_\theta J = \mathbb{E}\Big[\sum_t \nabla_\theta \log \pi_\theta(a_t|s_t)\,(G_t - b(s_t))\Big],
   \qquad G_t = \sum_{t'\ge t} \gamma^{t'-t} r_{t'},

unbiased for :math:`\gamma = 1` and any baseline :math:`b` that does not depend on :math:`a_t`;
:func:`pg_surrogate` is the loss whose gradient is its sample mean (with a minus sign).
"""
from __future__ import annotations

import torch
from torch import Tensor


def discounted_returns(rewards: Tensor, mask: Tensor, gamma: float) -> Tensor:
    r"""Rewards-to-go :math:`G_t = \sum_{t' \ge t} \gamma^{t'-t} r_{t'}` along the last dim:
    ``rewards``, ``mask`` ``[..., H]`` -> ``[..., H]`` (0 where ``mask`` is 0)."""
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    r = rewards * mask
    out = torch.zeros_like(r)
    running = torch.zeros_like(r[..., 0])
    for t in range(r.shape[-1] - 1, -1, -1):
        running = r[..., t] + gamma * running
        out[..., t] = running
    return out * mask


def baseline_features(obs: Tensor) -> Tensor:
    r"""rllab's ``LinearFeatureBaseline`` features of each step, used by MAML's code:
    :math:`[o, o^2, t/100, (t/100)^2, (t/100)^3, 1]` with :math:`o` clipped to [-10, 10];
    ``obs [..., H, d]`` -> ``[..., H, 2d + 4]``."""
    o = obs.clamp(-10.0, 10.0)
    H = obs.shape[-2]
    al = (torch.arange(H, dtype=obs.dtype, device=obs.device) / 100.0).expand(*obs.shape[:-1]).unsqueeze(-1)
    return torch.cat([o, o * o, al, al ** 2, al ** 3, torch.ones_like(al)], dim=-1)


def fit_linear_baseline(features: Tensor, returns: Tensor, mask: Tensor, reg: float = 1e-5) -> Tensor:
    r"""Ridge regression of the returns on the features over the valid steps of one batch:
    :math:`w = (F^\top F + \lambda I)^{-1} F^\top G` (``reg`` = :math:`\lambda`, rllab's ``reg_coeff``),
    then the baseline's values :math:`F w`. ``features [N, H, f]``, ``returns``, ``mask`` ``[N, H]``
    -> baseline ``[N, H]`` (0 on padded steps). Solved in float64; the fit is treated as a constant."""
    F = (features * mask.unsqueeze(-1)).reshape(-1, features.shape[-1]).detach().double()
    G = (returns * mask).reshape(-1).detach().double()
    A = F.T @ F + reg * torch.eye(F.shape[-1], dtype=F.dtype)
    w = torch.linalg.solve(A, F.T @ G)
    return (features.detach().double() @ w).to(returns.dtype) * mask


def advantages(returns: Tensor, baseline: Tensor, mask: Tensor, normalize: bool = True) -> Tensor:
    r""":math:`A_t = G_t - b_t` over the valid steps of a batch ``[N, H]``; ``normalize`` (rllab's
    ``center_adv``, on in MAML's code) rescales them to mean 0 and std 1 over the batch's valid steps."""
    a = (returns - baseline) * mask
    if normalize:
        n = mask.sum()
        mean = a.sum() / n
        std = (((a - mean) * mask) ** 2).sum().div(n).sqrt()
        a = (a - mean) / (std + 1e-8) * mask
    return a.detach()


def pg_surrogate(logp: Tensor, adv: Tensor, mask: Tensor) -> Tensor:
    r"""The REINFORCE loss :math:`-\frac{1}{|\mathrm{valid}|}\sum_{n,t} \log\pi(a_{nt}|s_{nt})\,A_{nt}`
    over the last two dims ``[..., N, H]`` -> ``[...]``; its negative gradient is the sample-mean
    policy gradient per step (rllab's ``surr_obj``). ``adv`` must be a constant (detached)."""
    return -(logp * adv * mask).sum(dim=(-2, -1)) / mask.sum(dim=(-2, -1))
