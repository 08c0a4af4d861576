"""Notebook 10's course layer: the sinusoid Meta-SGD run and its evaluation, the LSTM gate trace, feature reuse,
the exercise's check, and the two widgets' callbacks (without a browser)."""
import math
import sys
from pathlib import Path

import jupytext
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

import metalib
from metalib.algorithms import MAML, LSTMMetaLearner, MetaSGD
from metalib.course import exercises, sinusoid_lab as lab, update_lab as ul, update_widgets as uw
from metalib.models import Conv4, sinusoid_mlp
from metalib.pretrained import pretrained, pretrained_info
from _nets import synthetic_images

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


def untrained_pair(seed=0):
    torch.manual_seed(seed)
    maml = MAML(sinusoid_mlp(), inner_lr=0.01, loss_fn=F.mse_loss)
    msgd = MetaSGD(sinusoid_mlp(), alpha_init=(0.0, 0.2), loss_fn=F.mse_loss)
    return {"maml": maml, "metasgd": msgd}


# ============================================================================ Meta-SGD on sinusoids
def test_evaluate_metasgd_matches_a_hand_written_alpha_step():
    msgd = untrained_pair()["metasgd"]
    got = ul.evaluate_metasgd(msgd, ks=(5,), steps=(1, 2), n_tasks=20)
    tasks = lab.test_tasks(20, 5)
    theta = {k: v.detach() for k, v in msgd.model.named_parameters()}
    alpha = {k: a.detach() for k, a in msgd.learning_rates().items()}
    per = {1: [], 2: []}
    for xs, ys, xq, yq in zip(*tasks):
        p = dict(theta)
        for s in (1, 2):
            p = {k: v.requires_grad_() for k, v in p.items()}
            g = torch.autograd.grad(F.mse_loss(functional_call(msgd.model, p, (xs,)), ys), list(p.values()))
            p = {k: (v - alpha[k] * gk).detach() for (k, v), gk in zip(p.items(), g)}
            per[s].append(float(F.mse_loss(functional_call(msgd.model, p, (xq,)), yq)))
    for s, key in ((1, "1 step"), (2, "2 steps")):
        want = [v for v in per[s] if math.isfinite(v) and v <= lab.DIVERGED]
        assert got["mse"]["K=5"][key] == pytest.approx(sum(want) / len(want), rel=1e-5)
        assert got["diverged"]["K=5"][key] == len(per[s]) - len(want)


def test_shipping_the_sinusoid_run_records_how_and_rebuilds_the_learner(tmp_path):
    entry = ul.ship_sinusoid_metasgd(iterations=30, directory=tmp_path, lock=str(tmp_path / "lock"))
    info = pretrained_info("sinusoid-metasgd", directory=tmp_path)
    assert info["learner"] == {"algorithm": "metasgd", "settings": {"inner_steps": 1, "alpha_init": [0.005, 0.1],
                                                                   "loss_fn": "mse_loss"}}
    assert info["iterations"] == 30 and info["state"] == "learner" and entry["sha256"] == info["sha256"]
    back = pretrained("sinusoid-metasgd", directory=tmp_path)
    assert isinstance(back, MetaSGD) and back.loss_fn is F.mse_loss
    again = ul.evaluate_metasgd(back)          # the same 600 tasks: the manifest's numbers come back
    for k, row in info["metrics"]["post_adaptation_mse"].items():
        for s, v in row.items():
            assert again["mse"][k][s] == pytest.approx(v, rel=1e-6)
    sgd = lab.evaluate(back.model)
    assert sgd["mse"] == info["metrics"]["sgd_0.01_from_theta"]["post_adaptation_mse"]


def test_alpha_by_layer_and_the_prediction_path():
    pair = untrained_pair()
    alphas = ul.alpha_by_layer(pair["metasgd"])
    assert list(alphas) == ["0", "2", "4"] and [a.numel() for a in alphas.values()] == [80, 1640, 41]
    assert torch.equal(alphas["2"], torch.cat([pair["metasgd"].alpha["2/weight"].detach().flatten(),
                                               pair["metasgd"].alpha["2/bias"].detach().flatten()]))
    with pytest.raises(TypeError, match="learning rates"):
        ul.alpha_by_layer(pair["maml"])
    x_s, y_s = lab.demo_task(3.0, 1.0, 5)
    grid = lab.grid(50)
    for learner in pair.values():
        path = ul.prediction_path(learner, x_s, y_s, grid, 3)
        assert path.shape == (4, 50, 1)
        with torch.no_grad():
            want = learner(learner.adapt(x_s, y_s, steps=3), grid)
        assert torch.allclose(path[3], want, rtol=1e-5, atol=1e-6)


