"""Notebook 12's course layer (metalib/course/generative_lab.py, generative_widgets.py): the calibration protocol on
untrained learners (MAML: one function, no spread; PLATIPUS: several), seeded and repeatable; the explorer redraws."""
import pytest

from metalib.course import generative_lab as gl


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def test_make_builds_both_kinds_through_the_registry_and_refuses_others():
    assert type(gl.make("platipus")).__name__ == "PLATIPUS" and type(gl.make("maml")).__name__ == "MAML"
    with pytest.raises(ValueError, match="kind must be one of"):
        gl.make("reptile")


def test_calibration_is_seeded_and_maml_has_no_spread():
    learners = {k: gl.make(k, seed=0) for k in gl.KINDS}
    a = gl.calibration(learners["platipus"], n_samples=4, n_tasks=5)
    b = gl.calibration(learners["platipus"], n_samples=4, n_tasks=5)
    m = gl.calibration(learners["maml"], n_samples=4, n_tasks=5)
    assert a == b and set(a) == {"log_likelihood", "coverage", "mse", "spread"}
    assert m["spread"] == 0.0 and a["spread"] > 0.0
    assert 0.0 <= a["coverage"] <= 1.0 and 0.0 <= m["coverage"] <= 1.0
    # one sample of PLATIPUS: a single function, as MAML's — its band is one curve ± 0.6
    assert gl.calibration(learners["platipus"], n_samples=1, n_tasks=5)["spread"] == 0.0


def test_the_explorer_redraws_and_checks_its_values():
    gw = pytest.importorskip("metalib.course.generative_widgets")
    app = gw.AmbiguityExplorer({k: gl.make(k, seed=0) for k in gl.KINDS}, samples=3)
    c = app.curves()
    assert c["platipus"].shape == (3, 200, 1) and c["maml"].shape == (1, 200, 1) and c["x_s"].shape == (2, 1)
    app.update(k=5, centre=-3.0, samples=6)
    assert app.curves()["platipus"].shape[0] == 6 and app.curves()["x_s"].shape == (5, 1)
    assert ((app.curves()["x_s"] >= -4.0) & (app.curves()["x_s"] <= -2.0)).all()
    assert app.render()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="samples must be"):
        app.update(samples=0)
    with pytest.raises(TypeError, match="unknown value"):
        app.update(steps=3)


def test_metagan_view_is_float64_seeded_and_leaves_the_learner_as_it_was():
    import torch
    from metalib import models
    from metalib.algorithms import MetaGAN

    torch.manual_seed(0)
    gan = MetaGAN(models.Conv4(in_channels=1, n_classes=4, hidden=4, image_size=16), inner_lr=0.1, n_fake=2)
    g = torch.Generator().manual_seed(0)
    x_s, x = torch.rand(3, 1, 16, 16, generator=g), torch.rand(6, 1, 16, 16, generator=g)
    a, b = gl.metagan_view(gan, x_s, torch.arange(3), x, seed=1), gl.metagan_view(gan, x_s, torch.arange(3), x, seed=1)
    assert a["p_x"].dtype == torch.float64 and a["p_x"].shape == (6, 4) and a["p_fake"].shape == (2, 4)
    assert all(torch.equal(a[k], b[k]) for k in a)                      # the same seed, the same fakes and decision
    assert next(gan.parameters()).dtype == torch.float32                 # a float64 copy, not the learner itself
    with pytest.raises(ValueError, match="MetaGAN learner") as err:
        gl.metagan_view(gl.make("maml"), x_s, torch.arange(3), x)
    assert "\n" not in str(err.value)
