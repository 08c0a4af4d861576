"""The Meta-World ML1 wrapper (metalib.rl.metaworld_tasks): a few steps of reach-v3 where the optional
metaworld is installed (requirements-rl.txt), one clear line everywhere else."""
import numpy as np
import pytest
import torch

from metalib.rl import maml_rl, metaworld_tasks as mw


def test_missing_metaworld_is_one_line(monkeypatch):
    monkeypatch.setattr(mw, "available", lambda: False)
    with pytest.raises(ImportError, match="requirements-rl.txt"):
        mw.ML1Tasks()


def test_policy_input_is_the_hand_position_in_units_of_10_cm():
    obs = np.zeros((2, 39))
    obs[0, :3] = mw.HAND_START + [0.01, 0.2, -0.05]
    obs[1, 36:39] = 5.0                                   # the goal slot is not read
    x = mw.policy_input(obs)
    assert x.shape == (2, 3)
    np.testing.assert_allclose(x[0], [0.1, 2.0, -0.5], atol=1e-12)
    np.testing.assert_allclose(x[1], -mw.HAND_START * 10, atol=1e-12)


@pytest.fixture(scope="module")
def tasks():
    if not mw.available():
        pytest.skip("metaworld is not installed (optional: pip install -r requirements-rl.txt)")
    return mw.ML1Tasks("reach-v3", seed=0)


def test_ml1_reach_has_50_train_and_50_test_goals_in_the_box(tasks):
    assert tasks.n_tasks("train") == 50 and tasks.n_tasks("test") == 50
    for split in ("train", "test"):
        g = tasks.goal(split, 3)
        assert (g >= [-0.1, 0.8, 0.05]).all() and (g <= [0.1, 0.9, 0.3]).all(), g
    assert not np.allclose(tasks.goal("train", 0), tasks.goal("test", 0))


def test_a_rollout_steps_the_env_and_records_what_the_policy_saw(tasks):
    theta = maml_rl.init_policy((), mw.OBS_DIM, mw.ACT_DIM, -0.5, generator=torch.Generator().manual_seed(0))
    batch, success = tasks.rollout(theta, "train", [0, 1], 2, horizon=4, generator=torch.Generator().manual_seed(0))
    assert batch.obs.shape == (2, 2, 4, 3) and batch.actions.shape == (2, 2, 4, 3)
    assert batch.rewards.shape == (2, 2, 4) and success.shape == (2, 2) and success.dtype == torch.bool
    assert torch.allclose(batch.obs[:, :, 0], torch.zeros(3, dtype=batch.obs.dtype), atol=0.05)  # starts at the start
    assert (batch.obs[:, :, 1:] != batch.obs[:, :, :1]).any()                                     # the hand moved
    assert (batch.rewards > 0).all() and (batch.rewards <= 10).all()                              # reach's shaped reward
    # an oracle that steers to the (hidden) goal succeeds; a policy that stays put does not
    still = {"w0": torch.zeros(3, 3), "b0": torch.zeros(3), "log_std": torch.full((3,), -20.0)}
    _, s = tasks.rollout(still, "test", [0], 1, horizon=5, deterministic=True)
    assert not s.any()
