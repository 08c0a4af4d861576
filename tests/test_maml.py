"""MAML's meta-gradient against independent computations."""
import pytest
import torch
import torch.nn.functional as F

from metalib import MAML, tasks
from _nets import finite_difference_grad, rel_error, tiny_convbn, tiny_mlp


def sinusoid_batch(n_tasks=3, k=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tasks.Sinusoid().sample(n_tasks, k, k, generator=g, dtype=torch.float64)


def meta_grad(maml, batch, loss_fn):
    maml.model.zero_grad()
    maml.meta_loss(batch, loss_fn).backward()
    return {n: p.grad.clone() for n, p in maml.model.named_parameters()}


def hand_unrolled_meta_grad(model, batch, lr, steps, first_order=False):
    """Independent implementation: an explicit tanh-MLP forward and torch.autograd.grad."""
    W1, b1, W2, b2 = [p for p in model.parameters()]

    def f(x, w1, c1, w2, c2):
        return torch.tanh(x @ w1.T + c1) @ w2.T + c2

    theta = [W1, b1, W2, b2]
    total = 0.0
    x_s, y_s, x_q, y_q = batch
    for t in range(x_s.shape[0]):
        phi = list(theta)
        for _ in range(steps):
            loss = ((f(x_s[t], *phi) - y_s[t]) ** 2).mean()
            grads = torch.autograd.grad(loss, phi, create_graph=not first_order)
            phi = [p - lr * g for p, g in zip(phi, grads)]
        total = total + ((f(x_q[t], *phi) - y_q[t]) ** 2).mean()
    total = total / x_s.shape[0]
    grads = torch.autograd.grad(total, theta)
    return dict(zip(["0.weight", "0.bias", "2.weight", "2.bias"], grads))


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("batching", ["loop", "vmap"])
def test_meta_gradient_matches_finite_differences(steps, batching):
    model = tiny_mlp()
    maml = MAML(model, inner_lr=0.1, inner_steps=steps, batching=batching)
    batch = sinusoid_batch()
    analytic = meta_grad(maml, batch, F.mse_loss)
    numeric = finite_difference_grad(lambda: maml.meta_loss(batch, F.mse_loss), dict(model.named_parameters()))
    assert rel_error(analytic, numeric) < 1e-6


@pytest.mark.parametrize("steps", [1, 3])
def test_meta_gradient_matches_hand_unrolled_autograd(steps):
    model = tiny_mlp(seed=1)
    batch = sinusoid_batch(seed=1)
    ours = meta_grad(MAML(model, inner_lr=0.1, inner_steps=steps), batch, F.mse_loss)
    ref = hand_unrolled_meta_grad(model, batch, 0.1, steps)
    assert rel_error(ours, ref) < 1e-10


@pytest.mark.parametrize("steps", [1, 3])
def test_first_order_matches_its_own_gradient_and_differs_from_second_order(steps):
    model = tiny_mlp(seed=2)
    batch = sinusoid_batch(seed=2)
    fo = meta_grad(MAML(model, inner_lr=0.1, inner_steps=steps, first_order=True), batch, F.mse_loss)

    # FOMAML by hand: adapt without any graph, then the plain gradient of the query loss at phi.
    x_s, y_s, x_q, y_q = batch
    expected = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for t in range(x_s.shape[0]):
        phi = {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()}
        for _ in range(steps):
            loss = F.mse_loss(torch.func.functional_call(model, phi, (x_s[t],)), y_s[t])
            g = torch.autograd.grad(loss, list(phi.values()))
            phi = {n: (p - 0.1 * gi).detach().requires_grad_() for (n, p), gi in zip(phi.items(), g)}
        q = F.mse_loss(torch.func.functional_call(model, phi, (x_q[t],)), y_q[t])
        for n, gi in zip(phi, torch.autograd.grad(q, list(phi.values()))):
            expected[n] += gi / x_s.shape[0]
    assert rel_error(fo, expected) < 1e-10
    assert rel_error(fo, hand_unrolled_meta_grad(model, batch, 0.1, steps, first_order=True)) < 1e-10

    so = meta_grad(MAML(model, inner_lr=0.1, inner_steps=steps), batch, F.mse_loss)
    assert rel_error(fo, so) > 1e-3  # the second-order terms are not negligible here


def test_meta_gradient_through_batchnorm_matches_finite_differences():
    model = tiny_convbn()
    g = torch.Generator().manual_seed(0)
    x_s = torch.randn(2, 6, 1, 5, 5, generator=g, dtype=torch.float64)
    x_q = torch.randn(2, 6, 1, 5, 5, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2]).repeat(2, 1)
    batch = (x_s, y, x_q, y)
    maml = MAML(model, inner_lr=0.5, inner_steps=2)
    assert not maml.uses_vmap()  # auto picks the loop for BatchNorm nets
    analytic = meta_grad(maml, batch, F.cross_entropy)
    numeric = finite_difference_grad(lambda: maml.meta_loss(batch, F.cross_entropy), dict(model.named_parameters()))
    assert rel_error(analytic, numeric) < 1e-6


