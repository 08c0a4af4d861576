"""Reference MAML implementations written the way other code bases write them, for comparison.

Most course code, and learn2learn's ``clone()``/``adapt()``, write MAML like this: per task,
:func:`torch.autograd.grad` with ``create_graph=True`` over a *list* of parameters, a functional
forward with the adapted list, and one ``backward()`` per task that accumulates the meta-gradient in
``.grad`` (the tasks' graphs are freed one by one). :func:`textbook_meta_step` is that loop;
:func:`higher_meta_step` is the same objective with the ``higher`` library (Grefenstette et al.
2019), if it is installed (``pip install --no-deps higher``; it is pure Python). metalib's
:class:`~metalib.MAML` differs in the places ``benchmarks/README.md`` measures: parameters as dicts,
``vmap`` over the tasks of MLPs, and on the CPU the trainers' allocator setting
(:func:`metalib.device.tune_cpu_allocator`).

Both fill ``model``'s ``.grad`` with the meta-gradient of the MAML objective (Finn et al. 2017,
eq. 2-3 with eq. 1 as the inner step)

.. math:: \\nabla_\\theta \\frac{1}{T}\\sum_i \\mathcal{L}^{q}_i\\big(f_{\\phi_i(\\theta)}\\big), \\qquad
          \\phi_i = \\theta - \\alpha \\nabla_\\theta \\mathcal{L}^{s}_i(f_\\theta) \\text{ (repeated)}

and return the mean query loss (detached). The benchmark (``benchmarks/bench_peers.py``) and the
tests check that they agree with metalib's meta-gradient before any time is compared.
"""
from __future__ import annotations

import importlib
from typing import List, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call

from metalib.batch import as_batch
from metalib.functional import LossFn, batchnorm_context, check_positive, check_steps

__all__ = ["textbook_meta_step", "higher_meta_step", "higher_available", "textbook_protonet_step"]


def _check(model: nn.Module, inner_lr: float, steps: int) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_positive("inner_lr", inner_lr)
    check_steps("steps", steps)


def textbook_meta_step(
    model: nn.Module,
    batch: Sequence[Tensor],
    loss_fn: LossFn,
    inner_lr: float,
    steps: int = 1,
    first_order: bool = False,
    bn_mode: str = "transductive",
) -> Tensor:
    """One MAML meta-gradient, the textbook way; adds it to ``model``'s ``.grad`` (zero them first).

    Args:
        batch: ``(x_s [T, n_s, ...], y_s [T, n_s, ...], x_q [T, n_q, ...], y_q [T, n_q, ...])``.
        first_order: inner gradients without ``create_graph`` (FOMAML: d phi / d theta = I).
        bn_mode: as :class:`~metalib.MAML` (``"transductive"``: BatchNorm uses batch statistics).
    Returns:
        the mean query loss over the tasks, detached (a 0-dim tensor).
    """
    _check(model, inner_lr, steps)
    x_s, y_s, x_q, y_q = as_batch(batch)
    T = x_s.shape[0]
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    names: List[str] = [n for n, _ in named]
    theta: List[Tensor] = [p for _, p in named]
    buffers = dict(model.named_buffers())

    def f(params: List[Tensor], x: Tensor) -> Tensor:
        return functional_call(model, ({**dict(zip(names, params)), **buffers}), (x,))

    total = x_s.new_zeros(())
    with batchnorm_context(model, bn_mode):
        for t in range(T):
            fast = list(theta)
            for _ in range(steps):
                support = loss_fn(f(fast, x_s[t]), y_s[t])
                grads = torch.autograd.grad(support, fast, create_graph=not first_order)
                fast = [p - inner_lr * g for p, g in zip(fast, grads)]
            query = loss_fn(f(fast, x_q[t]), y_q[t]) / T
            query.backward()  # frees this task's graph before the next task (learn2learn's examples)
            total = total + query.detach()
    return total


def higher_available() -> bool:
    """Whether the ``higher`` library can be imported."""
    try:
        importlib.import_module("higher")
    except Exception:  # ImportError, or an incompatibility with this torch
        return False
    return True


def higher_meta_step(
    model: nn.Module,
    batch: Sequence[Tensor],
    loss_fn: LossFn,
    inner_lr: float,
    steps: int = 1,
    first_order: bool = False,
    bn_mode: str = "transductive",
) -> Tensor:
    """One MAML meta-gradient with ``higher.innerloop_ctx`` (its MAML example's structure: per task
    a differentiable SGD optimiser, ``diffopt.step`` on the support loss, query ``backward()``);
    adds it to ``model``'s ``.grad``. First order: the inner gradients are detached with
    ``grad_callback``. Raises ``ImportError`` if ``higher`` is not installed."""
    import higher

    _check(model, inner_lr, steps)
    x_s, y_s, x_q, y_q = as_batch(batch)
    T = x_s.shape[0]
    inner_opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=inner_lr)
    callback = (lambda gs: [g.detach() for g in gs]) if first_order else None
    total = x_s.new_zeros(())
    with batchnorm_context(model, bn_mode):
        for t in range(T):
            with higher.innerloop_ctx(model, inner_opt, copy_initial_weights=False) as (fmodel, diffopt):
                for _ in range(steps):
                    diffopt.step(loss_fn(fmodel(x_s[t]), y_s[t]), grad_callback=callback)
                query = loss_fn(fmodel(x_q[t]), y_q[t]) / T
                query.backward()
                total = total + query.detach()
    return total


def textbook_protonet_step(encoder: nn.Module, x_s: Tensor, x_q: Tensor, n_way: int) -> Tensor:
    """One Prototypical Networks loss + ``backward()`` written as Snell et al.'s reference code does:
    one forward of support and query together, prototypes as the mean over a ``[n_way, k_shot, d]``
    view (the support must be class-major: K images of class 0, then of class 1, ...), squared
    Euclidean distances by broadcasting, ``log_softmax`` of their negatives, NLL of the query
    (also class-major, ``n_query`` per class). Adds the gradient to ``encoder``'s ``.grad``.

    Args:
        x_s: ``[n_way * k_shot, ...]``; x_q: ``[n_way * n_query, ...]``.
    Returns:
        the loss, detached.
    """
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"encoder must be a torch.nn.Module, got {type(encoder).__name__}")
    if n_way < 1 or x_s.shape[0] % n_way or x_q.shape[0] % n_way:
        raise ValueError(f"support ({x_s.shape[0]}) and query ({x_q.shape[0]}) sizes must be multiples of n_way={n_way}")
    k_shot, n_query = x_s.shape[0] // n_way, x_q.shape[0] // n_way
    z = encoder(torch.cat([x_s, x_q])).flatten(1)
    protos = z[: n_way * k_shot].view(n_way, k_shot, -1).mean(1)
    zq = z[n_way * k_shot:]
    dists = (zq.unsqueeze(1) - protos.unsqueeze(0)).pow(2).sum(2)
    log_p = torch.log_softmax(-dists, dim=1).view(n_way, n_query, n_way)
    target = torch.arange(n_way, device=z.device).view(n_way, 1, 1).expand(n_way, n_query, 1)
    loss = -log_p.gather(2, target).mean()
    loss.backward()
    return loss.detach()
