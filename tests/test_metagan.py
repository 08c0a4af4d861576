"""MetaGAN (metalib/algorithms/metagan.py): the (N+1)-way discriminator loss and the generator's loss against hand
computations; the generator receives gradient only through the discriminator's fake term (and θ none from it);
the learner trains and predicts N-way logits through the common interface."""
import math

import pytest
import torch

import metalib.algorithms.metagan as mg
from metalib import models
from metalib.algorithms import MetaGAN


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def test_discriminator_loss_by_hand():
    # N = 2 real classes + fake (index 2). Real: logits (1, 0, 0) with label 0 -> -log(e / (e + 2));
    # fake: logits (0, 0, 1) -> the fake class -> -log(e / (e + 2)); fake (0, 0, 0) -> -log(1/3)
    real, y = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([0])
    fake = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    by_hand = -math.log(math.e / (math.e + 2)) + (-math.log(math.e / (math.e + 2)) - math.log(1 / 3)) / 2
    assert mg.discriminator_loss(real, y, fake).item() == pytest.approx(by_hand, abs=1e-6)


def test_generator_loss_by_hand():
    # p_fake of (0, 0, 1) is e/(e+2): the generator's loss is -log(1 - e/(e+2)) = -log(2/(e+2))
    fake = torch.tensor([[0.0, 0.0, 1.0]])
    assert mg.generator_loss(fake).item() == pytest.approx(-math.log(2 / (math.e + 2)), abs=1e-6)


def _tiny(seed=0):
    torch.manual_seed(seed)
    net = models.Conv4(in_channels=1, n_classes=4, hidden=4, image_size=16)
    learner = MetaGAN(net, inner_lr=0.1, n_fake=2)
    g = torch.Generator().manual_seed(seed)
    x_s, x_q = torch.rand(2, 3, 1, 16, 16, generator=g), torch.rand(2, 6, 1, 16, 16, generator=g)
    y_s, y_q = torch.arange(3).expand(2, -1).clone(), torch.arange(3).repeat(2).expand(2, -1).clone()
    return learner, (x_s, y_s, x_q, y_q)


def _grads(learner, batch):
    learner.zero_grad(set_to_none=True)
    learner.meta_gradient(batch)
    g = [p.grad for p in learner.generator.parameters()]
    d = [p.grad for p in learner.model.parameters()]
    return g, d


def _nonzero(grads):
    return any(t is not None and bool(t.abs().sum() > 0) for t in grads)


def test_the_generator_gets_gradient_only_through_the_fake_term(monkeypatch):
    learner, batch = _tiny()
    g, d = _grads(learner, batch)
    assert _nonzero(g) and _nonzero(d)
    # without the generator's term, nothing reaches the generator: the discriminator's loss sees detached fakes
    monkeypatch.setattr(mg, "generator_loss", lambda logits: logits.sum() * 0.0)
    g0, d0 = _grads(learner, batch)
    assert not _nonzero(g0)
    monkeypatch.undo()
    # without the discriminator's loss, nothing reaches θ: the generator's term uses the adapted φ held fixed
    monkeypatch.setattr(mg, "discriminator_loss", lambda a, y, b, *weight: (a.sum() + b.sum()) * 0.0)
    g1, d1 = _grads(learner, batch)
    assert not _nonzero(d1) and _nonzero(g1)


def test_it_trains_and_predicts_n_way_logits():
    learner, batch = _tiny()
    assert learner.fixed_way == 3
    out = learner.train_step(batch, learner.outer_optimizer(1e-3))
    assert torch.isfinite(out["loss"]) and "accuracy" in out
    assert learner.predict(*batch[:3]).shape == (2, 6, 3)
    with pytest.raises(ValueError, match="3-way"):
        learner.predict(*batch[:3], n_way=5)
    ablation = MetaGAN(models.Conv4(in_channels=1, n_classes=4, hidden=4, image_size=16), use_generator=False)
    assert torch.isfinite(ablation.train_step(batch, ablation.outer_optimizer(1e-3))["loss"])


def test_a_network_without_a_linear_head_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"\(N\+1\)-way head") as err:
        MetaGAN(models.Conv4(in_channels=1, hidden=4, image_size=16))
    assert "\n" not in str(err.value)


def _float64_task(seed=0):
    torch.manual_seed(seed)
    net = models.Conv4(in_channels=1, n_classes=4, hidden=4, image_size=16).double()
    g = torch.Generator().manual_seed(seed)
    x_s, f_s = torch.rand(3, 1, 16, 16, generator=g, dtype=torch.float64), torch.rand(2, 1, 16, 16, generator=g,
                                                                                      dtype=torch.float64)
    theta = {k: p.detach().clone().requires_grad_() for k, p in net.named_parameters()}
    return net, theta, x_s, torch.arange(3), f_s


