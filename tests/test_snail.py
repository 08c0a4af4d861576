"""SNAIL (Mishra et al. 2018) against hand computations and finite differences; causality, the null
query label, and a short run that learns."""
import math

import pytest
import torch

from metalib import algorithms, evaluate
from metalib.algorithms.mann import PixelInput, support_order
from metalib.algorithms.snail import SNAIL, ConvEmbedding, DenseBlock, TCBlock, causal_attention
from metalib.data import EpisodeSampler
from metalib.data.sequences import snail_form
from metalib.fewshot import FewShotConfig, build_learner

from _nets import directional_fd, synthetic_images


def tiny(dtype=torch.float64, n_way=3, k_shot=2, seed=0):
    torch.manual_seed(seed)
    return SNAIL(PixelInput(1, 4), n_way=n_way, k_shot=k_shot, filters=3,
                 attention=((4, 2), (3, 2), (2, 3))).to(dtype)


def episode(seed=0, tasks=2, n_way=3, k_shot=2, queries=4, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x_s = torch.rand(tasks, n_way * k_shot, 1, 4, 4, generator=g, dtype=dtype)
    y_s = torch.arange(n_way).repeat_interleave(k_shot).repeat(tasks, 1)
    x_q = torch.rand(tasks, queries, 1, 4, 4, generator=g, dtype=dtype)
    y_q = torch.randint(0, n_way, (tasks, queries), generator=g)
    return x_s, y_s, x_q, y_q


def test_dense_block_is_a_gated_causal_convolution_by_hand():
    block = DenseBlock(in_channels=2, dilation=2, filters=1).double()
    with torch.no_grad():   # [v_{t-2}, v_t] -> (f, g)
        block.conv.weight.copy_(torch.tensor([[1.0, 0.0, 0.5, -1.0], [0.0, 2.0, 1.0, 0.0]]))
        block.conv.bias.copy_(torch.tensor([0.1, -0.2]))
    v = torch.tensor([[[1.0, 2.0], [0.0, 1.0], [3.0, -1.0], [2.0, 2.0]]], dtype=torch.float64)
    out = block(v)
    for t in range(4):
        prev = v[0, t - 2].tolist() if t >= 2 else [0.0, 0.0]
        cur = v[0, t].tolist()
        f = 1.0 * prev[0] + 0.0 * prev[1] + 0.5 * cur[0] - 1.0 * cur[1] + 0.1
        g = 0.0 * prev[0] + 2.0 * prev[1] + 1.0 * cur[0] + 0.0 * cur[1] - 0.2
        a = math.tanh(f) / (1 + math.exp(-g))
        assert out[0, t].tolist() == pytest.approx(cur + [a])


def test_causal_attention_by_hand():
    q = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]], dtype=torch.float64)
    k = torch.tensor([[[2.0, 0.0], [1.0, 1.0], [0.0, -1.0]]], dtype=torch.float64)
    u = torch.tensor([[[1.0], [10.0], [100.0]]], dtype=torch.float64)
    read, p = causal_attention(q, k, u)
    for t in range(3):
        logits = [sum(a * b for a, b in zip(q[0, t].tolist(), k[0, s].tolist())) / math.sqrt(2) for s in range(t + 1)]
        e = [math.exp(x) for x in logits]
        probs = [x / sum(e) for x in e] + [0.0] * (2 - t)
        assert p[0, t].tolist() == pytest.approx(probs)
        assert read[0, t, 0].item() == pytest.approx(sum(pr * w for pr, w in zip(probs, [1.0, 10.0, 100.0])))
    assert bool((p.triu(1) == 0).all())          # exactly zero on the future


def test_tc_block_depth_and_receptive_field_cover_the_sequence():
    tc = TCBlock(in_channels=2, seq_len=6, filters=1).double()
    assert [b.dilation for b in tc.blocks] == [1, 2, 4] and tc.out_channels == 5
    v = torch.randn(1, 6, 2, dtype=torch.float64, requires_grad=True)
    tc(v)[0, -1].sum().backward()
    assert bool((v.grad[0].abs().sum(-1) > 0).all())      # the last step sees step 0 … 5
    assert [b.dilation for b in TCBlock(2, 26, 1).blocks] == [1, 2, 4, 8, 16]


def test_causality_bit_for_bit():
    m = tiny(torch.float32)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 7, 1, 4, 4, generator=g)
    label_in = torch.nn.functional.one_hot(torch.randint(0, 3, (3, 7), generator=g), 3).float()
    base = m.forward_sequence(x, label_in)
    for t in (2, 5):
        x2, l2 = x.clone(), label_in.clone()
        x2[:, t] = torch.rand_like(x2[:, t])
        l2[:, t] = l2[:, t].roll(1, -1)
        for args in ((x2, label_in), (x, l2)):
            out = m.forward_sequence(*args)
            assert torch.equal(out[:, :t], base[:, :t])
            assert not torch.allclose(out[:, t], base[:, t])


def test_predict_is_the_snail_form_with_a_null_query_label_and_queries_are_independent():
    m = tiny()
    x_s, y_s, x_q, y_q = episode()
    got = m.predict(x_s, y_s, x_q, n_way=3)
    s = snail_form(x_s, y_s, x_q, 3, order=support_order(6))
    ref = m.forward_sequence(s.x.flatten(0, 1), s.label_in.flatten(0, 1))[:, -1].view(2, 4, 3)
    torch.testing.assert_close(got, ref)
    assert not s.label_in[:, :, -1].any()                         # the query's own label is never fed
    torch.testing.assert_close(m.predict(x_s, y_s, x_q[:, 2:3]), got[:, 2:3])
    torch.testing.assert_close(m.predict(x_s[1], y_s[1], x_q[1]), got[1])


