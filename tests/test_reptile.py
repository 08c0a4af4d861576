"""Reptile against its update formula, worked by hand on a model whose gradient is known in closed form."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metalib import Reptile


def linear_model(w0: float) -> nn.Linear:
    m = nn.Linear(1, 1, bias=False).double()
    with torch.no_grad():
        m.weight.fill_(w0)
    return m


def sgd_by_hand(w, x, y, lr, steps):
    # L(w) = mean((w x - y)^2)  =>  dL/dw = 2 mean(x (w x - y))
    for _ in range(steps):
        w = w - lr * 2 * torch.mean(x * (w * x - y))
    return w


def test_meta_step_equals_the_formula():
    w0, lr, eps, k = 0.5, 0.1, 0.3, 3
    x = torch.tensor([[[1.0], [2.0]], [[-1.0], [0.5]]], dtype=torch.float64)   # [2 tasks, 2, 1]
    y = torch.tensor([[[2.0], [4.0]], [[1.0], [-0.5]]], dtype=torch.float64)   # task 0: y = 2x, task 1: y = -x
    model = linear_model(w0)
    Reptile(model, inner_lr=lr, inner_steps=k, outer_lr=eps).meta_step((x, y, x, y), F.mse_loss)
    phis = [sgd_by_hand(torch.tensor(w0, dtype=torch.float64), x[t, :, 0], y[t, :, 0], lr, k) for t in range(2)]
    expected = w0 + eps * (sum(phis) / 2 - w0)
    assert model.weight.item() == pytest.approx(float(expected), rel=1e-12)
    # and the Reptile "gradient" theta - mean(phi) is left in .grad
    assert model.weight.grad.item() == pytest.approx(float(w0 - sum(phis) / 2), rel=1e-12)


def test_one_task_one_step_full_interpolation_is_sgd():
    # With T = 1, k = 1 and eps = 1, Reptile is exactly one SGD step on the task.
    model = linear_model(-0.2)
    x = torch.tensor([[[0.5], [1.5], [-2.0]]], dtype=torch.float64)
    y = 3 * x
    Reptile(model, inner_lr=0.05, inner_steps=1, outer_lr=1.0).meta_step((x, y, x, y), F.mse_loss)
    expected = sgd_by_hand(torch.tensor(-0.2, dtype=torch.float64), x[0, :, 0], y[0, :, 0], 0.05, 1)
    assert model.weight.item() == pytest.approx(float(expected), rel=1e-12)


def test_adam_inner_loop_matches_torch_optim_adam():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    x = torch.randn(10, 1, dtype=torch.float64)
    y = torch.sin(x)
    phi = Reptile(model, inner_lr=0.01, inner_steps=4, inner_optimizer="adam").adapt(x, y, F.mse_loss)
    ref = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    ref.load_state_dict(model.state_dict())
    opt = torch.optim.Adam(ref.parameters(), lr=0.01, betas=(0.0, 0.999), eps=1e-8)
    for _ in range(4):
        opt.zero_grad()
        F.mse_loss(ref(x), y).backward()
        opt.step()
    for name, p in ref.named_parameters():
        torch.testing.assert_close(phi[name], p.detach(), rtol=1e-10, atol=1e-12)


def test_outer_lr_annealing_is_linear_to_zero():
    r = Reptile(nn.Linear(1, 1), outer_lr=1.0)
    assert r.annealed_outer_lr(0, 100) == 1.0
    assert r.annealed_outer_lr(50, 100) == pytest.approx(0.5)
    assert r.annealed_outer_lr(100, 100) == 0.0


@pytest.mark.parametrize("anneal, final", [(0, 0.0), (40, 0.0), (40, 0.25)])
def test_outer_schedule_anneals_over_anneal_iterations_then_holds(anneal, final):
    r = Reptile(nn.Linear(1, 1), outer_lr=1.0, outer_lr_final=final, anneal_iterations=anneal)
    opt = r.outer_optimizer(0.0)
    sched = r.outer_schedule(opt, 100)          # a run of 100 iterations
    seen = []
    for _ in range(100):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    total = anneal or 100
    want = [1.0 - min(i / total, 1.0) * (1.0 - final) for i in range(100)]
    assert seen == pytest.approx(want)
    with pytest.raises(ValueError, match="anneal_iterations must be an integer >= 0"):
        Reptile(nn.Linear(1, 1), anneal_iterations=-1)


def test_adapt_does_not_touch_the_model():
    model = linear_model(1.0)
    x = torch.ones(1, 4, 1, dtype=torch.float64)
    Reptile(model, inner_lr=0.1, inner_steps=5).adapt(x[0], 2 * x[0], F.mse_loss)
    assert model.weight.item() == 1.0


def test_vmap_and_loop_meta_steps_agree():
    from metalib import tasks

    batch = tasks.Sinusoid().sample(4, 5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    results = []
    for batching in ("loop", "vmap"):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1)).double()
        for opt in ("sgd", "adam"):
            Reptile(model, 0.02, 3, 0.5, inner_optimizer=opt, batching=batching).meta_step(batch, F.mse_loss)
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(results[0], results[1], rtol=1e-10, atol=1e-12)
