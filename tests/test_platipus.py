"""PLATIPUS (metalib/algorithms/platipus.py) against independent computations: the KL of two diagonal Gaussians
worked by hand and by torch.distributions; with σ = 0, γ_q = 0 and no KL its meta-gradient is MAML's, exactly;
the ELBO's gradient against float64 finite differences (gradcheck); sampling reproducible from a seed; the
calibration measures by hand; a short run on the ambiguous tasks learns by a margin."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metalib import algorithms, models
from metalib.algorithms import MAML, PLATIPUS
from metalib.algorithms.platipus import (
    band_coverage, elbo_loss, kl_diagonal_gaussians, mixture_log_likelihood, reparameterised_sample,
)
from metalib.functional import buffers_of, params_of
from metalib.ambiguous import SineLine, SineLineParams


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def test_registered_and_built_from_a_config():
    assert "platipus" in algorithms.available()
    from metalib.fewshot import build_learner, default_config
    cfg = default_config("platipus", n_way=3, k_shot=1, dataset="custom", image_size=24, hidden=4, inner_lr=0.1,
                         options={"kl_weight": 0.5, "eval_samples": 2})
    learner = build_learner(cfg)
    assert isinstance(learner, PLATIPUS) and learner.kl_weight == 0.5 and learner.eval_samples == 2
    # everything the outer loop trains: μ (the network), log σ, log v_q, γ_p, γ_q
    n_model = sum(p.numel() for p in learner.model.parameters())
    assert sum(p.numel() for p in learner.parameters()) == 3 * n_model + 2


# ---------------------------------------------------------------------------- the KL term
def test_kl_of_diagonal_gaussians_matches_the_closed_form_worked_by_hand():
    # one entry: q = N(1, 0.5²), p = N(0, 1²): log(1/0.5) + (0.25 + 1) / 2 - 1/2 = ln 2 + 0.125
    one = kl_diagonal_gaussians({"w": torch.tensor([1.0])}, {"w": torch.tensor([0.5])},
                                {"w": torch.tensor([0.0])}, {"w": torch.tensor([1.0])})
    assert one.item() == pytest.approx(math.log(2) + 0.125, abs=1e-6)
    # two tensors: the sum of the entries' KLs; the second: q = N(0, 2²), p = N(3, 1²): -ln 2 + (4 + 9)/2 - 1/2
    mu_q = {"a": torch.tensor([1.0]), "b": torch.tensor([[0.0]])}
    s_q = {"a": torch.tensor([0.5]), "b": torch.tensor([[2.0]])}
    mu_p = {"a": torch.tensor([0.0]), "b": torch.tensor([[3.0]])}
    s_p = {"a": torch.tensor([1.0]), "b": torch.tensor([[1.0]])}
    assert kl_diagonal_gaussians(mu_q, s_q, mu_p, s_p).item() == pytest.approx(
        math.log(2) + 0.125 - math.log(2) + 6.0, abs=1e-6)
    # not symmetric: the direction matters (q || p)
    assert kl_diagonal_gaussians(mu_p, s_p, mu_q, s_q).item() != pytest.approx(kl_diagonal_gaussians(
        mu_q, s_q, mu_p, s_p).item())


def test_kl_matches_torch_distributions_and_is_zero_for_equal_gaussians():
    g = torch.Generator().manual_seed(0)
    shapes = {"w": (4, 3), "b": (4,)}
    mu_q, mu_p = ({k: torch.randn(s, generator=g, dtype=torch.float64) for k, s in shapes.items()} for _ in range(2))
    s_q, s_p = ({k: torch.rand(s, generator=g, dtype=torch.float64) + 0.1 for k, s in shapes.items()} for _ in range(2))
    ref = sum(torch.distributions.kl_divergence(torch.distributions.Normal(mu_q[k], s_q[k]),
                                                torch.distributions.Normal(mu_p[k], s_p[k])).sum() for k in shapes)
    assert torch.allclose(kl_diagonal_gaussians(mu_q, s_q, mu_p, s_p), ref, rtol=1e-12)
    assert kl_diagonal_gaussians(mu_q, s_q, mu_q, s_q).abs().item() < 1e-12


def test_reparameterised_sample_is_mu_plus_sigma_times_noise():
    mu, sigma, eps = {"w": torch.tensor([1.0, -2.0])}, {"w": torch.tensor([0.5, 3.0])}, {"w": torch.tensor([2.0, -1.0])}
    assert torch.equal(reparameterised_sample(mu, sigma, eps)["w"], torch.tensor([2.0, -5.0]))


# ---------------------------------------------------------------------------- σ → 0 and no KL: MAML
def _regression_batch(seed=0, dtype=torch.float64):
    return SineLine().sample(4, 5, 7, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("batching", ["loop", "vmap"])
def test_with_sigma_zero_gamma_q_zero_and_no_kl_the_meta_gradient_is_mamls_exactly(batching):
    torch.manual_seed(0)
    net = models.sinusoid_mlp().double()
    maml = MAML(copy.deepcopy(net), inner_lr=0.05, inner_steps=2, batching=batching, loss_fn=F.mse_loss)
    plat = PLATIPUS(net, inner_lr=0.05, inner_steps=2, kl_weight=0.0, sigma_init=0.0, gamma_init=0.0,
                    batching=batching, loss_fn=F.mse_loss)
    batch = _regression_batch()
    loss_m, _ = maml.meta_gradient(batch)
    loss_p, _ = plat.meta_gradient(batch)
    assert loss_p.item() == loss_m.item()
    for (n, a), b in zip(maml.model.named_parameters(), plat.model.parameters()):
        if batching == "loop":  # the same operations in the same order, plus exact zeros (0·ε, 0·∇)
            assert torch.equal(a.grad, b.grad), n
        else:  # vmap batches the extra (zero) backward paths with the others: equal up to summation order
            assert torch.allclose(a.grad, b.grad, rtol=1e-12, atol=1e-15), n
    # and the learned spread gets no gradient through a zero σ·ε (its gradient is ε · σ = 0)
    assert all(float(p.grad.abs().max()) == 0.0 for p in plat.log_v_q.values())


def test_with_a_tiny_sigma_the_meta_gradient_tends_to_mamls():
    """The gap to MAML's meta-gradient shrinks in proportion to σ (the noise σ·ε perturbs θ at first order)."""
    torch.manual_seed(0)
    net = models.sinusoid_mlp().double()
    maml = MAML(copy.deepcopy(net), inner_lr=0.05, batching="loop", loss_fn=F.mse_loss)
    batch = _regression_batch(1)
    maml.meta_gradient(batch)
    ref = torch.cat([p.grad.flatten() for p in maml.model.parameters()])
    gaps = []
    for sigma in (1e-5, 1e-7, 1e-9):
        plat = PLATIPUS(copy.deepcopy(net), inner_lr=0.05, kl_weight=0.0, sigma_init=sigma, gamma_init=0.0,
                        batching="loop", loss_fn=F.mse_loss)
        torch.manual_seed(1)
        plat.meta_gradient(batch)
        gaps.append((torch.cat([p.grad.flatten() for p in plat.model.parameters()]) - ref).abs().max().item())
    assert gaps[0] > 30 * gaps[1] > 900 * gaps[2], gaps
    assert gaps[2] < 1e-6 * ref.abs().max().item()


