"""The notebook widgets, driven without a browser: call update(), check what is drawn."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from metalib import MAML
from metalib.course import sinusoid_lab as lab, widgets
from metalib.training import meta_train


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The sinusoid MLP is tiny: one thread is fastest and immune to a busy CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def models():
    return {kind: lab.random_model(seed) for seed, kind in enumerate(["maml", "reptile", "pretrain", "random"])}


@pytest.fixture
def explorer(models):
    return widgets.AdaptationExplorer(models, amplitude=2.0, phase=0.5, k=10, steps=3, lr=0.02)


def _reference_adaptation(model, x_s, y_s, x, steps, lr):
    """Independently: metalib.MAML's own adapt + forward."""
    maml = MAML(model, inner_lr=lr)
    params = maml.adapt(x_s, y_s, F.mse_loss, steps=steps) if steps else maml.initial_params()
    return maml.forward(params, x).detach().flatten().numpy()


# ----------------------------------------------------------------------------- adaptation explorer
def test_explorer_lines_are_the_adapted_predictions(explorer, models):
    explorer.update(k=5, steps=4, amplitude=3.0)
    x_s, y_s = lab.demo_task(3.0, 0.5, 5)
    for kind, model in models.items():
        expected = _reference_adaptation(model, x_s, y_s, lab.grid(), 4, 0.02)
        np.testing.assert_allclose(explorer.lines[kind].get_ydata(), expected, rtol=1e-5, atol=1e-5)
        before = _reference_adaptation(model, x_s, y_s, lab.grid(), 0, 0.02)
        np.testing.assert_allclose(explorer.init_lines[kind].get_ydata(), before, rtol=1e-5, atol=1e-6)
    assert len(explorer.support_points.get_xdata()) == 5
    np.testing.assert_allclose(explorer.support_points.get_ydata(), y_s.flatten().numpy())
    np.testing.assert_allclose(explorer.true_line.get_ydata(), 3.0 * np.sin(lab.grid().flatten().numpy() - 0.5), atol=1e-5)


def test_explorer_mse_per_step_and_text(explorer, models):
    explorer.update(steps=5)
    truth = explorer.true_line.get_ydata()
    for kind in models:
        mse = explorer.mse_lines[kind].get_ydata()
        assert len(mse) == 6 and list(explorer.mse_lines[kind].get_xdata()) == list(range(6))
        assert mse[-1] == pytest.approx(float(np.mean((explorer.lines[kind].get_ydata() - truth) ** 2)), rel=1e-5)
        assert mse[0] == pytest.approx(float(np.mean((explorer.init_lines[kind].get_ydata() - truth) ** 2)), rel=1e-5)
    text = explorer.mse_text.get_text()
    assert "after 5 steps" in text and "MAML" in text and "random init" in text
    explorer.update(k=2)
    assert explorer.mse_text.get_text() != text, "the MSE text must change when K changes"


def test_explorer_zero_steps_leaves_the_initialisation(explorer):
    explorer.update(steps=0)
    for kind in explorer.models:
        np.testing.assert_array_equal(explorer.lines[kind].get_ydata(), explorer.init_lines[kind].get_ydata())


def test_explorer_reuses_its_figure_and_artists(explorer):
    fig, line, n = explorer.fig, explorer.lines["maml"], len(explorer.ax.lines)
    old = line.get_ydata().copy()
    explorer.update(phase=2.5, lr=0.03)
    assert explorer.fig is fig and explorer.lines["maml"] is line and len(explorer.ax.lines) == n
    assert not np.allclose(line.get_ydata(), old)
    assert "φ = 2.50" in explorer.title.get_text()


def test_explorer_sliders_drive_update_and_follow_it(explorer):
    explorer.controls["k"].value = 3
    assert explorer.values["k"] == 3 and len(explorer.support_points.get_xdata()) == 3
    explorer.update(steps=7)
    assert explorer.controls["steps"].value == 7


def test_explorer_renders_only_once_shown(explorer):
    explorer.update(k=4)
    assert explorer.renders == 0  # not displayed: no PNG work
    ui = explorer.ui
    assert explorer.image in ui.children and explorer.image.value[:4] == b"\x89PNG"
    n = explorer.renders
    explorer.controls["amplitude"].value = 1.5
    assert explorer.renders == n + 1


def test_explorer_rejects_bad_values(explorer):
    with pytest.raises(TypeError, match="unknown"):
        explorer.update(K=3)
    with pytest.raises(ValueError, match="k must be in"):
        explorer.update(k=0)
    with pytest.raises(TypeError, match="integer"):
        explorer.update(steps=2.5)
    with pytest.raises(ValueError, match="at least one model"):
        widgets.AdaptationExplorer({})


# ----------------------------------------------------------------------------- training timeline
@pytest.fixture(scope="module")
def history():
    torch.manual_seed(0)
    maml = MAML(lab.random_model(0), inner_lr=0.01)
    fam, g = lab.Sinusoid(), torch.Generator().manual_seed(0)
    return meta_train(maml, lambda: fam.sample(5, 10, 10, generator=g), 30, F.mse_loss, snapshot_every=10, progress=False)


def test_timeline_from_history_shows_each_snapshot(history):
    tl = widgets.training_timeline(history, n_tasks=20, name="demo")
    assert tl.iterations == [0, 10, 20, 30] and tl.values["iteration"] == 30
    for it in (0, 20):
        tl.update(iteration=it)
        model = lab.snapshot_model(history.snapshots[it])
        expected = _reference_adaptation(model, tl.x_s, tl.y_s, lab.grid(), 1, tl.lr)
        np.testing.assert_allclose(tl.adapted_line.get_ydata(), expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(tl.init_line.get_ydata(), _reference_adaptation(model, tl.x_s, tl.y_s, lab.grid(), 0, tl.lr), atol=1e-6)
        assert tl.marker.get_xdata()[0] == it and f"iteration {it:,}" in tl.mse_text.get_text()
    tl.update(iteration=14)  # snaps to the nearest snapshot
    assert tl.values["iteration"] == 10 and tl.controls["iteration"].value == 10


def test_timeline_curves_are_the_test_mse_of_each_snapshot(history):
    tl = widgets.TrainingTimeline(history.snapshots, n_tasks=20)
    batch = lab.test_tasks(20, 10)
    its, before, after = tl.curve(1)
    for i, it in enumerate(its):
        per = lab.mse_per_step(lab.snapshot_model(history.snapshots[it]), batch, 1).mean(0)
        assert before[i] == pytest.approx(float(per[0]), rel=1e-5) and after[i] == pytest.approx(float(per[1]), rel=1e-5)
    old = list(tl.after_curve.get_ydata())
    tl.update(steps=5)
    assert list(tl.after_curve.get_ydata()) != old and "5 steps" in tl.after_curve.get_label()
    assert tl.controls["steps"].value == 5


def test_timeline_needs_snapshots():
    with pytest.raises(ValueError, match="no snapshots"):
        widgets.TrainingTimeline({})


def test_shipped_snapshots_load_into_the_timeline():
    tl = widgets.training_timeline("sinusoid-maml", n_tasks=10)
    assert 30 <= len(tl.iterations) <= 50 and tl.iterations[0] == 0
    its, before, after = tl.curve(1)
    assert after[-1] < before[0], "the last MAML snapshot should adapt better than the random start"
