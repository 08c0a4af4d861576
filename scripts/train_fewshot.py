#!/usr/bin/env python
"""Train a few-shot classifier (any registered algorithm: metalib.algorithms.available()), evaluate it
on 600 seeded test episodes, and optionally ship it to metalib/weights/.

Examples (run from the repository root; the data is read from data/ by default, or from the folder
$METALIB_DATA names: see docs/data.md):

    python scripts/train_fewshot.py --algorithm protonet --way 5 --shot 1 --iterations 2000
    python scripts/train_fewshot.py --algorithm maml --way 5 --shot 1 --iterations 1000 --meta-batch 8
    python scripts/train_fewshot.py --algorithm protonet --way 5 --shot 1 --iterations 2000 \\
        --ship protonet-omniglot-5w1s --note "CPU-budget run"

Several processes (data parallel, metalib.distributed: each takes a share of every meta-batch's
tasks, one all-reduce per iteration; NCCL on GPUs, gloo on CPU; rank 0 alone logs, validates, tests,
writes checkpoints and ships):

    torchrun --nproc-per-node 2 scripts/train_fewshot.py --algorithm maml --way 5 --shot 1 ...

Every setting not given on the command line is the paper's (metalib.fewshot.default_config; printed
at the start). Checkpoints go to --run-dir (default runs/<algorithm>-<dataset>-<N>w<K>s, plus -<hash>
when a setting other than --iterations differs from the paper's: each config its own folder); running
the same command again after an interruption (Ctrl-C) resumes the run exactly where it stopped.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from metalib import algorithms, fewshot, runs  # noqa: E402
from metalib.algorithms.settings import config_class, learner_fields  # noqa: E402
from metalib.device import describe_device  # noqa: E402
from metalib.io import atomic_write_json  # noqa: E402

# command-line flag -> a run field of FewShotConfig (None on the command line = keep the paper's default);
# the learners' own settings are flags too, made from their config classes (learner_flags)
OVERRIDES = {
    "iterations": (int, "meta-iterations of the run"),
    "meta_batch": (int, "tasks per meta-iteration"),
    "train_way": (int, "N of the training episodes (default: --way)"),
    "train_shot": (int, "K of the training episodes (default: --shot)"),
    "train_query": (int, "queries per class in the training episodes"),
    "meta_lr": (float, "Adam's learning rate (the outer loop)"),
    "lr_decay_every": (int, "halve the outer learning rate every N iterations (0: never)"),
    "hidden": (int, "Conv-4 filters per layer"),
    "splits": (str, "Omniglot split scheme: vinyals or maml"),
    "val_every": (int, "validate every N iterations (0: never)"),
    "val_episodes": (int, "seeded validation episodes"),
    "test_episodes": (int, "seeded test episodes"),
    "test_query": (int, "queries per class at validation and test"),
    "checkpoint_every": (int, "write last.pt every N iterations"),
    "seed": (int, "seeds the initial weights and the training episodes"),
}
DEFAULT = "the paper's (printed at the start)"


def learner_flags():
    """``{field: (example default, help, algorithms taking it)}``: every registered learner's own settings
    (the fields of its config class, declared in its file), in registry order."""
    flags = {}
    for name in algorithms.available():
        for f in learner_fields(config_class(name)):
            default, what, names = flags.get(f.name, (f.default, f.metadata.get("help", ""), []))
            flags[f.name] = (default, what, names + [name])
    return flags


def json_or_text(text: str):
    """A flag's value: JSON (``0.4``, ``[0.005,0.1]``, ``null``), else the string (``loop``)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """The module docstring as it is, and every option's default (where it has one)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "(default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return text + " (default: %(default)s)"


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.replace("``", ""), formatter_class=_Formatter)
    p.add_argument("--algorithm", required=True, choices=algorithms.available(), metavar="NAME",
                   help="a registered algorithm: " + ", ".join(algorithms.available())
                        + " (fomaml = MAML with first_order=True)")
    p.add_argument("--dataset", default="omniglot", choices=["omniglot", "miniimagenet"], help="the dataset")
    p.add_argument("--way", type=int, default=5, help="N (test and validation episodes)")
    p.add_argument("--shot", type=int, default=1, help="K (test and validation episodes)")
    for name, (typ, what) in OVERRIDES.items():
        p.add_argument("--" + name.replace("_", "-"), type=typ, default=None,
                       help=what if "(default" in what else f"{what} (default: {DEFAULT})")
    for name, (default, what, names) in learner_flags().items():
        flag = "--" + name.replace("_", "-")
        takes = f"({', '.join(names)})" if "(default" in what else f"({', '.join(names)}; default: {DEFAULT})"
        if isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=f"{what} {takes}")
        else:
            p.add_argument(flag, type=json_or_text, default=None, metavar="VALUE", help=f"{what} {takes}")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="checkpoints + config.json (default: runs/<name>, keyed by the config)")
    p.add_argument("--fresh", action="store_true", help="start over even if --run-dir holds a checkpoint")
    p.add_argument("--longer", action="store_true",
                   help="train an existing run longer: its settings may differ only by a larger --iterations")
    p.add_argument("--device", default=None, help="cpu / cuda / mps (default: the best available)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (torch.set_num_threads; 1 is the fast choice for these small models, "
                        "docs/threads.md)")
    p.add_argument("--eval-only", action="store_true", help="evaluate the run's best checkpoint, do not train")
    p.add_argument("--until", type=int, default=None, metavar="N",
                   help="stop the run early at iteration N (a time budget; 0 = where the run's checkpoint "
                        "stands): resume, train up to N, validate there, test and ship (the manifest records the "
                        "iterations actually trained beside the config's planned ones)")
    p.add_argument("--test-way", type=int, default=None,
                   help="ProtoNet only: test (and ship) with this N instead of --way (e.g. 20 for a model "
                        "validated on 5-way episodes, as Snell et al. test one model at 5 and 20 way)")
    p.add_argument("--ship", metavar="NAME", default=None,
                   help="save the evaluated weights to metalib/weights/NAME.pt and the manifest")
    p.add_argument("--overwrite", action="store_true", help="--ship may replace weights of the same name")
    p.add_argument("--note", default="", help="a note for the manifest (e.g. 'CPU-budget run')")
    p.add_argument("--weights-dir", type=Path, default=None, help="where --ship writes (default metalib/weights/)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (the validation and result lines are still printed, e.g. for a nohup log)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting of the learner by its name, as the flags above (VALUE is JSON, else a string; "
                        "repeatable): e.g. fce=true (Matching), memory_slots=128 (MANN), alpha_init=[0.005,0.1] (Meta-SGD)")
    p.add_argument("--capture", choices=["none", "cuda_graph", "compile"], default="none",
                   help="GPU: capture the meta-iteration as a CUDA graph, or torch.compile it (metalib.training)")
    p.add_argument("--check-every", type=int, default=None, metavar="N",
                   help="check losses/weights for NaN every N iterations (default: 1 on CPU, 50 on GPU, no host sync "
                        "in between)")
    p.add_argument("--dist-timeout", type=float, default=600, metavar="S",
                   help="torchrun: seconds a process waits for the others before the run fails (must exceed a "
                        "validation on rank 0)")
    return p.parse_args(argv)


