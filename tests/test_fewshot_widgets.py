"""The few-shot widgets, driven without a browser: call update() / click the buttons, check what is drawn
against the tested computations of metalib.course.fewshot_lab."""
import numpy as np
import pytest
import torch

from metalib import MAML, ProtoNet
from metalib.course import fewshot_lab as fl, widgets
from _data import require_omniglot
from metalib.course.widgets import _RIGHT, _WRONG

from _nets import synthetic_images, tiny_conv4 as conv4

pytestmark = pytest.mark.usefixtures("one_thread")


def synthetic(n_classes=20, per_class=9, size=16, seed=0):
    return synthetic_images(n_classes, per_class, size, seed)


@pytest.fixture(scope="module")
def data():
    return synthetic()


@pytest.fixture(scope="module")
def learners():
    return {"proto": ProtoNet(conv4()), "maml": MAML(conv4(5, seed=1), inner_lr=0.5, inner_steps=2)}


@pytest.fixture
def explorer(learners, data):
    return widgets.EpisodeExplorer(learners, data, n_way=5, k_shot=1, n_query=3, seed=0)


# ----------------------------------------------------------------------------- episode explorer
def test_explorer_shows_the_seeded_episode_and_its_probabilities(explorer, learners, data):
    ep = fl.sample_episode(data, 5, 1, 3, seed=0, index=0)
    assert all(torch.equal(a, b) for a, b in zip(explorer.episode, ep))
    probs = fl.episode_probabilities(learners["proto"], ep)[0]
    torch.testing.assert_close(explorer.probs, probs, rtol=1e-4, atol=1e-6)
    assert explorer.accuracy == pytest.approx(float((probs.argmax(-1) == ep.y_q[0]).float().mean()))
    assert str(round(100 * explorer.accuracy)) + "% of the 15 queries" in explorer.title.get_text()


def test_changing_n_and_k_rerenders_with_n_times_k_support_images(explorer):
    explorer.ui  # shown: updates now render PNGs
    before = explorer.renders
    explorer.update(n_way=20, k_shot=5)
    assert explorer.renders == before + 1 and explorer.image.value[:4] == b"\x89PNG"
    assert explorer.support_images.shape == (100, 1, 16, 16)
    # the mosaic: 20 columns, 5 support rows + a gap + 3 query rows of (16 + 2*3)-pixel cells
    img = explorer.mosaic.get_array()
    assert img.shape == ((5 + 3) * 22 + 11, 20 * 22, 3)
    assert [t.get_text() for t in explorer.ax.get_xticklabels()] == [str(c) for c in range(20)]
    # support tile of class c, shot s at row s, column c: the image of x_s[c*K + s] (dark ink on white)
    c, s = 7, 3
    tile = img[s * 22 + 3: s * 22 + 19, c * 22 + 3: c * 22 + 19]
    np.testing.assert_allclose(tile, fl.display_images(explorer.support_images[c * 5 + s: c * 5 + s + 1])[0].numpy())
    assert explorer.controls["n_way"].value == 20 and explorer.controls["k_shot"].value == 5


def test_query_frames_are_green_when_right_red_when_wrong(explorer):
    explorer.update(n_way=10, k_shot=2)
    img, q = explorer.mosaic.get_array(), explorer.n_query
    right = (explorer.view.predictions == explorer.episode.y_q[0]).numpy()
    for c in range(10):
        for j in range(q):
            y0 = (2 + j) * 22 + 11  # below the 2 support rows and the gap
            frame = img[y0, c * 22]  # a pixel of the tile's border
            np.testing.assert_allclose(frame, _RIGHT if right[c * q + j] else _WRONG)
    assert len(explorer._notes) == int((~right.astype(bool)).sum())  # "→k" beside each mistake
    # the probability bars: mistakes first, each bar = p(class) of that query
    for ax, i in zip(explorer.bar_axes, explorer.bar_queries):
        heights = [p.get_height() for p in ax.patches]
        np.testing.assert_allclose(heights, explorer.probs[i].numpy(), rtol=1e-6)
    wrong = [i for i in range(len(right)) if not right[i]]
    assert explorer.bar_queries[: len(wrong)] == wrong[: len(explorer.bar_queries)]


def test_new_episode_is_deterministic_by_seed(explorer, learners, data):
    first = explorer.episode.x_s.clone()
    explorer.new_episode()
    assert explorer.values["episode"] == 1
    assert not torch.equal(explorer.episode.x_s, first)
    assert torch.equal(explorer.episode.x_s, fl.sample_episode(data, 5, 1, 3, seed=0, index=1).x_s)
    other = widgets.EpisodeExplorer(learners, data, n_way=5, k_shot=1, n_query=3, seed=0)
    other.new_episode()
    assert torch.equal(other.episode.x_q, explorer.episode.x_q) and other.accuracy == explorer.accuracy
    third = widgets.EpisodeExplorer(learners, data, n_way=5, k_shot=1, n_query=3, seed=1)
    assert not torch.equal(third.episode.x_s, first)


