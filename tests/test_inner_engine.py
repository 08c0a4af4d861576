"""The inner loop's two gradient engines (torch.autograd.grad and torch.func.grad) give the same
adapted parameters and the same meta-gradient, and both match finite differences."""
import pytest
import torch
import torch.nn.functional as F
from torch.func import vmap

from metalib import MAML
from metalib.functional import buffers_of, forward, inner_loop, params_of, transductive_batchnorm
from _nets import conv_batch, finite_difference_grad, rel_error, tiny_convbn, tiny_mlp


def meta_objective(model, batch, engine, steps, first_order, lr=0.3):
    """The MAML objective with the given engine, in a plain task loop."""
    theta, buf = params_of(model), buffers_of(model)
    losses = []
    with transductive_batchnorm(model):
        for xs, ys, xq, yq in zip(*batch):
            phi, _ = inner_loop(model, theta, buf, xs, ys, F.cross_entropy, lr, steps, first_order, engine=engine)
            losses.append(F.cross_entropy(forward(model, phi, buf, xq), yq))
    return torch.stack(losses).mean()


def grads_of(model, loss):
    return dict(zip([n for n, _ in model.named_parameters()], torch.autograd.grad(loss, list(model.parameters()))))


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("steps", [1, 3])
def test_engines_agree_on_conv_batchnorm(steps, first_order):
    model = tiny_convbn(seed=steps)
    batch = conv_batch(seed=steps)
    a = grads_of(model, meta_objective(model, batch, "autograd", steps, first_order))
    f = grads_of(model, meta_objective(model, batch, "func", steps, first_order))
    assert rel_error(a, f) < 1e-12
    # second order differs from first order here, so the comparison above can tell them apart
    other = grads_of(model, meta_objective(model, batch, "func", steps, not first_order))
    assert rel_error(other, f) > 1e-3


def test_autograd_engine_meta_gradient_matches_finite_differences():
    model = tiny_convbn(seed=7)
    batch = conv_batch(n_tasks=2, seed=7)
    analytic = grads_of(model, meta_objective(model, batch, "autograd", 2, False))
    numeric = finite_difference_grad(lambda: meta_objective(model, batch, "autograd", 2, False),
                                     dict(model.named_parameters()))
    assert rel_error(analytic, numeric) < 1e-6


def test_maml_task_loop_uses_the_autograd_engine_and_equals_func(monkeypatch):
    import torch.func as tf

    import metalib.functional as functional_module

    calls = []
    real = functional_module.grad_and_value
    monkeypatch.setattr(functional_module, "grad_and_value", lambda *a, **k: calls.append(1) or real(*a, **k))
    model, batch = tiny_convbn(seed=2), conv_batch(seed=2)
    maml = MAML(model, inner_lr=0.3, inner_steps=2, batching="loop")
    default = grads_of(model, maml.meta_loss(batch, F.cross_entropy))
    assert not calls  # the task loop took its inner gradients with torch.autograd.grad
    assert tf.grad_and_value is real
    func = grads_of(model, meta_objective(model, batch, "func", 2, False))
    assert calls  # ... and the reference here with torch.func
    assert rel_error(default, func) < 1e-12


def test_no_grad_adaptation_has_no_history_and_same_values():
    model = tiny_convbn(seed=4)
    x_s, y_s, _, _ = conv_batch()
    theta, buf = params_of(model), buffers_of(model)
    with transductive_batchnorm(model):
        with torch.no_grad():
            a, la = inner_loop(model, theta, buf, x_s[0], y_s[0], F.cross_entropy, 0.3, 3, engine="autograd")
        f, lf = inner_loop(model, theta, buf, x_s[0], y_s[0], F.cross_entropy, 0.3, 3, engine="func")
    assert all(v.grad_fn is None and not v.requires_grad for v in a.values())
    assert torch.equal(la, lf)
    assert rel_error(a, {k: v.detach() for k, v in f.items()}) < 1e-12
    assert rel_error(a, {k: v.detach() for k, v in theta.items()}) > 1e-3  # it did adapt


def test_unused_parameter_gets_a_zero_inner_gradient():
    model = tiny_mlp(seed=1)
    theta = params_of(model)
    theta["spare"] = torch.ones(3, dtype=torch.float64, requires_grad=True)

    def loss_fn(pred, y):
        return F.mse_loss(pred, y)

    class WithSpare(torch.nn.Module):  # functional_call needs every name to exist on the module
        def __init__(self):
            super().__init__()
            self.net, self.spare = model, torch.nn.Parameter(theta["spare"].detach().clone())

        def forward(self, x):
            return self.net(x)

    wrapped = WithSpare()
    params = {("net." + k if k != "spare" else k): v for k, v in theta.items()}
    x = torch.linspace(-1, 1, 6, dtype=torch.float64)[:, None]
    for engine in ("autograd", "func"):
        phi, _ = inner_loop(wrapped, params, {}, x, torch.sin(x), loss_fn, 0.1, 2, engine=engine)
        assert torch.equal(phi["spare"].detach(), params["spare"].detach())


def test_auto_engine_runs_under_vmap():
    model = tiny_mlp(seed=0)
    theta = {k: v.detach() for k, v in params_of(model).items()}
    x = torch.randn(4, 5, 1, dtype=torch.float64)

    def one(xs):
        phi, _ = inner_loop(model, theta, {}, xs, torch.sin(xs), F.mse_loss, 0.1, 2)
        return phi["2.bias"]

    batched = vmap(one)(x)
    looped = torch.stack([inner_loop(model, theta, {}, xs, torch.sin(xs), F.mse_loss, 0.1, 2, engine="autograd")[0]["2.bias"]
                          for xs in x])
    assert torch.allclose(batched, looped.detach(), rtol=0, atol=1e-12)


