"""Relation Networks against computations by hand: summed class features, concatenated pairs, the
relation module per pair, the MSE against one-hot targets; shapes; BatchNorm at prediction."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import metalib
from metalib import algorithms, fewshot
from metalib.algorithms import RelationNetworks
from metalib.algorithms.relation import RelationEncoder, class_features, one_hot_mse, relation_pairs
from metalib.pretrained import save_pretrained


class _NoBNEncoder(nn.Module):
    """A feature-map encoder without BatchNorm: an image's maps depend on that image only."""

    feature_shape = (4, 5, 5)

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)

    def forward(self, x):
        return F.relu(self.conv(x))


def _episode(n, k, q, side=5, seed=0, channels=1):
    g = torch.Generator().manual_seed(seed)
    y_s = torch.arange(n).repeat_interleave(k)
    y_s = y_s[torch.randperm(n * k, generator=g)]          # support in any order
    return (torch.rand(n * k, channels, side, side, generator=g), y_s,
            torch.rand(n * q, channels, side, side, generator=g), torch.arange(n).repeat_interleave(q))


def _trained_bn(net, batch, steps=3):
    """A few training steps, so the relation module's running statistics are not the initial ones."""
    opt = net.outer_optimizer(1e-3)
    for _ in range(steps):
        net.train_step(batch, opt)
    return net


# ============================================================================ by hand
def test_class_features_are_sums_of_the_support_maps():
    maps = torch.arange(6 * 2 * 3 * 3, dtype=torch.float64).view(6, 2, 3, 3)
    y_s = torch.tensor([1, 0, 1, 2, 0, 2])
    out = class_features(maps, y_s, 3)
    for c in range(3):
        torch.testing.assert_close(out[c], sum(maps[i] for i in range(6) if y_s[i] == c))
    assert not torch.allclose(out[0], maps[y_s == 0].mean(0))   # the sum, not the mean


def test_scores_equal_the_relation_module_on_pairs_built_by_hand():
    torch.manual_seed(0)
    net = RelationNetworks(_NoBNEncoder()).double()
    x_s, y_s, x_q, y_q = _episode(3, 2, 2)
    x_s, x_q = x_s.double(), x_q.double()
    module = copy.deepcopy(net.relation)          # the same weights, evaluated independently
    with torch.no_grad():
        maps_s, maps_q = net.encoder(x_s), net.encoder(x_q)
        pairs = []
        for j in range(len(x_q)):
            for c in range(3):
                cls = sum(maps_s[i] for i in range(len(y_s)) if y_s[i] == c)
                pairs.append(torch.cat([cls, maps_q[j]], 0))         # class channels first
        # meta-training: BatchNorm over the batch of all pairs
        module.train()
        by_hand = module(torch.stack(pairs)).sigmoid().view(len(x_q), 3)
        _, log_odds = net.task_losses((x_s[None], y_s[None], x_q[None], y_q[None]))
        torch.testing.assert_close(log_odds[0].sigmoid(), by_hand)
        # prediction: the running statistics, each pair on its own
        module.eval()
        one_by_one = torch.stack([module(p[None]) for p in pairs]).view(len(x_q), 3)
        torch.testing.assert_close(net.predict(x_s, y_s, x_q), one_by_one)
    assert relation_pairs(torch.zeros(3, 4, 5, 5), torch.ones(2, 4, 5, 5)).shape == (6, 8, 5, 5)


def test_loss_is_the_mse_against_one_hot_targets_by_hand():
    torch.manual_seed(1)
    net = RelationNetworks(_NoBNEncoder())
    x_s, y_s, x_q, y_q = _episode(4, 1, 3)
    batch = (x_s[None], y_s[None], x_q[None], y_q[None])
    losses, log_odds = net.task_losses(batch)
    r = log_odds[0].sigmoid().tolist()
    by_hand = sum((r[j][c] - (1.0 if int(y_q[j]) == c else 0.0)) ** 2 for j in range(12) for c in range(4)) / 48
    assert float(net.meta_loss(batch).detach()) == pytest.approx(by_hand, rel=1e-5)
    assert float(losses[0].detach()) == pytest.approx(by_hand, rel=1e-5)
    assert float(one_hot_mse(torch.tensor([[1.0, 0.0], [0.5, 0.5]]), torch.tensor([0, 1]))) == pytest.approx(0.125)


