"""MAML-RL and its policy-gradient pieces against independent computations."""
import itertools

import numpy as np
import pytest
import torch

pytest.importorskip("gymnasium")
from metalib.rl import maml_rl, pg  # noqa: E402

D = torch.float64


# ---------------------------------------------------------------- the estimator on a tiny MDP
P_NEXT = torch.tensor([[[0.8, 0.2], [0.3, 0.7]], [[0.5, 0.5], [0.1, 0.9]]], dtype=D)   # P[s, a, s']
R = torch.tensor([[1.0, 0.0], [0.2, 2.0]], dtype=D)                                    # r(s, a)
H = 3


def exact_return(theta):
    """J(theta) = E[sum_t r_t] by enumerating every (a_0, s_1, a_1, ..., a_{H-1}), s_0 = 0."""
    pi = torch.softmax(theta, -1)
    J = theta.new_zeros(())
    for acts in itertools.product(range(2), repeat=H):
        for states in itertools.product(range(2), repeat=H - 1):
            s, prob, ret = 0, 1.0, 0.0
            for t in range(H):
                prob = prob * pi[s, acts[t]]
                ret = ret + R[s, acts[t]]
                if t < H - 1:
                    prob = prob * P_NEXT[s, acts[t], states[t]]
                    s = states[t]
            J = J + prob * ret
    return J


def estimate(theta, n, gen, action_baseline=False):
    """One REINFORCE estimate of grad J from n sampled trajectories with the library's pieces."""
    pi = torch.softmax(theta, -1)
    s = torch.zeros(n, dtype=torch.long)
    S, A, Rw = [], [], []
    for t in range(H):
        a = torch.multinomial(pi[s].detach(), 1, generator=gen).squeeze(-1)
        S.append(s), A.append(a), Rw.append(R[s, a])
        s = torch.multinomial(P_NEXT[s, a], 1, generator=gen).squeeze(-1)
    S, A, Rw = torch.stack(S, 1), torch.stack(A, 1), torch.stack(Rw, 1)
    mask = torch.ones(n, H, dtype=D)
    logp = torch.log_softmax(theta, -1)[S, A]
    G = pg.discounted_returns(Rw, mask, 1.0)
    b = 0.7 * S.to(D) + 0.3 + (0.9 * A.to(D) if action_baseline else 0)   # a state baseline keeps it unbiased
    adv = pg.advantages(G, b, mask, normalize=False)
    loss = pg.pg_surrogate(logp, adv, mask) * H          # surrogate is per step: x H = per trajectory
    return torch.autograd.grad(-loss, theta)[0]


def test_policy_gradient_estimator_is_unbiased_against_enumeration():
    theta = torch.tensor([[0.3, -0.4], [-0.2, 0.5]], dtype=D, requires_grad=True)
    exact = torch.autograd.grad(exact_return(theta), theta)[0]
    gen = torch.Generator().manual_seed(0)
    est = torch.stack([estimate(theta, 2000, gen) for _ in range(25)])
    se = est.std(0) / 25 ** 0.5
    assert ((est.mean(0) - exact).abs() < 4 * se + 1e-3).all(), (est.mean(0), exact, se)
    # not vacuous: a baseline that depends on the action is biased, and this test sees it
    bad = torch.stack([estimate(theta, 2000, gen, action_baseline=True) for _ in range(25)])
    assert ((bad.mean(0) - exact).abs() > 4 * bad.std(0) / 25 ** 0.5).any()


# ---------------------------------------------------------------- returns and the linear baseline
def test_discounted_returns_equal_the_double_sum():
    g = torch.Generator().manual_seed(0)
    r = torch.randn(3, 7, generator=g, dtype=D)
    mask = torch.ones(3, 7, dtype=D)
    mask[1, 4:] = 0
    out = pg.discounted_returns(r, mask, 0.9)
    for n in range(3):
        for t in range(7):
            want = sum(0.9 ** (u - t) * r[n, u] * mask[n, u] for u in range(t, 7)) * mask[n, t]
            assert out[n, t].item() == pytest.approx(float(want), abs=1e-12)
    with pytest.raises(ValueError, match="gamma must be in"):
        pg.discounted_returns(r, mask, 1.5)


def hand_features(obs_nt, t):
    o = np.clip(obs_nt, -10, 10)
    al = t / 100.0
    return np.concatenate([o, o ** 2, [al, al ** 2, al ** 3, 1.0]])


def test_linear_baseline_equals_the_least_squares_solution():
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(6, 12, 2, generator=g, dtype=D)
    ret = torch.randn(6, 12, generator=g, dtype=D)
    mask = torch.ones(6, 12, dtype=D)
    mask[2, 7:] = 0
    fitted = pg.fit_linear_baseline(pg.baseline_features(obs), ret, mask, reg=0.0)
    rows = [(n, t) for n in range(6) for t in range(12) if mask[n, t]]
    F = np.stack([hand_features(obs[n, t].numpy(), t) for n, t in rows])
    w, *_ = np.linalg.lstsq(F, np.array([ret[n, t].item() for n, t in rows]), rcond=None)
    for (n, t), f in zip(rows, F):
        assert fitted[n, t].item() == pytest.approx(f @ w, abs=1e-9)
    assert fitted[2, 7:].abs().max() == 0


