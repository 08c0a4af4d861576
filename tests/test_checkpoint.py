"""Resumable checkpoints: interrupt a run, resume it, get bit-identical weights; bad input is refused.

Everything here runs on a tiny Conv-4 (8 filters, 16x16 images) and a small synthetic uint8 dataset:
no Omniglot needed, a few seconds in all.
"""
import json
import math
import os
import signal

import pytest
import torch

import metalib
from metalib import checkpoint as ckpt
from metalib.fewshot import FewShotTrainer, TrainingDiverged, default_config


def synthetic(n_classes=10, per_class=6, size=16, seed=0):
    """uint8 [C, P, 1, size, size]: a random template per class plus per-image noise."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n_classes, 1, 1, size, size, generator=g)
    noise = torch.rand(n_classes, per_class, 1, size, size, generator=g)
    return ((0.7 * base + 0.3 * noise) * 255).to(torch.uint8)


TRAIN, VAL = synthetic(10, seed=0), synthetic(6, seed=1)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread is fastest (and robust on a shared machine); restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_config(algorithm, **kw):
    extra = {}
    if algorithm != "protonet":
        extra.update(inner_lr=0.1, inner_steps=2, test_inner_steps=2)
    if algorithm == "reptile":
        extra.update(outer_lr=0.5, inner_optimizer="adam", train_shot=2)
    if algorithm == "protonet":
        extra.update(train_way=4, lr_decay_every=3)  # exercise the LR schedule's state too
    base = dict(dataset="custom", image_size=16, hidden=8, iterations=9, meta_batch=2, train_query=2,
                test_query=2, val_every=4, val_episodes=4, checkpoint_every=2, seed=3)
    base.update(extra)
    base.update(kw)
    return default_config(algorithm, n_way=3, k_shot=1, **base)


def trainer(cfg, run_dir=None, **kw):
    return FewShotTrainer(cfg, TRAIN, VAL, run_dir=run_dir, progress=False, **kw)


def assert_same_state(a: FewShotTrainer, b: FewShotTrainer):
    for (k, x), (k2, y) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert k == k2 and torch.equal(x, y), f"{k} differs"
    if a.optimizer is not None:
        sa, sb = a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"]
        assert sa.keys() == sb.keys()
        for i in sa:
            for name in sa[i]:
                assert torch.equal(sa[i][name], sb[i][name]), f"optimizer state {i}/{name} differs"
        assert a.optimizer.param_groups[0]["lr"] == b.optimizer.param_groups[0]["lr"]
    assert torch.equal(a.generator.get_state(), b.generator.get_state())
    assert a.iteration == b.iteration
    assert a.history.loss == b.history.loss
    assert [v[:2] for v in a.history.val] == [v[:2] for v in b.history.val]
    assert a.best == b.best


@pytest.fixture(autouse=True)
def sigint_raises():
    """Ctrl-C raises ``KeyboardInterrupt`` during these tests however pytest was started: a shell starts a
    background job (``pytest &``, ``nohup``) with SIGINT ignored, and a run whose SIGINT is ignored rightly
    ignores it outside the held section too — which is not what these tests are about."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def interrupt_at(t: FewShotTrainer, call: int, where: str, signalled: bool = True):
    """Interrupt on the ``call``-th call of the sampler (after it drew its episode) or of the
    optimiser's step (after it updated the weights): a mid-iteration interrupt. ``signalled``: a real
    Ctrl-C (SIGINT to this process, as a terminal or a notebook's "interrupt kernel" sends it);
    otherwise ``KeyboardInterrupt`` is raised by the code itself."""
    counter = {"n": 0}
    if where == "sampler":
        obj, attr = t.loop, "sample_batch"
    else:
        obj, attr = t.optimizer, "step"
    original = getattr(obj, attr)

    def wrapped(*a, **k):
        out = original(*a, **k)
        counter["n"] += 1
        if counter["n"] == call:
            if signalled:
                os.kill(os.getpid(), signal.SIGINT)
            else:
                raise KeyboardInterrupt
        return out

    setattr(obj, attr, wrapped)
    return lambda: setattr(obj, attr, original)


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
@pytest.mark.parametrize("algorithm,where", [("protonet", "step"), ("maml", "sampler"), ("maml", "step"),
                                             ("reptile", "sampler"), ("reptile", "step")])