def test_vmap_and_loop_agree():
    batch = sinusoid_batch(n_tasks=5)
    model = tiny_mlp(seed=3)
    for fo in (False, True):
        loop = meta_grad(MAML(model, 0.1, 2, first_order=fo, batching="loop"), batch, F.mse_loss)
        vm = meta_grad(MAML(model, 0.1, 2, first_order=fo, batching="vmap"), batch, F.mse_loss)
        assert rel_error(vm, loop) < 1e-10
    # first-order through BatchNorm is also right under vmap
    model = tiny_convbn(seed=3)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 6, 1, 5, 5, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2]).repeat(3, 1)
    loop = meta_grad(MAML(model, 0.5, 2, first_order=True, batching="loop"), (x, y, x, y), F.cross_entropy)
    vm = meta_grad(MAML(model, 0.5, 2, first_order=True, batching="vmap"), (x, y, x, y), F.cross_entropy)
    assert rel_error(vm, loop) < 1e-10


def test_vmap_with_second_order_batchnorm_equals_the_loop():
    """The batched path runs BatchNorm as plain tensor ops (tests/test_batched.py has the details),
    so second order through BatchNorm under vmap is now right, not refused."""
    model = tiny_convbn(seed=5)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 6, 1, 5, 5, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2]).repeat(3, 1)
    assert MAML(model, batching="vmap").uses_vmap()
    loop = meta_grad(MAML(model, 0.5, 2, batching="loop"), (x, y, x, y), F.cross_entropy)
    vm = meta_grad(MAML(model, 0.5, 2, batching="vmap"), (x, y, x, y), F.cross_entropy)
    assert rel_error(vm, loop) < 1e-10


def test_vmap_with_batchnorm_that_updates_running_stats_is_refused():
    net = _bn_net(True)  # track_running_stats, train mode: bn_mode="module" would update them
    with pytest.raises(ValueError, match="running statistics"):
        MAML(net, batching="vmap", bn_mode="module").uses_vmap()
    assert not MAML(net, bn_mode="module").uses_vmap()  # auto: the loop, never an error


def test_adapt_is_sgd_on_the_support_set():
    model = tiny_mlp(seed=4)
    x_s, y_s, _, _ = sinusoid_batch(n_tasks=1, seed=4)
    phi = MAML(model, inner_lr=0.05, inner_steps=1).adapt(x_s[0], y_s[0], F.mse_loss)
    loss = F.mse_loss(model(x_s[0]), y_s[0])
    grads = torch.autograd.grad(loss, list(model.parameters()))
    for (name, p), g in zip(model.named_parameters(), grads):
        torch.testing.assert_close(phi[name], p - 0.05 * g)
    # the adapted weights carry the graph back to the model (second order)
    assert all(t.requires_grad for t in phi.values())
    # zero steps return theta itself
    phi0 = MAML(model, inner_steps=0).adapt(x_s[0], y_s[0], F.mse_loss)
    for name, p in model.named_parameters():
        assert torch.equal(phi0[name], p)


def test_adaptation_lowers_the_support_loss():
    model = tiny_mlp(seed=5)
    x_s, y_s, _, _ = sinusoid_batch(n_tasks=1, k=10, seed=5)
    maml = MAML(model, inner_lr=0.05)
    before = F.mse_loss(maml.forward(maml.initial_params(), x_s[0]), y_s[0])
    after = F.mse_loss(maml.forward(maml.adapt(x_s[0], y_s[0], F.mse_loss, steps=10), x_s[0]), y_s[0])
    assert after < before


def _bn_net(track: bool):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2, track_running_stats=track), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(18, 3),
    )


def test_transductive_batchnorm_ignores_running_stats_and_changes_nothing():
    tracked, batchstats = _bn_net(True), _bn_net(False)
    batchstats.load_state_dict(tracked.state_dict(), strict=False)
    tracked.eval()
    tracked[1].running_mean.fill_(50.0)  # garbage that eval() would use
    tracked[1].running_var.fill_(1e-3)
    before = {k: v.clone() for k, v in tracked.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 1, 5, 5, generator=g)
    y = torch.tensor([0, 1, 2, 0, 1, 2]).repeat(2, 1)
    batch = (x, y, x, y)
    a = MAML(tracked, inner_lr=0.1).meta_loss(batch, F.cross_entropy)
    b = MAML(batchstats, inner_lr=0.1).meta_loss(batch, F.cross_entropy)
    torch.testing.assert_close(a, b)
    for k, v in tracked.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed"
    assert not tracked.training and tracked[1].track_running_stats  # module state restored
    # "module" mode honours eval(): the garbage running statistics are used, and the loss differs
    c = MAML(tracked, inner_lr=0.1, bn_mode="module").meta_loss(batch, F.cross_entropy)
    assert abs(float(c.detach()) - float(a.detach())) > 1e-2