class UsageError(Exception):
    """A problem with the command, reported in one line (exit 2)."""


def parse_option(text: str):
    """``"KEY=VALUE"`` -> ``(KEY, VALUE as JSON, else the string)``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--option takes KEY=VALUE (e.g. --option fce=true), got {text!r}")
    return key.strip(), json_or_text(value)


def main(argv=None) -> int:
    args = parse(argv)
    if args.threads is not None and args.threads < 1:
        return _error(f"--threads must be >= 1, got {args.threads}")
    if args.until is not None and args.until < 0:
        return _error(f"--until must be >= 0 (0: where the run's checkpoint stands), got {args.until}")
    if args.threads:
        torch.set_num_threads(args.threads)
    from metalib import checkpoint, distributed
    from metalib.data import CorruptDataError, DataNotFoundError

    code = None
    shown, warnings.showwarning = warnings.showwarning, _show_warning  # restored when main returns
    try:
        runs.check_ship(args.ship, args.weights_dir, args.overwrite)  # before hours of training, not after
        rank, world_size, dist_device = distributed.setup(timeout_s=args.dist_timeout, device=args.device)
        code = run(args, argv, rank, world_size, dist_device)
        return code
    except KeyboardInterrupt:  # outside training (e.g. in the final test): the run's checkpoints are intact
        print("\ninterrupted; the run's checkpoints are as they were: run the same command again (or with "
              "--eval-only to test its best.pt)", file=sys.stderr)
        return 130
    except runs.ForeignCheckpointError as err:
        return _error(str(err))
    except distributed.DistributedError as err:  # a torchrun peer died: one line here, its own error above
        return _error(str(err))
    except checkpoint.ConfigMismatchError as err:
        return _error(str(err).split(". Resume with")[0] + ". Run with --fresh to start over (this overwrites the "
                      "run's checkpoints), --run-dir DIR for another folder, or --longer to train a run longer with "
                      "a larger --iterations.")
    except (UsageError, ValueError, TypeError, DataNotFoundError, CorruptDataError, checkpoint.CheckpointError,
            OSError) as err:
        return _error(str(err))
    finally:
        warnings.showwarning = shown
        distributed.teardown(finished=code == 0)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line (``warning: ...``), not Python's two (the message, then the source line)."""
    text = str(message).splitlines()
    print(f"warning: {text[0] if text else category.__name__}", file=sys.stderr)


def _error(message: str) -> int:
    print(f"error: {message.splitlines()[0] if message else 'failed'}", file=sys.stderr)
    return 2


