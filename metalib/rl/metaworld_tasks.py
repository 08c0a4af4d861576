r"""Meta-World ML1 (Yu et al. 2019) for MAML-RL: the ``reach-v3`` goal family, rolled out for
:mod:`metalib.rl.maml_rl` (optional: needs ``pip install -r requirements-rl.txt``).

ML1 ``reach-v3`` (``metaworld.ML1("reach-v3", seed)``): 50 training tasks and 50 held-out test tasks,
each a goal position in the box :math:`[-0.1, 0.1]\times[0.8, 0.9]\times[0.05, 0.3]` (metres) that the
Sawyer arm's hand (starting at :math:`(0, 0.6, 0.2)`) must reach; the goal is *not* in the observation
(ML1 zeroes it), so it must be inferred from rewards. An episode succeeds when ``info["success"]``
(the hand within 5 cm of the goal) is true at any step (the maintainers' definition, Metaworld issues
#176, #331; ``metaworld.evaluation`` ends an evaluation episode at the first success).

What the policy sees and does here (a documented simplification, not Meta-World's full interface):
the hand position ``obs[0:3]``, centred on the start and in units of 10 cm; it outputs the hand's
3-D motion command (Meta-World's action ``[dx, dy, dz, grip]`` with ``grip = 0``; reaching needs no
gripper), clipped to [-1, 1]. Episodes are ``horizon`` steps (Meta-World's own limit is 500).

``import metalib.rl.metaworld_tasks`` works without MuJoCo; :class:`ML1Tasks` says in one line how to
install it when it is missing.
"""
from __future__ import annotations

import importlib.util
from typing import List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from . import maml_rl

INSTALL_HINT = "Meta-World needs the optional packages: pip install -r requirements-rl.txt (metaworld, packaging)"
HAND_START = np.array([0.0, 0.6, 0.2])
OBS_SCALE = 10.0          # hand position in units of 10 cm
OBS_DIM, ACT_DIM = 3, 3


def available() -> bool:
    """Whether ``metaworld`` (and so MuJoCo) can be imported."""
    return importlib.util.find_spec("metaworld") is not None


def policy_input(obs: np.ndarray) -> np.ndarray:
    """Meta-World observations ``[..., 39]`` -> the policy's input ``[..., 3]``: the hand position
    relative to its start, in units of 10 cm."""
    return (obs[..., 0:3] - HAND_START) * OBS_SCALE


class ML1Tasks:
    """The tasks of ML1 ``task`` and a pool of environments to roll them out in.

    ``split``: ``"train"`` (50 tasks) or ``"test"`` (the 50 held-out goals)."""

    def __init__(self, task: str = "reach-v3", seed: int = 0):
        if not available():
            raise ImportError(INSTALL_HINT)
        import metaworld
        self.task = task
        self.benchmark = metaworld.ML1(task, seed=seed)
        self.tasks = {"train": list(self.benchmark.train_tasks), "test": list(self.benchmark.test_tasks)}
        self._classes = {"train": self.benchmark.train_classes[task], "test": self.benchmark.test_classes[task]}
        self._pool: dict = {"train": [], "test": []}

    def n_tasks(self, split: str) -> int:
        return len(self.tasks[split])

    def _envs(self, split: str, n: int) -> List:
        pool = self._pool[split]
        while len(pool) < n:
            pool.append(self._classes[split]())
        return pool[:n]

    def goal(self, split: str, index: int) -> np.ndarray:
        """The goal position (metres) of task ``index`` of ``split``."""
        env = self._envs(split, 1)[0]
        env.set_task(self.tasks[split][index])
        env.reset()
        return np.asarray(env._target_pos, dtype=np.float64).copy()

    @torch.no_grad()
    def rollout(self, params: maml_rl.Params, split: str, task_ids, n_traj: int, horizon: int = 100,
                generator: Optional[torch.Generator] = None, deterministic: bool = False,
                seed: int = 0) -> Tuple[maml_rl.Batch, Tensor]:
        """``n_traj`` episodes of ``horizon`` steps on each task ``task_ids`` of ``split`` with the Gaussian
        policy ``params`` (shared or per-task ``[T, ...]``). Returns ``(Batch, success [T, n_traj])``: the
        batch's ``obs`` are policy inputs ``[T, N, H, 3]``, ``goals [T, 3]`` the goal positions, and an
        episode succeeds if ``info["success"]`` was true at any step."""
        task_ids = list(task_ids)
        T, N = len(task_ids), n_traj
        envs = self._envs(split, T * N)
        obs = np.zeros((T, N, 3))
        goals = np.zeros((T, 3))
        for i, tid in enumerate(task_ids):
            for j in range(N):
                env = envs[i * N + j]
                env.set_task(self.tasks[split][tid])
                o, _ = env.reset(seed=seed + 1000 * i + j)
                obs[i, j] = policy_input(o)
            goals[i] = env._target_pos
        log_std = params["log_std"]
        std = torch.exp(log_std).reshape(T, 1, -1) if log_std.dim() == 2 else torch.exp(log_std)
        dtype = log_std.dtype
        Os, A, R = [], [], []
        success = np.zeros((T, N), dtype=bool)
        for _ in range(horizon):
            x = torch.as_tensor(obs, dtype=dtype)
            mean = maml_rl.policy_mean(params, x)
            a = mean if deterministic else mean + std * torch.randn(mean.shape, generator=generator, dtype=dtype)
            act = np.concatenate([a.clamp(-1, 1).numpy(), np.zeros((T, N, 1))], -1)
            rew = np.zeros((T, N))
            nxt = np.zeros((T, N, 3))
            for i in range(T):
                for j in range(N):
                    o, r, _, _, info = envs[i * N + j].step(act[i, j])
                    rew[i, j], nxt[i, j] = r, policy_input(o)
                    success[i, j] |= bool(info["success"])
            Os.append(x), A.append(a), R.append(torch.as_tensor(rew, dtype=dtype))
            obs = nxt
        batch = maml_rl.Batch(torch.stack(Os, 2), torch.stack(A, 2), torch.stack(R, 2),
                              torch.ones(T, N, horizon, dtype=dtype), torch.as_tensor(goals, dtype=dtype))
        return batch, torch.as_tensor(success)


