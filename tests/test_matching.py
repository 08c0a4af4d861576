"""Matching Networks against computations by hand: cosine, softmax, label mixture, the FCE LSTMs."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metalib import algorithms, fewshot
from metalib.algorithms import MatchingNetworks
from metalib.algorithms.matching import (cosine_similarities, label_mixture_log_probs,
                                         support_normalised_similarities)
from metalib.models import Conv4


def _flat():
    return nn.Flatten()


# ============================================================================ the equations by hand
@pytest.mark.parametrize("normalize_query", [False, True])
def test_logits_equal_similarity_softmax_and_one_hot_mixture_by_hand(normalize_query):
    """Default: the original implementation's attention, q.s/|s| (the query's norm kept);
    normalize_query=True: the literal cosine q.s/(|q||s|)."""
    x_s = [[1.0, 0.0], [0.0, 2.0], [3.0, 3.0], [-1.0, 1.0]]
    y_s = [0, 1, 1, 2]
    x_q = [[2.0, 1.0], [0.0, -1.0]]
    out = MatchingNetworks(_flat(), normalize_query=normalize_query).logits(
        torch.tensor(x_s, dtype=torch.float64), torch.tensor(y_s), torch.tensor(x_q, dtype=torch.float64), n_way=3)
    expected = []
    for q in x_q:  # plain Python: similarity, softmax over the support, sum of the attention per class
        q_norm = math.hypot(*q) if normalize_query else 1.0
        cos = [(q[0] * s[0] + q[1] * s[1]) / (q_norm * math.hypot(*s)) for s in x_s]
        e = [math.exp(c) for c in cos]
        a = [v / sum(e) for v in e]
        expected.append([math.log(sum(a[i] for i in range(4) if y_s[i] == k)) for k in range(3)])
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64))
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(2, dtype=torch.float64))


def test_cosine_similarity_ignores_the_scale_of_embeddings():
    z_q, z_s = torch.randn(3, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    sims = cosine_similarities(z_q, z_s)
    torch.testing.assert_close(sims, F.cosine_similarity(z_q[:, None], z_s[None], dim=-1))
    torch.testing.assert_close(cosine_similarities(7 * z_q, 0.1 * z_s), sims)
    assert float(cosine_similarities(torch.zeros(1, 5), torch.ones(2, 5)).abs().max()) == 0.0  # no NaN


def test_support_normalised_similarity_keeps_the_query_norm_only():
    z_q, z_s = torch.randn(3, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    sims = support_normalised_similarities(z_q, z_s)
    torch.testing.assert_close(sims, cosine_similarities(z_q, z_s) * z_q.norm(dim=1, keepdim=True))
    torch.testing.assert_close(support_normalised_similarities(z_q, 0.1 * z_s), sims)      # support scale: none
    torch.testing.assert_close(support_normalised_similarities(7 * z_q, z_s), 7 * sims)    # query scale: sharper
    assert float(support_normalised_similarities(torch.ones(1, 5), torch.zeros(2, 5)).abs().max()) == 0.0


def test_the_literal_cosine_caps_the_one_shot_loss_and_the_original_attention_does_not():
    """Why the default changed (issue #29): with the cosine every logit is in [-1, 1], so with one
    support image per class the loss of a query can never go below -log(e/(e+N-1)) (0.90 for N=5);
    with the query's norm kept it goes to 0 as the embedding grows."""
    x_s, y_s = torch.eye(5, dtype=torch.float64), torch.arange(5)
    x_q, y_q = 50 * torch.eye(5, dtype=torch.float64), torch.arange(5)        # each query = its class, scaled
    batch = (x_s[None], y_s[None], x_q[None], y_q[None])
    floor = -math.log(math.e / (math.e + 4))
    literal = float(MatchingNetworks(_flat(), normalize_query=True).meta_loss(batch))
    original = float(MatchingNetworks(_flat()).meta_loss(batch))
    assert literal == pytest.approx(floor, rel=1e-12)
    assert original < 1e-12


def test_label_mixture_gradient_matches_finite_differences():
    torch.manual_seed(0)
    sims = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    y_s = torch.tensor([2, 0, 1, 0, 2, 1])
    assert torch.autograd.gradcheck(lambda s: label_mixture_log_probs(s, y_s, 3), (sims,))


def test_loss_is_cross_entropy_of_the_attention_mixture():
    torch.manual_seed(1)
    x_s, y_s = torch.randn(1, 6, 4, dtype=torch.float64), torch.tensor([[0, 1, 2, 0, 1, 2]])
    x_q, y_q = torch.randn(1, 5, 4, dtype=torch.float64), torch.tensor([[2, 0, 1, 1, 0]])
    loss = MatchingNetworks(_flat(), normalize_query=True).meta_loss((x_s, y_s, x_q, y_q))
    a = F.cosine_similarity(x_q[0][:, None], x_s[0][None], dim=-1).softmax(1)       # [5, 6]
    y_hat = a @ F.one_hot(y_s[0], 3).double()                                         # the mixture [5, 3]
    torch.testing.assert_close(loss, -y_hat[torch.arange(5), y_q[0]].log().mean())


# ============================================================================ symmetries
def test_permuting_the_support_set_changes_nothing_and_relabelling_permutes_the_columns():
    torch.manual_seed(2)
    net = MatchingNetworks(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 6))).double()
    x_s, y_s = torch.randn(9, 4, dtype=torch.float64), torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    x_q = torch.randn(5, 4, dtype=torch.float64)
    out = net.predict(x_s, y_s, x_q)
    order = torch.randperm(9)
    torch.testing.assert_close(net.predict(x_s[order], y_s[order], x_q), out)
    perm = torch.tensor([2, 0, 1])  # class c is called perm[c]
    relabelled = net.predict(x_s, perm[y_s], x_q)
    torch.testing.assert_close(relabelled[:, perm], out)
    assert not torch.allclose(relabelled, out)  # the relabelling did change something