# ============================================================================ the LSTM meta-learner
def tiny_lstm(seed=0):
    torch.manual_seed(seed)
    return LSTMMetaLearner(Conv4(1, 5, hidden=4, image_size=16), inner_steps=3)


def test_gate_trace_records_the_episode_and_measures_sgd_beside_it():
    lm, data = tiny_lstm(), synthetic_images(10, seed=1)
    tr = ul.gate_trace(lm, data, seed=2, n_query=3)
    P = sum(p.numel() for p in lm.initial_params().values())
    assert tr.unroll.input_gates.shape == (3, P) and tr.steps == 3
    assert sorted((s.start, s.stop) for s in tr.layers.values())[0][0] == 0
    assert sum(s.stop - s.start for s in tr.layers.values()) == P
    assert list(tr.layers)[-1] == "head"
    q = tr.gate_quantiles("forget", "head")
    assert q.shape == (3, 3) and bool((q[0] <= q[1]).all() and (q[1] <= q[2]).all())
    with lm.gates_pinned(forget=1.0, input=0.3):   # SGD: the best single η is the pinned one
        pinned = ul.gate_trace(lm, data, seed=2, n_query=3, sgd_lr=0.3)
    assert pinned.effective_lr(2) == pytest.approx(0.3, rel=1e-5)
    assert pinned.accuracy == pinned.sgd_accuracy      # both are SGD at 0.3 from the same start
    ep = metalib.course.fewshot_lab.sample_episode(data, 5, 1, 3, seed=2)
    with torch.no_grad():
        want = float((lm(tr.unroll.params, ep[2][0]).argmax(-1) == ep[3][0]).float().mean()) * 100
    assert tr.accuracy == pytest.approx(want)
    with pytest.raises(TypeError, match="not an LSTM meta-learner"):
        ul.gate_trace(untrained_pair()["maml"], data)


def test_layer_change_is_the_relative_norm_of_each_layers_step():
    torch.manual_seed(0)
    maml = MAML(Conv4(1, 5, hidden=4, image_size=16), inner_lr=0.4, inner_steps=2)
    data = synthetic_images(10, seed=3)
    got = ul.layer_change(maml, data, episodes=1, seed=4)
    ep = metalib.course.fewshot_lab.sample_episode(data, 5, 1, 1, seed=4)
    phi = maml.adapt(ep[0][0], ep[1][0])
    theta = maml.initial_params()
    w, b = "head.weight", "head.bias"
    num = ((phi[w] - theta[w]) ** 2).sum() + ((phi[b] - theta[b]) ** 2).sum()
    den = (theta[w] ** 2).sum() + (theta[b] ** 2).sum()
    assert got["head"] == pytest.approx(float((num / den).sqrt().detach()), rel=1e-5)
    assert set(got) == {"features.0.0", "features.0.1", "features.1.0", "features.1.1", "features.2.0",
                        "features.2.1", "features.3.0", "features.3.1", "head"}
    assert ul.ridge_system_sizes(5, 1, 64) == (65, 5)


# ============================================================================ the exercise
def test_the_exercise_solution_passes_and_every_mistake_is_named():
    e = exercises.get("metasgd_step")
    assert e.notebook == "10_learning_the_update"
    assert e.check(e.solution)
    for m in e.mistakes:
        fb = e.check(m.answer)
        assert not fb and m.names in fb.message, (m.what, fb.message)

    def todo(model, params, alpha, x, y):
        raise NotImplementedError

    fb = e.check(todo)
    assert not fb and "not written yet" in fb.message


def test_the_notebooks_solution_block_is_the_registered_solution():
    sys.path.insert(0, str(ROOT / "scripts"))
    import notebooks as nbs

    cells = [c for c in jupytext.read(ROOT / "course" / "10_learning_the_update.py").cells if nbs.is_solution(c)]
    assert len(cells) == 1 and nbs.solution_code(cells[0]) == exercises.get("metasgd_step").code()