# ------------------------------------------------------------------------------------ MAML-RL on ML1
def _config_dict(cfg) -> dict:
    return {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}


from dataclasses import dataclass  # noqa: E402  (kept next to its only use)


@dataclass
class ML1Config:
    """MAML-RL on ML1 at a CPU budget: ``meta_batch`` training goals x ``n_traj`` episodes of
    ``horizon`` steps before and after one inner step of size ``alpha``; Adam on the outer loss."""
    task: str = "reach-v3"
    iterations: int = 80
    meta_batch: int = 5
    n_traj: int = 4
    horizon: int = 60
    alpha: float = 0.05
    meta_lr: float = 0.02
    gamma: float = 0.99
    init_log_std: float = -0.5
    seed: int = 0


def train_ml1(cfg: ML1Config, tasks: Optional[ML1Tasks] = None, checkpoint: Optional[str] = None,
              log_every: int = 5) -> Tuple[maml_rl.Params, List[dict]]:
    """Meta-train a linear Gaussian policy with MAML-RL (second order) on the training goals; a
    checkpoint (written atomically every iteration) lets a killed run resume. Returns ``(theta,
    per-iteration {"pre_return", "post_return", "pre_success", "post_success"})``."""
    import os
    from ..io import atomic_open
    tasks = tasks or ML1Tasks(cfg.task, seed=cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    theta = maml_rl.init_policy((), OBS_DIM, ACT_DIM, cfg.init_log_std, generator=gen)
    theta = {k: v.double().requires_grad_() for k, v in theta.items()}
    opt = torch.optim.Adam(theta.values(), lr=cfg.meta_lr)
    history: List[dict] = []
    start = 0
    if checkpoint and os.path.exists(checkpoint):
        ck = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if ck.get("config") != _config_dict(cfg):
            raise ValueError(f"{checkpoint} was written for another configuration: {ck.get('config')}")
        with torch.no_grad():
            for k in theta:
                theta[k].copy_(ck["theta"][k])
        opt.load_state_dict(ck["opt"])
        gen.set_state(ck["gen"])
        history, start = list(ck["history"]), int(ck["iteration"])
    n = tasks.n_tasks("train")
    for it in range(start, cfg.iterations):
        ids = torch.randperm(n, generator=gen)[:cfg.meta_batch].tolist()
        seed = 100_000 * (it + 1)
        pre, pre_s = tasks.rollout({k: v.detach() for k, v in theta.items()}, "train", ids, cfg.n_traj,
                                   cfg.horizon, gen, seed=seed)
        post_s = []

        def sampler(phi):
            b, s = tasks.rollout(phi, "train", ids, cfg.n_traj, cfg.horizon, gen, seed=seed + 50_000)
            post_s.append(s)
            return b

        loss, post = maml_rl.meta_loss(theta, pre, sampler, cfg.alpha, cfg.gamma)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append({"pre_return": pre.returns().mean().item(), "post_return": post.returns().mean().item(),
                        "pre_success": pre_s.double().mean().item(), "post_success": post_s[0].double().mean().item()})
        if log_every and (it % log_every == 0 or it == cfg.iterations - 1):
            h = history[-1]
            print(f"it {it:4d}  return {h['pre_return']:7.1f} -> {h['post_return']:7.1f}  success "
                  f"{h['pre_success']:.2f} -> {h['post_success']:.2f}", flush=True)
        if checkpoint:
            blob = {"config": _config_dict(cfg), "theta": {k: v.detach() for k, v in theta.items()},
                    "opt": opt.state_dict(), "gen": gen.get_state(), "history": history, "iteration": it + 1}
            with atomic_open(checkpoint) as f:
                torch.save(blob, f)
    return {k: v.detach() for k, v in theta.items()}, history


def evaluate_ml1(theta: maml_rl.Params, tasks: ML1Tasks, split: str = "test", n_adapt: int = 4,
                 horizon: int = 60, alpha: float = 0.05, gamma: float = 0.99, seed: int = 7) -> dict:
    """Success on every goal of ``split`` before and after adaptation: the mean-action policy θ for one
    episode per goal ("before"); then ``n_adapt`` sampled episodes with θ, one inner step, and one
    episode of the adapted policy's mean action ("after"). Returns rates and per-goal lists."""
    ids = list(range(tasks.n_tasks(split)))
    gen = torch.Generator().manual_seed(seed)
    before_b, before = tasks.rollout(theta, split, ids, 1, horizon, gen, deterministic=True, seed=seed)
    data, _ = tasks.rollout(theta, split, ids, n_adapt, horizon, gen, seed=seed + 1)
    phi = {k: v.detach().clone().requires_grad_() for k, v in theta.items()}
    phi = {k: v.detach() for k, v in maml_rl.inner_step(phi, data, alpha, gamma, create_graph=False).items()}
    after_b, after = tasks.rollout(phi, split, ids, 1, horizon, gen, deterministic=True, seed=seed)
    return {"split": split, "goals": len(ids), "success_before": before.double().mean().item(),
            "success_after": after.double().mean().item(),
            "return_before": before_b.returns().mean().item(), "return_after": after_b.returns().mean().item(),
            "per_goal_before": before[:, 0].int().tolist(), "per_goal_after": after[:, 0].int().tolist()}


def main(argv=None) -> None:
    """``python -m metalib.rl.metaworld_tasks [--iterations N] [--checkpoint PATH] [--ship]``."""
    import argparse
    import time
    from .weights import save_policy
    ap = argparse.ArgumentParser(description="MAML-RL on Meta-World ML1 reach-v3 (CPU budget)")
    ap.add_argument("--iterations", type=int, default=ML1Config.iterations)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--ship", action="store_true")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    cfg = ML1Config(iterations=a.iterations)
    t0 = time.process_time()
    tasks = ML1Tasks(cfg.task, seed=cfg.seed)
    theta, hist = train_ml1(cfg, tasks, a.checkpoint)
    rand = maml_rl.init_policy((), OBS_DIM, ACT_DIM, cfg.init_log_std, generator=torch.Generator().manual_seed(cfg.seed))
    rand = {k: v.double() for k, v in rand.items()}
    results = {name: evaluate_ml1(p, tasks, "test", cfg.n_traj, cfg.horizon, cfg.alpha, cfg.gamma)
               for name, p in (("maml", theta), ("random init", rand))}
    for name, r in results.items():
        print(f"{name:12s} test goals: success {r['success_before']:.2f} -> {r['success_after']:.2f}, "
              f"return {r['return_before']:.1f} -> {r['return_after']:.1f}")
    if a.ship:
        meta = {"config": _config_dict(cfg), "history": hist, "results": results,
                "cpu_minutes_this_process": round((time.process_time() - t0) / 60, 1),
                "command": f"python -m metalib.rl.metaworld_tasks --iterations {a.iterations} --ship"}
        print("wrote", save_policy(f"maml-rl-{cfg.task}", theta, meta))


if __name__ == "__main__":
    main()