def test_one_shot_support_images_are_classified_as_their_own_class():
    torch.manual_seed(3)
    net = MatchingNetworks(Conv4(in_channels=1))       # a fixed (untrained) encoder
    x_s, y_s = torch.rand(20, 1, 28, 28), torch.randperm(20)
    log_probs = net.predict(x_s, y_s, x_s)
    assert torch.equal(log_probs.argmax(-1), y_s)
    # the own class has cosine 1: the largest attention weight
    a = net.attention(x_s, y_s, x_s)
    assert torch.equal(a.argmax(-1), torch.arange(20))


def test_batched_predictions_equal_per_task_predictions():
    torch.manual_seed(4)
    net = MatchingNetworks(nn.Linear(3, 4))
    x_s, x_q = torch.randn(2, 6, 3), torch.randn(2, 5, 3)
    y_s = torch.tensor([0, 1, 2, 0, 1, 2]).repeat(2, 1)
    batched = net.predict(x_s, y_s, x_q)
    assert batched.shape == (2, 5, 3)
    for t in range(2):
        torch.testing.assert_close(batched[t], net.predict(x_s[t], y_s[t], x_q[t]))


def test_explain_gives_the_attention_and_a_rule_that_reproduces_the_logits():
    torch.manual_seed(5)
    net = MatchingNetworks(Conv4(in_channels=1))
    x_s, y_s, x_q = torch.rand(10, 1, 28, 28), torch.arange(5).repeat(2), torch.rand(7, 1, 28, 28)
    with torch.no_grad():
        v = net.explain(x_s, y_s, x_q)
        torch.testing.assert_close(v["logits"], net.predict(x_s, y_s, x_q))
        torch.testing.assert_close(v["rule"](v["z_q"]), v["logits"])
        torch.testing.assert_close(v["attention"] @ F.one_hot(y_s, 5).float(), v["logits"].exp())
    assert v["attention"].shape == (7, 10) and v["z_s"].shape == (10, 64)


