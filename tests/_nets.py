"""Tiny networks for gradient checks (float64-friendly, fast under finite differences)."""
import torch
from torch import nn


def tiny_mlp(seed: int = 0, dtype=torch.float64) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(1, 4), nn.Tanh(), nn.Linear(4, 1)).to(dtype)


def tiny_convbn(seed: int = 0, n_classes: int = 3, dtype=torch.float64) -> nn.Sequential:
    """Conv2d -> BatchNorm2d -> ReLU -> Linear: the shape of Conv-4, small enough for finite differences."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False), nn.Tanh(),
        nn.Flatten(), nn.Linear(2 * 3 * 3, n_classes),
    ).to(dtype)


def finite_difference_grad(f, params: dict, h: float = 1e-6) -> dict:
    """Central differences of the scalar f() with respect to every element of every tensor in params."""
    out = {}
    with torch.no_grad():
        for name, p in params.items():
            g = torch.zeros_like(p)
            flat, gflat = p.view(-1), g.view(-1)
            for i in range(flat.numel()):
                old = flat[i].item()
                flat[i] = old + h
                up = float(f())
                flat[i] = old - h
                down = float(f())
                flat[i] = old
                gflat[i] = (up - down) / (2 * h)
            out[name] = g
    return out


def rel_error(a: dict, b: dict) -> float:
    num = sum(((a[k] - b[k]) ** 2).sum() for k in a) ** 0.5
    den = sum((b[k] ** 2).sum() for k in b) ** 0.5
    return float(num / den)


def synthetic_images(n_classes: int = 10, per_class: int = 8, size: int = 16, seed: int = 0) -> torch.Tensor:
    """uint8 ``[C, P, 1, size, size]``: a per-class pattern plus noise (learnable, not trivial)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n_classes, 1, 1, size, size, generator=g)
    noise = torch.rand(n_classes, per_class, 1, size, size, generator=g)
    return ((0.7 * base + 0.3 * noise) * 255).to(torch.uint8)


def tiny_conv4(n_classes=None, seed: int = 0, size: int = 16):
    """A Conv-4 with 8 filters for 1 x size x size images (``n_classes=None``: no head, for ProtoNet)."""
    from metalib.models import Conv4

    torch.manual_seed(seed)
    return Conv4(in_channels=1, n_classes=n_classes, hidden=8, image_size=size)


def conv_batch(n_tasks: int = 3, seed: int = 0):
    """A float64 3-way batch for :func:`tiny_convbn`: ``(x_s [T, 6, 1, 5, 5], y_s, x_q [T, 9, 1, 5, 5], y_q)``."""
    g = torch.Generator().manual_seed(seed)
    x_s = torch.randn(n_tasks, 6, 1, 5, 5, generator=g, dtype=torch.float64)
    x_q = torch.randn(n_tasks, 9, 1, 5, 5, generator=g, dtype=torch.float64)
    y_s = torch.arange(3).repeat_interleave(2).repeat(n_tasks, 1)
    y_q = torch.arange(3).repeat_interleave(3).repeat(n_tasks, 1)
    return x_s, y_s, x_q, y_q


def directional_fd(loss, params, grads, directions=8, h=1e-6, seed=0):
    """``(analytic, numeric)`` derivatives of ``loss()`` along random directions in the space of all
    ``params`` at once — ``grads`` (the gradient under test) dotted with each direction, and central
    differences of ``loss`` in float64 — so every weight takes part in every comparison."""
    g = torch.Generator().manual_seed(seed)
    analytic, numeric = [], []
    for _ in range(directions):
        d = {k: torch.randn(p.shape, generator=g, dtype=p.dtype) for k, p in params.items()}
        analytic.append(sum(float((grads[k] * d[k]).sum()) for k in params))
        with torch.no_grad():
            for k, p in params.items():
                p.add_(h * d[k])
            up = float(loss())
            for k, p in params.items():
                p.sub_(2 * h * d[k])
            down = float(loss())
            for k, p in params.items():
                p.add_(h * d[k])
        numeric.append((up - down) / (2 * h))
    return torch.tensor(analytic, dtype=torch.float64), torch.tensor(numeric, dtype=torch.float64)


# the arguments of a tiny ProtoNet run of scripts/train_fewshot.py on the synthetic splits of `train_fewshot_cli`
TINY_RUN_ARGS = ["--algorithm", "protonet", "--way", "3", "--shot", "1", "--iterations", "2", "--hidden", "8",
                 "--train-way", "4", "--train-query", "2", "--test-query", "2", "--val-every", "2",
                 "--val-episodes", "2", "--test-episodes", "4", "--no-progress", "--threads", "1"]
