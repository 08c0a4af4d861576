"""The CUDA-only branches: the batched path's meta-gradient on the GPU, a training run captured as
CUDA graphs against the same run without graphs, and no host sync per iteration in deferred mode.
Skipped on machines without CUDA (the CPU branches are in tests/test_batched.py and
tests/test_sync_free.py); scripts/gpu_run.py exercises the same paths at full size on a lent GPU."""
import pytest
import torch

from metalib import MAML
from metalib.fewshot import FewShotTrainer, default_config
from _nets import rel_error, synthetic_images

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
TRAIN, VAL = synthetic_images(10, per_class=6, seed=0), synthetic_images(6, per_class=6, seed=1)


def tiny(**kw):
    base = dict(dataset="custom", image_size=16, hidden=8, iterations=12, meta_batch=4, train_query=2, test_query=2,
                val_every=0, checkpoint_every=0, seed=3, inner_lr=0.1, inner_steps=1, test_inner_steps=1)
    base.update(kw)
    return default_config("maml", n_way=3, k_shot=1, **base)


@pytest.mark.parametrize("first_order", [False, True])
def test_batched_meta_gradient_equals_the_loop_on_cuda_in_float64(first_order):
    from test_batched import conv4_64, conv4_batch

    model = conv4_64(seed=4).cuda()
    batch = tuple(t.cuda() for t in conv4_batch(seed=4))
    grads = {}
    for batching in ("loop", "vmap"):
        maml = MAML(model, inner_lr=0.4, inner_steps=2, first_order=first_order, batching=batching)
        model.zero_grad(set_to_none=True)
        maml.meta_loss(batch).backward()
        grads[batching] = {n: p.grad.clone() for n, p in model.named_parameters()}
    assert rel_error(grads["vmap"], grads["loop"]) < 1e-10
    assert MAML(model).uses_vmap()  # auto on CUDA: the batched path (metalib.engine.BATCHED_BY_DEFAULT)


@pytest.mark.parametrize("batching", ["loop", "vmap"])
def test_cuda_graph_training_equals_training_without_graphs(batching):
    cfg = tiny(options={"batching": batching})
    plain = FewShotTrainer(cfg, TRAIN, VAL, device="cuda", progress=False)
    plain.fit()
    graphed = FewShotTrainer(cfg, TRAIN, VAL, device="cuda", progress=False, capture="cuda_graph", check_every=4)
    graphed.fit()
    step = graphed.loop._step
    assert step.error is None and step.captures == 1 and graphed.loop.capture_error is None
    torch.testing.assert_close(torch.tensor(graphed.history.loss), torch.tensor(plain.history.loss), rtol=1e-4,
                               atol=1e-5)
    for (k, a), (_, b) in zip(graphed.model.state_dict().items(), plain.model.state_dict().items()):
        if k.startswith("features.") and k.endswith(".0.bias"):
            continue  # zero gradient in exact arithmetic: Adam steps on rounding noise
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=k)


def test_deferred_iterations_make_no_host_sync_between_checks():
    cfg = tiny(iterations=8, options={"batching": "vmap"})
    t = FewShotTrainer(cfg, TRAIN, VAL, device="cuda", progress=False, check_every=8)
    batches = [t.train_sampler.sample(cfg.meta_batch, generator=t.generator) for _ in range(8)]
    it = iter(batches)
    t.loop.sample_batch = lambda: next(it)
    t.loop.step_fn(batches[0], t.optimizer)  # warm-up (lazy initialisation may sync)
    torch.cuda.synchronize()
    seen = []

    class Watch:
        def on_run_start(self, loop, until):
            torch.cuda.set_sync_debug_mode("error")

        def on_iteration_end(self, loop, metrics):
            seen.append(loop.iteration)
            if loop.iteration == 7:
                torch.cuda.set_sync_debug_mode("default")  # the check after iteration 8 syncs, once

        def on_run_end(self, loop):
            torch.cuda.set_sync_debug_mode("default")

        on_interrupt = on_diverged = lambda self, *a: torch.cuda.set_sync_debug_mode("default")  # noqa: E731

    t.loop.callbacks.append(Watch())
    try:
        t.fit()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert seen == list(range(1, 9)) and len(t.history.loss) == 8


def test_protonet_training_step_makes_no_host_sync_once_the_episode_shape_is_checked():
    """ProtoNet's train_step on CUDA under torch.cuda.set_sync_debug_mode("error"): after the first batch
    of a shape (whose labels are checked once), a step (the finiteness checks deferred, as the loop runs
    them on CUDA) synchronises nothing. The CPU twin counting host reads: tests/test_sync_free.py."""
    from metalib.functional import deferred_finite_checks

    cfg = default_config("protonet", n_way=3, k_shot=1, dataset="custom", image_size=16, hidden=8, iterations=4,
                         meta_batch=2, train_query=2, test_query=2, val_every=0, checkpoint_every=0, seed=3)
    t = FewShotTrainer(cfg, TRAIN, VAL, device="cuda", progress=False)
    opt = t.optimizer  # the run's own outer optimiser, as the loop steps it
    first, second = t.loop.sample_batch(), t.loop.sample_batch()
    with deferred_finite_checks():
        t.learner.train_step(first, opt)  # the first batch of this shape: labels checked (syncs); lazy init
    torch.cuda.synchronize()
    try:
        torch.cuda.set_sync_debug_mode("error")
        with deferred_finite_checks():
            metrics = t.learner.train_step(second, opt)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert metrics["loss"].is_cuda and bool(torch.isfinite(metrics["loss"]))


def test_a_captured_run_names_bad_input_not_the_learning_rate():
    """An inf pixel replayed through the CUDA graph (after the capture at the 4th iteration) is reported as bad
    data (issue 24); the CPU half of this (the flags and their report) is in tests/test_sync_free.py."""
    from metalib.fewshot import TrainingDiverged
    t = FewShotTrainer(tiny(iterations=8), TRAIN, VAL, device="cuda", progress=False, capture="cuda_graph",
                       check_every=8)
    good, calls = t.loop.sample_batch, []

    def sample():
        calls.append(1)
        b = list(good())
        if len(calls) == 6:
            b[0] = b[0].clone()
            b[0].view(-1)[5] = float("inf")
        return tuple(b)

    t.loop.sample_batch = sample
    with pytest.raises(TrainingDiverged) as err:
        t.fit()
    assert t.loop._step.captures == 1 and err.value.bad_data, str(err.value)
    assert "iteration 5: its inputs held NaN or inf" in str(err.value) and "learning rate" not in str(err.value)
