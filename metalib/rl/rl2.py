r"""RL² (Duan, Schulman, Chen, Bartlett, Sutskever & Abbeel 2016): "fast" RL as the hidden state of a
recurrent policy trained by "slow" RL.

The policy is a GRU. At step :math:`t` of a trial it reads the previous action (one-hot), the previous
reward and the termination flag (the paper's input :math:`(s_t, a_{t-1}, r_{t-1}, d_{t-1})`; a bandit
has no state :math:`s`) and outputs :math:`\pi(a_t|h_t)` and a value :math:`V(h_t)`:

.. math:: h_t = \mathrm{GRU}(h_{t-1}, [\mathrm{onehot}(a_{t-1}), r_{t-1}, d_{t-1}]),\qquad
   h_{t-1} \leftarrow 0 \text{ at the first step of each trial.}

The hidden state persists across the :math:`n` episodes of a trial (that is where the learning
happens) and is reset between trials (a new task). The outer, slow learner maximises the expected
*total* reward of a trial, :math:`\mathbb{E}[\sum_{t=1}^{n} r_t]`, over tasks: here with the
REINFORCE estimator with the learned value as baseline and an entropy bonus (the paper uses TRPO
with GAE; a documented substitute), :func:`rl2_loss`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..io import atomic_open
from .envs import bandit_pull, sample_arm_probs
from .pg import discounted_returns


def rl2_loss(logp: Tensor, values: Tensor, entropy: Tensor, rewards: Tensor, gamma: float,
             value_coef: float = 0.5, entropy_coef: float = 0.01, value_scale: float = 1.0) -> Tensor:
    r"""The slow learner's loss on ``B`` trials of ``n`` steps (all ``[B, n]``):
    :math:`-\frac{1}{Bn}\sum \log\pi(a_t|h_t)\hat A_t + c_v (G_t/c - V(h_t))^2 - c_e H[\pi(\cdot|h_t)]`
    with :math:`G_t` the discounted reward-to-go *within the trial*, the value head predicting
    :math:`G_t / c` (``value_scale`` :math:`c`) and :math:`\hat A_t = G_t - c\,V(h_t)` (a constant,
    normalised over the batch). Why :math:`c`: the value head shares the GRU with the policy, and for
    long trials (:math:`G_t` up to ~60 at n = 100) an unscaled squared error dominates the clipped
    gradient and wrecks the recurrent state the policy relies on (measured: a policy fine-tuned from
    n = 10 to n = 100 fell from 67 to 55 with c = 1)."""
    mask = torch.ones_like(rewards)
    G = discounted_returns(rewards, mask, gamma)
    adv = (G - value_scale * values).detach()
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    return (-(logp * adv).mean() + value_coef * ((G / value_scale - values) ** 2).mean()
            - entropy_coef * entropy.mean())


class RL2Policy(nn.Module):
    """GRU policy for ``k``-armed bandits: input ``[onehot(a_prev) (k), r_prev, d_prev]``, hidden ``hidden``."""

    def __init__(self, k: int, hidden: int = 64):
        super().__init__()
        if isinstance(k, bool) or not isinstance(k, int) or k < 2 or not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"RL2Policy needs k (arms) an int >= 2 and hidden an int >= 1, got k={k!r}, hidden={hidden!r}")
        self.k, self.hidden = k, hidden
        self.cell = nn.GRUCell(k + 2, hidden)
        self.pi = nn.Linear(hidden, k)
        self.v = nn.Linear(hidden, 1)

    def step(self, x: Tensor, h: Tensor, trial_start: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """One step for a batch: ``x [B, k + 2]``, ``h [B, hidden]``, ``trial_start [B]`` bool (reset h to 0
        there first) -> ``(logits [B, k], value [B], new h [B, hidden])``."""
        h = torch.where(trial_start[:, None], torch.zeros_like(h), h)
        h = self.cell(x, h)
        return self.pi(h), self.v(h).squeeze(-1), h

    def forward_sequence(self, x: Tensor, trial_start: Tensor, h0: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """A stream of steps ``x [B, L, k + 2]`` that may span several trials (``trial_start [B, L]``):
        ``(logits [B, L, k], hidden states [B, L, hidden])``."""
        B, L, _ = x.shape
        h = x.new_zeros(B, self.hidden) if h0 is None else h0
        logits, hs = [], []
        for t in range(L):
            lg, _, h = self.step(x[:, t], h, trial_start[:, t])
            logits.append(lg), hs.append(h)
        return torch.stack(logits, 1), torch.stack(hs, 1)

    def inputs(self, arm: Tensor, reward: Tensor) -> Tensor:
        """The next step's input after pulling ``arm [B]`` with ``reward [B]`` (an episode ends: d = 1)."""
        return torch.cat([F.one_hot(arm, self.k).to(reward.dtype), reward[:, None], torch.ones_like(reward)[:, None]], -1)


