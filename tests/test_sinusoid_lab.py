"""metalib.course.sinusoid_lab: seeded test tasks, evaluation that agrees with metalib.MAML, and the shipped
sinusoid checkpoints reproducing the metrics their manifest entries record."""
import math

import pytest
import torch
import torch.nn.functional as F

import metalib
from metalib import MAML
from metalib.pretrained import WEIGHTS_DIR
from metalib.course import full_mode, sinusoid_lab as lab
from metalib.tasks import Sinusoid


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The sinusoid MLP is tiny: one thread is fastest and immune to a busy CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ----------------------------------------------------------------------------- tasks
def test_test_tasks_are_seeded_and_nested_across_k():
    a, b = lab.test_tasks(50, 5), lab.test_tasks(50, 20)
    assert a.x_s.shape == (50, 5, 1) and b.x_s.shape == (50, 20, 1) and a.x_q.shape == (50, lab.EVAL["k_query"], 1)
    assert torch.equal(a.x_s, b.x_s[:, :5]) and torch.equal(a.y_s, b.y_s[:, :5])
    assert torch.equal(a.x_q, b.x_q) and torch.equal(a.y_q, b.y_q)
    again = lab.test_tasks(50, 5)
    assert all(torch.equal(u, v) for u, v in zip(a, again))
    other = lab.test_tasks(50, 5, seed=1)
    assert not torch.equal(a.y_q, other.y_q)
    # the points lie on sinusoids of the paper's family: y / A = sin(x - phase) with |y| <= 5
    assert float(a.y_q.abs().max()) <= 5.0 and float(a.x_q.abs().max()) <= 5.0
    with pytest.raises(ValueError):
        lab.test_tasks(5, 0)


def test_demo_task_keeps_its_points_when_the_function_changes():
    x1, y1 = lab.demo_task(1.0, 0.0, 10)
    x2, y2 = lab.demo_task(4.0, 2.0, 10)
    x3, _ = lab.demo_task(4.0, 2.0, 3)
    assert torch.equal(x1, x2) and torch.equal(x3, x1[:3])
    assert torch.allclose(y2, 4.0 * torch.sin(x2 - 2.0))


def test_joint_optimum_is_the_mean_task():
    g = torch.Generator().manual_seed(0)
    p = Sinusoid().sample_params(200_000, generator=g)
    x = torch.linspace(-5, 5, 11).unsqueeze(1)
    mc = (p.amplitude.double() * torch.sin(x.double() - p.phase.double())).mean(1, keepdim=True)
    assert torch.allclose(lab.joint_optimum(x.double()), mc, atol=0.03)
    assert torch.allclose(lab.joint_optimum(x), -2 * 2.55 / math.pi * torch.cos(x), atol=1e-5)


# ----------------------------------------------------------------------------- evaluation = metalib.MAML
def test_mse_per_step_agrees_with_maml_task_losses():
    model = lab.random_model(3)
    batch = lab.test_tasks(12, 5, k_query=20)
    per = lab.mse_per_step(model, batch, 3, lr=0.02)
    assert per.shape == (12, 4)
    maml = MAML(model, inner_lr=0.02, batching="loop")
    for s in range(4):
        ref = maml.task_losses(batch, F.mse_loss, steps=s)[0].detach()
        assert torch.allclose(per[:, s], ref, rtol=1e-5, atol=1e-6), s


def test_adaptation_path_agrees_with_maml_adapt():
    model = lab.random_model(4)
    x_s, y_s = lab.demo_task(2.0, 1.0, 7)
    x = lab.grid(50)
    path = lab.adaptation_path(model, x_s, y_s, x, 4, lr=0.05)
    maml = MAML(model, inner_lr=0.05)
    for s in (1, 4):
        ref = maml.forward(maml.adapt(x_s, y_s, F.mse_loss, steps=s), x).detach()
        assert torch.allclose(path[s], ref, atol=1e-5)
    assert torch.allclose(path[0], model(x).detach())


def test_summarise_leaves_out_and_counts_diverged_tasks():
    per = torch.tensor([[1.0, 2.0], [3.0, float("inf")], [5.0, 1e4], [7.0, 4.0]])
    mean, ci, bad = lab.summarise(per)
    assert mean.tolist() == pytest.approx([4.0, 3.0]) and bad.tolist() == [0, 2]
    assert float(ci[0]) == pytest.approx(1.96 * torch.tensor([1.0, 3, 5, 7]).std().item() / 2)
    assert float(ci[1]) == pytest.approx(1.96 * torch.tensor([2.0, 4.0]).std().item() / math.sqrt(2))


def test_compare_table_and_curves():
    models = {"maml": lab.random_model(0), "random": lab.random_model(1)}
    comp = lab.compare(models, ks=(5, 10), max_steps=2, n_tasks=10, k_query=10)
    assert comp.curve("maml", 5).shape == (3,) and comp.ci("maml", 5).shape == (3,)
    assert comp.at("random", 10, 2) == pytest.approx(float(comp.per_task["random"][10][:, 2].double().mean()))
    table = comp.table(steps=(1, 2))
    assert "K=5, 1 step" in table and "MAML" in table and "random initialisation" in table