# ============================================================================ a pair's score is its own
def test_a_pair_score_is_invariant_to_the_other_pairs_of_the_episode():
    torch.manual_seed(2)
    net = RelationNetworks(_NoBNEncoder())
    x_s, y_s, x_q, y_q = _episode(5, 2, 3)
    _trained_bn(net, (x_s[None], y_s[None], x_q[None], y_q[None]))
    with torch.no_grad():
        out = net.predict(x_s, y_s, x_q)
        # other queries change: query 0's scores do not
        x_q2 = x_q.clone()
        x_q2[1:] = torch.rand_like(x_q2[1:]) * 3
        torch.testing.assert_close(net.predict(x_s, y_s, x_q2)[0], out[0])
        # class 4's support changes: the scores of the other classes do not
        x_s2 = x_s.clone()
        x_s2[y_s == 4] = torch.rand_like(x_s2[y_s == 4]) * 3
        out2 = net.predict(x_s2, y_s, x_q)
        torch.testing.assert_close(out2[:, :4], out[:, :4])
        assert not torch.allclose(out2[:, 4], out[:, 4])
        # one query alone gets the same scores as within the episode
        torch.testing.assert_close(net.predict(x_s, y_s, x_q[2:3])[0], out[2])


def test_episode_batchnorm_makes_scores_depend_on_the_other_pairs():
    """The official code's mode (BatchNorm over the episode's pairs at test time): the invariance
    above fails — the test of the default mode is not vacuous."""
    torch.manual_seed(2)
    net = RelationNetworks(_NoBNEncoder(), relation_bn="episode")
    x_s, y_s, x_q, y_q = _episode(5, 2, 3)
    before = copy.deepcopy(net.relation.state_dict())
    with torch.no_grad():
        out = net.predict(x_s, y_s, x_q)
        x_q2 = x_q.clone()
        x_q2[1:] = torch.rand_like(x_q2[1:]) * 3
        assert not torch.allclose(net.predict(x_s, y_s, x_q2)[0], out[0])
    for k, v in net.relation.state_dict().items():          # predicting updates no running statistic
        assert torch.equal(v, before[k]), k


def test_training_updates_the_running_statistics_and_prediction_does_not():
    torch.manual_seed(3)
    net = RelationNetworks(_NoBNEncoder())
    x_s, y_s, x_q, y_q = _episode(3, 1, 2)
    state = copy.deepcopy(net.state_dict())
    with torch.no_grad():
        net.predict(x_s, y_s, x_q)
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k]), k
    net.meta_backward((x_s[None], y_s[None], x_q[None], y_q[None]))
    assert not torch.equal(net.relation.blocks[0][1].running_mean, state["relation.blocks.0.1.running_mean"])
    assert net.relation.training  # the module's own mode is restored after every call


# ============================================================================ shapes
@pytest.mark.parametrize("n, k", [(5, 1), (5, 5), (20, 1), (20, 5)])
def test_shapes_for_5_and_20_way_1_and_5_shot(n, k):
    torch.manual_seed(4)
    net = fewshot.build_learner(fewshot.default_config("relation", n, k))
    x_s, y_s, x_q, y_q = _episode(n, k, 2, side=28)
    assert net.feature_maps(x_s).shape == (n * k, 64, 5, 5)
    with torch.no_grad():
        out = net.predict(x_s, y_s, x_q)
        v = net.explain(x_s, y_s, x_q)
    assert out.shape == (2 * n, n) and v["scores"].shape == (2 * n, n)
    assert v["z_s"].shape == (n * k, 64 * 25) and v["class_features"].shape == (n, 64 * 25)
    torch.testing.assert_close(v["rule"](v["z_q"]), out)
    loss, log_odds = net.meta_gradient((x_s[None], y_s[None], x_q[None], y_q[None]))
    assert log_odds.shape == (1, 2 * n, n) and math.isfinite(float(loss))


