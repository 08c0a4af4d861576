"""The course layer of notebook 11: traces, the ProtoNet-on-sequences rule, the explorers' callbacks
(no browser), and the LRUA exercise's check against its own solution and the usual mistakes."""
import math

import pytest
import torch
from torch import nn

from metalib import ProtoNet
from metalib.algorithms.mann import MANN, PixelInput
from metalib.algorithms.snail import SNAIL
from metalib.course import memory_lab as ml
from metalib.data.sequences import SequenceSampler, instance_numbers
from metalib.evaluation import accuracy_by_instance

from _nets import synthetic_images

DATA = synthetic_images(n_classes=12, per_class=12, size=16, seed=0)


def small_mann(seed=0):
    torch.manual_seed(seed)
    return MANN(PixelInput(1, 16), n_way=5, controller_size=8, memory_slots=12, memory_size=4, read_heads=2)


# ============================================================================ computations
def test_mann_trace_is_the_seeded_sequence_through_predict_sequence():
    m = small_mann()
    tr = ml.mann_trace(m, DATA, episode=2)
    ep = list(SequenceSampler(DATA, 5, 10).episodes(3, seed=1000, chunk=1))[2]
    assert torch.equal(tr.x, ep.x[0]) and torch.equal(tr.y, ep.y[0]) and torch.equal(tr.instance, ep.instance[0])
    torch.testing.assert_close(tr.logits, m.predict_sequence(ep.x, ep.y)[0])
    assert tr.read.shape == (50, 2, 12) and tr.write.shape == (50, 2, 12) and tr.usage.shape == (50, 12)
    assert tr.label_in[0] == -1 and torch.equal(tr.label_in[1:], tr.y[:-1])
    assert torch.equal(tr.right, tr.logits.argmax(-1) == tr.y)


def test_slot_story_follows_the_strongest_read_back_to_its_write():
    m = small_mann()
    tr = ml.mann_trace(m, DATA, episode=0)
    t = 30
    st = ml.slot_story(tr, t)
    read = tr.read[t].sum(0)
    assert st["slot"] == int(read.argmax())
    writes = [float(tr.write[s, :, st["slot"]].sum()) for s in range(t + 1)]
    assert st["written"] == max(range(t + 1), key=lambda s: writes[s])
    earlier = [s for s in range(t) if tr.y[s] == tr.y[t]]
    assert st["previous"] == (earlier[-1] if earlier else None)


def test_nearest_prototype_sequence_by_hand():
    net = ProtoNet(nn.Flatten())
    x = torch.tensor([[[0.0], [10.0], [1.0], [9.0], [4.0]]])       # "images" are 1-d points
    y = torch.tensor([[0, 1, 0, 1, 0]])
    logits = ml.nearest_prototype_sequence(net)(x, y)[0]
    assert logits[0].tolist() == [0.0, 0.0]                      # nothing seen yet
    assert logits[1].tolist() == [-100.0, float("-inf")]          # only class 0 seen (at 0)
    assert logits[2].tolist() == [-1.0, -81.0]                    # prototypes 0 and 10
    assert logits[4].tolist() == [-(4 - 0.5) ** 2, -(4 - 9.5) ** 2]


def test_first_guess_bound_by_hand():
    assert ml.first_guess_bound(5) == pytest.approx(100 * (1 / 5 + 1 / 4 + 1 / 3 + 1 / 2 + 1) / 5)
    assert ml.first_guess_bound(1) == 100.0


def test_instance_curves_share_the_sequences():
    m = small_mann()
    curves = ml.instance_curves({"mann": m, "proto": ProtoNet(nn.Flatten())}, DATA, episodes=6,
                                predict={"proto": ml.nearest_prototype_sequence(ProtoNet(nn.Flatten()))})
    assert set(curves) == {"mann", "proto"} and curves["proto"].episodes == 6
    # ProtoNet on raw pixels of these well-separated synthetic classes is right from the 2nd instance on
    assert curves["proto"].mean[2] > 90


def test_blind_guess_uses_only_the_labels_fed_before_each_step():
    y = torch.tensor([[2, 2, 0, 1, 0, 1], [1, 0, 0, 2, 1, 2]])
    guess = ml.blind_guess_sequence(3)(torch.zeros(2, 6, 1, 4, 4), y).argmax(-1)
    # worked by hand: the lowest label not fed yet (labels fed at t: y[0..t-1]); 0 once all three were fed
    assert guess.tolist() == [[0, 0, 0, 1, 0, 0], [0, 0, 2, 2, 0, 0]]
    # it never looks at y[t] itself: changing the last label changes nothing
    y2 = y.clone()
    y2[:, -1] = (y2[:, -1] + 1) % 3
    assert torch.equal(ml.blind_guess_sequence(3)(None, y2), ml.blind_guess_sequence(3)(None, y))


