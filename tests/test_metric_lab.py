"""Notebook 09's course layer: the exercise's check, the per-rule episode views, the agreement
counts and the comparison widget (driven through update() and its controls, no browser)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from metalib.algorithms import MatchingNetworks, ProtoNet, RelationNetworks
from metalib.evaluation import evaluate
from metalib.algorithms.relation import RelationEncoder
from metalib.course import fewshot_lab as fl
from metalib.course import exercises
from metalib.course import metric_lab as ml
from metalib.course import metric_widgets as mw
from metalib.models import Conv4


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (24, 8, 1, 28, 28), generator=g, dtype=torch.uint8)


@pytest.fixture(scope="module")
def family():
    torch.manual_seed(0)
    out = {}
    for k in (1, 5):
        out[k] = {"Matching Networks": MatchingNetworks(Conv4(1)), "ProtoNet": ProtoNet(Conv4(1)),
                  "Relation Networks": RelationNetworks(RelationEncoder(1, 16, 28))}
    return out


# ============================================================================ the exercise
def test_the_reference_solution_passes():
    fb = ml.check_matching_attention(ml.matching_attention)
    assert fb.ok, fb.message


def _cos(z_q, z_s):
    return F.normalize(z_q, dim=-1) @ F.normalize(z_s, dim=-1).T


def test_the_exercise_is_registered_with_its_notebook():
    e = exercises.get("matching_attention")
    assert e is ml.EXERCISE and e.notebook == "09_metric_based_learning" and e.solution is ml.matching_attention
    assert "def matching_attention" in e.code() and '"""' not in e.code()


def test_the_notebooks_solution_block_is_the_registered_solution():
    import re
    from pathlib import Path

    src = (Path(__file__).resolve().parents[1] / "course" / "09_metric_based_learning.py").read_text()
    fence = re.search(r"# ```python\n(.*?)# ```", src, re.DOTALL).group(1)
    code = "".join(line[2:] + "\n" if line.startswith("# ") else "\n" for line in fence.splitlines())
    assert code.strip() + "\n" == ml.EXERCISE.code()


@pytest.mark.parametrize("mistake", ml.EXERCISE.mistakes, ids=lambda m: m.what)
def test_each_usual_mistake_is_named(mistake):
    fb = ml.check_matching_attention(mistake.answer)
    assert not fb.ok
    assert mistake.names in fb.message, fb.message


@pytest.mark.parametrize("answer, names", [
    (lambda z_s, y_s, z_q, n: (_ for _ in ()).throw(NotImplementedError), "not written yet"),
    (lambda z_s, y_s, z_q, n: 1 / 0, "raised ZeroDivisionError"),
    (lambda z_s, y_s, z_q, n: [[0.2] * n] * len(z_q), "return a tensor"),
    (lambda z_s, y_s, z_q, n: torch.full((len(z_q), n), 1.0 / n, dtype=torch.float64), "differs from the reference"),
])
def test_other_failures_say_what_happened(answer, names):
    fb = ml.check_matching_attention(answer)
    assert not fb.ok and names in fb.message, fb.message


def test_one_shot_attention_without_the_mixture_is_named_even_when_the_shape_fits():
    # 1-shot: the attention is [Q, N] too; only the support order tells it from the mixture
    z_s, y_s, z_q = torch.randn(5, 4, dtype=torch.float64), torch.tensor([3, 0, 4, 1, 2]), torch.randn(2, 4, dtype=torch.float64)
    a = _cos(z_q, z_s).softmax(1)
    assert a.shape == (2, 5) and not torch.allclose(a, ml.matching_attention(z_s, y_s, z_q, 5))
    fb = ml.check_matching_attention(lambda z_s, y_s, z_q, n: _cos(z_q, z_s).softmax(1) if len(y_s) == n
                                     else ml.matching_attention(z_s, y_s, z_q, n))
    assert not fb.ok and "label mixture" in fb.message, fb.message


def test_the_reference_solution_is_matching_networks_rule():
    torch.manual_seed(1)
    z_s, y_s, z_q = torch.randn(6, 3), torch.tensor([1, 0, 2, 2, 0, 1]), torch.randn(4, 3)
    # the exercise is the paper's text, the literal cosine (normalize_query=True); metalib's default is
    # the original implementation's attention (support normalised only; issue #29)
    net = MatchingNetworks(torch.nn.Flatten(), normalize_query=True)
    torch.testing.assert_close(ml.matching_attention(z_s, y_s, z_q, 3), net.predict(z_s, y_s, z_q).exp())


