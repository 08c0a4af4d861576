"""RL²'s recurrent policy (memory within a trial, reset between trials), its loss, and the bandit baselines."""
import math

import pytest
import torch

pytest.importorskip("gymnasium")
from metalib.rl import bandits, envs, rl2  # noqa: E402


def stream(k=3, L=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    arms = torch.randint(k, (2, L), generator=g)
    x = torch.cat([torch.nn.functional.one_hot(arms, k).float(), torch.rand(2, L, 2, generator=g)], -1)
    return x


def test_hidden_state_resets_exactly_at_trial_boundaries():
    torch.manual_seed(0)
    pol = rl2.RL2Policy(k=3, hidden=8)
    x = stream()
    start = torch.zeros(2, 12, dtype=torch.bool)
    start[:, 0] = start[:, 5] = True                          # trial 1 = steps 0-4, trial 2 = steps 5-11
    with torch.no_grad():
        logits, h = pol.forward_sequence(x, start)
        alone, h_alone = pol.forward_sequence(x[:, 5:], start[:, 5:])
        # trial 2 is exactly what it would be on its own: the state was reset at step 5 ...
        assert torch.equal(h[:, 5:], h_alone) and torch.equal(logits[:, 5:], alone)
        # ... and nowhere else: changing step 0's input changes every step of trial 1 and none of trial 2
        x2 = x.clone()
        x2[:, 0, -2] += 1.0
        _, h2 = pol.forward_sequence(x2, start)
        assert ((h2[:, :5] - h[:, :5]).abs().amax(-1) > 1e-6).all()
        assert torch.equal(h2[:, 5:], h[:, 5:])
        # not vacuous: without the boundary, trial 2 remembers trial 1
        _, h3 = pol.forward_sequence(x, torch.zeros_like(start).index_fill_(1, torch.tensor([0]), True))
        assert not torch.allclose(h3[:, 5:], h_alone)


def test_play_trial_carries_memory_across_episodes_and_starts_fresh():
    torch.manual_seed(1)
    pol = rl2.RL2Policy(k=4, hidden=8)
    probs = torch.rand(3, 4)
    with torch.no_grad():
        tr = rl2.play_trial(pol, probs, 6, torch.Generator().manual_seed(0))
        # replay the same pulls through forward_sequence: identical hidden states
        x = torch.cat([torch.zeros(3, 1, 6), pol.inputs(tr["arms"][:, :-1].reshape(-1), tr["rewards"][:, :-1].reshape(-1))
                       .reshape(3, 5, 6)], 1)
        start = torch.zeros(3, 6, dtype=torch.bool)
        start[:, 0] = True
        _, h = pol.forward_sequence(x, start, h0=torch.randn(3, 8))   # h0 is discarded by the reset
    assert torch.allclose(h, tr["hidden"], atol=1e-6)
    assert {k: v.shape for k, v in tr.items() if k != "hidden"} == {k: (3, 6) for k in
                                                                    ("arms", "rewards", "logp", "values", "entropy")}


def test_rl2_loss_is_the_reinforce_value_entropy_sum():
    g = torch.Generator().manual_seed(2)
    logp, values, ent, rew = (torch.randn(4, 5, generator=g) for _ in range(4))
    got = rl2.rl2_loss(logp, values, ent, rew, gamma=0.9, value_coef=0.5, entropy_coef=0.1)
    G = torch.zeros(4, 5)
    for t in range(5):
        G[:, t] = sum(0.9 ** (u - t) * rew[:, u] for u in range(t, 5))
    A = G - values
    A = (A - A.mean()) / (A.std() + 1e-8)
    want = -(logp * A).mean() + 0.5 * ((G - values) ** 2).mean() - 0.1 * ent.mean()
    assert got.item() == pytest.approx(want.item(), abs=1e-6)


def test_a_short_rl2_run_learns_by_a_margin():
    torch.set_num_threads(1)
    pol, hist = rl2.train_rl2(rl2.RL2Config(k=2, n=8, iterations=150, batch=128, hidden=32, lr=5e-2, lr_decay=False, seed=0))
    probs = envs.sample_arm_probs(2000, 2, torch.Generator().manual_seed(5))
    with torch.no_grad():
        got = rl2.play_trial(pol, probs, 8, torch.Generator().manual_seed(6))["rewards"].sum(1).mean().item()
    assert got > 4.0 + 0.25, got           # random play earns 8 x 0.5 = 4 per trial (s.e. 0.03); greedy ~5


@pytest.mark.parametrize("name", list(bandits.BASELINES))
def test_baselines_follow_their_rules_and_beat_or_match_random(name):
    k, n = 4, 30
    probs = envs.sample_arm_probs(3000, k, torch.Generator().manual_seed(0))
    rew, arms = bandits.play(bandits.BASELINES[name], probs, n, torch.Generator().manual_seed(1))
    assert rew.shape == arms.shape == (3000, n) and arms.min() >= 0 and arms.max() < k
    mean = rew.sum(1).mean().item()
    if name == "random":
        assert mean == pytest.approx(n * 0.5, abs=0.2)
        counts = torch.bincount(arms.reshape(-1), minlength=k).float()
        assert (counts / counts.sum() - 1 / k).abs().max() < 0.01
    else:
        assert mean > n * 0.5 + 3.0, mean
    if name == "ucb1":                         # each arm once first
        assert all(sorted(row[:k].tolist()) == list(range(k)) for row in arms[:50])


def test_ucb1_and_thompson_choices_by_hand():
    wins, pulls = torch.tensor([[3.0, 1.0, 0.0]]), torch.tensor([[4.0, 1.0, 2.0]])
    t = 7
    scores = [w / p + math.sqrt(2 * math.log(t) / p) for w, p in zip(wins[0].tolist(), pulls[0].tolist())]
    assert bandits.ucb1_rule(1.0)(wins, pulls, t, None).item() == max(range(3), key=scores.__getitem__)
    # Thompson: the frequency of each arm equals P(arm's Beta sample is the largest), checked by Monte Carlo
    g = torch.Generator().manual_seed(0)
    picks = torch.stack([bandits.thompson_rule(wins.expand(4000, 3), pulls.expand(4000, 3), t, g) for _ in range(2)])
    freq = torch.bincount(picks.reshape(-1), minlength=3).float() / picks.numel()
    d = torch.distributions.Beta(wins[0] + 1, pulls[0] - wins[0] + 1).sample((200000,))
    want = torch.bincount(d.argmax(1), minlength=3).float() / 200000
    assert (freq - want).abs().max() < 0.02, (freq, want)


def test_bad_settings_are_one_line_errors():
    from metalib.rl import maml_rl
    with pytest.raises(ValueError, match="k \\(arms\\) an int >= 2"):
        rl2.RL2Policy(k=1)
    with pytest.raises(ValueError, match="RL2Config.n must be an int >= 1"):
        rl2.train_rl2(rl2.RL2Config(n=0))
    with pytest.raises(ValueError, match="Config.n_traj must be an int >= 2"):
        maml_rl.train(maml_rl.Config(n_traj=1))
    with pytest.raises(ValueError, match="meta_lr > 0"):
        maml_rl.train(maml_rl.Config(meta_lr=0.0))



def test_a_killed_run_resumes_from_its_checkpoint_to_the_same_policy(tmp_path, monkeypatch):
    """train_rl2(checkpoint=...): a run killed after 4 of 6 iterations and restarted ends with exactly the
    policy and history of a run never interrupted (the checkpoint holds optimiser, schedule, random state)."""
    cfg = rl2.RL2Config(k=3, n=5, iterations=6, batch=8, hidden=8, value_scale=5.0)
    straight, h1 = rl2.train_rl2(cfg)
    ck = str(tmp_path / "run.ckpt")
    real, calls = rl2.play_trial, []

    def dies_at_the_fifth(*a, **kw):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(rl2, "play_trial", dies_at_the_fifth)
    with pytest.raises(KeyboardInterrupt):
        rl2.train_rl2(cfg, checkpoint=ck, checkpoint_every=2)
    monkeypatch.setattr(rl2, "play_trial", real)
    assert torch.load(ck, weights_only=True)["iteration"] == 4
    resumed, h2 = rl2.train_rl2(cfg, checkpoint=ck, checkpoint_every=2)
    assert h2 == h1
    for (k, v), w in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(v, w), k
    with pytest.raises(ValueError, match="another configuration"):
        rl2.train_rl2(rl2.RL2Config(**{**vars(cfg), "lr": 1e-4}), checkpoint=ck)


def test_value_scale_only_rescales_the_value_head_target():
    """rl2_loss with value_scale c and values V equals the loss with c = 1 and values c V, apart from the
    value term's scale (1/c^2): the policy-gradient part is unchanged."""
    g = torch.Generator().manual_seed(0)
    logp, ent = torch.randn(4, 6, generator=g), torch.rand(4, 6, generator=g)
    r, v = (torch.rand(4, 6, generator=g) < 0.5).float(), torch.randn(4, 6, generator=g)
    c = 7.0
    pg_c = rl2.rl2_loss(logp, v, ent, r, 0.9, value_coef=0.0, entropy_coef=0.0, value_scale=c)
    pg_1 = rl2.rl2_loss(logp, c * v, ent, r, 0.9, value_coef=0.0, entropy_coef=0.0)
    assert torch.allclose(pg_c, pg_1)
    val_c = rl2.rl2_loss(logp, v, ent, r, 0.9, value_coef=1.0, entropy_coef=0.0, value_scale=c) - pg_c
    val_1 = rl2.rl2_loss(logp, c * v, ent, r, 0.9, value_coef=1.0, entropy_coef=0.0) - pg_1
    assert torch.allclose(val_c * c * c, val_1, rtol=1e-5)