def test_medians_and_the_worst_task_beside_the_means():
    per = torch.tensor([[1.0, 2.0], [3.0, float("nan")], [5.0, 1e4], [7.0, 4.0], [9.0, 6.0]])
    comp = lab.Comparison((5,), 1, {"maml": {5: per}})
    assert comp.at("maml", 5, 1) == pytest.approx(4.0)            # (2 + 4 + 6) / 3: two diverged left out
    assert comp.median("maml", 5, 1) == pytest.approx(6.0)        # median of 2, 4, 6, 1e4, nan->inf: all five
    assert comp.median("maml", 5, 0) == pytest.approx(5.0)
    assert comp.worst("maml", 5, 1) == math.inf and comp.worst("maml", 5, 0) == pytest.approx(9.0)
    table = comp.table(steps=(1,), median=True)
    assert "4.00 / 6.00 [2]" in table and "mean / median" in table and "(not of the median)" in table


def test_train_summary_line():
    r = lab.train("pretrain", 3, progress=False)
    line = r.summary()
    assert line.startswith("pretrained (joint training): 3 meta-iterations in ") and "mean of the last 3" in line


def test_snapshot_schedule():
    s = lab.snapshot_schedule(70_000, 30)
    assert s[0] == 0 and s[-1] == 70_000 and s == sorted(set(s)) and 25 <= len(s) <= 31
    assert lab.snapshot_schedule(0) == [0]


def test_train_keeps_snapshots_and_is_reproducible():
    r = lab.train("fomaml", 6, seed=5, progress=False, snapshot_at=[0, 3, 6])
    assert sorted(r.snapshots) == [0, 3, 6] and len(r.loss) == 6
    init = lab.random_model(5).state_dict()
    assert all(torch.equal(init[k], v) for k, v in r.snapshots[0].items())
    assert all(torch.equal(r.model.state_dict()[k], v) for k, v in r.snapshots[6].items())
    assert not torch.equal(r.snapshots[3]["0.weight"], r.snapshots[0]["0.weight"])
    r2 = lab.train("fomaml", 6, seed=5, progress=False)
    assert r2.loss == r.loss
    for kind in lab.KINDS:
        assert lab.train(kind, 2, progress=False).model is not None
    with pytest.raises(ValueError):
        lab.make_learner("nope")


# ----------------------------------------------------------------------------- shipped checkpoints
@pytest.mark.parametrize("kind", lab.KINDS)
def test_shipped_checkpoint_reproduces_its_manifest_metrics(kind):
    info = metalib.pretrained_info(lab.WEIGHTS[kind])
    for key in ("command", "seed", "iterations", "device", "minutes", "metrics", "settings"):
        assert key in info, key
    ev = info["metrics"]["eval"]
    assert ev["diverged_above"] == lab.DIVERGED
    recorded, diverged = info["metrics"]["post_adaptation_mse"], info["metrics"]["diverged_tasks"]
    measured = lab.evaluate(lab.load(kind), ks=ev["ks"], steps=ev["steps"], n_tasks=ev["n_tasks"],
                            k_query=ev["k_query"], seed=ev["seed"], lr=ev["lr"])
    assert set(measured["mse"]) == set(recorded) == {f"K={k}" for k in ev["ks"]}
    for k, by_steps in recorded.items():
        for s, value in by_steps.items():
            assert measured["mse"][k][s] == pytest.approx(value, rel=1e-4), (kind, k, s)
            assert measured["diverged"][k][s] == diverged[k][s], (kind, k, s)
    snaps = metalib.pretrained_snapshots(lab.WEIGHTS[kind])
    assert 30 <= len(snaps) <= 50 and 0 in snaps and info["iterations"] in snaps
    size = (WEIGHTS_DIR / info["file"]).stat().st_size
    assert size < 600_000, f"{info['file']} is {size} bytes"


def test_shipped_maml_beats_pretraining_like_the_paper():
    """The qualitative result of Finn et al.'s sinusoid figure, on the manifests' numbers."""
    mse = {kind: metalib.pretrained_info(lab.WEIGHTS[kind])["metrics"]["post_adaptation_mse"] for kind in lab.KINDS}
    for k in ("K=5", "K=10", "K=20"):
        assert mse["maml"][k]["10 steps"] < mse["maml"][k]["1 step"], "MAML keeps improving with more steps"
        assert mse["maml"][k]["1 step"] < 0.5 * mse["pretrain"][k]["10 steps"]
        assert mse["maml"][k]["1 step"] < mse["reptile"][k]["1 step"] < mse["pretrain"][k]["1 step"]


def test_full_mode_switch_trains_here_and_reports_it(monkeypatch):
    monkeypatch.setenv("METALIB_FULL", "1")
    assert full_mode()
    monkeypatch.setenv("METALIB_FULL", "0")
    assert not full_mode()
    monkeypatch.setitem(lab.PAPER, "iterations", 4)
    monkeypatch.setattr(lab, "_TRAINED", {})
    models = lab.get_models(full=True, kinds=["maml"], progress=False)
    assert set(models) == {"maml"} and "trained here: 4 iterations" in lab.provenance("maml")
    assert sorted(lab.snapshots("maml")) == lab.snapshot_schedule(4, 30)
    shipped = lab.provenance("fomaml")  # not trained here: the manifest's record
    info = metalib.pretrained_info(lab.WEIGHTS["fomaml"])
    assert f"{info['iterations']:,} iterations" in shipped and info["command"] in shipped
