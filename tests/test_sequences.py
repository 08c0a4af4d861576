"""The episode-as-sequence format (metalib.data.sequences) against hand-built sequences."""
import pytest
import torch

from metalib.data import EpisodeSampler
from metalib.data.sequences import ORDER_SEED_OFFSET, SequenceSampler, instance_numbers, offset_labels, snail_form
from metalib.evaluation import accuracy_by_instance, seeded_episodes

from _nets import synthetic_images


def test_offset_labels_feed_the_previous_label_and_zeros_first():
    y = torch.tensor([[2, 0, 2, 1]])
    got = offset_labels(y, 3)
    expected = torch.tensor([[[0, 0, 0], [0, 0, 1], [1, 0, 0], [0, 0, 1]]], dtype=torch.float32)
    assert torch.equal(got, expected)
    # the label of step t is never in its own input
    assert not (got.argmax(-1)[0, 1:] == y[0, 1:]).all()


def test_instance_numbers_count_presentations_by_hand():
    y = torch.tensor([[1, 1, 0, 1, 2, 0], [0, 0, 0, 0, 0, 0]])
    assert instance_numbers(y).tolist() == [[1, 2, 1, 3, 1, 2], [1, 2, 3, 4, 5, 6]]


def test_sequences_hold_the_images_of_the_seeded_standard_episodes():
    images = synthetic_images(n_classes=12, per_class=6, size=8)
    seqs = SequenceSampler(images, n_way=3, instances=4)
    got = list(seqs.episodes(5, seed=7, chunk=2))
    assert [e.x.shape[0] for e in got] == [2, 2, 1]
    # the same images as EpisodeSampler(k_shot=4, q_query=0) drawn as metalib.evaluation draws them
    ref = list(seeded_episodes(EpisodeSampler(images, 3, 4, 0), 5, seed=7, chunk=5))[0]
    x = torch.cat([e.x for e in got])
    y = torch.cat([e.y for e in got])
    g = torch.Generator().manual_seed(7 + ORDER_SEED_OFFSET)
    for t in range(5):
        order = torch.rand(1, 12, generator=g, dtype=torch.float64).argsort(dim=1)[0]
        assert torch.equal(x[t], ref.x_s[t][order]) and torch.equal(y[t], ref.y_s[t][order])
        # every class exactly `instances` times, labels 0..N-1
        assert torch.bincount(y[t], minlength=3).tolist() == [4, 4, 4]
    # the same every time
    again = torch.cat([e.x for e in seqs.episodes(5, seed=7, chunk=5)])
    assert torch.equal(again, x)


def test_orders_differ_between_episodes_and_from_class_major():
    images = synthetic_images(n_classes=20, per_class=10, size=8)
    ep = SequenceSampler(images, n_way=5, instances=10).sample(8, torch.Generator().manual_seed(0))
    class_major = torch.arange(5).repeat_interleave(10)
    assert not any(torch.equal(y, class_major) for y in ep.y)
    assert len({tuple(y.tolist()) for y in ep.y}) == 8
    assert torch.equal(ep.instance, instance_numbers(ep.y))


def test_snail_form_appends_each_query_with_a_null_label():
    x_s = torch.arange(4.0).view(1, 4, 1)             # "images" are their index
    y_s = torch.tensor([[0, 1, 1, 0]])
    x_q = torch.tensor([[[10.0], [11.0]]])
    s = snail_form(x_s, y_s, x_q, n_way=2, y_q=torch.tensor([[1, 0]]), order=torch.tensor([2, 0, 3, 1]))
    assert s.x.shape == (1, 2, 5, 1)
    assert s.x[0, 0, :, 0].tolist() == [2.0, 0.0, 3.0, 1.0, 10.0]
    assert s.x[0, 1, :, 0].tolist() == [2.0, 0.0, 3.0, 1.0, 11.0]
    assert s.label_in[0, 0].tolist() == [[0, 1], [1, 0], [1, 0], [0, 1], [0, 0]]
    assert s.y.tolist() == [[1, 0]]


class _Oracle:
    """Right at every presentation after the first; at the first, guesses label 0."""

    def predict_sequence(self, x, y):
        inst = instance_numbers(y)
        guess = torch.where(inst > 1, y, torch.zeros_like(y))
        return torch.nn.functional.one_hot(guess, 5).float()

    def describe(self):
        return "oracle"


def test_accuracy_by_instance_against_a_hand_computation():
    images = synthetic_images(n_classes=10, per_class=10, size=8)
    r = accuracy_by_instance(_Oracle(), images, n_way=5, instances=10, episodes=30, seed=3, chunk=7)
    # from the 2nd instance on the oracle is always right
    assert all(r.mean[k] == 100.0 and r.ci95[k] == 0.0 for k in range(2, 11))
    # at the 1st it is right only for the class labelled 0: 1 of the 5 first presentations
    assert r.mean[1] == pytest.approx(20.0) and r.ci95[1] == 0.0
    assert r.overall == pytest.approx((45 + 1) / 50 * 100)
    assert r.episodes == 30 and len(r.per_episode[1]) == 30
    assert "1st" not in str(r) and "oracle" in str(r)


def test_accuracy_by_instance_refuses_a_learner_without_sequences():
    with pytest.raises(TypeError, match="predict_sequence"):
        accuracy_by_instance(object(), synthetic_images(), n_way=2, instances=2, episodes=1)


def test_bad_sizes_raise_one_clear_error():
    images = synthetic_images(n_classes=4, per_class=5, size=8)
    with pytest.raises(ValueError, match="n_way=5 but the dataset has only 4 classes"):
        SequenceSampler(images, n_way=5, instances=2)
    with pytest.raises(ValueError, match="k_shot \\+ q_query = 6"):
        SequenceSampler(images, n_way=2, instances=6)
    with pytest.raises(TypeError, match="integer"):
        offset_labels(torch.zeros(3), 2)
