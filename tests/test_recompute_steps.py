"""Gradient checkpointing over MAML's inner steps: the same meta-gradient as without it.

(How much memory it saves is measured in benchmarks/bench_peers.py, not asserted here.)
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metalib import MAML
from metalib.engine import inner_loop_checkpointed
from metalib.functional import buffers_of, inner_loop, params_of
from _nets import conv_batch, finite_difference_grad, rel_error, tiny_convbn, tiny_mlp


def meta_grad(maml, batch, loss_fn=F.cross_entropy):
    maml.model.zero_grad()
    maml.meta_loss(batch, loss_fn).backward()
    return {n: p.grad.clone() for n, p in maml.model.named_parameters()}


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_checkpointed_meta_gradient_equals_plain(steps):
    model = tiny_convbn(seed=steps)
    batch = conv_batch(seed=steps)
    plain = meta_grad(MAML(model, inner_lr=0.3, inner_steps=steps), batch)
    ckpt = meta_grad(MAML(model, inner_lr=0.3, inner_steps=steps, recompute_steps=True), batch)
    assert rel_error(ckpt, plain) < 1e-12
    assert any(float(g.abs().max()) > 0 for g in plain.values())  # a gradient that can differ


def test_checkpointed_meta_gradient_matches_finite_differences():
    model = tiny_mlp(seed=3)
    g = torch.Generator().manual_seed(3)
    x_s, x_q = torch.randn(2, 5, 1, generator=g, dtype=torch.float64), torch.randn(2, 5, 1, generator=g, dtype=torch.float64)
    batch = (x_s, torch.sin(x_s), x_q, torch.sin(x_q))
    maml = MAML(model, inner_lr=0.2, inner_steps=3, recompute_steps=True)
    analytic = meta_grad(maml, batch, F.mse_loss)
    numeric = finite_difference_grad(lambda: maml.meta_loss(batch, F.mse_loss), dict(model.named_parameters()))
    assert rel_error(analytic, numeric) < 1e-6


def test_checkpointed_inner_loop_recomputes_in_the_batchnorm_mode():
    """The recomputation happens in backward(), outside MAML's BatchNorm context: with a BatchNorm
    that tracks running statistics in eval() mode, a recomputation in the wrong mode would use the
    running statistics and give a different gradient."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Tanh(), nn.Flatten(), nn.Linear(18, 3)).double()
    model.eval()
    with torch.no_grad():
        model[1].running_mean.fill_(5.0)  # far from the batch statistics
    batch = conv_batch()
    plain = meta_grad(MAML(model, inner_lr=0.3, inner_steps=2), batch)
    ckpt = meta_grad(MAML(model, inner_lr=0.3, inner_steps=2, recompute_steps=True), batch)
    assert rel_error(ckpt, plain) < 1e-12


def test_inner_loop_checkpointed_same_adapted_params_and_losses():
    model = tiny_convbn(seed=5)
    x_s, y_s, _, _ = conv_batch()
    theta, buf = params_of(model), buffers_of(model)
    a, la = inner_loop(model, theta, buf, x_s[0], y_s[0], F.cross_entropy, 0.3, 3)
    b, lb = inner_loop_checkpointed(model, theta, buf, x_s[0], y_s[0], F.cross_entropy, 0.3, 3)
    assert torch.allclose(la, lb, rtol=0, atol=1e-14)
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-14) for k in a)
    empty, losses = inner_loop_checkpointed(model, theta, buf, x_s[0], y_s[0], F.cross_entropy, 0.3, 0)
    assert losses.numel() == 0 and all(empty[k] is theta[k] for k in theta)


def test_checkpointing_options():
    model = tiny_mlp()
    with pytest.raises(ValueError, match="vmap"):
        MAML(model, batching="vmap", recompute_steps=True)
    assert not MAML(model, recompute_steps=True).uses_vmap()  # auto -> loop when checkpointing
    assert MAML(model, recompute_steps=True, first_order=True).uses_vmap()  # FOMAML: unaffected
    assert "recompute_steps=True" in repr(MAML(model, recompute_steps=True))
    assert "recompute_steps" not in repr(MAML(model))