def test_blind_guess_reaches_the_first_presentation_bound():
    # the bound by hand: 5 classes -> (1/5 + 1/4 + 1/3 + 1/2 + 1) / 5
    assert ml.first_guess_bound(5) == pytest.approx(100 * (1 / 5 + 1 / 4 + 1 / 3 + 1 / 2 + 1) / 5)
    assert ml.first_guess_bound(3) == pytest.approx(100 * 11 / 18)
    r = accuracy_by_instance(None, synthetic_images(12, 10, 8, seed=0), n_way=5, instances=4, episodes=400, seed=3,
                             predict=ml.blind_guess_sequence(5))
    assert abs(r.mean[1] - ml.first_guess_bound(5)) < 2 * r.ci95[1] + 0.5, r


def test_toy_classes_and_a_live_run():
    toy = ml.toy_classes(6, 5, size=8, seed=3)
    assert toy.shape == (6, 5, 1, 8, 8) and toy.dtype == torch.uint8
    assert torch.equal(toy, ml.toy_classes(6, 5, size=8, seed=3)) and not torch.equal(toy, ml.toy_classes(6, 5, 8, 4))
    torch.manual_seed(0)
    m = MANN(PixelInput(1, 8), n_way=3, controller_size=8, memory_slots=6, memory_size=4, read_heads=1)
    w = m.out.weight.detach().clone()
    losses = ml.train_live(m, toy, steps=3, n_way=3, shots=2, batch=4)
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses) and not torch.equal(w, m.out.weight)
    torch.manual_seed(0)
    s = SNAIL(PixelInput(1, 8), n_way=3, k_shot=1, filters=4, attention=((4, 2), (4, 2), (4, 2)))
    assert len(ml.train_live(s, toy, steps=2, n_way=3, shots=1, batch=4, n_query=2)) == 2


# ============================================================================ the exercise
def test_the_reference_solution_passes_and_equals_the_library():
    from metalib.algorithms.mann import lrua_write_weights

    fb = ml.check_lrua_write(ml.lrua_write)
    assert fb.ok, fb
    g = torch.Generator().manual_seed(0)
    read_prev = torch.rand(3, 7, generator=g).softmax(-1)
    usage = torch.rand(7, generator=g)
    alpha = torch.randn(3, generator=g)
    write, _ = ml.lrua_write(read_prev, usage, alpha, read_prev, 0.9)
    torch.testing.assert_close(write, lrua_write_weights(read_prev[None], usage[None], torch.sigmoid(alpha)[None])[0])


# The ten common mistakes (metalib/course/exercises/lrua_write.py) are each run through the check, and the
# message must name that mistake, in tests/test_exercise_solutions.py::test_every_common_mistake_is_named.


def test_the_check_handles_unwritten_crashing_and_in_place():
    def todo(*a):
        raise NotImplementedError

    def crash(*a):
        raise RuntimeError("boom")

    def in_place(read_prev, usage_prev, alpha, read, gamma):
        usage_prev.mul_(gamma)
        return ml.lrua_write(read_prev, usage_prev / gamma, alpha, read, gamma)

    assert "not written yet" in ml.check_lrua_write(todo).message
    assert "RuntimeError: boom" in ml.check_lrua_write(crash).message
    assert "in place" in ml.check_lrua_write(in_place).message
    assert "two tensors" in ml.check_lrua_write(lambda *a: a[0]).message
    assert ml.solution(show=False).startswith("def lrua_write")


# ============================================================================ the widgets, without a browser
def test_memory_explorer_callbacks():
    m = small_mann()
    app = ml.MemoryExplorer(m, DATA, name="tiny MANN")
    assert app.values == {"t": 0, "episode": 0, "head": "all"}
    app.update(t=17)
    w = app.weights("read")
    assert bool(torch.isnan(w[18:]).all()) and not bool(torch.isnan(w[:18]).any())
    torch.testing.assert_close(w[:18], app.trace.read[:18].sum(1).double())
    assert app.controls["t"].value == 17 and "step 17" in app.title.get_text()
    assert app.story == ml.slot_story(app.trace, 17)
    app.update(head=1)
    torch.testing.assert_close(app.weights("write")[:18], app.trace.write[:18, 1].double())
    app.controls["t"].value = 5                     # moving the slider calls update
    assert app.values["t"] == 5
    before = app.trace
    app.button.click()                              # "New episode"
    assert app.values["episode"] == 1 and app.values["t"] == 0 and not torch.equal(app.trace.x, before.x)
    png = app.ui and app.render()
    assert png[:4] == b"\x89PNG" and app.renders >= 1
    with pytest.raises(ValueError, match="t must be an integer step in \\[0, 49\\]"):
        app.update(t=50)
    with pytest.raises(ValueError, match="head"):
        app.update(head=5)
    with pytest.raises(ValueError, match="external memory"):
        ml.MemoryExplorer(MANN(PixelInput(1, 16), read_heads=0), DATA)


