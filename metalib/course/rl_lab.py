"""Notebook 13's computations (meta-RL): the shipped policies, replays of MAML-RL's adaptation to one goal,
bandit trials of RL² and UCB1 on the same outcomes, and the exercise (discounted returns).

Everything here is a plain function of tensors, tested in ``tests/test_rl_lab.py``; the widgets
(:mod:`metalib.course.rl_widgets`) only draw what these return.
"""
from __future__ import annotations

from typing import Callable, Dict, Tuple

import torch
from torch import Tensor

from ..rl import bandits, envs, maml_rl, rl2
from ..rl.weights import load_policy
from .exercises import CheckFailed, Exercise, Feedback, Mistake, call_checked, register, run_check

MAML_NAME, PRETRAIN_NAME = "maml-rl-point2d", "pretrain-rl-point2d"
RANDOM_SEED = 12345            # the "random initialisation" baseline's seed (scripts/train_maml_rl.py)


# ------------------------------------------------------------------------------------------ policies
def load_navigation_policies(dtype=torch.float64) -> Tuple[Dict[str, Dict[str, Tensor]], Dict[str, dict]]:
    """``({"MAML", "pretrained", "random"}: params in ``dtype``}, {name: meta})`` — the shipped MAML-RL and
    pretrained Gaussian policies and the random initialisation the figure starts from."""
    out, metas = {}, {}
    for label, name in (("MAML", MAML_NAME), ("pretrained", PRETRAIN_NAME)):
        params, meta = load_policy(name)
        out[label], metas[label] = {k: v.to(dtype) for k, v in params.items()}, meta
    rand = maml_rl.init_policy(tuple(metas["MAML"]["config"]["hidden"]), generator=torch.Generator().manual_seed(RANDOM_SEED))
    out["random"] = {k: v.to(dtype) for k, v in rand.items()}
    return out, metas


def recorded_curves(metas: Dict[str, dict]) -> Dict[str, list]:
    """The return after 0..3 steps on the 40 test goals, as measured by ``scripts/train_maml_rl.py``."""
    curves = {k: m["curve_test_goals"] for k, m in metas.items()}
    if "curve_random" in metas["MAML"]:
        curves["random"] = metas["MAML"]["curve_random"]
    return curves


def adapt_to_goal(params: Dict[str, Tensor], goal, n_traj: int = 20, alpha: float = 0.5, steps: int = 1,
                  seed: int = 0) -> Dict[str, Tensor]:
    """MAML-RL's test-time adaptation to one goal, replayed in the params' dtype: ``n_traj`` sampled
    trajectories with θ, ``steps`` REINFORCE steps (α, then α/2), and the mean-action paths before and after.
    Returns ``{"samples" [n_traj, H + 1, 2], "before" [H + 1, 2], "after" [H + 1, 2], "return_before",
    "return_after"}`` (returns of the mean-action paths)."""
    dtype = params["log_std"].dtype
    g = torch.as_tensor(goal, dtype=dtype).reshape(1, 2)
    gen = torch.Generator().manual_seed(seed)
    phi = {k: v.unsqueeze(0).clone() for k, v in params.items()}
    samples = None
    for s in range(steps):
        batch = maml_rl.rollout(phi, g, n_traj, generator=gen)
        if s == 0:
            samples = _paths(batch)[0]
        phi = {k: v.detach().requires_grad_() for k, v in phi.items()}
        phi = {k: v.detach() for k, v in maml_rl.inner_step(phi, batch, alpha if s == 0 else alpha / 2, create_graph=False).items()}
    before = maml_rl.rollout({k: v.unsqueeze(0) for k, v in params.items()}, g, 1, deterministic=True)
    after = maml_rl.rollout(phi, g, 1, deterministic=True)
    return {"samples": samples, "before": _paths(before)[0, 0], "after": _paths(after)[0, 0],
            "return_before": before.returns()[0, 0], "return_after": after.returns()[0, 0]}


def _paths(batch: maml_rl.Batch) -> Tensor:
    """Positions visited ``[T, N, H + 1, 2]`` (the last one repeated after the goal is reached)."""
    last = batch.obs[:, :, -1] + envs.MAX_SPEED * batch.actions[:, :, -1].clamp(-1, 1) * batch.mask[:, :, -1:]
    return torch.cat([batch.obs, last.unsqueeze(2)], 2)


# ------------------------------------------------------------------------------------------ bandits
def load_rl2(k: int = 5, n: int = 10) -> Tuple[rl2.RL2Policy, dict]:
    """The shipped RL² policy for ``k`` arms and trials of ``n`` pulls, and its meta (table, config)."""
    state, meta = load_policy(f"rl2-bandit-k{k}-n{n}")
    policy = rl2.RL2Policy(k, int(meta["config"]["hidden"]))
    policy.load_state_dict(state)
    return policy.eval(), meta