def test_interrupted_run_resumes_bit_identically(tmp_path, algorithm, where):
    cfg = tiny_config(algorithm)
    reference = trainer(cfg)
    reference.fit()

    # Ctrl-C during the 6th iteration: before the update (sampler) it is undone, so the run stops at 5;
    # during the update it is held until the iteration is complete, so the run stops at 6
    stop = 5 if where == "sampler" else 6
    t = trainer(cfg, tmp_path / "run")
    interrupt_at(t, 6, where)
    with pytest.raises(KeyboardInterrupt):
        t.fit()
    assert t.iteration == stop  # the end of the last complete iteration
    saved = ckpt.load_checkpoint(tmp_path / "run" / "last.pt")
    assert saved["iteration"] == stop
    resumed = trainer(cfg, tmp_path / "run")
    assert resumed.iteration == stop
    resumed.fit()
    assert_same_state(resumed, reference)

    # the same, resumed in memory (a notebook cell run again)
    t2 = trainer(cfg)
    restore = interrupt_at(t2, 3, where)
    with pytest.raises(KeyboardInterrupt):
        t2.fit()
    restore()
    t2.fit()
    assert_same_state(t2, reference)


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
def test_an_interrupt_raised_during_the_update_rolls_back_to_the_last_good_state(tmp_path):
    """Not a signal (which is held), an exception thrown while the weights change: the weights may be
    half-updated, so the trainer goes back to its last good state (kept every checkpoint_every)."""
    cfg = tiny_config("maml")
    reference = trainer(cfg)
    reference.fit()
    t = trainer(cfg, tmp_path / "run")
    restore = interrupt_at(t, 6, "step", signalled=False)
    with pytest.raises(KeyboardInterrupt):
        t.fit()
    restore()
    assert t.iteration == (5 // cfg.checkpoint_every) * cfg.checkpoint_every  # the 6th iteration (5) was hit
    t.fit()
    assert_same_state(t, reference)


def test_interrupt_during_validation_loses_nothing(tmp_path):
    cfg = tiny_config("protonet")
    reference = trainer(cfg)
    reference.fit()
    t = trainer(cfg, tmp_path / "run")
    original = t.validate
    t.validate = lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt)  # interrupt the 1st validation
    with pytest.raises(KeyboardInterrupt):
        t.fit()
    assert t.iteration == 4 and not t.history.val  # iteration 4 is complete; its validation runs on resume
    t.validate = original
    resumed = trainer(cfg, tmp_path / "run")
    resumed.fit()
    assert_same_state(resumed, reference)


def test_checkpoint_contents_load_with_weights_only(tmp_path):
    cfg = tiny_config("maml")
    t = trainer(cfg, tmp_path)
    t.fit(until=4)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    for key in ("model", "optimizer", "iteration", "generator", "rng", "config", "history"):
        assert key in state
    assert state["iteration"] == 4
    assert torch.equal(state["generator"], t.generator.get_state())
    assert torch.equal(state["rng"]["torch"], torch.get_rng_state())
    assert json.loads((tmp_path / "config.json").read_text()) == cfg.to_dict() == state["config"]
    best = ckpt.load_checkpoint(tmp_path / "best.pt")
    assert best["iteration"] == 4 and best["validation"]["episodes"] == 4
    # the global RNG state is restored on resume
    torch.manual_seed(12345)
    t2 = trainer(cfg, tmp_path)
    assert torch.equal(torch.get_rng_state(), state["rng"]["torch"])
    assert t2.iteration == 4