# ============================================================================ every rule on one episode
def test_compare_episode_reads_each_rule_from_explain(data, family):
    ep = fl.sample_episode(data, n_way=5, k_shot=5, n_query=3, seed=0, index=2)
    learners = family[5]
    cmp = ml.compare_episode(learners, ep)
    x_s, y_s, x_q, y_q = (t[0] for t in ep)
    kinds = {name: v.kind for name, v in cmp.views.items()}
    assert kinds == {"Matching Networks": "attention", "ProtoNet": "distance", "Relation Networks": "score"}
    assert (cmp.n_way, cmp.k_shot) == (5, 5)
    with torch.no_grad():
        for name, learner in learners.items():
            torch.testing.assert_close(cmp.views[name].predictions, learner.predict(x_s, y_s, x_q).argmax(-1))
        # Matching: attention [15, 25] whose class sums are ŷ = exp(log ŷ)
        m = cmp.views["Matching Networks"]
        assert m.values.shape == (15, 25)
        torch.testing.assert_close(m.class_values, learners["Matching Networks"].predict(x_s, y_s, x_q).exp())
        # ProtoNet: squared distances to the class means of the embeddings, by hand
        z = learners["ProtoNet"].embed(torch.cat([x_s, x_q]))
        z_s, z_q = z[:25], z[25:]
        protos = torch.stack([z_s[y_s == c].mean(0) for c in range(5)])
        torch.testing.assert_close(cmp.views["ProtoNet"].values, ((z_q[:, None] - protos[None]) ** 2).sum(-1))
        assert cmp.views["ProtoNet"].better == "lower"
        # Relation: the scores are the sigmoid of its predictions
        torch.testing.assert_close(cmp.views["Relation Networks"].values,
                                   learners["Relation Networks"].predict(x_s, y_s, x_q).sigmoid())
    acc = float((cmp.views["ProtoNet"].predictions == y_q).float().mean())
    assert cmp.views["ProtoNet"].accuracy == pytest.approx(acc)
    agree = torch.stack([v.predictions for v in cmp.views.values()])
    assert torch.equal(cmp.agree(), (agree == agree[0]).all(0))


def test_agreement_counts_by_hand(data, family):
    learners = family[1]
    res = ml.agreement(learners, data, n_way=5, k_shot=1, q_query=3, episodes=4, seed=7)
    preds, truth = [], []
    with torch.no_grad():
        for i in range(4):  # the same seeded episodes, one at a time
            x_s, y_s, x_q, y_q = (t[0] for t in fl.sample_episode(data, 5, 1, 3, seed=7, index=i))
            preds.append(torch.stack([lrn.predict(x_s, y_s, x_q).argmax(-1) for lrn in learners.values()]))
            truth.append(y_q)
    p, y = torch.cat(preds, 1), torch.cat(truth)
    names = list(learners)
    assert res.queries == 60
    for i, name in enumerate(names):
        assert res.accuracy[name] == pytest.approx(100 * float((p[i] == y).float().mean()))
        # the evaluator's numbers on the same episodes
        ev = evaluate(learners[name], data, 5, 1, 3, episodes=4, seed=7)
        assert (res.accuracy[name], res.ci95[name]) == pytest.approx((ev.mean, ev.ci95))
    same = (p == p[0]).all(0)
    assert res.all_agree == pytest.approx(100 * float(same.float().mean()))
    assert res.all_agree_right + res.all_agree_wrong == pytest.approx(res.all_agree)
    only0 = (p[0] == y) & (p[1] != y) & (p[2] != y)
    assert res.only_right[names[0]] == pytest.approx(100 * float(only0.float().mean()))
    twins = ml.agreement({"a": learners["ProtoNet"], "b": learners["ProtoNet"]}, data, 5, 1, 3, episodes=2)
    assert twins.all_agree == 100.0
    with pytest.raises(ValueError, match="at least two"):
        ml.agreement({"a": learners["ProtoNet"]}, data)


def test_load_family_refuses_a_shot_without_weights():
    with pytest.raises(ValueError, match="k_shot 1 and 5"):
        ml.load_family(3)