# ---------------------------------------------------------------------------- the ELBO's gradient
def test_elbo_gradient_matches_float64_finite_differences():
    torch.manual_seed(0)
    net = models.MLP(1, (5,), 1, activation=nn.Tanh).double()  # smooth: finite differences are exact to O(h²)
    names = list(params_of(net))
    shapes = [p.shape for p in params_of(net).values()]
    buffers = buffers_of(net)
    task = tuple(t[0] for t in _regression_batch(2))
    g = torch.Generator().manual_seed(3)
    noise = {n: torch.randn(s, generator=g, dtype=torch.float64) for n, s in zip(names, shapes)}

    def split(flat):
        out, i = [], 0
        for s in shapes:
            out.append(flat[i:i + s.numel()].view(s))
            i += s.numel()
        return dict(zip(names, out))

    def objective(mu, log_sigma, log_v_q, gammas):
        loss, *_ = elbo_loss(net, split(mu), {k: v.exp() for k, v in split(log_sigma).items()},
                             {k: v.exp() for k, v in split(log_v_q).items()}, gammas[0], gammas[1], buffers, task,
                             F.mse_loss, 0.05, 2, noise, kl_weight=0.7)
        return loss

    n = sum(s.numel() for s in shapes)
    mu = torch.cat([p.detach().flatten() for p in params_of(net).values()]).requires_grad_()
    log_sigma = torch.full((n,), -1.0, dtype=torch.float64).add(0.1 * torch.randn(n, generator=g, dtype=torch.float64))
    log_v_q = torch.full((n,), -1.5, dtype=torch.float64).add(0.1 * torch.randn(n, generator=g, dtype=torch.float64))
    gammas = torch.tensor([0.02, 0.03], dtype=torch.float64)
    inputs = tuple(t.detach().requires_grad_() for t in (mu, log_sigma, log_v_q, gammas))
    assert torch.autograd.gradcheck(objective, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


def test_the_kl_term_moves_the_loss_and_is_reported():
    torch.manual_seed(0)
    net = models.sinusoid_mlp().double()
    mu, buffers = params_of(net), buffers_of(net)
    sig = {k: torch.full_like(v, 0.1) for k, v in mu.items()}
    vq = {k: torch.full_like(v, 0.05) for k, v in mu.items()}
    eps = {k: torch.zeros_like(v) for k, v in mu.items()}
    task = tuple(t[0] for t in _regression_batch(4))
    gp, gq = torch.tensor(0.01, dtype=torch.float64), torch.tensor(0.02, dtype=torch.float64)
    with_kl, _, _, kl = elbo_loss(net, mu, sig, vq, gp, gq, buffers, task, F.mse_loss, 0.01, 1, eps, kl_weight=2.0)
    without, *_ = elbo_loss(net, mu, sig, vq, gp, gq, buffers, task, F.mse_loss, 0.01, 1, eps, kl_weight=0.0)
    # the variances alone give n·(log 2 + 1/8 - 1/2) > 0 nats; the means' shift adds more
    n = sum(v.numel() for v in mu.values())
    assert kl.item() > n * (math.log(2) + 0.125 - 0.5)
    assert with_kl.item() == pytest.approx(without.item() + 2.0 * kl.item(), rel=1e-12)


# ---------------------------------------------------------------------------- sampling
def test_sampling_is_reproducible_from_a_seed_and_spreads():
    torch.manual_seed(0)
    learner = PLATIPUS(models.sinusoid_mlp(), inner_lr=0.01, sigma_init=0.1, loss_fn=F.mse_loss)
    x_s, y_s, _, _ = (t[0] for t in SineLine().sample(1, 5, 1, generator=torch.Generator().manual_seed(0)))
    x = torch.linspace(-5, 5, 20).view(-1, 1)
    a = learner.sample_functions(x_s, y_s, x, 6, generator=torch.Generator().manual_seed(7))
    b = learner.sample_functions(x_s, y_s, x, 6, generator=torch.Generator().manual_seed(7))
    c = learner.sample_functions(x_s, y_s, x, 6, generator=torch.Generator().manual_seed(8))
    assert a.shape == (6, 20, 1) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.std(0).mean() > 1e-3  # six different functions, not one
    with pytest.raises(ValueError, match="n_samples"):
        learner.sample_functions(x_s, y_s, x, 0)


def _classification_episode():
    g = torch.Generator().manual_seed(0)
    x_s, x_q = torch.rand(2, 6, 1, 24, 24, generator=g), torch.rand(2, 6, 1, 24, 24, generator=g)
    y = torch.arange(3).repeat_interleave(2).expand(2, -1).clone()
    return x_s, y, x_q, y


def test_classification_prediction_is_reproducible_and_averages_samples():
    torch.manual_seed(0)
    net = models.Conv4(in_channels=1, n_classes=3, hidden=4, image_size=24)
    learner = PLATIPUS(net, inner_lr=0.1, sigma_init=0.1, eval_samples=3)
    x_s, y_s, x_q, y_q = _classification_episode()
    torch.manual_seed(1)  # predict draws ε from the global RNG: a seed makes it repeatable
    a = learner.predict(x_s, y_s, x_q)
    torch.manual_seed(1)
    b = learner.predict(x_s, y_s, x_q)
    assert a.shape == (2, 6, 3) and torch.equal(a, b)
    torch.manual_seed(1)
    singles = [MAML.predict(learner, x_s, y_s, x_q) for _ in range(3)]  # the same three draws, one by one
    assert torch.allclose(a, torch.stack(singles).mean(0), atol=1e-6)
    out = learner.train_step((x_s, y_s, x_q, y_q), learner.outer_optimizer(1e-3))
    assert torch.isfinite(out["loss"]) and "accuracy" in out


@pytest.mark.parametrize("kw, match", [(dict(sigma_init=0.0), "kl_weight=0"), (dict(sigma_init=-1.0), "sigma_init"),
                                       (dict(kl_weight=-1.0), "kl_weight"), (dict(eval_samples=0), "eval_samples"),
                                       (dict(gamma_init=float("nan")), "gamma_init")])
def test_bad_settings_get_one_line(kw, match):
    with pytest.raises(ValueError, match=match) as err:
        PLATIPUS(models.sinusoid_mlp(), **kw)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------- calibration measures
def test_mixture_log_likelihood_by_hand():
    y = torch.tensor([0.0, 1.0])
    one = torch.tensor([[0.0, 0.0]])
    ref = torch.distributions.Normal(0.0, 0.5).log_prob(y).mean()
    assert mixture_log_likelihood(one, y, 0.5).item() == pytest.approx(ref.item(), abs=1e-6)
    two = torch.tensor([[0.0, 0.0], [0.0, 1.0]])  # the second sample explains the point at 1 exactly
    n = torch.distributions.Normal(0.0, 0.5)
    by_hand = (n.log_prob(torch.tensor(0.0)) + torch.log((n.log_prob(torch.tensor(1.0)).exp() + n.log_prob(
        torch.tensor(0.0)).exp()) / 2)) / 2
    assert mixture_log_likelihood(two, y, 0.5).item() == pytest.approx(by_hand.item(), abs=1e-6)


def test_band_coverage_by_hand():
    samples = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 0.0, 0.0]])
    truth = torch.tensor([0.5, 3.0, 0.1, -0.3])  # inside, outside (2 + 0.5 < 3), inside, inside with the margin
    assert band_coverage(samples, truth, 0.5).item() == 0.75
    assert band_coverage(samples[:1], truth, 0.0).item() == 0.0


