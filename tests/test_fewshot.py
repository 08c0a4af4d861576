"""The few-shot loop and evaluation protocol on synthetic data (no Omniglot needed; seconds)."""
import math

import pytest
import torch
from torch import nn

import metalib
from metalib import MAML, ProtoNet, Reptile, fewshot
from metalib.data import EpisodeSampler
from metalib.fewshot import (
    EvalResult, FewShotConfig, FewShotTrainer, default_config, evaluate, seeded_episodes,
)
from metalib.training import ProgressBar

from _nets import synthetic_images

pytestmark = pytest.mark.usefixtures("one_thread")


def synthetic(n_classes=10, per_class=6, size=16, seed=0):
    return synthetic_images(n_classes, per_class, size, seed)


# ----------------------------------------------------------------------------- defaults
def test_paper_defaults():
    m5 = default_config("maml", 5, 1)
    assert (m5.inner_lr, m5.inner_steps, m5.test_inner_steps, m5.meta_batch, m5.iterations) == (0.4, 1, 3, 32, 60_000)
    assert m5.train_query == 1 and m5.meta_lr == 1e-3 and not m5.first_order and m5.hidden == 64
    m20 = default_config("maml", 20, 5)
    assert (m20.inner_lr, m20.inner_steps, m20.test_inner_steps, m20.meta_batch) == (0.1, 5, 5, 16)
    assert default_config("fomaml", 5, 1).first_order
    p = default_config("protonet", 5, 5)
    assert (p.train_way, p.train_query, p.train_shot_, p.meta_lr, p.lr_decay_every, p.lr_decay) == (60, 5, 5, 1e-3, 2000, 0.5)
    r = default_config("reptile", 5, 5)
    assert (r.train_shot, r.inner_steps, r.inner_lr, r.outer_lr, r.outer_lr_final, r.meta_batch, r.test_inner_steps,
            r.inner_optimizer) == (10, 5, 0.0015, 0.7, 0.0, 5, 100, "adam")
    r1 = default_config("reptile", 5, 1)
    assert (r1.train_shot, r1.inner_steps, r1.inner_lr, r1.outer_lr, r1.meta_batch) == (12, 12, 0.00044, 1.0, 3)
    mini = default_config("maml", 5, 1, "miniimagenet")
    assert (mini.image_size, mini.in_channels, mini.hidden, mini.inner_lr, mini.test_inner_steps) == (84, 3, 32, 0.01, 10)
    # every evaluation uses the same protocol by default
    assert {(c.test_episodes, c.test_seed, c.test_query) for c in (m5, m20, p, r)} == {(600, fewshot.TEST_SEED, 15)}
    assert default_config("maml", 5, 1, iterations=7, meta_batch=4).meta_batch == 4


@pytest.mark.parametrize("bad, match", [
    (dict(algorithm="svm"), "unknown algorithm 'svm'; available: .*maml.*protonet"),
    (dict(algorithm="maml", inner_lr=0.1, inner_steps=1, train_way=10), "train_way must equal n_way"),
    (dict(algorithm="protonet", meta_lr=float("nan")), "meta_lr must be a finite number"),
    (dict(algorithm="protonet", k_shot=0), "k_shot must be >= 1"),
    (dict(algorithm="protonet", n_way=2.5), "n_way must be an int"),
    (dict(algorithm="protonet", dataset="cifar"), "dataset must be one of"),
    (dict(algorithm="maml", inner_lr=-1.0), "inner_lr must be a finite number >= 0"),
    (dict(algorithm="maml", first_order=1), "first_order must be true or false"),
    (dict(algorithm="protonet", inner_lr=0.1), "protonet has no setting 'inner_lr'"),
    (dict(algorithm="matching", options={"hops": 3}), "matching has no setting 'hops' .*fce"),
])
def test_bad_config_is_a_clear_error(bad, match):
    kw = dict(iterations=10)
    kw.update(bad)
    with pytest.raises((ValueError, TypeError), match=match):
        FewShotConfig(**kw)


def test_a_learners_own_settings_are_checked_when_it_is_built():
    cfg = FewShotConfig(algorithm="maml", iterations=10, inner_lr=0.0, inner_steps=1)
    with pytest.raises(ValueError, match="inner_lr must be > 0"):
        fewshot.build_learner(cfg)