def bandit_outcomes(k: int, n: int, seed: int) -> Tuple[Tensor, Tensor]:
    """One bandit and its pre-drawn outcomes: ``(probs [k], outcomes [n, k])`` — pulling arm ``a`` at step
    ``t`` pays ``outcomes[t, a]``, for every player alike (common random numbers: the difference between
    two players is their choices, not their luck)."""
    g = torch.Generator().manual_seed(seed)
    probs = envs.sample_arm_probs(1, k, g)[0]
    return probs, (torch.rand(n, k, generator=g) < probs).float()


def play_rl2(policy: rl2.RL2Policy, outcomes: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """RL²'s greedy (most probable) arm at each step on the given outcomes: ``(arms [n], rewards [n],
    probabilities [n, k])``; the hidden state starts at 0 (a new trial) and carries across the pulls."""
    n, k = outcomes.shape
    x, h = torch.zeros(1, k + 2), torch.zeros(1, policy.hidden)
    start = torch.ones(1, dtype=torch.bool)
    arms, rewards, probs = [], [], []
    with torch.no_grad():
        for t in range(n):
            logits, _, h = policy.step(x, h, start)
            p = torch.softmax(logits, -1)[0]
            a = int(p.argmax())
            r = outcomes[t, a]
            arms.append(a), rewards.append(r), probs.append(p)
            x, start = policy.inputs(torch.tensor([a]), r.reshape(1)), torch.zeros(1, dtype=torch.bool)
    return torch.tensor(arms), torch.stack(rewards), torch.stack(probs)


def play_rule(rule: Callable, outcomes: Tensor, seed: int = 0) -> Tuple[Tensor, Tensor]:
    """A baseline of :mod:`metalib.rl.bandits` (e.g. ``bandits.BASELINES["ucb1"]``) on the given outcomes:
    ``(arms [n], rewards [n])``."""
    n, k = outcomes.shape
    wins, pulls = torch.zeros(1, k), torch.zeros(1, k)
    g = torch.Generator().manual_seed(seed)
    arms, rewards = [], []
    for t in range(n):
        a = int(rule(wins, pulls, t, g)[0])
        r = outcomes[t, a]
        wins[0, a] += r
        pulls[0, a] += 1
        arms.append(a), rewards.append(r)
    return torch.tensor(arms), torch.stack(rewards)


UCB1 = bandits.BASELINES["ucb1"]

PLAYERS = ("rl2", "gittins", "greedy", "epsilon_greedy", "thompson", "ucb1", "random", "best arm (oracle)")


def bandit_table(k: int, n: int) -> Tuple[Dict[str, Tuple[float, float]], dict]:
    """The recorded row of the bandit table for ``k`` arms and trials of ``n`` pulls: ``({player: (mean
    total reward per trial, standard error)}, info)``. RL² and the baselines come from the shipped RL²
    policy's meta where there is one (``rl2-bandit-k{k}-n{n}``), the rest — Gittins with its tuned discount,
    or every baseline where no RL² policy was trained — from ``bandit-baselines-k{k}-n{n}.json``; both
    measured on the same 5,000 bandits (:mod:`metalib.rl.bandit_runs`). ``info``: Gittins' discount and the
    commands."""
    import json

    from ..rl.weights import RL_WEIGHTS_DIR
    row: Dict[str, Tuple[float, float]] = {}
    info: dict = {"commands": []}
    if (RL_WEIGHTS_DIR / f"rl2-bandit-k{k}-n{n}.pt").is_file():   # absent: baselines only; damaged: its error
        _, meta = load_policy(f"rl2-bandit-k{k}-n{n}")
        row.update({name: tuple(v) for name, v in meta["table"].items()})
        info["commands"].append(meta["command"])
    path = RL_WEIGHTS_DIR / f"bandit-baselines-k{k}-n{n}.json"
    if path.is_file():
        base = json.loads(path.read_text())
        for name, v in base["table"].items():
            row.setdefault(name, tuple(v))
        info["commands"].append(base["command"])
    if not row:
        raise ValueError(f"no recorded bandit table for k={k}, n={n}")
    for name in list(row):
        if name.startswith("gittins"):
            info["gittins_gamma"] = float(name.split("gamma")[1].strip(" )"))
            row["gittins"] = row.pop(name)
    return {p: row[p] for p in PLAYERS if p in row}, info


def metaworld_results() -> dict:
    """The shipped MAML-RL policy for Meta-World ML1 ``reach-v3`` and what it measured on the 50 held-out test
    goals (:func:`metalib.rl.metaworld_tasks.evaluate_ml1`): its meta (``results``, ``config``, ``command``).
    Reading it needs no MuJoCo."""
    _, meta = load_policy("maml-rl-reach-v3")
    return meta


# ------------------------------------------------------------------------------------------ exercise
def discounted_returns(rewards, gamma):
    """Rewards-to-go of one trajectory: ``G[t] = sum_{u >= t} gamma**(u - t) * rewards[u]``, ``rewards [H]`` -> ``[H]``."""
    G = torch.zeros_like(rewards)
    running = 0.0
    for t in reversed(range(len(rewards))):
        running = rewards[t] + gamma * running
        G[t] = running
    return G


def check_discounted_returns(fn: Callable) -> Feedback:
    """Exercise of ``13_meta_reinforcement_learning``: ``discounted_returns(rewards [H], gamma) -> [H]``,
    compared with the double sum written out (an independent computation)."""

    def body() -> str:
        g = torch.Generator().manual_seed(0)
        for H, gamma in ((5, 0.9), (12, 0.99), (1, 0.5), (7, 1.0)):
            r = torch.randn(H, generator=g, dtype=torch.float64)
            out = call_checked("discounted_returns", fn, r.clone(), gamma)
            if not isinstance(out, torch.Tensor) or out.shape != (H,):
                raise CheckFailed(f"return a tensor of shape [{H}] (one return per step); got "
                                  f"{getattr(out, 'shape', type(out).__name__)}.")
            out = out.double()
            want = torch.tensor([sum(gamma ** (u - t) * r[u].item() for u in range(t, H)) for t in range(H)],
                                dtype=torch.float64)
            if torch.allclose(out, want, atol=1e-9):
                continue
            forward = torch.tensor([sum(gamma ** (t - u) * r[u].item() for u in range(t + 1)) for t in range(H)],
                                   dtype=torch.float64)
            from_zero = torch.tensor([sum(gamma ** u * r[u].item() for u in range(t, H)) for t in range(H)],
                                     dtype=torch.float64)
            excl = torch.tensor([sum(gamma ** (u - t - 1) * r[u].item() for u in range(t + 1, H)) for t in range(H)],
                                dtype=torch.float64)
            total = want[0].expand(H)
            plain = torch.tensor([r[t:].sum().item() for t in range(H)], dtype=torch.float64)
            if torch.allclose(out, forward, atol=1e-9):
                raise CheckFailed("you summed the rewards *before* t (a running sum from the start); the return "
                                  "at t is what comes after: G[t] = r[t] + gamma * G[t+1], computed from the end.")
            if torch.allclose(out, from_zero, atol=1e-9):
                raise CheckFailed("you discounted from the start of the episode (gamma**u); the return at t "
                                  "discounts from t: gamma**(u - t).")
            if torch.allclose(out, excl, atol=1e-9):
                raise CheckFailed("your return at t leaves out r[t] itself; G[t] starts with the reward of step t.")
            if torch.allclose(out, total, atol=1e-9):
                raise CheckFailed("every step got the whole episode's return; use the reward-to-go (what "
                                  "follows t): earlier rewards do not depend on the action at t.")
            if gamma < 1 and torch.allclose(out, plain, atol=1e-9):
                raise CheckFailed("you did not discount: multiply by gamma once per step into the future.")
            raise CheckFailed(f"for rewards {[round(x, 3) for x in r.tolist()]} and gamma {gamma} the returns "
                              f"should be {[round(x, 3) for x in want.tolist()]}, yours are "
                              f"{[round(x, 3) for x in out.tolist()]}.")
        return "rewards-to-go agree with the double sum (4 trajectories, gamma 0.5 to 1)."

    return run_check("discounted_returns", body)


def _forward(rewards, gamma):
    G, run = torch.zeros_like(rewards), 0.0
    for t in range(len(rewards)):
        run = rewards[t] + gamma * run
        G[t] = run
    return G


def _from_zero(rewards, gamma):
    H = len(rewards)
    w = gamma ** torch.arange(H, dtype=rewards.dtype)
    return torch.stack([(w[t:] * rewards[t:]).sum() for t in range(H)])


def _excluding_now(rewards, gamma):
    return (discounted_returns(rewards, gamma) - rewards) / gamma


def _total(rewards, gamma):
    return discounted_returns(rewards, gamma)[0].expand(len(rewards)).clone()


def _undiscounted(rewards, gamma):
    return discounted_returns(rewards, 1.0)


EXERCISE = register(Exercise(
    name="discounted_returns", notebook="13_meta_reinforcement_learning", solution=discounted_returns,
    check=check_discounted_returns,
    mistakes=(
        Mistake("a running sum from the start", _forward, "before* t"),
        Mistake("discounted from the episode's start", _from_zero, "gamma**(u - t)"),
        Mistake("r[t] left out", _excluding_now, "leaves out r[t]"),
        Mistake("the whole return at every step", _total, "reward-to-go"),
        Mistake("no discount", _undiscounted, "did not discount"),
    ),
))