def play_trial(policy: RL2Policy, probs: Tensor, n: int, generator: Optional[torch.Generator] = None,
               greedy: bool = False) -> Dict[str, Tensor]:
    """One trial of ``n`` pulls on each bandit of ``probs [B, k]``, h reset at its start: ``{"arms",
    "rewards", "logp", "values", "entropy"}`` each ``[B, n]``, and ``"hidden" [B, n, hidden]``."""
    B = probs.shape[0]
    x = probs.new_zeros(B, policy.k + 2)                     # nothing before the first pull
    h = probs.new_zeros(B, policy.hidden)
    start = torch.ones(B, dtype=torch.bool)
    out: Dict[str, List[Tensor]] = {k: [] for k in ("arms", "rewards", "logp", "values", "entropy", "hidden")}
    for t in range(n):
        logits, value, h = policy.step(x, h, start)
        logp_all = torch.log_softmax(logits, -1)
        if greedy:
            arm = logits.argmax(-1)
        else:
            arm = torch.multinomial(logp_all.exp().detach(), 1, generator=generator).squeeze(-1)
        r = bandit_pull(probs, arm, generator)
        out["arms"].append(arm), out["rewards"].append(r), out["values"].append(value), out["hidden"].append(h)
        out["logp"].append(logp_all.gather(-1, arm[:, None]).squeeze(-1))
        out["entropy"].append(-(logp_all.exp() * logp_all).sum(-1))
        x, start = policy.inputs(arm, r), torch.zeros(B, dtype=torch.bool)
    return {k: torch.stack(v, 1) for k, v in out.items()}


@dataclass
class RL2Config:
    k: int = 5
    n: int = 10
    iterations: int = 1500
    batch: int = 256
    hidden: int = 64
    lr: float = 3e-3
    gamma: float = 0.99
    entropy_coef: float = 0.01
    lr_decay: bool = True
    seed: int = 0
    value_scale: float = 1.0      # the value head predicts returns / value_scale (rl2_loss)


def train_rl2(cfg: RL2Config, log_every: int = 0, init_state: Optional[Dict[str, Tensor]] = None,
              checkpoint: Optional[str] = None, checkpoint_every: int = 25) -> Tuple[RL2Policy, List[float]]:
    """Train on fresh bandits (arms' probabilities uniform) every iteration, Adam with the step size
    decaying linearly to 0 and the entropy bonus annealed to 0 by 80% of the run; returns ``(policy, mean
    total reward per trial, per iteration)``.

    ``init_state``: start from these parameters (e.g. a policy trained for shorter trials: the GRU does
    not depend on ``n``). ``checkpoint``: a file written atomically every ``checkpoint_every`` iterations
    (policy, optimiser, schedule, random state, history); a run that finds it resumes where it stopped,
    so a killed run loses at most ``checkpoint_every`` iterations and ends with the same result."""
    for name in ("n", "iterations", "batch"):
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"RL2Config.{name} must be an int >= 1, got {v!r}")
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    policy = RL2Policy(cfg.k, cfg.hidden)
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    # the step size decays linearly to 0 (the last iterations average out the policy-gradient noise)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: 1 - it / cfg.iterations if cfg.lr_decay else 1.0)
    if init_state is not None:
        policy.load_state_dict(init_state)
    history: List[float] = []
    start = 0
    if checkpoint is not None and os.path.exists(checkpoint):
        try:
            ck = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception as err:  # never pass on torch's advice to set weights_only=False
            raise ValueError(f"{checkpoint} is not a readable RL² checkpoint ({type(err).__name__})") from None
        if ck.get("config") != _config_dict(cfg):
            raise ValueError(f"{checkpoint} was written for another configuration: {ck.get('config')}")
        policy.load_state_dict(ck["policy"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        gen.set_state(ck["gen"])
        history, start = list(ck["history"]), int(ck["iteration"])
    for it in range(start, cfg.iterations):
        ent = cfg.entropy_coef * max(0.0, 1 - it / (0.8 * cfg.iterations))   # annealed to 0
        tr = play_trial(policy, sample_arm_probs(cfg.batch, cfg.k, gen), cfg.n, gen)
        loss = rl2_loss(tr["logp"], tr["values"], tr["entropy"], tr["rewards"], cfg.gamma, entropy_coef=ent,
                        value_scale=cfg.value_scale)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        sched.step()
        history.append(tr["rewards"].sum(1).mean().item())
        if log_every and (it % log_every == 0 or it == cfg.iterations - 1):
            print(f"it {it:5d}  total reward/trial {sum(history[-log_every:]) / len(history[-log_every:]):.3f}", flush=True)
        if checkpoint is not None and ((it + 1) % checkpoint_every == 0 or it + 1 == cfg.iterations):
            blob = {"config": _config_dict(cfg), "policy": policy.state_dict(), "opt": opt.state_dict(),
                    "sched": sched.state_dict(), "gen": gen.get_state(), "history": history, "iteration": it + 1}
            with atomic_open(checkpoint) as f:
                torch.save(blob, f)
    return policy, history


def _config_dict(cfg: RL2Config) -> Dict[str, object]:
    return {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}