def test_with_no_fake_term_the_inner_loop_is_mamls_on_the_real_support_alone():
    # λ = 0: the fakes must not touch the real images' logits at all (one concatenated batch did, through BatchNorm)
    from metalib.algorithms.maml import adapt_task
    from metalib.functional import transductive_batchnorm

    net, theta, x_s, y_s, f_s = _float64_task()
    with transductive_batchnorm(net):
        phi, _ = mg.adapt_with_fakes(net, theta, {}, x_s, y_s, f_s, 0.3, 2, fake_weight=0.0)
        ref, _ = adapt_task(net, theta, {}, x_s, y_s, torch.nn.functional.cross_entropy, 0.3, 2)
    for k in theta:
        torch.testing.assert_close(phi[k], ref[k], rtol=0, atol=1e-12)


def test_one_inner_step_against_a_hand_unrolled_step_and_first_order_holds_the_gradient_constant():
    from metalib.functional import transductive_batchnorm

    net, theta, x_s, y_s, f_s = _float64_task(1)
    with transductive_batchnorm(net):
        # by hand: the real and fake batches through the module itself, one SGD step on L_D = CE_real + 0.5 CE_fake
        loss = (torch.nn.functional.cross_entropy(torch.func.functional_call(net, theta, (x_s,)), y_s)
                + 0.5 * torch.nn.functional.cross_entropy(torch.func.functional_call(net, theta, (f_s,)),
                                                          torch.full((2,), 3)))
        grads = torch.autograd.grad(loss, list(theta.values()), create_graph=True)
        by_hand = {k: p - 0.2 * g for (k, p), g in zip(theta.items(), grads)}
        phi, _ = mg.adapt_with_fakes(net, theta, {}, x_s, y_s, f_s, 0.2, 1, fake_weight=0.5)
        for k in theta:
            torch.testing.assert_close(phi[k], by_hand[k], rtol=0, atol=1e-12)
        # second order: d<r, phi>/d theta = r - 0.2 H r carries the Hessian term; first order: exactly r
        w = "head.weight"
        r = torch.randn(phi[w].shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        d2 = torch.autograd.grad((phi[w] * r).sum(), theta[w], retain_graph=True)[0]
        phi1, _ = mg.adapt_with_fakes(net, theta, {}, x_s, y_s, f_s, 0.2, 1, first_order=True, fake_weight=0.5)
        d1 = torch.autograd.grad((phi1[w] * r).sum(), theta[w])[0]
    torch.testing.assert_close(d1, r, rtol=0, atol=0)
    assert (d2 - r).abs().max() > 1e-6


def test_the_query_logits_in_training_do_not_depend_on_the_fakes(monkeypatch):
    # the real queries are classified as at test time, whatever the generator makes (the train/test mismatch of one
    # [real; fake] batch under transductive BatchNorm)
    learner, (x_s, y_s, x_q, y_q) = _tiny()
    task = (x_s[0], y_s[0], x_q[0], y_q[0])
    theta = dict(learner.model.named_parameters())
    outs, fixed_support = [], torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(5))
    for seed in (0, 1):
        fakes = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(seed))

        class Fixed(torch.nn.Module):
            def forward(self, x, n):
                return torch.cat([fixed_support, fakes[2:]])  # same support fakes, different query fakes

        with learner._bn_context():
            outs.append(mg.metagan_task(learner.model, Fixed(), theta, {}, task, 0.1, 1, 2)[1])
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


def test_a_negative_fake_weight_is_refused_in_one_line():
    with pytest.raises(ValueError, match="fake_weight") as err:
        MetaGAN(models.Conv4(in_channels=1, n_classes=4, hidden=4, image_size=16), fake_weight=-1.0)
    assert "\n" not in str(err.value)


def test_discriminate_gives_the_n_plus_1_way_probabilities_behind_predict():
    learner, (x_s, y_s, x_q, y_q) = _tiny()
    torch.manual_seed(3)  # predict draws its fakes from the global generator; discriminate from the one it is given
    logits = learner.predict(x_s[0], y_s[0], x_q[0], steps=2)
    fakes, p, p_fake = learner.discriminate(x_s[0], y_s[0], x_q[0], steps=2, generator=torch.Generator().manual_seed(3))
    assert fakes.shape == (2, 1, 16, 16) and p.shape == (6, 4) and p_fake.shape == (2, 4)
    torch.testing.assert_close(p.sum(-1), torch.ones(6))
    real = p[:, :-1] / p[:, :-1].sum(-1, keepdim=True)  # the N-way decision is the real classes' share, renormalised
    torch.testing.assert_close(real, torch.softmax(logits, -1), rtol=1e-5, atol=1e-6)
