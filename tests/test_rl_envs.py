"""The meta-RL environments against their definitions (metalib/rl/envs.py docstring; MAML's
point_env_randgoal.py, RL²'s Bernoulli bandits)."""
import math

import numpy as np
import pytest
import torch

pytest.importorskip("gymnasium")
from metalib.rl import envs  # noqa: E402


def test_point_navigation_follows_the_definition_step_by_step():
    env = envs.PointNavigation(goal=[0.3, -0.2])
    obs, info = env.reset(seed=0)
    assert np.allclose(obs, [0, 0]) and np.allclose(info["goal"], [0.3, -0.2])
    pos = np.zeros(2)
    for a in ([0.5, -0.5], [3.0, -7.0], [-0.2, 0.0]):          # the 2nd is clipped to (1, -1) -> velocity 0.1
        obs, r, term, trunc, _ = env.step(np.array(a))
        pos = pos + 0.1 * np.clip(a, -1, 1)
        assert np.allclose(obs, pos, atol=1e-6)
        assert r == pytest.approx(-math.hypot(pos[0] - 0.3, pos[1] + 0.2), abs=1e-9)
        assert not term and not trunc


def test_point_navigation_ends_at_the_goal_and_at_the_horizon():
    env = envs.PointNavigation(goal=[0.1, 0.1])
    env.reset()
    *_, term, trunc, _ = env.step(np.array([1.0, 1.0]))
    assert term and not trunc                                   # exactly at the goal: done, reward 0
    env = envs.PointNavigation(goal=[0.5, 0.5], horizon=3)
    env.reset()
    flags = [env.step(np.zeros(2))[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]


def test_point_goals_are_uniform_on_the_square_and_seeded():
    g = envs.sample_goals(20000, torch.Generator().manual_seed(0))
    assert g.min() >= -0.5 and g.max() <= 0.5
    assert g.mean(0).abs().max() < 0.01 and (g.var(0) - 1 / 12).abs().max() < 0.003
    a, b = envs.PointNavigation(), envs.PointNavigation()
    assert np.allclose(a.reset(seed=3)[1]["goal"], b.reset(seed=3)[1]["goal"])


def test_point_env_rejects_bad_input_in_one_line():
    with pytest.raises(ValueError, match="goal must be 2 finite numbers"):
        envs.PointNavigation(goal=[0.1])
    env = envs.PointNavigation(goal=[0, 0])
    env.reset()
    with pytest.raises(ValueError, match="action must be 2 finite numbers"):
        env.step(np.array([np.nan, 0.0]))


def test_bernoulli_bandit_rewards_have_the_arms_means():
    env = envs.BernoulliBandit(k=3, probs=[0.1, 0.5, 0.9])
    env.reset(seed=0)
    for arm, p in enumerate([0.1, 0.5, 0.9]):
        rs = [env.step(arm) for _ in range(4000)]
        assert all(r[2] for r in rs)                                # one pull = one episode
        assert np.mean([r[1] for r in rs]) == pytest.approx(p, abs=0.03)
    probs = envs.sample_arm_probs(5000, 4, torch.Generator().manual_seed(0))
    assert probs.min() >= 0 and probs.max() <= 1 and (probs.mean() - 0.5).abs() < 0.01
    pulls = envs.bandit_pull(torch.tensor([[0.0, 1.0]] * 100), torch.tensor([0, 1] * 50))
    assert pulls.tolist() == [0.0, 1.0] * 50
    with pytest.raises(ValueError, match="action must be an arm"):
        env.step(3)
    with pytest.raises(ValueError, match="probs must be 3 numbers"):
        envs.BernoulliBandit(k=3, probs=[0.1, 1.5, 0.2])


def test_batched_rollout_dynamics_equal_the_gymnasium_env():
    from metalib.rl import maml_rl
    params = maml_rl.init_policy((8,), generator=torch.Generator().manual_seed(0))
    goals = torch.tensor([[0.05, 0.0], [-0.4, 0.3]])
    batch = maml_rl.rollout(params, goals, n_traj=3, horizon=12, generator=torch.Generator().manual_seed(1))
    for t in range(2):
        env = envs.PointNavigation(goal=goals[t].tolist(), horizon=12)
        for n in range(3):
            env.reset()
            for h in range(12):
                if batch.mask[t, n, h] == 0:
                    break
                assert np.allclose(env._pos, batch.obs[t, n, h].numpy(), atol=1e-6)
                _, r, term, trunc, _ = env.step(batch.actions[t, n, h].double().numpy())
                assert r == pytest.approx(batch.rewards[t, n, h].item(), abs=1e-5)
            assert batch.mask[t, n, h:].sum() == 0 or h == 11


def test_import_metalib_loads_no_gymnasium_and_no_rl():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", "import sys, metalib, metalib.rl; print(sorted(m for m in "
                          "('gymnasium', 'mujoco', 'metaworld', 'metalib.rl.envs') if m in sys.modules))"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
