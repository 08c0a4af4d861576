"""R2-D2's ridge head against the normal equations (numpy), finite differences through the solve, and learning."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import metalib
from metalib.algorithms import R2D2, ridge_solution
from metalib.fewshot import FewShotConfig, FewShotTrainer, default_config
from _nets import conv_batch, finite_difference_grad, rel_error, synthetic_images


def normal_equations(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """Independent: ridge regression as ordinary least squares on the augmented system
    [X; √λ I] W = [Y; 0] (numpy's SVD-based lstsq, no normal matrix formed)."""
    p = x.shape[1]
    a = np.vstack([x, math.sqrt(lam) * np.eye(p)])
    b = np.vstack([y, np.zeros((p, y.shape[1]))])
    return np.linalg.lstsq(a, b, rcond=None)[0]


@pytest.mark.parametrize("n,p", [(5, 65), (25, 65), (80, 17), (6, 6)])
def test_primal_and_woodbury_equal_the_normal_equation_solution(n, p):
    g = torch.Generator().manual_seed(n + p)
    x = torch.randn(n, p, generator=g, dtype=torch.float64)
    y = torch.randn(n, 4, generator=g, dtype=torch.float64)
    want = torch.from_numpy(normal_equations(x.numpy(), y.numpy(), 0.7))
    for solver in ("primal", "woodbury", "auto"):
        got = ridge_solution(x, y, torch.tensor(0.7, dtype=torch.float64), solver)
        assert got.shape == (p, 4)
        assert torch.allclose(got, want, rtol=1e-9, atol=1e-11), solver


def test_a_batch_of_tasks_is_solved_task_by_task():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(3, 5, 9, generator=g, dtype=torch.float64), torch.randn(3, 5, 2, generator=g, dtype=torch.float64)
    batched = ridge_solution(x, y, 2.0)
    for t in range(3):
        assert torch.allclose(batched[t], ridge_solution(x[t], y[t], 2.0), rtol=0, atol=1e-13)


@pytest.mark.parametrize("solver", ["primal", "woodbury"])
def test_gradients_through_the_solve_match_finite_differences(solver):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 7, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(4, 3, generator=g, dtype=torch.float64)
    lam = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    probe = torch.randn(7, 3, generator=g, dtype=torch.float64)

    def f():
        return (ridge_solution(x, y, lam, solver) * probe).sum()

    analytic = dict(zip(("x", "lam"), torch.autograd.grad(f(), (x, lam))))
    numeric = finite_difference_grad(f, {"x": x.detach(), "lam": lam.detach()})
    assert rel_error(analytic, numeric) < 1e-8


def tiny_encoder(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False), nn.Tanh(),
                         nn.Flatten()).double()


def test_the_head_is_the_ridge_solution_on_the_support_embedding():
    r2 = R2D2(tiny_encoder(), init_lambda=3.0, init_scale=2.0, init_bias=0.5).double()
    x_s, y_s, x_q, _ = conv_batch()
    z = r2.encoder(torch.cat([x_s[0], x_q[0]])).detach()          # support and queries in one batch
    z_s, z_q = z[:6].numpy(), z[6:].numpy()
    n = z_s.shape[0]
    X = np.hstack([z_s, np.ones((n, 1))]) / math.sqrt(n)
    Y = np.eye(3)[y_s[0].numpy()] / math.sqrt(n)
    lam = float(r2.lam.detach())  # 3 up to float32 rounding of log λ
    assert lam == pytest.approx(3.0, rel=1e-6)
    W = normal_equations(X, Y, lam)
    want = 2.0 * (np.hstack([z_q, np.ones((z_q.shape[0], 1))]) @ W) + 0.5
    got = r2.predict(x_s[0], y_s[0], x_q[0]).detach().numpy()
    assert np.allclose(got, want, rtol=1e-9, atol=1e-10)
    ex = r2.explain(x_s[0], y_s[0], x_q[0])
    assert torch.allclose(ex["logits"], torch.from_numpy(want), rtol=1e-9, atol=1e-10)