def test_options_reach_the_learner_and_round_trip():
    cfg = default_config("maml", 5, 1, iterations=3, options={"batching": "loop", "recompute_steps": True})
    learner = fewshot.build_learner(cfg)
    assert learner.batching == "loop" and learner.recompute_steps
    assert FewShotConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="maml has no setting 'hops'"):  # refused with the config, not at build
        default_config("maml", 5, 1, iterations=3, options={"hops": 3})


def test_config_round_trip_and_unknown_keys():
    c = default_config("reptile", 5, 5, iterations=3)
    assert FewShotConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown config key"):
        FewShotConfig.from_dict({**c.to_dict(), "learning_rate": 1})


def test_trainer_checks_the_image_shape():
    cfg = default_config("protonet", 3, 1, dataset="custom", image_size=28, hidden=8, iterations=2, val_every=0)
    with pytest.raises(ValueError, match=r"train_data has images of shape \(1, 16, 16\)"):
        FewShotTrainer(cfg, synthetic(), progress=False)


def test_trainer_refuses_to_train_beyond_the_config():
    cfg = default_config("protonet", 3, 1, dataset="custom", image_size=16, hidden=8, iterations=2, val_every=0,
                         train_query=2)
    t = FewShotTrainer(cfg, synthetic(), progress=False)
    with pytest.raises(ValueError, match="until must be"):
        t.fit(until=5)


# ----------------------------------------------------------------------------- evaluation protocol
def test_seeded_episodes_do_not_depend_on_chunking_and_match_the_sampler():
    sampler = EpisodeSampler(synthetic(), 3, 2, 2)
    reference = list(sampler.episodes(7, seed=11))
    for chunk in (1, 3, 7, 50):
        got = list(seeded_episodes(sampler, 7, 11, chunk))
        assert sum(b[0].shape[0] for b in got) == 7
        for i, name in enumerate(("x_s", "y_s", "x_q", "y_q")):
            flat = torch.cat([b[i] for b in got])
            assert torch.equal(flat, torch.cat([e[i] for e in reference])), (chunk, name)


def test_accuracy_and_ci_are_computed_as_stated():
    # every image identical: all distances tie, argmax picks class 0 -> exactly 1/N of the queries right
    images = torch.full((6, 5, 1, 16, 16), 100, dtype=torch.uint8)
    res = evaluate(ProtoNet(nn.Flatten()), images, n_way=4, k_shot=1, q_query=3, episodes=10, seed=0)
    assert res.mean == pytest.approx(25.0) and res.std == 0 and res.ci95 == 0 and res.episodes == 10
    # perfectly separable classes: 100%
    separable = torch.arange(6, dtype=torch.uint8).mul(40).view(6, 1, 1, 1, 1).expand(6, 5, 1, 16, 16).contiguous()
    assert evaluate(ProtoNet(nn.Flatten()), separable, 4, 1, 3, episodes=5).mean == 100.0
    # the CI of a real run: 1.96 * population std / sqrt(n), from the per-episode accuracies
    torch.manual_seed(0)
    net = metalib.models.Conv4(hidden=8, image_size=16)
    res = evaluate(ProtoNet(net), synthetic(), 3, 1, 2, episodes=30, seed=5)
    acc = torch.tensor(res.accuracies, dtype=torch.float64)
    assert res.mean == pytest.approx(float(acc.mean()))
    assert res.ci95 == pytest.approx(1.96 * float(acc.std(unbiased=False)) / math.sqrt(30))
    assert ((acc * 6 / 100) - (acc * 6 / 100).round()).abs().max() < 1e-9  # each episode: k/6 queries right
    text = str(res)
    for piece in ("95% CI", "30 seeded test episodes", "3-way 1-shot", "2 queries/class", "seed 5", "CPU"):
        assert piece in text