def test_button_click_and_controls_drive_the_callback(explorer):
    explorer.ui
    before = explorer.renders
    explorer.button.click()
    assert explorer.values["episode"] == 1 and explorer.renders == before + 1
    explorer.controls["k_shot"].value = 2  # as if the user picked K = 2
    assert explorer.values["k_shot"] == 2 and explorer.support_images.shape[0] == 10
    assert explorer.renders == before + 2


def test_switching_to_maml_fixes_n_to_its_head(explorer, learners, data):
    explorer.update(n_way=10, k_shot=2)
    explorer.update(model="maml")
    assert explorer.values["n_way"] == 5 and explorer.controls["n_way"].value == 5
    assert explorer.controls["n_way"].disabled and explorer.steps == 2
    ep = fl.sample_episode(data, 5, 2, 3, seed=0, index=0)
    torch.testing.assert_close(explorer.probs, fl.episode_probabilities(learners["maml"], ep, steps=2)[0])
    assert "2 inner steps" in explorer.title.get_text()
    with pytest.raises(ValueError, match="5-way linear head"):
        explorer.update(n_way=10)
    assert explorer.values["n_way"] == 5  # a refused update changes nothing
    explorer.update(model="proto")
    assert not explorer.controls["n_way"].disabled


def test_explorer_bad_input(explorer, learners, data):
    with pytest.raises(ValueError, match="n_way=30 is more classes than the data has \\(20\\)"):
        explorer.update(n_way=30)
    with pytest.raises(ValueError, match="k_shot \\+ n_query = 7 \\+ 3 = 10 .* only 9 images"):
        explorer.update(k_shot=7)
    with pytest.raises(ValueError, match="model must be one of"):
        explorer.update(model="nope")
    with pytest.raises(TypeError, match="unknown value"):
        explorer.update(steps=3)
    assert explorer.values == {"model": "proto", "n_way": 5, "k_shot": 1, "episode": 0}
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        widgets.episode_explorer(["nope"])
    with pytest.raises(ValueError, match="give data="):
        widgets.episode_explorer(learners)