# ============================================================================ full-context embeddings
def _lstm_cell(x, h, c, w_ih, w_hh, b_ih, b_hh):
    """One LSTM step written out (gates i, f, g, o as in torch's layout)."""
    i, f, g, o = (x @ w_ih.T + b_ih + h @ w_hh.T + b_hh).chunk(4, -1)
    c = f.sigmoid() * c + i.sigmoid() * g.tanh()
    return o.sigmoid() * c.tanh(), c


def test_fce_equals_the_paper_equations_unrolled_by_hand():
    torch.manual_seed(6)
    d, steps = 4, 3
    net = MatchingNetworks(nn.Flatten(), fce=True, fce_steps=steps, embedding_dim=d).double()
    z_s, z_q = torch.randn(5, d, dtype=torch.float64), torch.randn(3, d, dtype=torch.float64)
    lstm = net.support_lstm
    # g(x_i, S) = forward h_i + backward h_i + g'(x_i)
    fwd, bwd = [], []
    h = c = torch.zeros(d, dtype=torch.float64)
    for i in range(5):
        h, c = _lstm_cell(z_s[i], h, c, lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0)
        fwd.append(h)
    h = c = torch.zeros(d, dtype=torch.float64)
    for i in reversed(range(5)):
        h, c = _lstm_cell(z_s[i], h, c, lstm.weight_ih_l0_reverse, lstm.weight_hh_l0_reverse,
                          lstm.bias_ih_l0_reverse, lstm.bias_hh_l0_reverse)
        bwd.insert(0, h)
    g = torch.stack(fwd) + torch.stack(bwd) + z_s
    torch.testing.assert_close(net.support_context(z_s), g)
    # f(x, S): K read steps of the attention LSTM, h_k = LSTM(...) + f'(x), read r = softmax(h^T g) g
    cell = net.query_cell
    for j in range(3):
        h = c = torch.zeros(d, dtype=torch.float64)
        for _ in range(steps):
            a = (g @ h).softmax(0)
            r = (a[:, None] * g).sum(0)
            h_hat, c = _lstm_cell(torch.cat([z_q[j], r]), h, c, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
            h = h_hat + z_q[j]
        torch.testing.assert_close(net.query_context(z_q, g)[j], h)


def test_fce_support_encoding_depends_on_the_other_support_images():
    torch.manual_seed(7)
    for fce in (True, False):
        net = MatchingNetworks(nn.Linear(6, 4), fce=fce, embedding_dim=4)
        x_s = torch.randn(5, 6)
        g = net.support_context(net.embed(x_s))
        x2 = x_s.clone()
        x2[3] += 1.0                                   # change support image 3 only
        g2 = net.support_context(net.embed(x2))
        changed = not torch.allclose(g[0], g2[0])      # ... does the encoding of image 0 change?
        assert changed == fce, fce


def test_fce_query_reads_only_the_support_not_the_other_queries():
    torch.manual_seed(8)
    net = MatchingNetworks(nn.Linear(6, 4), fce=True, embedding_dim=4)
    x_s, y_s, x_q = torch.randn(6, 6), torch.tensor([0, 1, 2, 0, 1, 2]), torch.randn(4, 6)
    out = net.predict(x_s, y_s, x_q)
    x_q2 = x_q.clone()
    x_q2[1:] = torch.randn(3, 6) * 5                   # every other query changes
    torch.testing.assert_close(net.predict(x_s, y_s, x_q2)[0], out[0])
    x_s2 = x_s.clone()
    x_s2[4] += 1.0                                     # a support image changes: query 0 sees it
    assert not torch.allclose(net.predict(x_s2, y_s, x_q)[0], out[0])
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(4))