# ---------------------------------------------------------------------------- the ambiguous tasks
def test_sine_line_tasks_by_hand_and_reproducible():
    p = SineLineParams(torch.tensor([True, False]), torch.tensor([2.0, 9.0]), torch.tensor([0.5, 9.0]),
                       torch.tensor([9.0, -1.5]), torch.tensor([9.0, 0.25]))
    x = torch.tensor([[[1.0]], [[2.0]]])
    assert torch.allclose(SineLine.function(x, p).flatten(), torch.tensor([2 * math.sin(0.5), -2.75]))
    fam = SineLine()
    a = fam.sample(50, 5, 3, generator=torch.Generator().manual_seed(0))
    b = fam.sample(50, 5, 3, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(u, v) for u, v in zip(a, b)) and a[0].shape == (50, 5, 1)
    kinds = fam.sample_params(2000, torch.Generator().manual_seed(1)).is_sine.float().mean().item()
    assert 0.45 < kinds < 0.55
    noiseless = SineLine(noise_std=0.0)
    prm = noiseless.sample_params(3, torch.Generator().manual_seed(2))
    batch = noiseless.make_batch(prm, 4, 2, torch.Generator().manual_seed(3))
    assert torch.allclose(batch.y_s, SineLine.function(batch.x_s, prm))
    with pytest.raises(ValueError, match="p_sine"):
        SineLine(p_sine=1.5)


# ---------------------------------------------------------------------------- it learns
def test_a_short_run_learns_the_ambiguous_tasks_by_a_margin():
    from metalib.training import meta_train
    torch.manual_seed(0)
    fam = SineLine()
    learner = PLATIPUS(models.sinusoid_mlp(), inner_lr=0.01, kl_weight=0.018, loss_fn=F.mse_loss)
    g = torch.Generator().manual_seed(0)
    test = fam.sample(30, 5, 20, generator=torch.Generator().manual_seed(99))

    def query_mse():
        errs = []
        for t in range(30):
            f = learner.sample_functions(test[0][t], test[1][t], test[2][t], 3, torch.Generator().manual_seed(t))
            errs.append(((f.mean(0) - test[3][t]) ** 2).mean())
        return torch.stack(errs).mean().item()

    before = query_mse()
    meta_train(learner, lambda: fam.sample(10, 5, 10, generator=g), 600, meta_lr=3e-3, progress=False)
    after = query_mse()
    # measured: 11.9 -> 7.7 after 300 iterations; an untrained (or not-learning) prior stays near 11.9
    assert after < 0.6 * before, (before, after)