def test_training_never_feeds_the_query_labels():
    m = tiny()
    x_s, y_s, x_q, y_q = episode()
    torch.manual_seed(1)
    _, a = m.meta_gradient((x_s, y_s, x_q, y_q))
    torch.manual_seed(1)
    _, b = m.meta_gradient((x_s, y_s, x_q, (y_q + 1) % 3))
    assert torch.equal(a, b)


def test_the_meta_gradient_matches_finite_differences():
    m = tiny()
    batch = episode(queries=2)

    def loss():
        torch.manual_seed(3)   # the same support order every call
        x_s, y_s, x_q, y_q = batch
        order = torch.rand(y_s.shape).argsort(dim=1)
        return torch.nn.functional.cross_entropy(m.query_logits(x_s, y_s, x_q, order).flatten(0, 1), y_q.flatten())

    m.zero_grad()
    torch.manual_seed(3)
    m.meta_backward(batch)
    params = dict(m.named_parameters())
    analytic, numeric = directional_fd(loss, params, {k: p.grad.clone() for k, p in params.items()})
    torch.testing.assert_close(analytic, numeric, rtol=1e-6, atol=1e-9)


def test_explain_query_gives_the_last_steps_attention():
    m = tiny()
    x_s, y_s, x_q, _ = episode()
    e = m.explain_query(x_s[0], y_s[0], x_q[0])
    assert torch.equal(e["order"], support_order(6))
    torch.testing.assert_close(e["logits"], m.predict(x_s[0], y_s[0], x_q[0]))
    for p in e["attention"]:
        assert p.shape == (4, 7)
        torch.testing.assert_close(p.sum(-1), torch.ones(4, dtype=torch.float64))


def test_embedding_is_per_image():
    torch.manual_seed(0)
    emb = ConvEmbedding(1, 8, 28)
    x = torch.rand(5, 1, 28, 28)
    one = emb(x[2:3])
    assert emb.embedding_dim == 8 and torch.allclose(emb(x)[2:3], one, atol=1e-6)


def test_registry_config_round_trip_and_the_standard_evaluator(tmp_path):
    from metalib.pretrained import pretrained, save_pretrained

    cfg = FewShotConfig(algorithm="snail", iterations=1, n_way=3, k_shot=1, image_size=16, hidden=4)
    torch.manual_seed(0)
    learner = build_learner(cfg)
    assert isinstance(learner, SNAIL) and isinstance(learner.model, ConvEmbedding) and learner.fixed_way == 3
    assert learner.seq_len == 4 and learner.family == "model-based"
    save_pretrained("snail-test", learner, info={"config": cfg.to_dict()}, directory=tmp_path)
    again = pretrained("snail-test", directory=tmp_path)
    data = synthetic_images(n_classes=6, per_class=5, size=16)
    r1 = evaluate(learner, data, n_way=3, k_shot=1, q_query=2, episodes=4)
    r2 = evaluate(again, data, n_way=3, k_shot=1, q_query=2, episodes=4)
    assert r1.accuracies == r2.accuracies and r1.inner_steps is None
    with pytest.raises(ValueError, match="train_way must equal n_way"):
        FewShotConfig(algorithm="snail", iterations=1, train_way=10)
    assert isinstance(algorithms.get("snail", ConvEmbedding(1, 4, 16), n_way=2), SNAIL)


def test_bad_input_raises_one_clear_error():
    m = tiny()
    x_s, y_s, x_q, _ = episode()
    with pytest.raises(ValueError, match=r"integers in \[0, 3\)"):
        m.predict(x_s, y_s + 3, x_q)
    with pytest.raises(ValueError, match="3-way"):
        m.predict(x_s, y_s, x_q, n_way=5)
    with pytest.raises(ValueError, match="no inner loop"):
        m.predict(x_s, y_s, x_q, steps=2)
    with pytest.raises(ValueError, match="label_in"):
        m.forward_sequence(x_s, torch.zeros(2, 6, 4))
    with pytest.raises(ValueError, match="attention"):
        SNAIL(PixelInput(1, 4), attention=((4, 2),))


@pytest.mark.slow
def test_a_short_run_learns_one_shot(one_thread):
    train = synthetic_images(n_classes=40, per_class=8, size=8, seed=0)
    test = synthetic_images(n_classes=20, per_class=8, size=8, seed=1)
    torch.manual_seed(0)
    m = SNAIL(PixelInput(1, 8), n_way=3, k_shot=1, filters=16, attention=((16, 8), (16, 16), (16, 16)))
    opt = m.outer_optimizer(3e-3)
    sampler = EpisodeSampler(train, 3, 1, 2)
    g = torch.Generator().manual_seed(0)
    before = evaluate(m, test, n_way=3, k_shot=1, q_query=3, episodes=100, seed=5)
    for _ in range(150):
        m.train_step(sampler.sample(16, g), opt)
    after = evaluate(m, test, n_way=3, k_shot=1, q_query=3, episodes=100, seed=5)
    assert after.mean > 80 and after.mean > before.mean + 30, (before, after)
