"""RL² on longer trials (n = 100, 500 pulls), resumable, and the bandit table with every baseline.

    OMP_NUM_THREADS=1 python -m metalib.rl.bandit_runs --arms 5 --episodes 100 --iterations 1500 \\
        --batch 128 --lr 1e-3 --entropy 0 --init rl2-bandit-k5-n10 --checkpoint runs/rl2-k5-n100.ckpt --ship

A run starts from a shipped policy (``--init``: the GRU does not depend on ``n``, so a policy trained
for 10 pulls is a cheap start for 100), writes a checkpoint every 25 iterations and resumes from it
when restarted with the same command. ``--ship`` writes ``metalib/weights/rl/rl2-bandit-k{k}-n{n}.pt``
with the table row measured by :func:`table_row` in its meta.

Evaluation (the same for every player): ``EVAL_TRIALS`` fresh bandits (arms' probabilities uniform,
seed ``EVAL_SEED``), one trial of ``n`` pulls each; the mean total reward per trial (RL²'s metric)
± its standard error.
"""
from __future__ import annotations

import argparse
import json
import time
from typing import Dict, Optional, Tuple

import torch

from . import bandits, envs, rl2
from ..io import atomic_open
from .weights import RL_WEIGHTS_DIR, load_policy, save_policy

EVAL_TRIALS, EVAL_SEED = 5000, 7


def table_row(policy: Optional[rl2.RL2Policy], k: int, n: int, trials: int = EVAL_TRIALS,
              gittins_gamma: Optional[float] = None, skip: Tuple[str, ...] = ()) -> Dict[str, Tuple[float, float]]:
    """``{player: (mean total reward per trial, standard error)}`` on ``trials`` bandits of ``k`` arms,
    trials of ``n`` pulls: RL² (sampling its policy) when given, the baselines of
    :data:`metalib.rl.bandits.BASELINES`, Gittins indices with discount ``gittins_gamma`` when given,
    and the best arm's expected total (an oracle that knows ``p``: the ceiling); baselines named in ``skip``
    are left out (Thompson sampling's exact Beta draws cost O(n) per pull: minutes at n = 500)."""
    probs = envs.sample_arm_probs(trials, k, torch.Generator().manual_seed(EVAL_SEED))
    g = torch.Generator().manual_seed(EVAL_SEED + 1)
    row: Dict[str, Tuple[float, float]] = {}

    def record(name, r):
        r = r.double()
        row[name] = (r.mean().item(), (r.std() / trials ** 0.5).item())

    with torch.no_grad():
        if policy is not None:
            record("rl2", rl2.play_trial(policy, probs, n, g)["rewards"].sum(1))
        for name, rule in bandits.BASELINES.items():
            if name not in skip:
                record(name, bandits.play(rule, probs, n, g)[0].sum(1))
        if gittins_gamma is not None:
            rule = bandits.gittins_rule(gittins_gamma, depth=n + 2)
            record(f"gittins (gamma {gittins_gamma})", bandits.play(rule, probs, n, g)[0].sum(1))
    row["best arm (oracle)"] = (n * probs.max(1).values.double().mean().item(), 0.0)
    return row


GITTINS_GAMMAS = (0.9, 0.99, 0.999)
TUNE_TRIALS, TUNE_SEED = 1000, 11