def test_same_episodes_for_every_algorithm_and_maml_test_steps(monkeypatch):
    data = synthetic()
    torch.manual_seed(0)
    head = metalib.models.Conv4(n_classes=3, hidden=8, image_size=16)
    torch.manual_seed(0)
    enc = metalib.models.Conv4(hidden=8, image_size=16)
    seen = []
    for cls in (ProtoNet, MAML, Reptile):
        original = cls.predict

        def spy(self, x_s, y_s, x_q, n_way=None, steps=None, _original=original):
            seen.append((type(self).__name__, steps, x_s.clone(), y_s.clone()))
            return _original(self, x_s, y_s, x_q, n_way, steps)

        monkeypatch.setattr(cls, "predict", spy)
    evaluate(ProtoNet(enc), data, 3, 1, 2, episodes=4, seed=9)
    r0 = evaluate(MAML(head, inner_lr=0.5, inner_steps=1), data, 3, 1, 2, episodes=4, seed=9, steps=0)
    r3 = evaluate(MAML(head, inner_lr=0.5, inner_steps=1), data, 3, 1, 2, episodes=4, seed=9, steps=3)
    evaluate(Reptile(head, inner_lr=0.01, inner_steps=2), data, 3, 1, 2, episodes=4, seed=9)
    assert [s[:2] for s in seen] == [("ProtoNet", None), ("MAML", 0), ("MAML", 3), ("Reptile", 2)]
    for s in seen[1:]:
        assert torch.equal(s[2], seen[0][2]) and torch.equal(s[3], seen[0][3])
    assert r0.inner_steps == 0 and r3.inner_steps == 3
    # adapting on the support set changes the predictions: 0 steps of an untrained head is chance-like
    assert r0.accuracies != r3.accuracies


def test_evaluate_refuses_what_is_not_a_learner_and_bad_episode_counts():
    net = metalib.models.Conv4(hidden=8, image_size=16)
    with pytest.raises(TypeError, match=r"metalib.ProtoNet\(net\)"):
        evaluate(net, synthetic(), 3, 1, 2, episodes=2)
    for bad in (0, -5, 2.0):
        with pytest.raises(ValueError, match="episodes must be an int >= 1"):
            evaluate(ProtoNet(net), synthetic(), 3, 1, 2, episodes=bad)
    with pytest.raises(ValueError, match="5-way linear head"):
        evaluate(MAML(metalib.models.Conv4(n_classes=5, hidden=8, image_size=16)), synthetic(), 3, 1, 2, episodes=2)


def test_evaluation_does_not_change_the_model_or_the_global_rng():
    torch.manual_seed(0)
    net = metalib.models.Conv4(n_classes=3, hidden=8, image_size=16)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.get_rng_state()
    evaluate(MAML(net, inner_lr=0.4), synthetic(), 3, 1, 2, episodes=3, steps=2)
    assert torch.equal(rng, torch.get_rng_state())
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])
    assert all(p.grad is None for p in net.parameters())


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("algorithm", ["protonet", "maml", "reptile"])
def test_training_learns_on_synthetic_tasks(algorithm):
    extra = {"protonet": dict(meta_lr=3e-3),
             "maml": dict(inner_lr=0.4, inner_steps=1, test_inner_steps=3, meta_lr=3e-3, first_order=True),
             "reptile": dict(inner_lr=0.003, inner_steps=3, test_inner_steps=5, outer_lr=1.0, train_shot=3)}[algorithm]
    cfg = default_config(algorithm, 3, 1, dataset="custom", image_size=16, hidden=8, iterations=25, meta_batch=4,
                         train_query=2, test_query=2, val_every=0, seed=0, **extra)
    cfg = FewShotConfig.from_dict({**cfg.to_dict(), "train_way": 3 if algorithm == "protonet" else None})
    test_data = synthetic(8, seed=7)
    t = FewShotTrainer(cfg, synthetic(), progress=False)
    before = evaluate(t.learner, test_data, 3, 1, 2, episodes=30, seed=1)
    h = t.fit()
    after = t.test(test_data, episodes=30)
    assert len(h.loss) == 25 and all(math.isfinite(x) for x in h.loss)
    assert after.mean > before.mean + 5, (before.mean, after.mean)
    assert len(h.accuracy) == 25 and all(0 <= a <= 100 for a in h.accuracy)
    if algorithm != "reptile":  # Reptile never trains on the queries: its query loss is only monitored
        assert sum(h.loss[-5:]) < sum(h.loss[:5])


