"""One process of the data-parallel tests (tests/test_distributed.py), launched by torchrun:

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/_dist_worker.py MODE OUT

MODE ``steps``: every algorithm case trained 3 iterations in float64 with metalib.distributed's
step; rank 0 saves the first meta-gradient and the final weights to OUT (a torch file).
MODE ``trainer``: FewShotTrainer on synthetic images (torchrun-launched, float32) with a run folder;
rank 0 saves the final weights and history. MODE ``crash``: as ``trainer``, but rank 1 raises at
its third iteration. The single-process references are built by the same functions here.
"""
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for p in (str(HERE.parent), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

import torch  # noqa: E402

from metalib import algorithms  # noqa: E402
from metalib.models import Conv4  # noqa: E402
from metalib.training import TrainingLoop  # noqa: E402

CASES = ("maml", "fomaml", "reptile", "protonet")
META_BATCH, ITERATIONS = 4, 3


def build(case):
    torch.manual_seed(0)
    head = None if case == "protonet" else 3
    net = Conv4(in_channels=1, n_classes=head, hidden=4, image_size=16).double()
    settings = {"maml": dict(inner_lr=0.4, inner_steps=2), "fomaml": dict(inner_lr=0.4, inner_steps=2),
                "reptile": dict(inner_lr=0.05, inner_steps=3, outer_lr=0.5), "protonet": {}}[case]
    return algorithms.get(case, net, **settings)


def batches():
    """ITERATIONS float64 meta-batches of META_BATCH 3-way 1-shot tasks (2 queries per class)."""
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(ITERATIONS):
        x_s = torch.rand(META_BATCH, 3, 1, 16, 16, generator=g, dtype=torch.float64)
        x_q = torch.rand(META_BATCH, 6, 1, 16, 16, generator=g, dtype=torch.float64)
        y_s = torch.arange(3).repeat(META_BATCH, 1)
        y_q = torch.arange(3).repeat_interleave(2).repeat(META_BATCH, 1)
        out.append((x_s, y_s, x_q, y_q))
    return out


def train(case, step_fn_factory=None):
    """3 iterations of ``case``; returns (first meta-gradient, final weights, losses)."""
    learner = build(case)
    data = iter(batches())
    # SGD (Reptile: its own SGD at epsilon): Adam divides each gradient by its running RMS, so on
    # entries whose gradient is zero in exact arithmetic (a conv bias before BatchNorm, ProtoNet's
    # shift-invariant last bias) it would take full-size steps on rounding noise, which differs
    # with the order of the additions; SGD keeps the comparison about the data-parallel maths.
    opt = learner.outer_optimizer(0.1) if case == "reptile" else torch.optim.SGD(learner.parameters(), lr=0.1)
    loop = TrainingLoop(learner, lambda: next(data), ITERATIONS, optimizer=opt,
                        step_fn=step_fn_factory(learner) if step_fn_factory else None)
    first = {}

    def record(opt, args, kwargs):
        if not first:
            first.update({n: p.grad.detach().clone() for n, p in learner.named_parameters()})

    loop.optimizer.register_step_pre_hook(record)
    loop.run()
    return first, {k: v.detach().clone() for k, v in learner.state_dict().items()}, list(loop.history.loss)


def tiny_config(**kw):
    from metalib.fewshot import default_config

    base = dict(dataset="custom", image_size=16, hidden=8, iterations=4, meta_batch=4, train_query=2, test_query=2,
                val_every=2, val_episodes=4, checkpoint_every=2, seed=3, inner_lr=0.1, inner_steps=1,
                test_inner_steps=1)
    base.update(kw)
    return default_config("maml", n_way=3, k_shot=1, **base)


def fit_trainer(run_dir, crash_rank=None, crash_at=2):
    from _nets import synthetic_images
    from metalib.fewshot import FewShotTrainer

    trainer = FewShotTrainer(tiny_config(), synthetic_images(10, per_class=6, seed=0),
                             synthetic_images(6, per_class=6, seed=1), run_dir=run_dir, progress=False, device="cpu")
    if crash_rank is not None and trainer.rank == crash_rank:
        step, n = trainer.loop.step_fn, {"i": 0}

        def crashing(batch, optimizer):
            if n["i"] == crash_at:
                raise RuntimeError(f"injected crash on rank {trainer.rank} at iteration {crash_at}")
            n["i"] += 1
            return step(batch, optimizer)

        trainer.loop.step_fn = crashing
        trainer.loop._step = lambda b: crashing(b, trainer.loop.optimizer)
    trainer.fit()
    return trainer


def main(mode, out):
    from metalib import distributed

    torch.set_num_threads(1)
    rank, size, _ = distributed.setup(backend="gloo", timeout_s=float(os.environ.get("DIST_TIMEOUT", "60")))
    finished = False
    try:
        if mode == "steps":
            res = {case: train(case, lambda learner: distributed.DistributedStep(learner, META_BATCH)) for case in CASES}
            if rank == 0:
                torch.save(res, out)
        elif mode in ("trainer", "crash"):
            t = fit_trainer(Path(out).parent / "run", crash_rank=1 if mode == "crash" else None)
            if rank == 0:
                torch.save({"model": t.model.state_dict(), "loss": t.history.loss, "val": t.history.val,
                            "rank": t.rank, "world": t.world_size}, out)
            else:
                assert t.run_dir is None and t.val_data is None
        else:
            raise SystemExit(f"unknown mode {mode}")
        finished = True
    except distributed.DistributedError as err:  # as scripts/train_fewshot.py: one line, no traceback
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2)
    finally:
        distributed.teardown(finished)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
