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