def test_reptile_uses_its_own_annealed_outer_step():
    cfg = default_config("reptile", 3, 1, dataset="custom", image_size=16, hidden=8, iterations=4, meta_batch=2,
                         train_shot=2, train_query=1, inner_steps=1, inner_lr=0.01, outer_lr=0.8, outer_lr_final=0.0,
                         val_every=0)
    t = FewShotTrainer(cfg, synthetic(), progress=False)
    assert isinstance(t.optimizer, torch.optim.SGD)
    seen, steps = [], []
    original = t.optimizer.step

    def step(*a, **k):  # the SGD step at eps is exactly theta <- theta - eps * (theta - mean phi)
        seen.append(t.optimizer.param_groups[0]["lr"])
        theta = {n: p.detach().clone() for n, p in t.learner.named_parameters()}
        direction = {n: p.grad.clone() for n, p in t.learner.named_parameters()}
        out = original(*a, **k)
        steps.append(max(float((p - (theta[n] - seen[-1] * direction[n])).abs().max())
                         for n, p in t.learner.named_parameters()))
        return out

    t.optimizer.step = step
    t.fit()
    assert seen == pytest.approx([0.8, 0.6, 0.4, 0.2])
    assert max(steps) < 1e-6


def test_reptile_trainer_step_equals_meta_step():
    """The trainer's SGD on the Reptile gradient is the paper's update (Reptile.meta_step)."""
    torch.manual_seed(0)
    net = metalib.models.Conv4(n_classes=3, hidden=8, image_size=16)
    a = Reptile(net, inner_lr=0.01, inner_steps=2, outer_lr=0.7)
    b = Reptile(__import__("copy").deepcopy(net), inner_lr=0.01, inner_steps=2, outer_lr=0.7)
    batch = EpisodeSampler(synthetic(), 3, 1, 2).sample(2, generator=torch.Generator().manual_seed(0))
    a.train_step(batch, a.outer_optimizer(1e-3))
    b.meta_step(batch)
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-7), n


def test_protonet_learning_rate_is_halved_on_schedule():
    cfg = default_config("protonet", 3, 1, dataset="custom", image_size=16, hidden=8, iterations=5, train_way=3,
                         train_query=1, lr_decay_every=2, val_every=0)
    t = FewShotTrainer(cfg, synthetic(), progress=False)
    lrs = []
    for i in range(1, 6):
        t.fit(until=i)
        lrs.append(t.optimizer.param_groups[0]["lr"])
    assert lrs == pytest.approx([1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4])


def test_validation_keeps_the_best_weights(tmp_path):
    cfg = default_config("protonet", 3, 1, dataset="custom", image_size=16, hidden=8, iterations=6, train_way=3,
                         train_query=2, meta_lr=3e-3, val_every=2, val_episodes=10, test_query=2)
    t = FewShotTrainer(cfg, synthetic(), synthetic(6, seed=3), run_dir=tmp_path, progress=False)
    t.fit()
    assert [v[0] for v in t.history.val] == [2, 4, 6]
    best = max(t.history.val, key=lambda v: v[1])
    assert t.best["iteration"] == best[0] and t.best["accuracy"] == best[1]
    saved = metalib.checkpoint.load_checkpoint(tmp_path / "best.pt")
    assert saved["iteration"] == best[0]
    t.load_best()
    for k, v in t.learner.state_dict().items():
        assert torch.equal(v, saved["model"][k])


def test_progress_bar_shows_loss_accuracy_and_validation(capsys):
    cfg = default_config("protonet", 3, 1, dataset="custom", image_size=16, hidden=8, iterations=4, train_way=3,
                         train_query=2, val_every=2, val_episodes=3, test_query=2)
    t = FewShotTrainer(cfg, synthetic(), synthetic(6, seed=3), progress=True)
    shown = []
    original = ProgressBar.on_iteration_end

    def spy(self, loop, metrics):
        original(self, loop, metrics)
        shown.append(dict(self.bar.postfix and [kv.split("=") for kv in self.bar.postfix.split(", ")]))

    ProgressBar.on_iteration_end = spy
    try:
        t.fit()
    finally:
        ProgressBar.on_iteration_end = original
    assert len(shown) == 4 and set(shown[-1]) == {"loss", "acc", "val"} and shown[-1]["acc"].endswith("%")
    assert set(shown[0]) == {"loss", "acc"}  # updated from the first iteration on
    err = capsys.readouterr().err
    assert "iteration 2: validation" in err and "seeded val episodes" in err


