"""The GPU branches of the training loop that run on the CPU too: no host sync per iteration
(``deferred``), the finiteness check once per ``check_every``, roll-back on NaN, the graph-free
fallback of ``capture="cuda_graph"``, ``capture="compile"``, the time budget. Each is checked
against the plain (synced, per-iteration) loop, which tests/test_checkpoint.py pins down.
CUDA-only parts (the capture itself, sync-debug mode) are in tests/test_cuda.py."""
import pytest
import torch

from metalib.fewshot import FewShotTrainer, TrainingDiverged, default_config
from metalib.training import Callback, CudaGraphStep, TrainingLoop
from _nets import synthetic_images

TRAIN, VAL = synthetic_images(10, per_class=6, seed=0), synthetic_images(6, per_class=6, seed=1)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def tiny(algorithm="maml", **kw):
    extra = dict(inner_lr=0.1, inner_steps=1, test_inner_steps=1) if algorithm != "protonet" else {}
    base = dict(dataset="custom", image_size=16, hidden=8, iterations=9, meta_batch=2, train_query=2,
                test_query=2, val_every=0, checkpoint_every=0, seed=3, **extra)
    base.update(kw)
    return default_config(algorithm, n_way=3, k_shot=1, **base)


def trainer(cfg, **kw):
    kw.setdefault("progress", False)
    return FewShotTrainer(cfg, TRAIN, VAL, **kw)


