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
    monkeypatch.setattr(mg, "discriminator_loss", lambda a, y, b: (a.sum() + b.sum()) * 0.0)
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