# ----------------------------------------------------------------------------- shipping
def test_ship_and_reload_by_name(tmp_path):
    cfg = default_config("maml", 3, 1, dataset="custom", image_size=16, hidden=8, iterations=3, meta_batch=2,
                         inner_lr=0.4, inner_steps=1, test_inner_steps=2, train_query=1, test_query=2,
                         test_episodes=12, val_every=0)
    data = synthetic()
    t = FewShotTrainer(cfg, data, progress=False)
    t.fit()
    res = t.test(data)
    entry = fewshot.ship("maml-demo", t, res, command="python train.py", note="unit test", directory=tmp_path)
    assert entry["metrics"]["test_accuracy"] == round(res.mean, 4)
    assert entry["metrics"]["episodes"] == 12 and entry["metrics"]["inner_steps"] == 2
    for key in ("command", "seed", "iterations", "device", "minutes", "sha256", "config"):
        assert key in entry
    learner, config = fewshot.pretrained_learner("maml-demo", directory=tmp_path)
    assert isinstance(learner, MAML) and learner.inner_lr == 0.4 and config == cfg
    again = fewshot.evaluate_pretrained("maml-demo", data=data, directory=tmp_path)
    assert again.accuracies == res.accuracies  # the very same episodes, the very same weights
    shipped = metalib.pretrained("maml-demo", directory=tmp_path)
    assert isinstance(shipped, MAML) and shipped.eval_steps == 2 and isinstance(shipped.model, metalib.models.Conv4)
    # what metalib.pretrained gives back is evaluated directly, on the same episodes, with the same result
    assert evaluate(shipped, data, 3, 1, 2, episodes=12).accuracies == res.accuracies
    with pytest.raises(KeyError, match="no shipped weights"):
        fewshot.pretrained_learner("nope", directory=tmp_path)


def test_evalresult_as_dict():
    r = EvalResult(97.0, 0.3, 4.0, 600, 5, 1, 15, 1000, "test", "ProtoNet", None, 12.0, "CPU", [1.0])
    assert "accuracies" not in r.as_dict() and r.as_dict(with_accuracies=True)["accuracies"] == [1.0]