def same_weights(a, b):
    for (k, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(x, y), k


class Lengths(Callback):
    """len(history.loss) at the end of every iteration."""

    def __init__(self):
        self.seen = []

    def on_iteration_end(self, loop, metrics):
        self.seen.append(len(loop.history.loss))


@pytest.mark.parametrize("algorithm", ["maml", "protonet", "reptile"])
def test_deferred_loop_trains_exactly_as_the_synced_loop(algorithm):
    cfg = tiny(algorithm, **({"outer_lr": 0.5, "train_shot": 2} if algorithm == "reptile" else {}))
    ref = trainer(cfg)
    ref.fit()
    t = trainer(cfg, deferred=True, check_every=4)
    assert t.loop.deferred and t.loop.check_every == 4
    seen = Lengths()
    t.loop.callbacks.append(seen)
    t.fit()
    same_weights(t, ref)
    assert t.history.loss == ref.history.loss and t.history.accuracy == ref.history.accuracy
    # the history is filled at the checks only (iterations 4, 8 and the last), not per iteration
    assert seen.seen == [0, 0, 0, 4, 4, 4, 4, 8, 9]


def test_deferred_defaults_follow_the_device():
    cpu = trainer(tiny())
    assert not cpu.loop.deferred and cpu.loop.check_every == 1
    assert trainer(tiny(), deferred=True).loop.check_every == 50


def test_deferred_metrics_stay_tensors_until_the_check():
    t = trainer(tiny(), deferred=True, check_every=3)
    got = []

    class Spy(Callback):
        def on_iteration_end(self, loop, metrics):
            got.append(metrics)

    t.loop.callbacks.append(Spy())
    t.fit(until=2)  # a run ends on a check, wherever it stops
    assert all(isinstance(v, torch.Tensor) for m in got for v in m.values())
    assert len(t.history.loss) == 2 and not t.loop._pending


def nan_at(t, call):
    """Make the ``call``-th training batch NaN (its support images)."""
    original, n = t.loop.sample_batch, {"i": 0}

    def sample():
        b = original()
        n["i"] += 1
        if n["i"] == call:
            b = (torch.full_like(b[0], float("nan")), *b[1:])
        return b

    t.loop.sample_batch = sample


def test_nan_in_deferred_mode_rolls_back_to_the_last_good_state_and_names_the_iteration():
    cfg = tiny(checkpoint_every=2)  # keep_every = checkpoint_every: good states at 2, 4, 6, ...
    ref = trainer(cfg)
    ref.fit(until=4)
    t = trainer(cfg, deferred=True, check_every=4)
    nan_at(t, 6)  # iteration 5 (0-based) gets NaN input: the update is taken, the check finds it later
    with pytest.raises(TrainingDiverged, match="non-finite at iteration 5") as err:
        t.fit()
    assert "rolled back" in str(err.value) and "iteration 4" in str(err.value)
    assert t.iteration == 4
    same_weights(t, ref)
    assert all(torch.isfinite(p).all() for p in t.model.parameters())
    assert t.history.loss == ref.history.loss


def test_nan_on_the_synced_path_still_stops_before_the_update():
    cfg = tiny()
    ref = trainer(cfg)
    ref.fit(until=5)
    t = trainer(cfg)
    nan_at(t, 6)
    with pytest.raises(TrainingDiverged, match="iteration 5"):
        t.fit()
    assert t.iteration == 5
    same_weights(t, ref)


def test_deferred_run_interrupted_and_resumed_is_bit_identical(tmp_path):
    import os
    import signal

    cfg = tiny(checkpoint_every=2)
    ref = trainer(cfg)
    ref.fit()
    t = trainer(cfg, deferred=True, check_every=4, run_dir=tmp_path / "run")
    original, n = t.optimizer.step, {"i": 0}

    def step(*a, **k):
        out = original(*a, **k)
        n["i"] += 1
        if n["i"] == 6:
            os.kill(os.getpid(), signal.SIGINT)  # a Ctrl-C during the update of iteration 5
        return out

    t.optimizer.step = step
    with pytest.raises(KeyboardInterrupt):
        t.fit()
    assert t.iteration == 6 and not t.loop._pending  # the checkpoint written on interrupt synced first
    resumed = trainer(cfg, deferred=True, check_every=4, run_dir=tmp_path / "run")
    assert resumed.iteration == 6
    resumed.fit()
    same_weights(resumed, ref)
    assert resumed.history.loss == ref.history.loss


def test_cuda_graph_capture_without_cuda_falls_back_to_the_plain_step():
    cfg = tiny()
    ref = trainer(cfg)
    ref.fit()
    with pytest.warns(UserWarning, match="needs a learner on a CUDA device"):
        t = trainer(cfg, capture="cuda_graph")
    assert t.loop.deferred and t.loop.capture_error
    t.fit()
    same_weights(t, ref)
    assert t.history.loss == ref.history.loss


def test_cuda_graph_step_after_a_failed_capture_runs_the_plain_step():
    calls = []
    step = CudaGraphStep(lambda batch, opt: calls.append(batch) or {"loss": torch.zeros(())}, optimizer=None)
    step.error = "RuntimeError: operation not permitted when stream is capturing"
    out = step((torch.zeros(1),))
    assert calls and float(out["loss"]) == 0.0


@pytest.mark.slow
def test_compiled_meta_iteration_trains_as_the_eager_one():
    """capture="compile" (torch.compile of the whole meta-iteration; the "eager" backend here, to test
    the plumbing in seconds: on a GPU the default inductor backend is what is measured)."""
    cfg = tiny(iterations=3)
    ref = trainer(cfg)
    ref.fit()
    t = FewShotTrainer(cfg, TRAIN, VAL, progress=False, capture=None)
    t.loop._step = torch.compile(lambda b: t.loop.step_fn(b, t.loop.optimizer), backend="eager")
    t.fit()
    torch.testing.assert_close(torch.tensor(t.history.loss), torch.tensor(ref.history.loss), rtol=1e-5, atol=0)
    for (k, x), (_, y) in zip(t.model.state_dict().items(), ref.model.state_dict().items()):
        if k.startswith("features.") and k.endswith(".0.bias"):
            # a conv bias right before BatchNorm has a zero gradient in exact arithmetic: Adam turns its
            # rounding noise (which differs between traced and eager kernels) into full-size steps
            continue
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, msg=k)
    loop = TrainingLoop(t.learner, lambda: None, 1, capture="compile", compile_options={"backend": "eager"})
    assert loop.deferred and loop.capture == "compile"


def test_time_budget_stops_at_the_end_of_an_iteration_and_saves(tmp_path):
    from metalib import checkpoint as ckpt

    t = trainer(tiny(iterations=50), run_dir=tmp_path / "run")
    t.fit(max_seconds=0)
    assert t.iteration == 1
    assert ckpt.load_checkpoint(tmp_path / "run" / "last.pt")["iteration"] == 1
    t.fit(max_seconds=0)  # resumes and takes one more
    assert t.iteration == 2


@pytest.mark.parametrize("kw,match", [(dict(capture="graphs"), "capture must be"),
                                      (dict(check_every=0), "check_every must be"),
                                      (dict(check_every=2.5), "check_every must be")])
def test_bad_loop_options_are_refused_with_one_line(kw, match):
    t = trainer(tiny())
    with pytest.raises(ValueError, match=match):
        TrainingLoop(t.learner, lambda: None, 3, **kw)
    with pytest.raises(ValueError, match="max_seconds"):
        t.loop.run(max_seconds=-1)


# ============================================================================ input checks cost no host sync per step
SYNCS = [(torch.Tensor, "item"), (torch.Tensor, "tolist"), (torch.Tensor, "__bool__"), (torch.Tensor, "__int__"),
         (torch.Tensor, "__float__"), (torch.Tensor, "nonzero"), (torch, "unique"), (torch, "bincount")]