def test_fce_is_an_option_of_the_config_and_trains():
    cfg = fewshot.default_config("matching", 5, 1, options={"fce": True, "fce_steps": 2})
    learner = fewshot.build_learner(cfg)
    assert learner.fce and learner.fce_steps == 2 and learner.short_name == "MatchingNet+FCE"
    assert not fewshot.build_learner(fewshot.default_config("matching", 5, 1)).fce   # off by default
    assert not fewshot.build_learner(fewshot.default_config("matching", 5, 1)).normalize_query
    torch.manual_seed(9)
    batch = (torch.rand(2, 5, 1, 28, 28), torch.arange(5).repeat(2, 1), torch.rand(2, 10, 1, 28, 28),
             torch.arange(5).repeat_interleave(2).repeat(2, 1))
    before = {k: v.clone() for k, v in learner.state_dict().items()}
    metrics = learner.train_step(batch, learner.outer_optimizer(1e-3))
    assert set(metrics) == {"loss", "accuracy"} and math.isfinite(float(metrics["loss"]))
    after = learner.state_dict()
    for name in ("support_lstm.weight_ih_l0", "query_cell.weight_ih"):
        assert not torch.equal(before[name], after[name]), name    # the LSTMs are meta-learned


# ============================================================================ the interface and bad input
def test_registry_and_paper_settings():
    cfg = fewshot.default_config("matching", 5, 5)
    assert cfg.train_way_ == 5 and cfg.train_shot_ == 5 and cfg.meta_lr == 1e-3
    learner = fewshot.build_learner(cfg)
    assert isinstance(learner, MatchingNetworks) and learner.family == "metric-based"
    assert learner.fixed_way is None and learner.eval_steps is None
    learner.check_task(20)                             # any N
    assert algorithms.get("matching", nn.Flatten()).describe() == "Matching Networks (no FCE)"


@pytest.mark.parametrize("kwargs, match", [
    (dict(fce=True, fce_steps=0, embedding_dim=4), "fce_steps must be >= 1"),
    (dict(fce=True), "needs the embedding size"),
    (dict(fce="yes"), "fce must be True or False"),
    (dict(normalize_query=1), "normalize_query must be True or False"),
    (dict(loss_fn=F.cross_entropy), "loss_fn must be None"),
])
def test_bad_settings_say_what_is_wrong(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        MatchingNetworks(nn.Flatten(), **kwargs)


def test_bad_tasks_say_what_is_wrong():
    net = MatchingNetworks(nn.Flatten())
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="no support examples|every class present"):
        net.predict(x, torch.tensor([0, 0, 2, 2]), x)
    with pytest.raises(ValueError, match="no inner loop"):
        net.predict(x, torch.tensor([0, 1, 0, 1]), x, steps=3)
    with pytest.raises(ValueError, match="differ in shape"):
        net.predict(x, torch.tensor([0, 1, 0, 1]), torch.randn(2, 5))
    with pytest.raises(TypeError, match="integer"):
        net.predict(x, torch.tensor([0.0, 1.0, 0.0, 1.0]), x)


# ============================================================================ learning happens (data)
@pytest.mark.data
@pytest.mark.slow
def test_short_training_on_omniglot_beats_the_untrained_encoder(one_thread):
    from _data import require_omniglot

    require_omniglot()
    from metalib.data import Omniglot

    train, test = Omniglot("train", progress=False), Omniglot("test", progress=False)
    cfg = fewshot.default_config("matching", 5, 1, iterations=300, val_every=0, seed=0)
    trainer = fewshot.FewShotTrainer(cfg, train_data=train, val_data=False, device="cpu", progress=False)
    untrained = fewshot.evaluate(trainer.learner, test, 5, 1, 15, episodes=100)
    trainer.fit()
    trained = fewshot.evaluate(trainer.learner, test, 5, 1, 15, episodes=100)
    print(f"Matching Networks 5w1s, 100 seeded test episodes: untrained {untrained}; after 300 episodes {trained}")
    assert trained.mean >= untrained.mean + 10, (untrained.mean, trained.mean)


def test_weights_shipped_before_the_option_record_the_literal_cosine():
    """Old weights were trained with both sides normalised: their manifest config says so, so they
    load into the attention they were trained with (and reproduce their recorded accuracy)."""
    from metalib.pretrained import pretrained_info

    for name in ("matching-omniglot-5w1s", "matching-omniglot-5w5s"):
        cfg = fewshot.FewShotConfig.from_dict(pretrained_info(name)["config"])
        assert fewshot.build_learner(cfg).normalize_query is True, name
