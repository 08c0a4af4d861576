"""ANIL against a hand-written head-only inner loop, MAML with a frozen body, finite differences, and learning."""
import pytest
import torch
import torch.nn.functional as F

from metalib import MAML
from metalib.algorithms import ANIL
from metalib.fewshot import default_config
from _nets import conv_batch, finite_difference_grad, rel_error, tiny_convbn

HEAD = "4."  # tiny_convbn: Conv2d(0) -> BatchNorm2d(1) -> Tanh(2) -> Flatten(3) -> Linear(4)


def hand_written(model, batch, lr, steps, first_order=False):
    """Independent ANIL: the body's features computed explicitly (``model[:4]``, batch statistics), then
    ``steps`` SGD steps on the linear head alone with torch.autograd.grad. Returns the adapted head of the
    first task and the meta-gradient of every parameter."""
    body, W, b = model[:4], model[4].weight, model[4].bias
    x_s, y_s, x_q, y_q = batch
    total, first = 0.0, None
    for t in range(x_s.shape[0]):
        z_s, z_q = body(x_s[t]), body(x_q[t])
        w, c = W, b
        for _ in range(steps):
            g = torch.autograd.grad(F.cross_entropy(z_s @ w.T + c, y_s[t]), (w, c), create_graph=not first_order)
            w, c = w - lr * g[0], c - lr * g[1]
        if first is None:
            first = {"4.weight": w.detach(), "4.bias": c.detach()}
        total = total + F.cross_entropy(z_q @ w.T + c, y_q[t])
    total = total / x_s.shape[0]
    names = [n for n, _ in model.named_parameters()]
    return first, dict(zip(names, torch.autograd.grad(total, list(model.parameters()))))


def meta_grads(learner, batch):
    learner.zero_grad()
    learner.meta_backward(batch)
    return {n[len("model."):]: p.grad.clone() for n, p in learner.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("steps", [1, 3])
def test_the_body_comes_back_unchanged_bit_for_bit(steps):
    anil = ANIL(tiny_convbn(), inner_lr=0.5, inner_steps=steps, head=HEAD)
    x_s, y_s = conv_batch()[:2]
    theta = {k: v.detach().clone() for k, v in anil.initial_params().items()}
    phi = anil.adapt(x_s[0], y_s[0])
    for k in theta:
        if k.startswith(HEAD):
            assert not torch.equal(phi[k], theta[k]), k
        else:
            assert torch.equal(phi[k], theta[k]), k
            assert phi[k] is anil.initial_params()[k]  # the very tensor: the body is not touched


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("steps", [1, 3])
def test_head_and_meta_gradient_match_a_hand_written_head_only_loop(steps, first_order):
    model = tiny_convbn(seed=1)
    anil = ANIL(model, inner_lr=0.3, inner_steps=steps, first_order=first_order, head=HEAD)
    batch = conv_batch(seed=2)
    want_head, want_grad = hand_written(model, batch, 0.3, steps, first_order)
    phi = anil.adapt(batch[0][0], batch[1][0])
    assert rel_error({k: phi[k].detach() for k in want_head}, want_head) < 1e-12
    assert rel_error(meta_grads(anil, batch), want_grad) < 1e-10


def test_with_a_frozen_body_it_is_maml_restricted_to_the_head():
    anil = ANIL(tiny_convbn(seed=3), inner_lr=0.4, inner_steps=2, head=HEAD)
    frozen = tiny_convbn(seed=3)
    for n, p in frozen.named_parameters():
        p.requires_grad_(n.startswith(HEAD))  # MAML then adapts (and meta-learns) the head only
    maml = MAML(frozen, inner_lr=0.4, inner_steps=2)
    batch = conv_batch(seed=4)
    a, m = anil.adapt(batch[0][0], batch[1][0]), maml.adapt(batch[0][0], batch[1][0])
    for k in m:
        assert torch.allclose(a[k], m[k], rtol=0, atol=1e-13), k
    ga, gm = meta_grads(anil, batch), meta_grads(maml, batch)
    assert set(gm) == {"4.weight", "4.bias"}
    for k in gm:
        assert torch.allclose(ga[k], gm[k], rtol=0, atol=1e-13), k


def test_second_order_meta_gradient_of_the_body_matches_finite_differences():
    model = tiny_convbn(seed=5)
    anil = ANIL(model, inner_lr=0.5, inner_steps=2, head=HEAD)
    batch = conv_batch(seed=6)
    analytic = meta_grads(anil, batch)
    numeric = finite_difference_grad(lambda: anil.meta_loss(batch), dict(model.named_parameters()))
    assert rel_error(analytic, numeric) < 1e-6


def test_bad_head_names_get_one_clear_error():
    with pytest.raises(ValueError, match="no parameter of the model starts with 'head.'"):
        ANIL(tiny_convbn())
    with pytest.raises(ValueError, match="that is MAML"):
        ANIL(tiny_convbn(), head=("0.", "1.", "4."))
    assert default_config("foanil", iterations=1).first_order
    assert default_config("anil").inner_lr == 0.4  # MAML's Omniglot 5-way settings


def test_anil_learns_on_sinusoids():
    """300 meta-iterations (about 20 s) of ANIL on the sinusoid MLP, the last layer (``4.``) as the head: the
    one-step query MSE on 200 seeded test tasks falls below half of the untrained network's."""
    from metalib import tasks
    from metalib.models import sinusoid_mlp
    from metalib.training import meta_train

    torch.manual_seed(0)
    anil = ANIL(sinusoid_mlp(), inner_lr=0.1, inner_steps=1, head="4.", loss_fn=F.mse_loss)
    test = tasks.Sinusoid().sample(200, 10, 20, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        before = float(anil.task_losses(test)[0].mean())
    gen = torch.Generator().manual_seed(1)
    meta_train(anil, lambda: tasks.Sinusoid().sample(25, 10, 10, generator=gen), 300, meta_lr=3e-3, progress=False)
    with torch.no_grad():
        after = float(anil.task_losses(test)[0].mean())
    assert after < 0.5 * before, (before, after)  # measured: 5.03 -> 1.47