def count_host_syncs(monkeypatch, fn):
    """Run ``fn()`` counting the calls that read a tensor back to the host (or, for bincount and
    unique, synchronise a CUDA device): ``.item()``, ``.tolist()``, ``bool/int/float(tensor)``,
    ``nonzero``, ``torch.unique``, ``torch.bincount``. Returns the names called."""
    calls = []
    with monkeypatch.context() as m:
        for owner, name in SYNCS:
            real = getattr(owner, name)

            def spy(*a, _real=real, _name=name, **k):
                calls.append(_name)
                return _real(*a, **k)

            m.setattr(owner, name, spy)
        fn()
    return calls


@pytest.mark.parametrize("algorithm", ["maml", "protonet"])
def test_a_training_step_reads_nothing_back_once_the_episode_shape_is_checked(monkeypatch, algorithm):
    """On a GPU (here: CPU tensors treated as device tensors, CHECK_EVERY_BATCH emptied) the labels are
    checked on the first batch of a shape, and a training step after it makes no host sync at all
    (the finiteness checks deferred, as the loop runs them on CUDA). CUDA itself: tests/test_cuda.py."""
    import metalib.batch as mb
    from metalib.functional import deferred_finite_checks

    t = trainer(tiny(algorithm))
    opt = torch.optim.SGD(t.learner.parameters(), lr=0.01)
    first, second = t.loop.sample_batch(), t.loop.sample_batch()
    monkeypatch.setattr(mb, "CHECK_EVERY_BATCH", set())
    monkeypatch.setattr(mb, "_CHECKED", {})

    def step(batch):
        with deferred_finite_checks():
            t.learner.train_step(batch, opt)

    assert count_host_syncs(monkeypatch, lambda: step(first))  # the first batch of this shape: checked
    assert count_host_syncs(monkeypatch, lambda: step(second)) == []
    # the counter is not blind: with every batch checked (CPU, or METALIB_CHECK_EVERY_BATCH=1) it sees the reads
    monkeypatch.setenv("METALIB_CHECK_EVERY_BATCH", "1")
    assert count_host_syncs(monkeypatch, lambda: step(second))
    bad = (second[0], second[1], second[2], torch.full_like(second[3], -100))
    with pytest.raises(ValueError, match="-100"):
        step(bad)


# ----------------------------------------------------------------------------- the captured step: data or divergence (#24)
class ReplayOnCpu(CudaGraphStep):
    """CudaGraphStep's bookkeeping without CUDA: the step runs with its finiteness checks collected as the
    capture collects them (``keep_checks``), then they are reported as after a replay (``report``). The
    capture and the replay themselves are CUDA-only (tests/test_cuda.py)."""

    def __call__(self, batch):
        from metalib.functional import deferred_finite_checks
        with deferred_finite_checks() as checks:
            out = self.step_fn(batch, self.optimizer)
        self.keep_checks(checks, batch[0].device)
        self.report()
        return out


def inf_pixel_at(t, iteration):
    good, calls = t.loop.sample_batch, []

    def sample():
        calls.append(1)
        b = list(good())
        if len(calls) == iteration:
            b[0] = b[0].clone()
            b[0].view(-1)[5] = float("inf")
        return tuple(b)

    return sample


@pytest.mark.parametrize("bad_data", [True, False])
def test_the_captured_step_tells_bad_input_from_divergence(bad_data):
    cfg = tiny(iterations=8) if bad_data else tiny(iterations=8, inner_lr=1e38)  # (inner steps overflow)
    t = trainer(cfg, deferred=True, check_every=4)
    t.loop._step = ReplayOnCpu(t.loop.step_fn, t.loop.optimizer)
    if bad_data:
        t.loop.sample_batch = inf_pixel_at(t, 3)
    with pytest.raises(TrainingDiverged) as err:
        t.fit()
    text = str(err.value)
    assert err.value.bad_data == bad_data, text
    if bad_data:
        assert "iteration 2: its inputs held NaN or inf" in text and "learning rate" not in text
    else:
        assert "probably too large" in text and "inputs held" not in text


def test_the_captured_steps_report_outside_the_loop_says_which_it_is():
    step = CudaGraphStep(lambda b, o: {}, optimizer=None)
    step._static_ok, step._static_inputs_ok = torch.tensor(False), torch.tensor(False)
    with pytest.raises(ValueError, match="inputs contain NaN or inf values .*bad data, not a divergence"):
        step.report()
    step._static_inputs_ok = torch.tensor(True)
    with pytest.raises(ValueError, match="although its inputs are: a divergence"):
        step.report()
    step._static_ok = torch.tensor(True)
    step.report()
