r"""The two task families of meta-RL's first papers, as ``gymnasium`` environments, plus the same
dynamics as pure batched torch functions for fast rollouts (one definition; the gymnasium classes call it).

**2-D point navigation** (Finn, Abbeel & Levine 2017, §5.3; the official code ``cbfinn/maml_rl``,
``maml_examples/point_env_randgoal.py`` and ``maml_trpo_point.py``): a task is a goal
:math:`g \sim U[-0.5, 0.5]^2`; the agent starts at :math:`s_0 = (0, 0)`; an action
:math:`a \in \mathbb{R}^2` is a velocity command clipped to :math:`[-0.1, 0.1]` per coordinate
(the policy acts in :math:`[-1, 1]`, scaled by 0.1, as rllab's ``normalize`` wrapper did);
:math:`s_{t+1} = s_t + 0.1\,\mathrm{clip}(a_t, -1, 1)`, reward
:math:`r_t = -\lVert s_{t+1} - g \rVert_2` (the paper's text says "negative squared distance", its code
uses the distance: we follow the code), the episode ends when :math:`|s - g| < 0.01` in both
coordinates or after the horizon :math:`H = 100` steps.

**Bernoulli multi-armed bandits** (Duan et al. 2016, "RL²", §4.1): a task is :math:`k` arms with
success probabilities :math:`p_i \sim U[0, 1]`; pulling arm :math:`i` gives reward 1 with
probability :math:`p_i`, else 0. An *episode* is one pull; a *trial* is :math:`n` episodes on the
same task (the agent keeps its memory across them).
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import gymnasium
import numpy as np
import torch
from torch import Tensor

GOAL_LOW, GOAL_HIGH = -0.5, 0.5     # goal range (official code: np.random.uniform(-0.5, 0.5, (2,)))
MAX_SPEED = 0.1                     # velocity clip (action_space Box(-0.1, 0.1))
HORIZON = 100                       # max_path_length = 100
GOAL_TOLERANCE = 0.01               # done = abs(x) < 0.01 and abs(y) < 0.01


def sample_goals(n: int, generator: Optional[torch.Generator] = None, dtype=torch.float32) -> Tensor:
    """``n`` goals ``[n, 2]`` uniform in :math:`[-0.5, 0.5]^2`."""
    return GOAL_LOW + (GOAL_HIGH - GOAL_LOW) * torch.rand(n, 2, generator=generator, dtype=dtype)


def point_step(pos: Tensor, action: Tensor, goal: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    r"""One step of 2-D navigation for a batch: ``pos [..., 2]``, ``action [..., 2]`` (policy units),
    ``goal [..., 2]`` -> ``(next pos [..., 2], reward [...], done [...] bool)`` with
    :math:`s' = s + 0.1\,\mathrm{clip}(a,-1,1)`, :math:`r = -\lVert s' - g\rVert`, done when
    :math:`\max|s' - g| < 0.01`."""
    nxt = pos + MAX_SPEED * action.clamp(-1.0, 1.0)
    diff = nxt - goal
    return nxt, -diff.norm(dim=-1), (diff.abs() < GOAL_TOLERANCE).all(dim=-1)


class PointNavigation(gymnasium.Env):
    """The MAML paper's 2-D navigation task as a ``gymnasium.Env`` (definitions: module docstring).

    ``goal``: a fixed goal (2 numbers in [-0.5, 0.5]); ``None`` draws one from the env's RNG at the
    first :meth:`reset` and keeps it (a task is one goal). ``reset(options={"goal": g})`` sets a new one.
    Truncated after :data:`HORIZON` steps; terminated when the goal is reached."""

    metadata = {"render_modes": []}

    def __init__(self, goal=None, horizon: int = HORIZON):
        if not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"horizon must be a positive int, got {horizon!r}")
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.horizon = horizon
        self.goal = None if goal is None else self._check_goal(goal)
        self._pos = np.zeros(2)
        self._t = 0

    @staticmethod
    def _check_goal(goal) -> np.ndarray:
        g = np.asarray(goal, dtype=np.float64)
        if g.shape != (2,) or not np.all(np.isfinite(g)):
            raise ValueError(f"goal must be 2 finite numbers, got {goal!r}")
        return g

    def reset(self, *, seed: Optional[int] = None, options: Optional[Dict[str, Any]] = None):
        super().reset(seed=seed)
        if options and options.get("goal") is not None:
            self.goal = self._check_goal(options["goal"])
        elif self.goal is None:
            self.goal = self.np_random.uniform(GOAL_LOW, GOAL_HIGH, size=2)
        self._pos, self._t = np.zeros(2), 0
        return self._pos.astype(np.float32), {"goal": self.goal.copy()}

    def step(self, action):
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (2,) or not np.all(np.isfinite(a)):
            raise ValueError(f"action must be 2 finite numbers, got {action!r}")
        nxt, r, done = point_step(torch.from_numpy(self._pos), torch.from_numpy(a), torch.from_numpy(self.goal))
        self._pos, self._t = nxt.numpy(), self._t + 1
        return (self._pos.astype(np.float32), float(r), bool(done), self._t >= self.horizon and not bool(done),
                {"goal": self.goal.copy()})


def sample_arm_probs(n_tasks: int, k: int, generator: Optional[torch.Generator] = None) -> Tensor:
    """RL²'s bandit tasks: ``[n_tasks, k]`` success probabilities, each uniform on [0, 1]."""
    return torch.rand(n_tasks, k, generator=generator)


