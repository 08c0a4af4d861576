r"""MAML for reinforcement learning (Finn, Abbeel & Levine 2017, §3.2 and §5.3), on 2-D navigation.

The algorithm is :func:`inner_step` and :func:`meta_loss` below. For a task :math:`\mathcal{T}_i`
(a goal), sample :math:`K` trajectories :math:`\mathcal{D}_i` with :math:`\pi_\theta` and take one
policy-gradient step (eq. 1 with the REINFORCE loss of eq. 4):

.. math:: \phi_i = \theta - \alpha \nabla_\theta \mathcal{L}_{\mathcal{T}_i}(\pi_\theta),\qquad
   \mathcal{L}_{\mathcal{T}_i}(\pi) = -\frac{1}{|\mathcal{D}_i|}\sum_{(s_t,a_t)\in\mathcal{D}_i}
   \log\pi(a_t|s_t)\,\big(G_t - b_i(s_t)\big)

with :math:`b_i` rllab's linear feature baseline fitted on :math:`\mathcal{D}_i`
(:func:`metalib.rl.pg.fit_linear_baseline`) and normalised advantages, as in the paper's code.
Then sample :math:`\mathcal{D}'_i` with :math:`\pi_{\phi_i}` and minimise over :math:`\theta`
(eq. 3) :math:`\sum_i \mathcal{L}_{\mathcal{T}_i}(\pi_{\phi_i(\theta)})` on :math:`\mathcal{D}'_i`,
differentiating *through* the inner step (second order).

**Substitutes, documented**: the paper's outer step is TRPO (KL step 0.01); here it is Adam on
the plain policy-gradient surrogate of eq. 3 (no trust region). Like the paper's implementation,
the meta-gradient ignores that :math:`\mathcal{D}_i` itself was sampled with :math:`\pi_\theta`
(the term later added by ProMP / DiCE); the inner step is exact REINFORCE.

Policies are pure functions of a parameter dict (:func:`init_policy`, :func:`policy_logp`) whose
weights may carry a leading task dimension ``[T, ...]``, so the adapted policies of a whole
meta-batch roll out in one batched pass.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from . import envs
from .pg import advantages, baseline_features, discounted_returns, fit_linear_baseline, pg_surrogate

Params = Dict[str, Tensor]


@dataclass
class Batch:
    """Padded trajectories of ``T`` tasks x ``N`` trajectories x ``H`` steps: ``obs [T, N, H, 2]``
    (the state an action was taken in), ``actions [T, N, H, 2]`` (policy units, unclipped),
    ``rewards``, ``mask`` ``[T, N, H]``, ``goals [T, 2]``."""
    obs: Tensor
    actions: Tensor
    rewards: Tensor
    mask: Tensor
    goals: Tensor

    def returns(self) -> Tensor:
        """Undiscounted return of each trajectory ``[T, N]``."""
        return (self.rewards * self.mask).sum(-1)


def inner_step(params: Params, batch: Batch, alpha: float, gamma: float = 0.99,
               create_graph: bool = True) -> Params:
    r"""One MAML inner step per task, :math:`\phi_i = \theta - \alpha\nabla_\theta\mathcal{L}_{\mathcal{T}_i}(\pi_\theta)`
    (REINFORCE with the linear baseline fitted per task; module docstring). ``params``: shared
    :math:`\theta` (no task dim) or per-task ``[T, ...]``; returns per-task :math:`\phi` ``[T, ...]``,
    a differentiable function of ``params`` when ``create_graph``."""
    T = batch.goals.shape[0]
    if params["log_std"].dim() == 1:   # shared theta -> one copy per task, so that the gradient of the
        params = {k: v.unsqueeze(0).expand(T, *v.shape) for k, v in params.items()}  # summed losses
    adv = task_advantages(batch, gamma)                                    # [T, N, H], constants
    losses = pg_surrogate(policy_logp(params, batch.obs, batch.actions), adv, batch.mask)  # [T]
    # each task's loss depends only on its own slice, so the gradient of the sum is the per-task gradients
    names = list(params)
    grads = torch.autograd.grad(losses.sum(), [params[k] for k in names], create_graph=create_graph)
    return {k: params[k] - alpha * g for k, g in zip(names, grads)}


def meta_loss(theta: Params, pre: Batch, post_sampler, alpha: float, gamma: float = 0.99,
              first_order: bool = False) -> Tuple[Tensor, Batch]:
    r"""Eq. 3: the mean over tasks of :math:`\mathcal{L}_{\mathcal{T}_i}(\pi_{\phi_i(\theta)})` on
    trajectories :math:`\mathcal{D}'_i` that ``post_sampler(phi)`` samples with the adapted policies.
    Returns ``(loss (0-dim), post-update batch)``."""
    phi = inner_step(theta, pre, alpha, gamma, create_graph=not first_order)
    with torch.no_grad():
        post = post_sampler({k: v.detach() for k, v in phi.items()})
    loss = pg_surrogate(policy_logp(phi, post.obs, post.actions), task_advantages(post, gamma), post.mask)
    return loss.mean(), post


# ----------------------------------------------------------------------------------------- policy
def init_policy(hidden: Sequence[int] = (100, 100), obs_dim: int = 2, act_dim: int = 2, init_log_std: float = 0.0,
                generator: Optional[torch.Generator] = None) -> Params:
    """A Gaussian MLP policy (the paper's: two ReLU layers of 100, state-independent log-std):
    ``{"w0" [in, h], "b0" [h], ..., "log_std" [act_dim]}``, weights Xavier-uniform, biases 0."""
    sizes = [obs_dim, *hidden, act_dim]
    p: Params = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        bound = math.sqrt(6.0 / (a + b))
        p[f"w{i}"] = (torch.rand(a, b, generator=generator) * 2 - 1) * bound
        p[f"b{i}"] = torch.zeros(b)
    p["log_std"] = torch.full((act_dim,), float(init_log_std))
    return p


def policy_mean(params: Params, obs: Tensor) -> Tensor:
    """Mean action ``[..., M, act]`` of ``obs [..., M, obs]``; weights ``[in, out]`` or ``[T, in, out]``
    (then ``obs [T, M, in]``)."""
    n = sum(1 for k in params if k.startswith("w"))
    h = obs
    for i in range(n):
        h = h @ params[f"w{i}"] + params[f"b{i}"].unsqueeze(-2)
        if i < n - 1:
            h = torch.relu(h)
    return h


def policy_logp(params: Params, obs: Tensor, actions: Tensor) -> Tensor:
    r""":math:`\log\pi(a|s)` of a diagonal Gaussian, summed over action dims: ``obs [T, N, H, d]``,
    ``actions [T, N, H, a]`` -> ``[T, N, H]``."""
    T, N, H, d = obs.shape
    mean = policy_mean(params, obs.reshape(T, N * H, d)).reshape(T, N, H, -1)
    log_std = params["log_std"]
    log_std = log_std.reshape(T, 1, 1, -1) if log_std.dim() == 2 else log_std
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z * z - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def task_advantages(batch: Batch, gamma: float = 0.99, normalize: bool = True) -> Tensor:
    """Per task: returns-to-go minus the linear baseline fitted on that task's trajectories ``[T, N, H]``."""
    G = discounted_returns(batch.rewards, batch.mask, gamma)
    feats = baseline_features(batch.obs)
    out = []
    for i in range(G.shape[0]):
        b = fit_linear_baseline(feats[i], G[i], batch.mask[i])
        out.append(advantages(G[i], b, batch.mask[i], normalize))
    return torch.stack(out)


# ---------------------------------------------------------------------------------------- sampling
@torch.no_grad()
def rollout(params: Params, goals: Tensor, n_traj: int, horizon: int = envs.HORIZON,
            generator: Optional[torch.Generator] = None, deterministic: bool = False) -> Batch:
    """Sample ``n_traj`` trajectories per goal ``goals [T, 2]`` with the policy ``params`` (shared or
    per-task ``[T, ...]``), all at once, with :func:`metalib.rl.envs.point_step` (the gymnasium env's
    dynamics). A trajectory stops at the goal (``mask`` 0 after) or after ``horizon`` steps."""
    T = goals.shape[0]
    pos = goals.new_zeros(T, n_traj, 2)                 # in the goals' dtype (float64 for the course's replays)
    alive = goals.new_ones(T, n_traj)
    std = torch.exp(params["log_std"])
    std = std.reshape(T, 1, -1) if std.dim() == 2 else std
    Os, A, R, M = [], [], [], []
    g = goals.unsqueeze(1).expand(T, n_traj, 2)
    for _ in range(horizon):
        mean = policy_mean(params, pos)
        a = mean if deterministic else mean + std * torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        nxt, r, done = envs.point_step(pos, a, g)
        Os.append(pos), A.append(a), R.append(r * alive), M.append(alive)
        pos = torch.where(alive.unsqueeze(-1).bool(), nxt, pos)
        alive = alive * (~done).float()
    return Batch(torch.stack(Os, 2), torch.stack(A, 2), torch.stack(R, 2), torch.stack(M, 2), goals)


# ---------------------------------------------------------------------------------------- training
@dataclass
class Config:
    """The paper's settings (``maml_trpo_point.py``) where CPU allows: ``alpha`` 0.5 (``fast_learning_rate``),
    20 trajectories per inner step, meta-batch 20 tasks (the test script's runs), horizon 100, γ 0.99."""
    iterations: int = 300
    meta_batch: int = 20
    n_traj: int = 20
    alpha: float = 0.5
    meta_lr: float = 1e-3
    gamma: float = 0.99
    hidden: Tuple[int, ...] = (100, 100)
    first_order: bool = False
    maml: bool = True            # False: "pretrained" — plain policy gradient on the task mixture
    seed: int = 0


def train(cfg: Config, log_every: int = 0) -> Tuple[Params, List[float]]:
    """Meta-train (``cfg.maml``) or pretrain on random goals. Returns ``(theta, mean post-update
    (MAML) or pre-update (pretrain) return per iteration)``."""
    for name in ("iterations", "meta_batch", "n_traj"):
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < (2 if name == "n_traj" else 1):
            raise ValueError(f"Config.{name} must be an int >= {2 if name == 'n_traj' else 1}, got {v!r}")
    if not (cfg.alpha >= 0 and cfg.meta_lr > 0 and 0 <= cfg.gamma <= 1):
        raise ValueError(f"Config needs alpha >= 0, meta_lr > 0, 0 <= gamma <= 1; got {cfg.alpha}, {cfg.meta_lr}, {cfg.gamma}")
    gen = torch.Generator().manual_seed(cfg.seed)
    theta = {k: v.requires_grad_() for k, v in init_policy(cfg.hidden, generator=gen).items()}
    opt = torch.optim.Adam(theta.values(), lr=cfg.meta_lr)
    history = []
    for it in range(cfg.iterations):
        goals = envs.sample_goals(cfg.meta_batch, gen)
        pre = rollout({k: v.detach() for k, v in theta.items()}, goals, cfg.n_traj, generator=gen)
        if cfg.maml:
            loss, post = meta_loss(theta, pre, lambda phi: rollout(phi, goals, cfg.n_traj, generator=gen),
                                   cfg.alpha, cfg.gamma, cfg.first_order)
            ret = post.returns().mean().item()
        else:
            loss = pg_surrogate(policy_logp(theta, pre.obs, pre.actions), task_advantages(pre, cfg.gamma),
                                pre.mask).mean()
            ret = pre.returns().mean().item()
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(ret)
        if log_every and (it % log_every == 0 or it == cfg.iterations - 1):
            print(f"it {it:4d}  return {ret:8.2f}  log_std {theta['log_std'].detach().tolist()}", flush=True)
    return {k: v.detach() for k, v in theta.items()}, history


def adaptation_curve(params: Params, goals: Tensor, steps: int = 3, n_traj: int = 40,
                     alphas: Sequence[float] = (0.5, 0.25), gamma: float = 0.99, seed: int = 0) -> Tensor:
    """The paper's test protocol (``test_maml_point.py``): per goal, sample ``n_traj`` trajectories,
    take a policy-gradient step (step size ``alphas[0]`` first, ``alphas[1]`` after), repeat.
    Returns the mean return per goal after 0..``steps`` steps ``[steps + 1, T]``."""
    gen = torch.Generator().manual_seed(seed)
    T = goals.shape[0]
    phi = {k: v.detach().unsqueeze(0).expand(T, *v.shape).clone() for k, v in params.items()}
    out = []
    for s in range(steps + 1):
        batch = rollout(phi, goals, n_traj, generator=gen)
        out.append(batch.returns().mean(1))
        if s < steps:
            phi = {k: v.requires_grad_() for k, v in phi.items()}
            phi = {k: v.detach() for k, v in inner_step(phi, batch, alphas[min(s, 1)], gamma, False).items()}
    return torch.stack(out)