def test_the_networks_follow_the_official_code():
    omni = RelationNetworks(RelationEncoder(1, 64, 28))
    assert omni.feature_shape == (64, 5, 5) and omni.relation.fc1.in_features == 64   # 5 -> 2 -> 1 (padded)
    mini = RelationNetworks(RelationEncoder(3, 64, 84))
    assert mini.feature_shape == (64, 19, 19) and mini.relation.fc1.in_features == 64 * 3 * 3   # 19 -> 8 -> 3
    assert omni.relation.fc2.out_features == 1 and omni.relation.fc1.out_features == 8
    pools = [m for m in omni.encoder.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 2                                    # the last two blocks are not pooled


# ============================================================================ training step, shipping
def test_train_step_clips_each_networks_gradient_norm():
    torch.manual_seed(5)
    net = RelationNetworks(RelationEncoder(1, 8, 28), clip_grad_norm=0.01)
    x_s, y_s, x_q, y_q = _episode(5, 1, 3, side=28)
    net.train_step((x_s[None], y_s[None], x_q[None], y_q[None]), net.outer_optimizer(1e-3))
    for part in (net.encoder, net.relation):
        norm = torch.norm(torch.stack([p.grad.norm() for p in part.parameters()]))
        assert float(norm) <= 0.01 + 1e-6
    unclipped = RelationNetworks(RelationEncoder(1, 8, 28), clip_grad_norm=0)
    unclipped.load_state_dict(net.state_dict())
    unclipped.train_step((x_s[None], y_s[None], x_q[None], y_q[None]), unclipped.outer_optimizer(1e-3))
    assert float(torch.norm(torch.stack([p.grad.norm() for p in unclipped.encoder.parameters()]))) > 0.01


def test_the_data_parallel_step_clips_as_train_step_does():
    """``metalib.distributed.DistributedStep`` (torchrun's meta-iteration; one process here) clips the
    meta-gradient through the same ``clip_gradients`` as ``train_step``: the same weights after a step."""
    from metalib.distributed import DistributedStep

    torch.manual_seed(5)
    net = RelationNetworks(RelationEncoder(1, 8, 28), clip_grad_norm=0.01)
    twin = copy.deepcopy(net)
    x_s, y_s, x_q, y_q = _episode(5, 1, 3, side=28)
    batch = (x_s[None], y_s[None], x_q[None], y_q[None])
    net.train_step(batch, torch.optim.SGD(net.parameters(), lr=1.0))
    DistributedStep(twin, 1)(batch, torch.optim.SGD(twin.parameters(), lr=1.0))
    for (k, a), b in zip(net.state_dict().items(), twin.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k


def test_registry_config_and_a_shipped_round_trip(tmp_path):
    cfg = fewshot.default_config("relation", 5, 1, iterations=10, options={"relation_dim": 4})
    assert (cfg.train_query, cfg.meta_lr, cfg.lr_decay_every) == (19, 1e-3, 100_000)
    assert fewshot.default_config("relation", 20, 5).train_query == 5
    learner = fewshot.build_learner(cfg)
    assert learner.fixed_way is None and learner.eval_steps is None and learner.relation.fc1.out_features == 4
    assert algorithms.entry("relation").cls is RelationNetworks
    torch.manual_seed(6)
    x_s, y_s, x_q, y_q = _episode(5, 1, 2, side=28)
    _trained_bn(learner, (x_s[None], y_s[None], x_q[None], y_q[None]), steps=2)
    save_pretrained("relation-test", learner, info={"config": cfg.to_dict()}, directory=tmp_path)
    loaded = metalib.pretrained("relation-test", directory=tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(loaded.predict(x_s, y_s, x_q), learner.predict(x_s, y_s, x_q))


@pytest.mark.parametrize("kwargs, match", [
    (dict(relation_bn="batch"), "relation_bn must be"),
    (dict(relation_dim=0), "relation_dim must be"),
    (dict(loss_fn=F.mse_loss), "loss_fn must be None"),
    (dict(clip_grad_norm=-1.0), "clip_grad_norm"),
])
def test_bad_settings_say_what_is_wrong(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        RelationNetworks(_NoBNEncoder(), **kwargs)


def test_bad_input_says_what_is_wrong():
    with pytest.raises(ValueError, match="feature-map shape"):
        RelationNetworks(nn.Flatten())
    with pytest.raises(ValueError, match="at least 22x22"):
        RelationEncoder(1, 8, 20)
    net = RelationNetworks(_NoBNEncoder())
    x_s, y_s, x_q, _ = _episode(3, 1, 1)
    with pytest.raises(ValueError, match="no inner loop"):
        net.predict(x_s, y_s, x_q, steps=1)
    with pytest.raises(ValueError, match="no support examples|every class present"):
        net.predict(x_s, torch.tensor([0, 0, 2]), x_q)
    with pytest.raises(ValueError, match="expects"):
        RelationEncoder(1, 8, 28)(torch.rand(2, 1, 32, 32))


# ============================================================================ learning happens (data)
@pytest.mark.data
@pytest.mark.slow
def test_short_training_on_omniglot_beats_the_untrained_networks(one_thread):
    from _data import require_omniglot

    require_omniglot()
    from metalib.data import Omniglot

    train, test = Omniglot("train", progress=False), Omniglot("test", progress=False)
    cfg = fewshot.default_config("relation", 5, 1, iterations=300, val_every=0, seed=0)
    trainer = fewshot.FewShotTrainer(cfg, train_data=train, val_data=False, device="cpu", progress=False)
    untrained = fewshot.evaluate(trainer.learner, test, 5, 1, 15, episodes=100)
    trainer.fit()
    trained = fewshot.evaluate(trainer.learner, test, 5, 1, 15, episodes=100)
    print(f"Relation Networks 5w1s, 100 seeded test episodes: untrained {untrained}; after 300 episodes {trained}")
    assert trained.mean >= untrained.mean + 10, (untrained.mean, trained.mean)
