"""Meta-SGD against MAML (constant α), finite differences (the α meta-gradient) and a short training run."""
import pytest
import torch
import torch.nn.functional as F

from metalib import MAML, tasks
from metalib.algorithms import MetaSGD, get
from metalib.algorithms.metasgd import alpha_key, check_alpha_init
from metalib.fewshot import default_config
from metalib.functional import params_of
from metalib.models import sinusoid_mlp
from metalib.pretrained import pretrained, save_pretrained
from _nets import conv_batch, finite_difference_grad, rel_error, tiny_convbn, tiny_mlp


def sinusoid_batch(n_tasks=3, k=5, seed=0, dtype=torch.float64):
    return tasks.Sinusoid().sample(n_tasks, k, k, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def meta_grads(learner, batch, loss_fn):
    learner.zero_grad()
    learner.meta_backward(batch, loss_fn)
    return {n: p.grad.clone() for n, p in learner.named_parameters()}


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("case", ["mlp-loop", "mlp-vmap", "convbn-loop"])
def test_constant_alpha_is_exactly_maml(case, first_order):
    """Every α = c: the same adapted parameters and the same meta-gradient of θ as MAML with inner lr c —
    bit for bit (float64; the step θ − c·g is the same arithmetic whether c is a number or a tensor of c's)."""
    lr, steps = 0.07, 2
    if case.startswith("mlp"):
        make, batch, loss = tiny_mlp, sinusoid_batch(), F.mse_loss
        batching = case.split("-")[1]
    else:
        make, batch, loss, batching = (lambda: tiny_convbn(seed=0)), conv_batch(), F.cross_entropy, "loop"
    maml = MAML(make(), inner_lr=lr, inner_steps=steps, first_order=first_order, batching=batching)
    msgd = MetaSGD(make(), inner_steps=steps, first_order=first_order, alpha_init=lr, batching=batching).double()
    msgd.model.load_state_dict(maml.model.state_dict())
    x_s, y_s = batch[0][0], batch[1][0]
    a, b = maml.adapt(x_s, y_s, loss), msgd.adapt(x_s, y_s, loss)
    assert all(torch.equal(a[k], b[k]) for k in a)
    ga, gb = meta_grads(maml, batch, loss), meta_grads(msgd, batch, loss)
    for n in ga:
        assert torch.equal(ga[n], gb[n]), n  # "model.<name>" in both learners


@pytest.mark.parametrize("steps,first_order", [(1, False), (2, False), (1, True)])
def test_alpha_meta_gradient_matches_finite_differences(steps, first_order):
    """Float64 central differences. First order with one step is exact for α (∂φ/∂α = −∇L(θ), which FO keeps);
    with more steps FO drops how later gradients depend on α, so it is not compared there."""
    torch.manual_seed(3)
    msgd = MetaSGD(tiny_mlp(seed=2), inner_steps=steps, first_order=first_order, alpha_init=(0.02, 0.2)).double()
    batch = sinusoid_batch(seed=4)
    analytic = meta_grads(msgd, batch, F.mse_loss)
    alpha = dict(msgd.alpha.items())
    numeric = finite_difference_grad(lambda: msgd.meta_loss(batch, F.mse_loss), alpha)
    assert rel_error({k: analytic[f"alpha.{k}"] for k in alpha}, numeric) < 1e-7
    if not first_order:  # θ's meta-gradient too (second order: the full derivative)
        theta = dict(msgd.model.named_parameters())
        numeric = finite_difference_grad(lambda: msgd.meta_loss(batch, F.mse_loss), theta)
        assert rel_error({k: analytic[f"model.{k}"] for k in theta}, numeric) < 1e-7


def test_checkpointed_inner_steps_give_the_same_meta_gradient_of_theta_and_alpha():
    """``recompute_steps`` (MAML's gradient checkpointing) recomputes each step in backward(): α, captured by
    the step rather than passed to it, must still receive its gradient — the same one."""
    batch, out = sinusoid_batch(), []
    for recompute in (False, True):
        torch.manual_seed(0)
        msgd = MetaSGD(tiny_mlp(), inner_steps=3, recompute_steps=recompute, batching="loop").double()
        out.append(meta_grads(msgd, batch, F.mse_loss))
    assert set(out[0]) == set(out[1]) and any(k.startswith("alpha.") for k in out[0])
    for k in out[0]:
        assert torch.allclose(out[0][k], out[1][k], rtol=0, atol=1e-14), k


def test_alpha_has_every_parameters_shape_and_the_papers_initial_range():
    torch.manual_seed(0)
    msgd = MetaSGD(sinusoid_mlp())
    lr = msgd.learning_rates()
    assert list(lr) == list(params_of(msgd.model))
    for n, p in params_of(msgd.model).items():
        assert lr[n].shape == p.shape and lr[n] is msgd.alpha[alpha_key(n)]
    flat = torch.cat([a.flatten() for a in lr.values()])
    assert flat.min() >= 0.005 and flat.max() <= 0.1 and flat.std() > 0.01  # uniform in [0.005, 0.1]
    ids = {id(p) for p in msgd.parameters()}
    assert all(id(a) in ids for a in lr.values()) and all(id(p) in ids for p in msgd.model.parameters())


def test_the_outer_optimiser_trains_alpha():
    torch.manual_seed(0)
    msgd = MetaSGD(tiny_mlp(dtype=torch.float32), loss_fn=F.mse_loss)
    before = {k: v.detach().clone() for k, v in msgd.alpha.items()}
    opt = msgd.outer_optimizer(1e-2)
    msgd.train_step(sinusoid_batch(dtype=torch.float32), opt)
    assert all(not torch.equal(before[k], v) for k, v in msgd.alpha.items())


def test_learned_alpha_is_saved_and_restored(tmp_path):
    torch.manual_seed(0)
    msgd = MetaSGD(sinusoid_mlp(), loss_fn=F.mse_loss)
    with torch.no_grad():
        for a in msgd.alpha.values():
            a.mul_(-3.0)  # something the constructor would never produce
    info = {"learner": {"algorithm": "metasgd", "settings": {"inner_steps": 1, "loss_fn": "mse_loss"}}}
    save_pretrained("toy-metasgd", msgd, info=info, directory=tmp_path)
    back = pretrained("toy-metasgd", directory=tmp_path)
    assert isinstance(back, MetaSGD)
    for k, v in msgd.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k


def test_bad_input_gets_one_clear_error():
    with pytest.raises(ValueError, match="alpha_init"):
        MetaSGD(sinusoid_mlp(), alpha_init=(0.1, 0.01))
    with pytest.raises(TypeError, match="alpha_init"):
        check_alpha_init("fast")
    with pytest.raises(ValueError, match="alpha_init"):
        default_config("metasgd", inner_lr=0.4)
    cfg = default_config("metasgd", iterations=1)
    assert cfg.inner_steps == 1 and cfg.test_inner_steps == 1
    assert isinstance(get("metasgd", sinusoid_mlp(), alpha_init=0.3), MetaSGD)


def test_meta_sgd_learns_on_sinusoids():
    """400 meta-iterations (about 10 s): the one-step query MSE on 200 seeded test tasks drops by half."""
    from metalib.training import meta_train

    torch.manual_seed(0)
    msgd = MetaSGD(sinusoid_mlp(), loss_fn=F.mse_loss)
    test = tasks.Sinusoid().sample(200, 10, 20, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        before = float(msgd.task_losses(test, steps=1)[0].mean())
    gen = torch.Generator().manual_seed(1)
    meta_train(msgd, lambda: tasks.Sinusoid().sample(25, 10, 10, generator=gen), 400, F.mse_loss,
               meta_lr=3e-3, progress=False)
    with torch.no_grad():
        after = float(msgd.task_losses(test, steps=1)[0].mean())
    assert after < 0.5 * before, (before, after)