# ----------------------------------------------------------------------------- the command line
def test_command_line_trains_resumes_evaluates_and_ships(tmp_path, monkeypatch, capsys):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "train_fewshot", Path(__file__).resolve().parents[1] / "scripts" / "train_fewshot.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    data = {"train": synthetic(10, size=28, seed=0), "val": synthetic(6, size=28, seed=1),
            "test": synthetic(8, size=28, seed=2)}
    monkeypatch.setattr(fewshot, "load_split", lambda config, split, progress=False: data[split])
    args = ["--algorithm", "protonet", "--way", "3", "--shot", "1", "--iterations", "4", "--hidden", "8",
            "--train-way", "4", "--train-query", "2", "--test-query", "2", "--val-every", "2", "--val-episodes", "3",
            "--test-episodes", "10", "--run-dir", str(tmp_path / "run"), "--no-progress", "--threads", "1"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "test accuracy:" in out and "10 seeded test episodes" in out and "95% CI" in out
    result = (tmp_path / "run" / "result-3w1s.json").read_text()
    assert '"episodes": 10' in result
    # the same command again: the run is complete, so it resumes at 4/4 and only evaluates
    assert cli.main(args + ["--ship", "protonet-demo", "--weights-dir", str(tmp_path / "w")]) == 0
    out = capsys.readouterr().out
    assert "starting at iteration 4/4" in out and "shipped as 'protonet-demo'" in out
    info = metalib.pretrained_info("protonet-demo", directory=tmp_path / "w")
    assert info["command"].startswith("python scripts/train_fewshot.py --algorithm protonet")
    # a ProtoNet validated on 3-way episodes, tested and shipped for 5-way
    assert cli.main(args + ["--eval-only", "--test-way", "5", "--ship", "p5", "--weights-dir", str(tmp_path / "w")]) == 0
    assert metalib.pretrained_info("p5", directory=tmp_path / "w")["metrics"]["episodes"] == 10
    assert fewshot.pretrained_learner("p5", directory=tmp_path / "w")[1].n_way == 5
    # a different setting for the same run folder is refused with a clear message naming the flags
    capsys.readouterr()
    assert cli.main(args + ["--meta-lr", "0.01"]) == 2
    err = capsys.readouterr().err
    assert "meta_lr" in err and "--fresh" in err
    # a run planned for 6 iterations, stopped early at 3 by a time budget (--until): validated where it
    # stopped (3 is not a multiple of val_every=2), tested, shipped with the iterations really trained
    early = [a if a != "4" or args[i - 1] != "--iterations" else "6" for i, a in enumerate(args)]
    early[early.index("--run-dir") + 1] = str(tmp_path / "early")
    assert cli.main(early + ["--until", "3", "--ship", "p-early", "--weights-dir", str(tmp_path / "w")]) == 0
    out = capsys.readouterr().out
    assert "stopped early at iteration 3/6" in out
    info = metalib.pretrained_info("p-early", directory=tmp_path / "w")
    assert info["iterations"] == 3 and info["config"]["iterations"] == 6
    state = torch.load(tmp_path / "early" / "last.pt", weights_only=False)
    assert [v[0] for v in state["history"]["val"]] == [2, 3]


def test_backbones_for_omniglot_and_miniimagenet():
    """Conv-4 (4 x conv3x3-64-BN-ReLU-maxpool2): 64 features for 28x28 grey, 1600 for 84x84 colour;
    an N-way linear head for MAML/Reptile, none for ProtoNet."""
    for algorithm, dataset, x_shape, out in [("protonet", "omniglot", (1, 28, 28), 64),
                                             ("maml", "omniglot", (1, 28, 28), 5),
                                             ("protonet", "miniimagenet", (3, 84, 84), 1600),
                                             ("reptile", "miniimagenet", (3, 84, 84), 5)]:
        cfg = default_config(algorithm, 5, 1, dataset, iterations=1, hidden=64)
        model = fewshot.build_learner(cfg).model
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        assert [(c.out_channels, c.kernel_size) for c in convs] == [(64, (3, 3))] * 4
        assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 4
        assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 4
        assert model(torch.rand(2, *x_shape)).shape == (2, out), (algorithm, dataset)
        assert (model.head is None) == (algorithm == "protonet")


def test_evaluate_in_float64_is_a_float64_copy_on_the_same_episodes(monkeypatch):
    """``evaluate(..., dtype=torch.float64)`` (notebook 07's MAML, docs/notebooks.md): the per-episode accuracies
    are those of a hand loop over the same seeded episodes with a float64 copy of the learner, and the caller's
    learner keeps its float32 weights."""
    import copy

    data = synthetic(n_classes=6, per_class=5)
    torch.manual_seed(0)
    head = nn.Sequential(nn.Flatten(), nn.Linear(16 * 16, 3))
    learner = MAML(head, inner_lr=0.5, inner_steps=1)
    before = {k: v.clone() for k, v in learner.state_dict().items()}
    seen, original = [], MAML.predict

    def spy(self, x_s, y_s, x_q, n_way=None, steps=None):
        seen.append((x_s.dtype, x_q.dtype, next(self.parameters()).dtype))
        return original(self, x_s, y_s, x_q, n_way, steps)

    monkeypatch.setattr(MAML, "predict", spy)
    res = evaluate(learner, data, 3, 1, 2, episodes=6, seed=4, steps=2, chunk=4, dtype=torch.float64)
    monkeypatch.setattr(MAML, "predict", original)
    assert seen and set(seen) == {(torch.float64,) * 3}
    double = copy.deepcopy(learner).double()
    sampler = EpisodeSampler(data, 3, 1, 2)
    by_hand = []
    for x_s, y_s, x_q, y_q in seeded_episodes(sampler, 6, 4, 4):
        logits = double.predict(x_s.double(), y_s, x_q.double(), 3, steps=2)
        assert logits.dtype == torch.float64
        by_hand += ((logits.argmax(-1) == y_q).double().mean(1) * 100).tolist()
    assert res.accuracies == pytest.approx(by_hand, abs=1e-12)
    assert all(v.dtype == torch.float32 and torch.equal(v, before[k]) for k, v in learner.state_dict().items())
    with pytest.raises(ValueError, match="floating-point torch.dtype"):
        evaluate(learner, data, 3, 1, 2, episodes=2, dtype=torch.int64)