def tune_gittins(k: int, n: int, gammas=GITTINS_GAMMAS, trials: int = TUNE_TRIALS) -> Tuple[float, Dict[float, float]]:
    """The discount of the Gittins rule for trials of ``n`` pulls, chosen as RL²'s official code did
    (the best mean total reward over γ ∈ ``gammas``) but on ``trials`` bandits of their own (seed
    ``TUNE_SEED``), not on the evaluation bandits. Returns ``(best γ, {γ: mean})``."""
    probs = envs.sample_arm_probs(trials, k, torch.Generator().manual_seed(TUNE_SEED))
    means = {}
    for gamma in gammas:
        g = torch.Generator().manual_seed(TUNE_SEED + 1)
        means[gamma] = bandits.play(bandits.gittins_rule(gamma, depth=n + 2), probs, n, g)[0].sum(1).double().mean().item()
    return max(means, key=means.get), means


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arms", type=int, default=5)
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--iterations", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--entropy", type=float, default=0.003)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--value-scale", type=float, default=20.0, help="the value head predicts returns / this")
    ap.add_argument("--init", default="", help="a shipped RL² policy to start from (same number of arms)")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--gittins-gamma", type=float, default=None)
    ap.add_argument("--ship", action="store_true")
    ap.add_argument("--baselines-only", action="store_true",
                    help="no RL²: the baselines' row (with tuned Gittins) to metalib/weights/rl/bandit-baselines-k{k}-n{n}.json")
    ap.add_argument("--skip", nargs="*", default=[], choices=sorted(bandits.BASELINES), help="baselines to leave out")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    if a.baselines_only:
        t0 = time.process_time()
        gamma, tuned = tune_gittins(a.arms, a.episodes)
        row = table_row(None, a.arms, a.episodes, gittins_gamma=gamma, skip=tuple(a.skip))
        out = {"skipped": list(a.skip), "k": a.arms, "n": a.episodes, "table": row, "gittins_gamma": gamma,
               "gittins_tuning": {str(g): m for g, m in tuned.items()}, "eval_trials": EVAL_TRIALS,
               "eval_seed": EVAL_SEED, "cpu_minutes": round((time.process_time() - t0) / 60, 2),
               "command": f"python -m metalib.rl.bandit_runs --arms {a.arms} --episodes {a.episodes} --baselines-only"
                          + (f" --skip {' '.join(a.skip)}" if a.skip else "")}
        for name, (m, se) in row.items():
            print(f"  {name:22s} {m:8.3f} ± {se:.3f}")
        path = RL_WEIGHTS_DIR / f"bandit-baselines-k{a.arms}-n{a.episodes}.json"
        with atomic_open(path) as f:
            f.write((json.dumps(out, indent=1) + "\n").encode())
        print("wrote", path)
        return
    cfg = rl2.RL2Config(k=a.arms, n=a.episodes, iterations=a.iterations, batch=a.batch, lr=a.lr,
                        entropy_coef=a.entropy, seed=a.seed, value_scale=a.value_scale)
    init = load_policy(a.init)[0] if a.init else None
    t0 = time.process_time()
    policy, hist = rl2.train_rl2(cfg, log_every=100, init_state=init, checkpoint=a.checkpoint)
    minutes = (time.process_time() - t0) / 60
    gamma, tuned = (a.gittins_gamma, {}) if a.gittins_gamma else tune_gittins(a.arms, a.episodes)
    print("Gittins discount", gamma, "tuning means", tuned)
    row = table_row(policy, a.arms, a.episodes, gittins_gamma=gamma)
    print(f"k={a.arms} n={a.episodes}: mean total reward per trial over {EVAL_TRIALS} trials (± s.e.)")
    for name, (m, se) in row.items():
        print(f"  {name:22s} {m:8.3f} ± {se:.3f}")
    if a.ship:
        cmd = " ".join(["python -m metalib.rl.bandit_runs", f"--arms {a.arms} --episodes {a.episodes}",
                        f"--iterations {a.iterations} --batch {a.batch} --lr {a.lr} --entropy {a.entropy}",
                        f"--seed {a.seed} --value-scale {a.value_scale}"] + ([f"--init {a.init}"] if a.init else []) + ["--ship"])
        meta = {"config": dict(vars(cfg)), "init": a.init, "history": hist, "table": row, "command": cmd,
                "gittins_tuning": {str(k): v for k, v in tuned.items()}, "gittins_gamma": gamma,
                "cpu_minutes_this_process": round(minutes, 1)}
        print("wrote", save_policy(f"rl2-bandit-k{a.arms}-n{a.episodes}", policy.state_dict(), meta))


if __name__ == "__main__":
    main()