def bandit_pull(probs: Tensor, arm: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    """Pull ``arm [B]`` (long) of bandits ``probs [B, k]``: reward ``[B]`` in {0., 1.}, 1 with
    probability ``probs[b, arm[b]]``."""
    p = probs.gather(-1, arm.unsqueeze(-1)).squeeze(-1)
    return (torch.rand(p.shape, generator=generator, dtype=p.dtype) < p).to(p.dtype)


class BernoulliBandit(gymnasium.Env):
    """A ``k``-armed Bernoulli bandit as a ``gymnasium.Env`` whose *episode* is one pull (RL²'s
    convention): ``step(arm)`` returns reward 0/1 and ``terminated=True``. The arms' probabilities
    ``probs`` are fixed per task (drawn uniformly at the first :meth:`reset` if ``None``); observations
    are a constant 0 (a bandit has no state)."""

    metadata = {"render_modes": []}

    def __init__(self, k: int = 5, probs=None):
        if not isinstance(k, int) or k < 2:
            raise ValueError(f"k (arms) must be an int >= 2, got {k!r}")
        self.k = k
        self.action_space = gymnasium.spaces.Discrete(k)
        self.observation_space = gymnasium.spaces.Box(0.0, 0.0, shape=(1,), dtype=np.float32)
        self.probs = None if probs is None else self._check_probs(probs)

    def _check_probs(self, probs) -> np.ndarray:
        p = np.asarray(probs, dtype=np.float64)
        if p.shape != (self.k,) or not np.all((p >= 0) & (p <= 1)):
            raise ValueError(f"probs must be {self.k} numbers in [0, 1], got {probs!r}")
        return p

    def reset(self, *, seed: Optional[int] = None, options: Optional[Dict[str, Any]] = None):
        super().reset(seed=seed)
        if options and options.get("probs") is not None:
            self.probs = self._check_probs(options["probs"])
        elif self.probs is None:
            self.probs = self.np_random.uniform(0.0, 1.0, size=self.k)
        return np.zeros(1, dtype=np.float32), {"probs": self.probs.copy()}

    def step(self, action):
        if not self.action_space.contains(int(action)) or int(action) != action:
            raise ValueError(f"action must be an arm in 0..{self.k - 1}, got {action!r}")
        r = float(self.np_random.uniform() < self.probs[int(action)])
        return np.zeros(1, dtype=np.float32), r, True, False, {"probs": self.probs.copy()}
