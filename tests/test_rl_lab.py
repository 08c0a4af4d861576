"""Notebook 13's course layer: replays, bandit trials on common outcomes, the exercise's check, the widgets."""
import pytest
import torch

pytest.importorskip("gymnasium")
from metalib.course import rl_lab  # noqa: E402
from metalib.rl import bandits, maml_rl  # noqa: E402


def test_adapt_to_goal_is_the_library_inner_step_and_reproducible():
    params = {k: v.double() for k, v in maml_rl.init_policy((16,), generator=torch.Generator().manual_seed(0)).items()}
    a = rl_lab.adapt_to_goal(params, (0.3, -0.2), n_traj=5, seed=3)
    b = rl_lab.adapt_to_goal(params, (0.3, -0.2), n_traj=5, seed=3)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["samples"].shape == (5, 101, 2) and a["before"].shape == a["after"].shape == (101, 2)
    # the same step by hand: the library's rollout with the same seed, then inner_step
    gen = torch.Generator().manual_seed(3)
    g = torch.tensor([[0.3, -0.2]], dtype=torch.float64)
    batch = maml_rl.rollout({k: v.unsqueeze(0) for k, v in params.items()}, g, 5, generator=gen)
    phi = maml_rl.inner_step({k: v.unsqueeze(0).clone().requires_grad_() for k, v in params.items()}, batch, 0.5,
                             create_graph=False)
    after = maml_rl.rollout({k: v.detach() for k, v in phi.items()}, g, 1, deterministic=True)
    assert torch.allclose(a["after"][:-1], after.obs[0, 0]) and a["return_after"] == after.returns()[0, 0]


def test_bandit_players_see_the_same_outcomes():
    probs, outcomes = rl_lab.bandit_outcomes(4, 50, seed=0)
    assert outcomes.shape == (50, 4) and set(outcomes.unique().tolist()) <= {0.0, 1.0}
    arms, rew = rl_lab.play_rule(bandits.BASELINES["ucb1"], outcomes)
    assert torch.equal(rew, outcomes[torch.arange(50), arms])
    assert sorted(arms[:4].tolist()) == [0, 1, 2, 3]
    from metalib.rl import rl2
    torch.manual_seed(0)
    pol = rl2.RL2Policy(4, 8)
    arms2, rew2, p = rl_lab.play_rl2(pol, outcomes)
    assert torch.equal(rew2, outcomes[torch.arange(50), arms2]) and torch.equal(arms2, p.argmax(-1))


def test_the_exercise_check_accepts_the_solution_and_names_each_mistake():
    from metalib.course.exercises import REGISTRY
    e = REGISTRY["discounted_returns"]
    assert e.check(e.solution)
    for m in e.mistakes:
        fb = e.check(m.answer)
        assert not fb and m.names in fb.message, (m.what, fb.message)


def test_shipped_policies_load_and_widgets_redraw():
    policies, metas = rl_lab.load_navigation_policies()
    assert set(policies) == {"MAML", "pretrained", "random"}
    curves = rl_lab.recorded_curves(metas)
    assert len(curves["MAML"]) == 4
    from metalib.course import rl_widgets as rw
    gx = rw.GoalExplorer(policies, goal_x=0.4, goal_y=0.4, n_traj=5)
    end0 = gx.result["MAML"]["after"][-1]
    assert torch.allclose(end0, torch.tensor([0.4, 0.4], dtype=torch.float64), atol=0.02)   # adapted: at the goal
    gx.update(goal_x=-0.4, steps=2, policy="pretrained")
    assert gx.result["MAML"]["after"][-1][0] < 0 < end0[0]
    with pytest.raises(ValueError, match="goal_x must be in"):
        gx.update(goal_x=0.9)
    pol, meta = rl_lab.load_rl2(5, 10)
    bx = rw.BanditTrialExplorer(pol, n=10)
    bx.update(bandit=3, step=4)
    with pytest.raises(ValueError, match="step must be in"):
        bx.update(step=0)


def test_policy_files_load_safely_and_fail_in_one_line(tmp_path):
    from metalib.rl import weights
    params = maml_rl.init_policy((4,), generator=torch.Generator().manual_seed(0))
    weights.save_policy("p", params, {"note": "x"}, directory=tmp_path)
    back, meta = weights.load_policy("p", directory=tmp_path)
    assert meta == {"note": "x"} and all(torch.equal(back[k], v) for k, v in params.items())
    with pytest.raises(ValueError, match="no shipped RL policy 'q'.*known: p"):
        weights.load_policy("q", directory=tmp_path)
    (tmp_path / "bad.pt").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="not a readable metalib RL policy"):
        weights.load_policy("bad", directory=tmp_path)
    torch.save({"params": params}, tmp_path / "untagged.pt")
    with pytest.raises(ValueError, match="format tag"):
        weights.load_policy("untagged", directory=tmp_path)
    weights.save_policy("nan", {**params, "b0": torch.full((4,), float("nan"))}, {}, directory=tmp_path)
    with pytest.raises(ValueError, match=r"non-finite .*\['b0'\]"):
        weights.load_policy("nan", directory=tmp_path)

    class Evil:                                          # a pickle that would run code is refused, not run
        def __reduce__(self):
            return (print, ("ran",))
    torch.save({"format": weights.FORMAT, "params": {}, "meta": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="not a readable metalib RL policy"):
        weights.load_policy("evil", directory=tmp_path)


def test_bandit_tables_join_the_rl2_meta_and_the_baselines_file():
    """rl_lab.bandit_table: every recorded setting has RL² (n = 10, 100), Gittins with its discount and the
    ceiling; the best arm bounds every player; Gittins at n = 100 beats random by a wide margin."""
    for k, n in ((5, 10), (10, 10), (5, 100), (10, 100)):
        table, info = rl_lab.bandit_table(k, n)
        assert {"rl2", "gittins", "greedy", "thompson", "random", "best arm (oracle)"} <= set(table), (k, n)
        assert info["gittins_gamma"] in (0.9, 0.99, 0.999)
        ceiling = table["best arm (oracle)"][0]
        assert all(m < ceiling for name, (m, _) in table.items() if name != "best arm (oracle)")
    table, _ = rl_lab.bandit_table(5, 100)
    assert table["gittins"][0] > table["random"][0] + 20
    with pytest.raises(ValueError, match="no recorded bandit table"):
        rl_lab.bandit_table(7, 3)


def test_metaworld_results_are_stored_with_the_policy_and_need_no_mujoco():
    meta = rl_lab.metaworld_results()
    r = meta["results"]["maml"]
    assert r["goals"] == 50 and len(r["per_goal_before"]) == len(r["per_goal_after"]) == 50
    assert r["success_before"] == pytest.approx(sum(r["per_goal_before"]) / 50)
    assert r["success_after"] == pytest.approx(sum(r["per_goal_after"]) / 50)