# ============================================================================ the widget
def test_widget_shows_what_each_rule_compares_and_follows_its_controls(data, family):
    app = mw.MetricComparison(family, data, n_way=5, k_shot=1, n_query=2, seed=0)
    cmp = app.comparison
    assert app.predictions == {name: int(v.predictions[0]) for name, v in cmp.views.items()}
    # the bars are the numbers of compare_episode: ProtoNet's distances, the attention per support image
    heights = [p.get_height() for p in app.bar_axes[1].patches]
    np.testing.assert_allclose(heights, cmp.views["ProtoNet"].values[0].numpy(), rtol=1e-6)
    att = [p.get_height() for p in app.bar_axes[0].patches]
    assert len(att) == 5 + 5   # one outline per class + one filled bar per support image
    np.testing.assert_allclose(sorted(att[5:]), sorted(cmp.views["Matching Networks"].values[0].numpy()), rtol=1e-6)
    # a query chosen with the dropdown (as a student would) is drawn
    app.controls["query"].value = 7
    assert app.values["query"] == 7
    heights = [p.get_height() for p in app.bar_axes[2].patches]
    np.testing.assert_allclose(heights, app.comparison.views["Relation Networks"].values[7].numpy(), rtol=1e-6)
    assert "true class 3" in app.query_title.get_text()
    # N changes the query list (and sends an out-of-range query back to 0); K picks the 5-shot learners
    app.update(n_way=3)
    assert app.values["query"] == 0 and len(app.controls["query"].options) == 6
    app.update(n_way=20, k_shot=5, query=39)
    assert len(app.controls["query"].options) == 40 and app.controls["k_shot"].value == 5
    assert app.comparison.views["Matching Networks"].values.shape == (40, 100)
    first = app.comparison
    app.new_episode()
    assert app.values["episode"] == 1 and not torch.equal(app.comparison.x_s, first.x_s)
    app.button.click()
    assert app.values["episode"] == 2
    png = app.render()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_widget_refuses_bad_values(data, family):
    app = mw.MetricComparison(family, data)
    with pytest.raises(ValueError, match="query must be in"):
        app.update(query=10)
    with pytest.raises(ValueError, match="k_shot must be one of"):
        app.update(k_shot=3)
    with pytest.raises(TypeError, match="integer"):
        app.update(n_way=2.5)
    with pytest.raises(TypeError, match="unknown value"):
        app.update(steps=3)
    with pytest.raises(ValueError, match="the same learners"):
        mw.MetricComparison({1: family[1], 5: {"ProtoNet": family[5]["ProtoNet"]}}, data)
    assert app.values == {"n_way": 5, "k_shot": 1, "episode": 0, "query": 0}   # nothing changed


def test_every_control_redraws_the_figure_as_the_browser_test_drives_it(data, family):
    """What tests/browser does in JupyterLab, here without a browser: each dropdown set to another
    option, then the button pressed, and after each the image the widget shows must change."""
    app = mw.MetricComparison(family, data, n_way=5, k_shot=1, n_query=2)
    app.ui                                      # shown: from now on every update re-renders the image
    for name, control in app.controls.items():
        before, renders = app.image.value, app.renders
        values = [o[1] if isinstance(o, tuple) else o for o in control.options]
        control.value = next(v for v in values if v != control.value)
        assert app.renders == renders + 1 and app.image.value != before, name
    before = app.image.value
    app.button.click()
    assert app.image.value != before and app.values["episode"] == 1


def test_the_paper_numbers_this_module_adds_stand_in_the_references_file():
    """Matching and Relation Networks' entries of compare.PAPER_RESULTS (added by metric_lab) are rows of
    docs/references.md with the same value, setting and verification letter (as test_compare checks
    for the others)."""
    from pathlib import Path

    from metalib.course import compare

    text = (Path(__file__).resolve().parents[1] / "docs" / "references.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("|")]
    datasets = {"omniglot": "Omniglot", "miniimagenet": "miniImageNet"}
    mine = {key: p for key, p in compare.PAPER_RESULTS.items() if key[0].startswith(("MatchingNet", "RelationNet"))}
    assert len(mine) == 14
    for (method, dataset, n, k), p in mine.items():
        assert p.source in ("P", "C", "S"), (method, p)
        setting = f"{datasets[dataset]} {n}-way {k}-shot"
        hits = [r for r in rows if f"| {p.value} |" in r and f"| {setting} |" in r and r.rstrip().endswith(f"| {p.source} |")]
        assert hits, f"{method} {setting}: {p.value} [{p.source}] is not in docs/references.md"