def test_default_is_unchanged_bit_for_bit():
    """recompute_steps=False must be the code path of before: compare with a hand-written loop
    built on the same inner_loop."""
    model = tiny_convbn(seed=7)
    batch = conv_batch(seed=7)
    ours = meta_grad(MAML(model, inner_lr=0.3, inner_steps=2), batch)
    theta, buf = params_of(model), buffers_of(model)
    model.zero_grad()
    from metalib.functional import forward
    total = torch.stack([
        F.cross_entropy(forward(model, inner_loop(model, theta, buf, xs, ys, F.cross_entropy, 0.3, 2)[0], buf, xq), yq)
        for xs, ys, xq, yq in zip(*batch)
    ]).mean()
    total.backward()
    assert all(torch.equal(ours[n], p.grad) for n, p in model.named_parameters())


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("recompute_steps", [False, True])
def test_meta_backward_equals_meta_loss_backward(first_order, recompute_steps):
    model = tiny_convbn(seed=11)
    batch = conv_batch(n_tasks=4, seed=11)
    maml = MAML(model, inner_lr=0.3, inner_steps=2, first_order=first_order, recompute_steps=recompute_steps)
    ref = meta_grad(maml, batch)
    ref_loss = float(maml.meta_loss(batch, F.cross_entropy).detach())
    model.zero_grad()
    loss = maml.meta_backward(batch, F.cross_entropy)
    got = {n: p.grad.clone() for n, p in model.named_parameters()}
    assert rel_error(got, ref) < 1e-12
    assert abs(float(loss) - ref_loss) < 1e-12 and not loss.requires_grad


def test_meta_backward_on_the_vmap_path():
    model = tiny_mlp(seed=2)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 4, 1, generator=g, dtype=torch.float64)
    batch = (x, x.sin(), x + 1, (x + 1).sin())
    maml = MAML(model, inner_lr=0.1, inner_steps=1)
    assert maml.uses_vmap()
    ref = meta_grad(maml, batch, F.mse_loss)
    model.zero_grad()
    maml.meta_backward(batch, F.mse_loss)
    assert rel_error({n: p.grad for n, p in model.named_parameters()}, ref) < 1e-12


@pytest.mark.parametrize("mlp", [False, True])
def test_meta_backward_predictions_equal_task_losses(mlp):
    if mlp:
        model, (x_s, _, x_q, _) = tiny_mlp(seed=4), conv_batch(seed=4)
        x_s, x_q = x_s.flatten(2)[..., :1], x_q.flatten(2)[..., :1]
        batch, loss_fn = (x_s, x_s.sin(), x_q, x_q.sin()), F.mse_loss
    else:
        model, batch, loss_fn = tiny_convbn(seed=4), conv_batch(seed=4), F.cross_entropy
    maml = MAML(model, inner_lr=0.3, inner_steps=2)
    assert maml.uses_vmap() == mlp
    _, want = maml.task_losses(batch, loss_fn)
    loss, got = maml.meta_gradient(batch, loss_fn)
    assert got.shape == want.shape and not got.requires_grad and not loss.requires_grad
    assert torch.allclose(got, want.detach(), rtol=0, atol=1e-12)


def test_pretrain_meta_backward_is_its_own_objective():
    """Pretrain's objective has no inner loop: meta_backward must not inherit MAML's adaptation."""
    from metalib import Pretrain

    model = tiny_convbn(seed=6)
    batch = conv_batch(seed=6)
    learner = Pretrain(model, inner_lr=0.3, inner_steps=2)
    model.zero_grad()
    learner.meta_loss(batch, F.cross_entropy).backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    loss, preds = learner.meta_gradient(batch, F.cross_entropy)
    assert rel_error({n: p.grad for n, p in model.named_parameters()}, ref) < 1e-12
    assert preds.shape == (*batch[2].shape[:2], 3)
    maml_grad = meta_grad(MAML(model, inner_lr=0.3, inner_steps=2), batch)
    assert rel_error(maml_grad, ref) > 1e-3  # the two objectives differ, so the test can fail