def test_bad_engine_is_refused():
    model = tiny_mlp()
    x = torch.zeros(3, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="engine"):
        inner_loop(model, params_of(model), {}, x, x, F.mse_loss, 0.1, 1, engine="jax")


def test_support_grad_engines_agree_and_first_order_has_no_history():
    from metalib.functional import support_grad

    model = tiny_convbn(seed=9)
    x_s, y_s, _, _ = conv_batch(seed=9)
    theta, buf = params_of(model), buffers_of(model)
    with transductive_batchnorm(model):
        out = {(e, c): support_grad(model, theta, buf, x_s[0], y_s[0], F.cross_entropy, c, engine=e)
               for e in ("autograd", "func") for c in (False, True)}
    for c in (False, True):
        ga, la = out["autograd", c]
        gf, lf = out["func", c]
        detached = lambda g: {k: v.detach() for k, v in g.items()}  # noqa: E731
        assert torch.equal(la, lf) and rel_error(detached(ga), detached(gf)) < 1e-12
        assert all(g.requires_grad == c for g in ga.values())  # second order keeps the history
    assert float(sum(g.abs().sum() for g in out["autograd", False][0].values())) > 0


@pytest.mark.parametrize("first_order", [False, True])
def test_func_engine_under_vmap_with_plain_batchnorm_equals_the_autograd_loop(first_order):
    """The batched path's engine: torch.func.grad under vmap, BatchNorm as plain tensor ops
    (metalib.engine.plain_batchnorm), against the task loop's torch.autograd.grad through
    F.batch_norm — the same meta-gradient in float64, 3 inner steps."""
    from metalib.engine import plain_batchnorm

    model, batch = tiny_convbn(seed=11), conv_batch(seed=11)
    theta, buf = params_of(model), buffers_of(model)

    def one(xs, ys, xq, yq):
        phi, _ = inner_loop(model, theta, buf, xs, ys, F.cross_entropy, 0.3, 3, first_order, engine="func")
        return F.cross_entropy(forward(model, phi, buf, xq), yq)

    with transductive_batchnorm(model), plain_batchnorm(model):
        batched = grads_of(model, vmap(one)(*batch).mean())
    loop = grads_of(model, meta_objective(model, batch, "autograd", 3, first_order))
    assert rel_error(batched, loop) < 1e-12


# ============================================================================ every speed path = the plain function
def plain_meta_grad(learner, batch, query_loss_of_task):
    """The meta-gradient written as the paper states it: the mean over tasks of the plain one-task
    function (maml.query_loss / anil.query_loss / metasgd.query_loss), in a Python loop, one backward."""
    from metalib.functional import transductive_batchnorm

    with transductive_batchnorm(learner.model):
        loss = torch.stack([query_loss_of_task(task)[0] for task in zip(*batch)]).mean()
    params = dict(learner.named_parameters())
    return dict(zip(params, torch.autograd.grad(loss, list(params.values()))))


def engine_meta_grad(learner, batch):
    learner.zero_grad(set_to_none=True)
    learner.meta_backward(batch)
    return {k: p.grad.clone() for k, p in learner.named_parameters()}


@pytest.mark.parametrize("path", ["loop", "vmap", "recompute"])
@pytest.mark.parametrize("algorithm", ["maml", "fomaml", "anil", "metasgd"])
def test_every_engine_path_equals_the_plain_one_task_function(algorithm, path):
    """float64: MAML, FOMAML, ANIL and Meta-SGD trained by the engine (vmap over tasks with plain
    BatchNorm, the task loop with a per-task backward, checkpointed inner steps) give the meta-gradient
    of the file's plain ``query_loss`` averaged over the tasks."""
    from metalib.algorithms import ANIL, MetaSGD, anil, maml, metasgd

    model, batch = tiny_convbn(seed=5), conv_batch(seed=5)
    fo = algorithm == "fomaml"
    opts = dict(inner_steps=2, first_order=fo, batching="vmap" if path == "vmap" else "loop",
                recompute_steps=path == "recompute")
    buf = buffers_of(model)
    if algorithm in ("maml", "fomaml"):
        learner = MAML(model, inner_lr=0.3, **opts)
        plain = lambda t: maml.query_loss(model, params_of(model), buf, t, F.cross_entropy, 0.3, 2, fo)  # noqa: E731
    elif algorithm == "anil":
        learner = ANIL(model, inner_lr=0.3, head="4.", **opts)
        plain = lambda t: anil.query_loss(model, params_of(model), buf, t, F.cross_entropy, 0.3, 2, head="4.")  # noqa: E731
    else:
        learner = MetaSGD(model, alpha_init=(0.1, 0.4), **opts).double()
        plain = lambda t: metasgd.query_loss(model, params_of(model), learner.learning_rates(), buf, t,  # noqa: E731
                                             F.cross_entropy, 2)
    assert learner.uses_vmap() == (path == "vmap")
    want = plain_meta_grad(learner, batch, plain)
    got = engine_meta_grad(learner, batch)
    assert set(got) == set(want)
    assert rel_error(got, want) < 1e-12
    if algorithm != "fomaml":  # the comparison can tell second order from first order
        first = MAML(model, inner_lr=0.3, inner_steps=2, first_order=True) if algorithm == "maml" else None
        if first is not None:
            assert rel_error(engine_meta_grad(first, batch), want) > 1e-3