def run(args, argv, rank: int, world_size: int, dist_device) -> int:
    if rank != 0:  # rank 0 alone prints, tests and ships; the others train their shares (errors still show)
        import os

        sys.stdout = open(os.devnull, "w")
        args.no_progress = True
    if dist_device is not None:
        args.device = str(dist_device)
    overrides = {k: getattr(args, k) for k in (*OVERRIDES, *learner_flags()) if getattr(args, k) is not None}
    overrides.update(parse_option(o) for o in args.option)
    # a setting the learner does not take is one line naming those it has
    config = fewshot.default_config(args.algorithm, args.way, args.shot, args.dataset, **overrides)
    paper = fewshot.default_config(args.algorithm, args.way, args.shot, args.dataset)
    name, changed = runs.run_name(config.to_dict(), paper.to_dict())
    run_dir = args.run_dir or ROOT / "runs" / name
    command = "python scripts/train_fewshot.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    print(f"{config.describe()} — run folder {run_dir}")
    if changed and args.run_dir is None:
        print(f"  (settings other than the paper's: {', '.join(changed)} — their own run folder, keyed by the "
              "whole config but --iterations; the same command again resumes it)")
    print("config (the paper's defaults from the algorithm's paper_settings, overridden: "
          f"{', '.join(sorted(overrides)) or 'none'}):")
    print("  " + json.dumps(config.to_dict(), sort_keys=True))

    # --eval-only: a trainer that writes nothing; the run's checkpoints are checked and loaded below
    trainer = fewshot.FewShotTrainer(config, run_dir=None if args.eval_only else run_dir, resume=not args.fresh,
                                     device=args.device,
                                     progress=not args.no_progress, log=True, longer=args.longer,
                                     check_every=args.check_every,
                                     capture=None if args.capture == "none" else args.capture)
    # the whole run is checked before the first iteration: the test episodes too
    test_data = fewshot.load_split(config, "test") if rank == 0 else None
    if args.test_way and args.test_way != config.n_way and trainer.learner.fixed_way is not None:
        raise UsageError(f"--test-way is for learners without a fixed head; {trainer.learner.describe()} has a "
                         f"{trainer.learner.fixed_way}-way head")
    if test_data is not None:
        trainer.check_episodes(test_data, args.test_way or config.n_way)
    print(f"device: {describe_device(trainer.device)}; starting at iteration {trainer.iteration}/{config.iterations}"
          + (f"; {world_size} processes (torchrun), each {config.meta_batch // world_size}-"
             f"{-(-config.meta_batch // world_size)} of the {config.meta_batch} tasks per meta-batch"
             if world_size > 1 else ""))
    if not args.eval_only:
        t0 = time.perf_counter()
        try:
            if args.until is None:
                trainer.fit(threads=None)  # None: the count --threads set above
            else:
                trainer.fit(until=max(trainer.iteration, min(args.until, config.iterations)), threads=None)
                stop_early(trainer)
        except KeyboardInterrupt:  # the trainer has saved last.pt and said so, with how to resume: one message
            return 130
        except fewshot.TrainingDiverged as err:
            print(f"\nerror: {err}", file=sys.stderr)
            return 2
        h = trainer.history
        print(f"trained {trainer.iteration} iterations; {h.seconds / 60:.1f} min of training in all "
              f"({(time.perf_counter() - t0) / 60:.1f} min in this session) on {describe_device(trainer.device)}")
        if h.loss:
            tail = h.loss[-100:]
            print(f"final training loss (mean of last {len(tail)} iterations): {sum(tail) / len(tail):.4f}")
    else:
        runs.load_for_eval(trainer, run_dir)  # one line if damaged, foreign or absent: never another model's test
    if rank != 0:
        return 0
    if trainer.best:
        b = trainer.best
        print(f"best validation: {b['accuracy']:.2f}% ± {b['ci95']:.2f}% at iteration {b['iteration']} "
              f"({config.val_episodes} seeded val episodes); testing those weights")
    if runs.untrained_note(trainer):
        print(runs.untrained_note(trainer))
    ship_config = None
    if args.test_way and args.test_way != config.n_way:
        ship_config = fewshot.copy_config(config, n_way=args.test_way)
        result = trainer.test(test_data, n_way=args.test_way, threads=None)
    else:
        result = trainer.test(test_data, threads=None)
    print(f"test accuracy: {result}")
    result_file = Path(run_dir) / f"result-{result.n_way}w{result.k_shot}s.json"
    atomic_write_json({"test": result.as_dict(), "best_validation": trainer.best, "iterations": trainer.iteration,
                       "minutes": round(trainer.history.seconds / 60, 2), "command": command,
                       "device": describe_device(trainer.device)}, result_file)
    print(f"result written to {result_file}")
    if args.ship:
        entry = fewshot.ship(args.ship, trainer, result, command=command, note=args.note, config=ship_config,
                             directory=args.weights_dir, overwrite=args.overwrite)
        where = args.weights_dir or "metalib/weights"
        print(f"shipped as {args.ship!r}: {where}/{entry['file']} (sha256 {entry['sha256'][:16]}…)")
    return 0


def stop_early(trainer: fewshot.FewShotTrainer) -> None:
    """A run stopped before ``config.iterations``: validate the weights where it stopped (unless that
    iteration was just validated), so the best-validation choice covers the whole run."""
    trainer.validate_now()
    print(f"stopped early at iteration {trainer.iteration}/{trainer.config.iterations} (--until)")


if __name__ == "__main__":
    sys.exit(main())