def test_rng_state_round_trip():
    import random

    s = ckpt.rng_state()
    a = (torch.rand(3), random.random())
    ckpt.set_rng_state(s)
    b = (torch.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and a[1] == b[1]


def test_resuming_with_a_different_config_is_refused(tmp_path):
    t = trainer(tiny_config("protonet"), tmp_path)
    t.fit(until=2)
    with pytest.raises(ckpt.ConfigMismatchError, match=r"meta_lr: saved 0\.001 vs now 0\.01"):
        trainer(tiny_config("protonet", meta_lr=0.01), tmp_path)
    # resume=False starts over explicitly
    fresh = trainer(tiny_config("protonet", meta_lr=0.01), tmp_path, resume=False)
    assert fresh.iteration == 0 and not (tmp_path / "last.pt").exists()
    assert json.loads((tmp_path / "config.json").read_text())["meta_lr"] == 0.01


@pytest.mark.parametrize("damage", ["truncate", "garbage", "not_a_checkpoint"])
def test_corrupt_checkpoint_is_a_clear_error(tmp_path, damage):
    cfg = tiny_config("protonet")
    trainer(cfg, tmp_path).fit(until=2)
    path = tmp_path / "last.pt"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "garbage":
        path.write_bytes(b"\x00not a zip at all" * 10)
    else:
        torch.save({"hello": 1}, path)
    with pytest.raises(ckpt.CorruptCheckpointError, match="last.pt"):
        trainer(cfg, tmp_path)


def test_missing_checkpoint_file():
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        ckpt.load_checkpoint("/nonexistent/last.pt")


def test_interrupted_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    cfg = tiny_config("protonet")
    t = trainer(cfg, tmp_path)
    t.fit(until=2)
    before = (tmp_path / "last.pt").read_bytes()

    def broken_save(obj, f, *a, **k):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(metalib.io.torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        t.save()
    monkeypatch.undo()
    assert (tmp_path / "last.pt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "last.pt"]  # no temp files left
    assert ckpt.load_checkpoint(tmp_path / "last.pt")["iteration"] == 2


def test_nan_stops_training_keeps_last_good_checkpoint(tmp_path):
    cfg = tiny_config("protonet", checkpoint_every=2)
    t = trainer(cfg, tmp_path)
    original, calls = t.train_sampler.sample, {"n": 0}

    def poisoned(*a, **k):  # the 6th batch (iteration 5) carries a NaN pixel
        x_s, y_s, x_q, y_q = original(*a, **k)
        calls["n"] += 1
        if calls["n"] == 6:
            x_s = x_s.clone()
            x_s[0, 0, 0, 0, 0] = float("nan")
        return x_s, y_s, x_q, y_q

    t.train_sampler.sample = poisoned
    with pytest.raises(TrainingDiverged, match=r"iteration 5.*last good checkpoint on disk is .*last\.pt \(iteration 4\)") as info:
        t.fit()
    assert info.value.iteration == 5 and info.value.checkpoint == tmp_path / "last.pt"
    assert isinstance(info.value, metalib.NonFiniteLossError)
    saved = ckpt.load_checkpoint(tmp_path / "last.pt")
    assert saved["iteration"] == 4
    assert all(torch.isfinite(v).all() for v in saved["model"].values())
    # the model in memory is at its last good state (before iteration 5's update), finite
    assert t.iteration == 5 and len(t.history.loss) == 5
    assert all(torch.isfinite(p).all() for p in t.model.parameters())


def test_nonfinite_weights_after_an_update_are_caught(tmp_path):
    cfg = tiny_config("maml")
    t = trainer(cfg, tmp_path)
    original, calls = t.optimizer.step, {"n": 0}

    def blow_up(*a, **k):
        out = original(*a, **k)
        calls["n"] += 1
        if calls["n"] == 3:
            with torch.no_grad():
                next(t.model.parameters())[0].fill_(math.inf)
        return out

    t.optimizer.step = blow_up
    with pytest.raises(TrainingDiverged, match="weights became non-finite"):
        t.fit()
    assert t.iteration == 2 and all(torch.isfinite(p).all() for p in t.model.parameters())
    assert ckpt.load_checkpoint(tmp_path / "last.pt")["iteration"] == 2


def test_save_checkpoint_refuses_nonfinite_weights(tmp_path):
    with pytest.raises(ValueError, match="non-finite"):
        ckpt.save_checkpoint(tmp_path / "x.pt", {"model": {"w": torch.tensor([float("nan")])}, "iteration": 0,
                                                  "config": {}, "rng": {}})
    assert not (tmp_path / "x.pt").exists()