# ---------------------------------------------------------------- the inner step by hand
def test_inner_step_on_a_fixed_batch_equals_a_hand_computation():
    """Linear Gaussian policy mu = s W + b: grad log pi is (a - mu)/sigma^2 (x s for W), z^2 - 1 for log sigma."""
    g = torch.Generator().manual_seed(2)
    T, N, Hh = 2, 4, 5
    params = maml_rl.init_policy((), generator=g)
    params = {k: (v + 0.1 * torch.randn(v.shape, generator=g)).to(D) for k, v in params.items()}
    batch = maml_rl.Batch(torch.randn(T, N, Hh, 2, generator=g, dtype=D), torch.randn(T, N, Hh, 2, generator=g, dtype=D),
                          torch.randn(T, N, Hh, generator=g, dtype=D), torch.ones(T, N, Hh, dtype=D),
                          torch.zeros(T, 2, dtype=D))
    batch.mask[1, 2, 3:] = 0
    alpha, gamma = 0.3, 0.9
    phi = maml_rl.inner_step({k: v.clone().requires_grad_() for k, v in params.items()}, batch, alpha, gamma, False)
    W, b, ls = (params[k].numpy() for k in ("w0", "b0", "log_std"))
    sig2 = np.exp(2 * ls)
    for i in range(T):
        obs, act, rew, m = (x[i].numpy() for x in (batch.obs, batch.actions, batch.rewards, batch.mask))
        valid = [(n, t) for n in range(N) for t in range(Hh) if m[n, t]]
        G = {(n, t): sum(gamma ** (u - t) * rew[n, u] * m[n, u] for u in range(t, Hh)) for n, t in valid}
        F = np.stack([hand_features(obs[n, t], t) for n, t in valid])
        y = np.array([G[v] for v in valid])
        w = np.linalg.solve(F.T @ F + 1e-5 * np.eye(F.shape[1]), F.T @ y)
        A = y - F @ w
        A = (A - A.mean()) / (A.std() + 1e-8)
        gW, gb, gls = np.zeros_like(W), np.zeros_like(b), np.zeros_like(ls)
        for (n, t), adv in zip(valid, A):
            s, a = obs[n, t], act[n, t]
            d = (a - (s @ W + b)) / sig2
            gW += np.outer(s, d) * adv
            gb += d * adv
            gls += ((a - (s @ W + b)) ** 2 / sig2 - 1) * adv
        k = len(valid)
        for name, theta, grad in (("w0", W, gW), ("b0", b, gb), ("log_std", ls, gls)):
            # loss = -mean(logp * A): phi = theta - alpha * grad(loss) = theta + alpha * grad / k
            assert np.allclose(phi[name][i].detach().numpy(), theta + alpha * grad / k, atol=1e-9), name


def test_second_order_meta_gradient_equals_finite_differences():
    """meta_loss's gradient through the inner step, float64, against central differences (fixed batches)."""
    g = torch.Generator().manual_seed(3)
    theta = {k: v.to(D) for k, v in maml_rl.init_policy((4,), generator=g).items()}
    goals = torch.tensor([[0.2, 0.1], [-0.3, 0.4]], dtype=D)

    def fixed(seed):
        gg = torch.Generator().manual_seed(seed)
        return maml_rl.Batch(torch.randn(2, 3, 6, 2, generator=gg, dtype=D), torch.randn(2, 3, 6, 2, generator=gg, dtype=D),
                             torch.randn(2, 3, 6, generator=gg, dtype=D), torch.ones(2, 3, 6, dtype=D), goals)
    pre, post = fixed(10), fixed(11)

    def f(th):
        return maml_rl.meta_loss(th, pre, lambda phi: post, 0.4)[0]
    th = {k: v.clone().requires_grad_() for k, v in theta.items()}
    grads = torch.autograd.grad(f(th), list(th.values()))
    for (name, v), gr in zip(theta.items(), grads):
        for idx in [(0,) * v.dim(), tuple(s - 1 for s in v.shape)]:
            e = torch.zeros_like(v)
            e[idx] = 1e-6
            up = f({k: w.clone().requires_grad_() for k, w in {**theta, name: v + e}.items()}).item()
            dn = f({k: w.clone().requires_grad_() for k, w in {**theta, name: v - e}.items()}).item()
            assert gr[idx].item() == pytest.approx((up - dn) / 2e-6, rel=1e-5, abs=1e-8), name
    # not vacuous: first-order differs from it
    fo = torch.autograd.grad(maml_rl.meta_loss(th, pre, lambda phi: post, 0.4, first_order=True)[0], list(th.values()))
    assert any((a - b).abs().max() > 1e-6 for a, b in zip(grads, fo))


# ---------------------------------------------------------------- short runs learn
def test_a_short_maml_run_learns_by_a_margin():
    torch.set_num_threads(1)
    cfg = maml_rl.Config(iterations=25, meta_batch=6, n_traj=10, hidden=(32, 32), meta_lr=1e-2, seed=0)
    theta, hist = maml_rl.train(cfg)
    init = maml_rl.init_policy(cfg.hidden, generator=torch.Generator().manual_seed(0))
    goals = torch.tensor([[0.4, 0.4], [-0.4, 0.3], [0.0, -0.45], [0.3, -0.3]])
    before = maml_rl.adaptation_curve(init, goals, steps=1, n_traj=20).mean(1)
    after = maml_rl.adaptation_curve(theta, goals, steps=1, n_traj=20).mean(1)
    assert after[1] > before[1] + 5.0, (before, after)          # returns are ~ -60 for a random policy


def test_adaptation_improves_a_pretrained_policy_on_its_goal():
    """One inner step toward a fixed far goal raises the return (the step is an ascent direction)."""
    params = maml_rl.init_policy((32,), generator=torch.Generator().manual_seed(0))
    curve = maml_rl.adaptation_curve(params, torch.tensor([[0.45, -0.45]] * 4), steps=2, n_traj=40)
    assert curve[2].mean() > curve[0].mean() + 2.0, curve