# ----------------------------------------------------------------------------- embedding explorer
def test_embedding_explorer_slider_shows_the_k_step_embedding(learners, data):
    learner = learners["maml"]
    em = widgets.EmbeddingExplorer(learner, data, n_way=5, k_shot=2, n_query=4, max_steps=4, seed=3, resolution=40)
    assert em.values["steps"] == 2  # starts at the learner's test-time steps
    em.ui
    pca = em.pca
    before = em.renders
    em.controls["steps"].value = 3  # the slider
    assert em.values["steps"] == 3 and em.renders == before + 1 and em.pca is pca  # one PCA for all steps
    ep = fl.sample_episode(data, 5, 2, 4, seed=3)
    phi = learner.adapt(ep.x_s[0], ep.y_s[0], torch.nn.functional.cross_entropy, steps=3)
    z_s = fl.embed(learner, ep.x_s[0], {k: v.detach() for k, v in phi.items()})
    np.testing.assert_allclose(em.support_dots.get_offsets(), pca.project(z_s).numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(em.support_xy, pca.project(z_s).numpy(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(em.view.logits, learner.forward(phi, ep.x_q[0]).detach(), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(em.regions.get_array(), fl.decision_regions(em.view, pca, em.extent, 40).numpy())
    # the right panel: this episode's accuracy after 0..4 steps, marker at 3
    accs = em.acc_line.get_ydata()
    assert len(accs) == 5 and accs[3] == pytest.approx(100 * em.view.accuracy)
    assert list(em.acc_marker.get_xdata()) == [3]
    assert "3 inner steps" in em.title.get_text() and "real rule" in em.title.get_text()
    # the PCA is the one of every step's embeddings together
    allz = torch.cat([torch.cat([em.views[k].z_s, em.views[k].z_q]) for k in range(5)])
    torch.testing.assert_close(pca.mean, allz.mean(0), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="steps must be in \\[0, 4\\]"):
        em.update(steps=5)
    with pytest.raises(ValueError, match="steps must be in"):
        em.update(steps=-1)
    em.button.click()
    assert em.values["episode"] == 1 and em.pca is not pca


def test_embedding_explorer_protonet_prototypes(learners, data):
    learner = learners["proto"]
    em = widgets.embedding_explorer(learner, data, n_way=4, k_shot=3, n_query=2, seed=0, resolution=30)
    assert "steps" not in em.controls and em.values == {"episode": 0}
    v = em.view
    protos = torch.stack([v.z_s[v.y_s == c].mean(0) for c in range(4)])
    np.testing.assert_allclose(em.proto_marks.get_offsets(), em.pca.project(protos).numpy(), rtol=1e-4, atol=1e-5)
    assert "nearest real prototype" in em.title.get_text()
    assert 0 <= em.plane_agreement() <= 1
    with pytest.raises(TypeError, match="unknown value"):
        em.update(steps=1)
    with pytest.raises(ValueError, match="no inner loop"):
        widgets.EmbeddingExplorer(learner, data, k_shot=1, n_query=2, steps=2)
    with pytest.raises(ValueError, match="5-way linear head"):
        widgets.EmbeddingExplorer(learners["maml"], data, n_way=4, k_shot=1, n_query=2)


# ----------------------------------------------------------------------------- accuracy vs steps
def test_accuracy_vs_steps_widget(learners, data):
    curves = fl.accuracy_vs_steps(learners, data, n_way=5, k_shot=1, steps=[0, 1, 2], episodes=3, n_query=2)
    av = widgets.accuracy_vs_steps(curves)
    m = curves["maml"]
    np.testing.assert_allclose(av.lines["maml"].get_ydata(), m.mean)
    assert list(av.lines["proto"].get_xdata()) == [0, 2]  # flat reference line over the steps
    assert av.lines["maml"].get_visible() and av.lines["proto"].get_visible()
    av.ui
    before = av.renders
    av.controls["show"].value = ("maml",)
    assert av.values["show"] == ("maml",) and av.renders == before + 1
    assert not av.lines["proto"].get_visible() and not av.bands["proto"].get_visible()
    assert "3 seeded episodes" in av.ax.get_title()
    with pytest.raises(ValueError, match="unknown curve"):
        av.update(show=("x",))
    with pytest.raises(ValueError, match="no curves"):
        widgets.AccuracyVsSteps({})


# ----------------------------------------------------------------------------- real data
@pytest.mark.data
def test_real_protonet_omniglot_explorer():
    require_omniglot()
    ex = widgets.episode_explorer(["protonet-omniglot-5w1s"], n_way=20, k_shot=5, n_query=3, seed=0)
    assert ex.support_images.shape == (100, 1, 28, 28)
    assert ex.accuracy > 0.7  # shipped at 97.4% 5-way 1-shot; 20-way 5-shot is easier per class
    png = ex.render()
    assert png[:4] == b"\x89PNG"


def test_embedding_explorer_reptile_step_values(data):
    import torch.nn.functional as F

    from metalib import Reptile

    learner = Reptile(conv4(5, seed=4), inner_lr=0.01, inner_steps=3, inner_optimizer="adam")
    em = widgets.EmbeddingExplorer(learner, data, n_way=5, k_shot=1, n_query=2, step_values=[0, 1, 4], resolution=20)
    assert em.values["steps"] == 4 and sorted(em.views) == [0, 1, 4]  # closest to its 3 inner steps
    assert em.controls["steps"].options == (0, 1, 4)
    em.update(steps=1)
    ep = fl.sample_episode(data, 5, 1, 2, seed=0)
    phi = learner.adapt(ep.x_s[0], ep.y_s[0], F.cross_entropy, steps=1)
    torch.testing.assert_close(em.view.logits, learner.forward(phi, ep.x_q[0]), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="steps must be one of \\[0, 1, 4\\]"):
        em.update(steps=2)


# ----------------------------------------------------------------------------- off-plane queries; legends
def test_queries_outside_their_predicted_region_are_drawn_hollow(learners, data):
    """The 2-D plane cannot show every dimension: a query whose region (the real rule at its projection)
    is not its real prediction is drawn as a hollow ring, and the box counts them."""
    em = widgets.EmbeddingExplorer(learners["maml"], data, n_way=5, k_shot=2, n_query=4, max_steps=3, seed=3,
                                   resolution=30)
    for k in (0, 3):
        em.update(steps=k)
        v = em.view
        on_plane = em.pca.unproject(em.pca.project(v.z_q))
        inside = (v.rule(on_plane).argmax(-1) == v.predictions).numpy()
        np.testing.assert_array_equal(em.in_region(k).numpy(), inside)
        face, edge = em.query_dots.get_facecolor(), em.query_dots.get_edgecolor()
        np.testing.assert_array_equal(face[:, 3] > 0, inside)                  # filled = inside, hollow = outside
        np.testing.assert_allclose(edge[:, :3], em.colors[v.y_q.numpy()][:, :3])
        assert em.plane_agreement(k) == pytest.approx(inside.mean())
        assert f"in their predicted region {100 * inside.mean():5.1f}%" in em.info.get_text()
    assert 0 < em.plane_agreement(3) < 1          # both kinds are drawn in this episode
    labels = [t.get_text() for t in em.ax.get_legend().get_texts()]
    assert "query outside its predicted region" in labels


def test_accuracy_vs_steps_legend_lists_only_the_curves_drawn(learners, data):
    curves = fl.accuracy_vs_steps(learners, data, n_way=5, k_shot=1, steps=[0, 1], episodes=2, n_query=2)
    av = widgets.accuracy_vs_steps(curves)

    def legend():
        lg = av.ax.get_legend()
        return [t.get_text() for t in lg.get_texts()] if lg is not None else []

    assert legend() == ["proto (no inner loop)", "maml"]
    av.update(show=("maml",))
    assert legend() == ["maml"]
    av.update(show=())
    assert legend() == []
    title = av.ax.get_title()
    assert "\n" in title and max(len(line) for line in title.splitlines()) < 100   # two lines: not clipped