# ============================================================================ the widgets
def test_metasgd_explorer_says_diverged_instead_of_nan_and_drops_the_vanished_curve(monkeypatch):
    ex = uw.MetaSGDExplorer(untrained_pair(), amplitude=2.0, phase=0.5, k=5, steps=3)
    learner, path = ex.learners["metasgd"], ul.prediction_path

    def diverging(lr, *args):   # Meta-SGD's path NaN from step 2 on, as the shipped one at A = 0.1, φ = 0, K = 1
        p = path(lr, *args)
        if lr is learner:
            p = p.clone()
            p[2:] = float("nan")
        return p

    monkeypatch.setattr(ul, "prediction_path", diverging)
    ex.update(steps=3)
    title = ex.title.get_text()
    assert "Meta-SGD: diverged" in title and "nan" not in title.lower(), title
    labels = [t.get_text() for t in ex.ax.get_legend().get_texts()]
    assert uw.MetaSGDExplorer.LABELS["metasgd"] not in labels and uw.MetaSGDExplorer.LABELS["maml"] in labels
    assert not ex.clipped_titles(), ex.clipped_titles()
    ex.update(steps=1)
    assert uw.MetaSGDExplorer.LABELS["metasgd"] in [t.get_text() for t in ex.ax.get_legend().get_texts()]


def test_metasgd_explorer_legends_stay_below_their_panels():
    ex = uw.MetaSGDExplorer(untrained_pair(), amplitude=2.0, phase=0.5, k=5, steps=1)
    assert not ex.clipped_titles()               # (draws the figure)
    r = ex.fig.canvas.get_renderer()
    for ax in (ex.ax_alpha, ex.ax, ex.ax_mse):
        legend, panel = ax.get_legend().get_window_extent(r), ax.get_window_extent(r)
        assert legend.y1 <= panel.y0 + 1, ax.get_title()          # wholly below the data area
    assert not ex.clipped_titles()


def test_metasgd_explorer_callbacks():
    ex = uw.MetaSGDExplorer(untrained_pair(), amplitude=2.0, phase=0.5, k=5, steps=1)
    before = ex.lines["metasgd"].get_ydata().copy()
    ex.update(k=10, steps=4, amplitude=4.5)
    assert ex.values == {"amplitude": 4.5, "phase": 0.5, "k": 10, "steps": 4}
    assert not (ex.lines["metasgd"].get_ydata() == before).all()
    x_s, y_s = ex.support()
    assert x_s.shape == (10, 1)
    truth = lab.true_curve(ex.x, 4.5, 0.5)
    for kind, learner in ex.learners.items():
        path = ul.prediction_path(learner, x_s, y_s, ex.x, 4)
        assert ex.final_mse()[kind] == pytest.approx(float(((path[4] - truth) ** 2).mean()), rel=1e-5)
    assert "K = 10" in ex.title.get_text()
    with pytest.raises(ValueError, match="steps"):
        ex.update(steps=0)
    with pytest.raises(TypeError, match="k must be an integer"):
        ex.update(k=2.5)
    with pytest.raises(ValueError, match="needs"):
        uw.MetaSGDExplorer({"maml": untrained_pair()["maml"]})
    _ = ex.ui  # renders once
    n = ex.renders
    ex.controls["phase"].value = 1.0         # a slider moves -> the callback redraws and re-renders
    assert ex.values["phase"] == 1.0 and ex.renders == n + 1 and len(ex.image.value) > 1000


def test_gate_explorer_callbacks():
    lm, data = tiny_lstm(1), synthetic_images(10, seed=2)
    gx = uw.GateExplorer(lm, data, episode=0, step=1, n_query=3, episodes=4)
    assert gx.layers[0] == "all" and "head" in gx.layers
    before = gx.scatter.get_xdata().copy()
    gx.update(step=3, layer="head", episode=2)
    tr = gx.trace(2)
    head = tr.layers["head"]
    assert len(gx.scatter.get_xdata()) == head.stop - head.start
    assert torch.allclose(torch.as_tensor(gx.scatter.get_ydata()), tr.unroll.updates[2, head])
    assert len(before) != len(gx.scatter.get_xdata())
    assert f"{tr.accuracy:.0f}%" in gx.title.get_text()
    med = gx.medians["input"].get_ydata()
    assert med[2] == pytest.approx(float(tr.unroll.input_gates[2, head].median()), rel=1e-4)
    with pytest.raises(ValueError, match="layer must be one of"):
        gx.update(layer="conv9")
    with pytest.raises(ValueError, match="episode"):
        gx.update(episode=4)
    _ = gx.ui
    n = gx.renders
    gx.controls["layer"].value = "all"
    assert gx.values["layer"] == "all" and gx.renders == n + 1
