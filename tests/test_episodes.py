"""EpisodeSampler: invariants (hypothesis), determinism, devices, errors, and real Omniglot."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from metalib.data import Episode, EpisodeSampler, Omniglot
from _data import require_omniglot


def coded_images(n_classes: int, per_class: int, ch: int = 1, size: int = 4) -> torch.Tensor:
    """uint8 [C, P, ch, size, size] whose pixels say which class and image they are:
    [0,0] = class % 256, [0,1] = class // 256, [1,0] = image index."""
    x = torch.zeros(n_classes, per_class, ch, size, size, dtype=torch.uint8)
    c = torch.arange(n_classes)[:, None, None]
    x[:, :, :, 0, 0] = (c % 256).to(torch.uint8)
    x[:, :, :, 0, 1] = (c // 256).to(torch.uint8)
    x[:, :, :, 1, 0] = torch.arange(per_class)[None, :, None].to(torch.uint8)
    return x


def decode(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float images [..., ch, H, W] in [0, 1] -> (class ids, image ids) of shape [...]."""
    v = (x[..., 0, :, :] * 255).round().long()
    return v[..., 0, 0] + 256 * v[..., 0, 1], v[..., 1, 0]


@st.composite
def configs(draw):
    n_classes = draw(st.integers(1, 300))
    per_class = draw(st.integers(1, 25))
    n_way = draw(st.integers(1, min(n_classes, 20)))
    k_shot = draw(st.integers(1, per_class))
    q_query = draw(st.integers(0, per_class - k_shot))
    n_tasks = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**31 - 1))
    return n_classes, per_class, n_way, k_shot, q_query, n_tasks, seed


@settings(max_examples=60, deadline=None)
@given(configs())
def test_episode_invariants(cfg):
    n_classes, per_class, n, k, q, t, seed = cfg
    sampler = EpisodeSampler(coded_images(n_classes, per_class), n, k, q)
    ep = sampler.sample(t, torch.Generator().manual_seed(seed))
    assert isinstance(ep, Episode)
    assert ep.x_s.shape == (t, n * k, 1, 4, 4) and ep.x_q.shape == (t, n * q, 1, 4, 4)
    assert ep.x_s.dtype == torch.float32 and ep.y_s.dtype == torch.int64
    assert 0.0 <= ep.x_s.min() and ep.x_s.max() <= 1.0
    expect_s = torch.arange(n).repeat_interleave(k).expand(t, -1)
    expect_q = torch.arange(n).repeat_interleave(q).expand(t, -1)
    assert torch.equal(ep.y_s, expect_s) and torch.equal(ep.y_q, expect_q)  # K resp. Q per label

    cls_s, img_s = decode(ep.x_s)
    cls_q, img_q = decode(ep.x_q)
    for i in range(t):
        # every image of label j comes from the same class, and the N classes are distinct
        label_class = {}
        for cls, y in ((cls_s[i], ep.y_s[i]), (cls_q[i], ep.y_q[i])):
            for c, lab in zip(cls.tolist(), y.tolist()):
                assert label_class.setdefault(lab, c) == c
        assert len(set(label_class.values())) == n
        assert all(0 <= c < n_classes for c in label_class.values())
        # images are distinct within a class, so support and query are disjoint
        pairs_s = set(zip(cls_s[i].tolist(), img_s[i].tolist()))
        pairs_q = set(zip(cls_q[i].tolist(), img_q[i].tolist()))
        assert len(pairs_s) == n * k and len(pairs_q) == n * q
        assert not pairs_s & pairs_q


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**63 - 1))
def test_same_seed_same_episodes(seed):
    data = coded_images(50, 20)
    a = EpisodeSampler(data, 5, 2, 3).sample(4, torch.Generator().manual_seed(seed))
    b = EpisodeSampler(data, 5, 2, 3, device="cpu").sample(4, torch.Generator().manual_seed(seed))
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_different_seeds_and_consecutive_draws_differ():
    s = EpisodeSampler(coded_images(100, 20), 5, 1, 5)
    a = s.sample(8, torch.Generator().manual_seed(0))
    b = s.sample(8, torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(0)
    c, d = s.sample(8, g), s.sample(8, g)
    assert not torch.equal(a.x_s, b.x_s) and torch.equal(a.x_s, c.x_s) and not torch.equal(c.x_s, d.x_s)


def test_classes_and_images_are_uniform():
    """Every class and every image index turns up about equally often (catches e.g. always
    taking the first K images, or a bias towards low class indices)."""
    s = EpisodeSampler(coded_images(10, 6), n_way=2, k_shot=1, q_query=1)
    classes, picks = s.sample_indices(20000, torch.Generator().manual_seed(3))
    class_freq = torch.bincount(classes.flatten(), minlength=10).float() / classes.numel()
    pick_freq = torch.bincount(picks[..., 0].flatten(), minlength=6).float() / picks[..., 0].numel()
    assert (class_freq - 0.1).abs().max() < 0.01
    assert (pick_freq - 1 / 6).abs().max() < 0.01
    # the label order is random too: class c is label 0 as often as label 1
    first = torch.bincount(classes[:, 0], minlength=10).float()
    second = torch.bincount(classes[:, 1], minlength=10).float()
    assert ((first - second).abs() / first).max() < 0.1


def test_fixed_episode_list():
    s = EpisodeSampler(coded_images(30, 10), 5, 1, 2)
    a = list(s.episodes(3, seed=7, n_tasks=2))
    b = list(s.episodes(3, seed=7, n_tasks=2))
    g = torch.Generator().manual_seed(7)
    c = [s.sample(2, g) for _ in range(3)]
    assert len(a) == 3
    for ea, eb, ec in zip(a, b, c):
        assert all(torch.equal(x, y) and torch.equal(x, z) for x, y, z in zip(ea, eb, ec))
    assert not torch.equal(a[0].x_s, a[1].x_s)


def test_accepts_dataset_objects_and_tensors():
    data = coded_images(12, 5)

    class Holder:
        images = data

    a = EpisodeSampler(Holder(), 3, 1, 1).sample(2, torch.Generator().manual_seed(0))
    b = EpisodeSampler(data, 3, 1, 1).sample(2, torch.Generator().manual_seed(0))
    assert torch.equal(a.x_q, b.x_q)


def test_zero_query():
    ep = EpisodeSampler(coded_images(5, 3), 5, 3, 0).sample(2)
    assert ep.x_q.shape == (2, 0, 1, 4, 4) and ep.y_q.shape == (2, 0)


@pytest.mark.parametrize(
    "args, error, match",
    [
        ((coded_images(4, 5), 5, 1, 1), ValueError, "n_way=5 but the dataset has only 4 classes"),
        ((coded_images(10, 5), 2, 3, 3), ValueError, "k_shot \\+ q_query = 6 but each class has only 5"),
        ((coded_images(10, 5), 2, 0, 1), ValueError, "k_shot must be >= 1"),
        ((coded_images(10, 5), 0, 1, 1), ValueError, "n_way must be >= 1"),
        ((coded_images(10, 5), 2, 1, -1), ValueError, "q_query must be >= 0"),
        ((coded_images(10, 5), 2.0, 1, 1), TypeError, "n_way must be an int"),
        ((coded_images(10, 5), 2, True, 1), TypeError, "k_shot must be an int"),
        ((coded_images(10, 5).float(), 2, 1, 1), TypeError, "must be uint8"),
        ((coded_images(10, 5)[:, :, 0], 2, 1, 1), ValueError, "must have 5 dims"),
        ((torch.zeros(10, 5, 1, 0, 4, dtype=torch.uint8), 2, 1, 1), ValueError, "empty images"),
        (([[1, 2]], 2, 1, 1), TypeError, "dataset must be a uint8 tensor"),
    ],
)
def test_bad_arguments(args, error, match):
    with pytest.raises(error, match=match):
        EpisodeSampler(*args)


def test_bad_sample_arguments():
    s = EpisodeSampler(coded_images(10, 5), 2, 1, 1)
    with pytest.raises(ValueError, match="n_tasks must be >= 1"):
        s.sample(0)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        s.sample(1, generator=3)
    with pytest.raises(TypeError, match="seed must be an int"):
        s.episodes(2, seed="a")
    with pytest.raises(TypeError, match="n_tasks must be an int"):
        s.sample(2.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_episodes_equal_cpu_episodes():
    data = coded_images(200, 20)
    cpu = EpisodeSampler(data, 5, 1, 15).sample(32, torch.Generator().manual_seed(11))
    gpu = EpisodeSampler(data, 5, 1, 15, device="cuda").sample(32, torch.Generator().manual_seed(11))
    assert gpu.x_s.device.type == "cuda"
    for a, b in zip(cpu, gpu):
        assert torch.equal(a, b.cpu())
    with pytest.raises(ValueError, match="CPU torch.Generator"):
        EpisodeSampler(data, 5, 1, 1, device="cuda").sample(1, torch.Generator(device="cuda"))


@pytest.mark.data
def test_real_omniglot_episode():
    require_omniglot()
    test = Omniglot("test", progress=False)
    s = EpisodeSampler(test, n_way=20, k_shot=5, q_query=15)
    x_s, y_s, x_q, y_q = s.sample(4, torch.Generator().manual_seed(0))
    assert x_s.shape == (4, 100, 1, 28, 28) and x_q.shape == (4, 300, 1, 28, 28)
    # the support image of label j is one of the drawings of the class sampled for j
    classes, picks = s.sample_indices(4, torch.Generator().manual_seed(0))
    for t in range(4):
        for j in range(20):
            img = test.images[classes[t, j], picks[t, j, 0]].float() / 255
            assert torch.equal(x_s[t, j * 5], img)
