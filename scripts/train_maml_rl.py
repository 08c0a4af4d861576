"""Train the shipped MAML-RL and pretrained policies on 2-D navigation and measure the paper's
figure (return after 0-3 policy-gradient steps on held-out goals: MAML vs pretrained vs random).

    OMP_NUM_THREADS=1 python scripts/train_maml_rl.py --iterations 300 --ship

Writes metalib/weights/rl/{maml-rl-point2d,pretrain-rl-point2d}.pt (with the curves in their meta)
when --ship; prints the table either way."""
from __future__ import annotations

import argparse
import time

import torch

from metalib.rl import envs, maml_rl
from metalib.rl.weights import load_policy, save_policy

TEST_GOALS_SEED, TEST_GOALS = 1, 40       # the paper's test script: 40 goals from seed 1 (ours: torch's RNG)


def random_curve(goals, hidden=(100, 100)) -> list:
    """The same protocol from an untrained initialisation (seed 12345, metalib.course.rl_lab.RANDOM_SEED)."""
    rand = maml_rl.init_policy(hidden, generator=torch.Generator().manual_seed(12345))
    return maml_rl.adaptation_curve(rand, goals, steps=3, n_traj=40).mean(1).tolist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--meta-lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ship", action="store_true")
    ap.add_argument("--random-curve-only", action="store_true",
                    help="only measure the random initialisation's curve and add it to the shipped MAML-RL file's meta")
    a = ap.parse_args()
    torch.set_num_threads(1)
    goals = envs.sample_goals(TEST_GOALS, torch.Generator().manual_seed(TEST_GOALS_SEED))
    if a.random_curve_only:
        params, meta = load_policy("maml-rl-point2d")
        meta["curve_random"] = random_curve(goals, tuple(meta["config"]["hidden"]))
        print("random", meta["curve_random"], "->", save_policy("maml-rl-point2d", params, meta))
        return
    curves = {}
    for kind, meta_train in (("maml", True), ("pretrain", False)):
        cfg = maml_rl.Config(iterations=a.iterations, meta_lr=a.meta_lr, seed=a.seed, maml=meta_train)
        t0 = time.time()
        theta, hist = maml_rl.train(cfg, log_every=25)
        minutes = (time.time() - t0) / 60
        curve = maml_rl.adaptation_curve(theta, goals, steps=3, n_traj=40)
        curves[kind] = curve.mean(1).tolist()
        if a.ship:
            meta = {"config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(cfg).items()},
                    "train_minutes": round(minutes, 1), "history": hist,
                    "command": f"python scripts/train_maml_rl.py --iterations {a.iterations} --meta-lr {a.meta_lr} "
                               f"--seed {a.seed} --ship",
                    "curve_test_goals": curves[kind], "test_goals": f"{TEST_GOALS} goals, sample_goals seed {TEST_GOALS_SEED}"}
            print("wrote", save_policy(f"{kind}-rl-point2d", theta, meta))
    curves["random"] = random_curve(goals)
    if a.ship:
        params, meta = load_policy("maml-rl-point2d")
        meta["curve_random"] = curves["random"]
        save_policy("maml-rl-point2d", params, meta)
    print("mean return on", TEST_GOALS, "test goals after 0, 1, 2, 3 steps (alpha 0.5, then 0.25; 40 trajectories/step)")
    for k, c in curves.items():
        print(f"{k:9s}", "  ".join(f"{x:7.2f}" for x in c))


if __name__ == "__main__":
    main()
