"""Train the shipped sinusoid weights: MAML, first-order MAML, Reptile and the pretrained baseline.

Paper-length settings (Finn et al. 2017, official code): 70,000 meta-iterations, K = 10, meta-batch
25, Adam 1e-3, one inner SGD step of 0.01; Reptile and the joint-training baseline get the same
budget (settings in ``metalib/sinusoid_lab.py``: ``PAPER``, ``REPTILE``). Each run keeps ~30 weight
snapshots (log-spaced iterations) for the meta-training timeline widget, is evaluated on seeded test
tasks (``sinusoid_lab.evaluate``) and is written with ``metalib.pretrained.save_pretrained`` as
``metalib/weights/sinusoid-<kind>.pt`` plus its entry in ``metalib/weights/MANIFEST.json``.

    python scripts/train_sinusoid.py                        # all four, 70,000 iterations each
    python scripts/train_sinusoid.py --kinds maml reptile   # some of them
    python scripts/train_sinusoid.py --iterations 2000 --no-save   # a quick dry run
"""
from __future__ import annotations

import argparse
import platform
import sys
import time

import torch

from metalib.course import sinusoid_lab as lab
from metalib.device import describe_device
from metalib.pretrained import save_pretrained


def main(argv=None) -> int:
    """Every error is one line on stderr and exit code 2."""
    try:
        return _main(argv)
    except (ValueError, TypeError, OSError) as err:
        print(f"error: {str(err).splitlines()[0] if str(err) else type(err).__name__}", file=sys.stderr)
        return 2


def _main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--kinds", nargs="+", default=list(lab.KINDS), choices=lab.KINDS, help="which learners to train")
    ap.add_argument("--iterations", type=int, default=lab.PAPER["iterations"], help="meta-iterations")
    ap.add_argument("--seed", type=int, default=0, help="seeds the initial weights and the tasks")
    ap.add_argument("--snapshots", type=int, default=30, help="about this many log-spaced weight snapshots")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest for this tiny MLP)")
    ap.add_argument("--no-save", action="store_true", help="train and evaluate, write nothing")
    ap.add_argument("--reevaluate", action="store_true",
                    help="train nothing: re-measure the metrics of the shipped weights and update their manifest entries")
    args = ap.parse_args(argv)
    if args.iterations < 0 or args.threads < 1 or args.snapshots < 1:
        raise ValueError(f"--iterations must be >= 0, --threads and --snapshots >= 1 (got {args.iterations}, "
                         f"{args.threads}, {args.snapshots})")
    torch.set_num_threads(args.threads)
    if args.reevaluate:
        return reevaluate(args.kinds)
    device = describe_device("cpu")
    print(f"device: {device} | torch {torch.__version__} | python {platform.python_version()}")
    for kind in args.kinds:
        command = f"python scripts/train_sinusoid.py --kinds {kind} --iterations {args.iterations} --seed {args.seed}"
        start = time.perf_counter()
        res = lab.train(
            kind, args.iterations, seed=args.seed, progress=sys.stderr.isatty(),
            snapshot_at=lab.snapshot_schedule(args.iterations, args.snapshots),
        )
        minutes = (time.perf_counter() - start) / 60
        ev = lab.evaluate(res.model)
        mse = ev["mse"]
        tail = res.loss[-1000:]
        print(f"{lab.WEIGHTS[kind]}: {args.iterations} iterations in {minutes:.1f} min "
              f"({args.iterations / max(res.seconds, 1e-9):.0f} it/s); final training loss "
              f"{sum(tail) / max(len(tail), 1):.3f}; post-adaptation MSE {mse}", flush=True)
        if args.no_save:
            continue
        name, learner_settings = lab.LEARNERS[kind]
        settings = {k: lab.PAPER[k] for k in ("k_support", "k_query", "meta_batch", "meta_lr")}
        settings.update(learner_settings, iterations=args.iterations, learner_schedule=lab.REPTILE["anneal"])
        info = {
            "description": f"{lab.LABELS[kind]} on Finn et al.'s sinusoid regression (1-40-40-1 ReLU MLP)",
            "command": command,
            "seed": args.seed,
            "iterations": args.iterations,
            "settings": settings,
            "learner": {"algorithm": name, "settings": {**learner_settings, "loss_fn": "mse_loss"}},
            "device": device,
            "torch": torch.__version__,
            "minutes": round(minutes, 2),
            "final_training_loss": round(sum(tail) / max(len(tail), 1), 4),
            "test_inner_lr": lab.TEST_LR,
            "snapshots": sorted(res.snapshots),
            "metrics": metrics(ev),
        }
        # this script re-makes the shipped sinusoid weights: replacing their names is what it is for
        entry = save_pretrained(lab.WEIGHTS[kind], lab.make_learner(kind, res.model), lab.BUILDER, info=info,
                                snapshots=res.snapshots, overwrite=True)
        print(f"  saved metalib/weights/{entry['file']} (sha256 {entry['sha256'][:12]}…)", flush=True)
    return 0


def metrics(ev) -> dict:
    return {"post_adaptation_mse": ev["mse"], "diverged_tasks": ev["diverged"], "how": lab.evaluation_protocol(),
            "eval": {**lab.EVAL, "lr": lab.TEST_LR, "diverged_above": lab.DIVERGED}}


def reevaluate(kinds) -> int:
    """Re-measure the shipped weights with the current protocol (``sinusoid_lab.EVAL``); the weights,
    snapshots and training record are kept as they are."""
    import metalib

    for kind in kinds:
        name = lab.WEIGHTS[kind]
        info = metalib.pretrained_info(name)
        learner, snaps = metalib.pretrained(name), metalib.pretrained_snapshots(name)
        info["metrics"] = metrics(lab.evaluate(learner.model))
        info["metrics"]["measured_by"] = "python scripts/train_sinusoid.py --reevaluate --kinds " + kind
        for key in ("file", "sha256", "builder", "builder_kwargs", "state"):
            info.pop(key, None)
        save_pretrained(name, learner, lab.BUILDER, info=info, snapshots=snaps, overwrite=True)
        print(name, info["metrics"]["post_adaptation_mse"], info["metrics"]["diverged_tasks"], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