def test_attention_explorer_callbacks():
    torch.manual_seed(0)
    s = SNAIL(PixelInput(1, 16), n_way=5, k_shot=1, filters=4, attention=((4, 2), (4, 2), (4, 2)))
    app = ml.AttentionExplorer(s, DATA, n_query=2, name="tiny SNAIL")
    v = app.view
    assert v["x_s"].shape == (5, 1, 16, 16) and v["x_q"].shape == (10, 1, 16, 16)
    torch.testing.assert_close(v["logits"], s.predict(v["x_s"], v["y_s"], v["x_q"]))
    app.update(query=3, block=2)
    torch.testing.assert_close(app.attention, v["attention"][1][3])
    heights = [b.get_height() for b in app.bars]
    assert heights == pytest.approx(app.attention.tolist())
    assert math.isclose(sum(heights), 1.0, rel_tol=1e-5)
    app.controls["block"].value = 3
    assert app.values["block"] == 3
    app.button.click()
    assert app.values == {"episode": 1, "query": 0, "block": 3}
    with pytest.raises(ValueError, match="query"):
        app.update(query=10)


def test_the_explorers_titles_fit_in_every_state_and_show_no_placeholder():
    """The notebook's long names ("MANN, toy classes"): the titles stay inside the figure at every step
    and query, step 0 says "fed no label" (not the placeholder -1), the heat maps have a colour bar."""
    m = small_mann()
    app = ml.MemoryExplorer(m, DATA, name="MANN, toy classes")
    for t in range(0, app.length, 7):
        app.update(t=t)
        assert not app.clipped_titles(), (t, app.clipped_titles())
        assert "label -1" not in app.title.get_text()
    app.update(t=0)
    assert "fed no label" in app.title.get_text()
    assert app.colorbar.mappable is app.read_im and app.colorbar.ax.get_ylabel() == "weight"
    torch.manual_seed(0)
    s = SNAIL(PixelInput(1, 16), n_way=5, k_shot=1, filters=4, attention=((4, 2), (4, 2), (4, 2)))
    att = ml.AttentionExplorer(s, DATA, n_query=2, name="SNAIL, toy classes")
    for q in range(10):
        att.update(query=q, block=1 + q % 3)
        assert not att.clipped_titles(), (q, att.clipped_titles())


def test_the_accuracy_by_presentation_legend_covers_no_data():
    """The legend lies below the panel: not over the blind guesser's star nor the chance line."""
    from types import SimpleNamespace

    import matplotlib.pyplot as plt

    curve = SimpleNamespace(instances=10, n_way=5, mean={k: 20.0 + 7 * k for k in range(1, 11)},
                            ci95={k: 2.0 for k in range(1, 11)})
    fig, ax = plt.subplots(figsize=(7.5, 5.6), layout="constrained")
    ml.plot_instance_curves(ax, {"MANN": curve, "LSTM": curve}, paper=ml.PAPER_TABLE1)
    fig.canvas.draw()
    legend, panel = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert legend.y1 <= panel.y0 and legend.y0 >= 0
    plt.close(fig)


def test_the_title_check_finds_a_clipped_title():
    """Not vacuous: the one-line title the memory explorer had before is found clipped."""
    app = ml.MemoryExplorer(small_mann(), DATA, name="MANN, toy classes")
    app.title.set_text("MANN, toy classes — test episode 0, step 9: strongest read slot 12 (weight 0.53), written "
                       "most at step 3 (fed label 2); class 1: last shown at step 3")
    assert app.clipped_titles() and "clipped" in app.clipped_titles()[0]


def test_instance_numbers_used_by_the_lab_are_the_datas():
    y = torch.tensor([[0, 1, 0]])
    assert instance_numbers(y).tolist() == [[1, 1, 2]]


# ============================================================================ how the sequence learners were shipped
@pytest.mark.slow
def test_ship_sequence_learner_records_both_protocols(tmp_path, one_thread):
    import json

    from metalib.data import Omniglot
    from metalib.data.paths import DataNotFoundError
    from metalib.pretrained import pretrained

    try:
        Omniglot("test")
    except DataNotFoundError as e:
        pytest.skip(str(e))
    out = ml.ship_sequence_learner("lstm-baseline", "lstm-tiny", minutes=0.02, run_dir=str(tmp_path / "run"),
                                   directory=str(tmp_path / "w"), episodes=10)
    entry = json.loads((tmp_path / "w" / "MANIFEST.json").read_text())["lstm-tiny"]
    assert entry["metrics"]["test_accuracy"] == round(out["standard"].mean, 4) and entry["metrics"]["episodes"] == 600
    assert f"{out['by_instance'].mean[2]:.1f} ± {out['by_instance'].ci95[2]:.1f}" in entry["note"]
    assert entry["config"]["train_shot"] == 10 and entry["config"]["controller_size"] == 200  # the learner's own config (issue #23)
    again = pretrained("lstm-tiny", directory=tmp_path / "w")
    assert again.describe() == "LSTM (no memory)" and again.read_heads == 0