def test_meta_gradient_of_every_meta_parameter_matches_finite_differences():
    r2 = R2D2(tiny_encoder(seed=2), init_lambda=0.5, init_scale=3.0, init_bias=0.1).double()
    batch = conv_batch(seed=3)
    r2.zero_grad()
    r2.meta_backward(batch)
    analytic = {n: p.grad.clone() for n, p in r2.named_parameters()}
    assert set(analytic) >= {"log_lambda", "scale", "bias"}  # λ, α and β are learned
    numeric = finite_difference_grad(lambda: r2.meta_loss(batch), dict(r2.named_parameters()))
    assert rel_error(analytic, numeric) < 1e-6


def test_bad_input_and_settings():
    enc = tiny_encoder()
    with pytest.raises(ValueError, match="loss_fn must be None"):
        R2D2(enc, loss_fn=F.mse_loss)
    with pytest.raises(ValueError, match="init_lambda"):
        R2D2(enc, init_lambda=0.0)
    with pytest.raises(ValueError, match="solver"):
        R2D2(enc, solver="cholesky")
    r2 = R2D2(enc).double()
    x_s, y_s, x_q, _ = conv_batch()
    with pytest.raises(ValueError, match="no inner loop"):
        r2.predict(x_s, y_s, x_q, steps=3)
    assert "log_lambda" not in dict(R2D2(enc, learn_lambda=False).named_parameters())
    cfg = default_config("r2d2", iterations=1)
    assert cfg.train_way == 60 and cfg.meta_lr == 5e-3 and cfg.init_scale == 10.0


def test_r2d2_learns_on_synthetic_classes(tmp_path):
    """60 episodes of 3-way 1-shot on synthetic 16x16 classes: +10 points of test accuracy."""
    train, test = synthetic_images(16, seed=0), synthetic_images(8, seed=9)
    cfg = FewShotConfig(algorithm="r2d2", dataset="custom", image_size=16, hidden=8, iterations=60, n_way=3, k_shot=1,
                        train_query=3, test_query=3, meta_batch=4, meta_lr=5e-3, val_every=0, checkpoint_every=0,
                        seed=0, options={"init_scale": 10.0})
    trainer = FewShotTrainer(cfg, train, False, run_dir=None, progress=False)
    before = metalib.evaluate(trainer.learner, test, 3, 1, 3, episodes=100)
    lam = float(trainer.learner.lam.detach())
    trainer.fit()
    after = metalib.evaluate(trainer.learner, test, 3, 1, 3, episodes=100)
    assert float(trainer.learner.lam.detach()) != lam
    assert after.mean > before.mean + 10, (before.mean, after.mean)


@pytest.mark.data
def test_r2d2_learns_on_omniglot():
    """40 episodes of 20-way 1-shot on the Omniglot training classes (Adam 5e-3, scale initialised at 10): on
    the first 100 seeded 5-way 1-shot test episodes accuracy rises by more than 20 points (measured with one
    thread: 47.7% -> 82.4%)."""
    from metalib.data import Omniglot
    from _data import require_omniglot

    require_omniglot()
    train, test = Omniglot("train", progress=False), Omniglot("test", progress=False)
    cfg = FewShotConfig(algorithm="r2d2", iterations=40, train_way=20, train_query=5, meta_lr=5e-3, val_every=0,
                        checkpoint_every=0, seed=0, options={"init_scale": 10.0})
    trainer = FewShotTrainer(cfg, train, False, run_dir=None, progress=False)
    before = metalib.evaluate(trainer.learner, test, 5, 1, 15, episodes=100)
    trainer.fit()
    after = metalib.evaluate(trainer.learner, test, 5, 1, 15, episodes=100)
    assert after.mean > before.mean + 20, (before.mean, after.mean)
