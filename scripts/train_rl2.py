"""Train the shipped RL² bandit policies and measure RL²'s Table 1 setting against the baselines.

    OMP_NUM_THREADS=1 python scripts/train_rl2.py --arms 5 --episodes 10 --iterations 3000 --ship

Evaluation: 5,000 fresh bandits (arms' probabilities uniform, seed 7), one trial of n pulls each;
the mean total reward per trial (RL²'s metric) for RL² (sampling its policy) and each baseline."""
from __future__ import annotations

import argparse
import time

import torch

from metalib.rl import bandits, envs, rl2
from metalib.rl.weights import save_policy

EVAL_TRIALS, EVAL_SEED = 5000, 7


def table_row(policy, k: int, n: int) -> dict:
    probs = envs.sample_arm_probs(EVAL_TRIALS, k, torch.Generator().manual_seed(EVAL_SEED))
    g = torch.Generator().manual_seed(EVAL_SEED + 1)
    row = {}
    with torch.no_grad():
        if policy is not None:
            r = rl2.play_trial(policy, probs, n, g)["rewards"].sum(1)
            row["rl2"] = (r.mean().item(), (r.std() / EVAL_TRIALS ** 0.5).item())
    for name, rule in bandits.BASELINES.items():
        r = bandits.play(rule, probs, n, g)[0].sum(1)
        row[name] = (r.mean().item(), (r.std() / EVAL_TRIALS ** 0.5).item())
    row["best arm (oracle)"] = (n * probs.max(1).values.mean().item(), 0.0)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arms", type=int, default=5)
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--iterations", type=int, default=3000)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ship", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    cfg = rl2.RL2Config(k=a.arms, n=a.episodes, iterations=a.iterations, lr=a.lr, seed=a.seed)
    t0 = time.time()
    policy, hist = rl2.train_rl2(cfg, log_every=250)
    minutes = (time.time() - t0) / 60
    row = table_row(policy, a.arms, a.episodes)
    print(f"k={a.arms} n={a.episodes}: mean total reward per trial over {EVAL_TRIALS} trials (± s.e.)")
    for name, (m, se) in row.items():
        print(f"  {name:18s} {m:7.3f} ± {se:.3f}")
    if a.ship:
        meta = {"config": dict(vars(cfg)), "train_minutes": round(minutes, 1), "history": hist, "table": row,
                "command": f"python scripts/train_rl2.py --arms {a.arms} --episodes {a.episodes} "
                           f"--iterations {a.iterations} --lr {a.lr} --seed {a.seed} --ship"}
        print("wrote", save_policy(f"rl2-bandit-k{a.arms}-n{a.episodes}", policy.state_dict(), meta))


if __name__ == "__main__":
    main()
