"""Exercise of ``08_compare_and_next``: ANIL's inner loop — adapt the head only."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch.func import functional_call

from ...functional import buffers_of, inner_loop
from ...models import Conv4
from .base import CheckFailed, Exercise, Feedback, Mistake, call_checked, close, run_check


def anil_adapt(model, params, x_s, y_s, lr, steps):
    """``steps`` SGD steps on the support cross-entropy for the parameters named ``head.*`` only;
    returns the full dict, the body unchanged."""
    head = {k: v for k, v in params.items() if k.startswith("head.")}
    body = {k: v for k, v in params.items() if not k.startswith("head.")}
    frozen = {**buffers_of(model), **body}          # the body rides along as constants of the inner loop
    phi, _ = inner_loop(model, head, frozen, x_s, y_s, F.cross_entropy, lr, steps)
    return {**params, **phi}


def _unrolled(model, params, x, y, lr, steps):
    """The head after ``steps`` SGD steps, written out with torch.autograd (independent of inner_loop)."""
    head = {k: v.detach().clone().requires_grad_(True) for k, v in params.items() if k.startswith("head.")}
    body = {k: v.detach() for k, v in params.items() if not k.startswith("head.")}
    for _ in range(steps):
        loss = F.cross_entropy(functional_call(model, {**body, **head}, (x,)), y)
        g = torch.autograd.grad(loss, list(head.values()))
        head = {k: (v - lr * gk).detach().requires_grad_(True) for (k, v), gk in zip(head.items(), g)}
    return {k: v.detach() for k, v in head.items()}


def check_anil_adapt(fn: Callable) -> Feedback:
    """``anil_adapt(model, params, x_s, y_s, lr, steps)`` takes ``steps`` SGD steps on the support
    cross-entropy **for the head's parameters only** (names starting with ``"head."``) and returns the
    full params dict, body unchanged. Compared with the steps written out with ``torch.autograd``."""

    def body() -> str:
        torch.manual_seed(0)
        model = Conv4(1, n_classes=3, hidden=4, image_size=16)
        params = {k: v.detach().clone() for k, v in model.named_parameters()}
        g = torch.Generator().manual_seed(1)
        x, y = torch.rand(6, 1, 16, 16, generator=g), torch.arange(3).repeat(2)
        lr, steps = 0.5, 2
        out = call_checked("anil_adapt", fn, model, dict(params), x, y, lr, steps)
        if not isinstance(out, dict) or set(out) != set(params):
            raise CheckFailed("return a dict with the same names as params (all of them, body included).")
        for k, v in params.items():
            if not k.startswith("head.") and not close(out[k].detach(), v):
                raise CheckFailed(f"{k} changed: ANIL adapts only the head; the body stays at theta.")
        want, one = _unrolled(model, params, x, y, lr, steps), _unrolled(model, params, x, y, lr, 1)
        up = _unrolled(model, params, x, y, -lr, steps)
        no_lr = _unrolled(model, params, x, y, 1.0, steps)
        got = {k: out[k].detach() for k in want}
        if all(close(got[k], want[k], 1e-4) for k in want):
            return "the head moved exactly as two SGD steps on the support loss; the body stayed put."
        if all(close(got[k], params[k]) for k in want):
            raise CheckFailed("the head did not change: take the SGD steps on the head's parameters.")
        if all(close(got[k], one[k], 1e-4) for k in want):
            raise CheckFailed("you took one step; take `steps` of them (recompute the gradient each time).")
        if all(close(got[k], up[k], 1e-4) for k in want):
            raise CheckFailed("wrong sign: gradient *descent* is head − lr·∇L.")
        if all(close(got[k], no_lr[k], 1e-4) for k in want):
            raise CheckFailed("the learning rate is missing: head − lr·∇L.")
        raise CheckFailed("the head differs from two SGD steps of lr 0.5 on the support cross-entropy "
                          "(the loss of the whole network — body included — on the support set, "
                          "differentiated with respect to the head's parameters only).")

    return run_check("anil_adapt", body)


# ---------------------------------------------------------------------------- common mistakes
def _anil(only_head=True, steps_taken=None, lr_scale=None, sign=1.0, head_only_out=False):
    def fn(model, params, x_s, y_s, lr, steps):
        moving = {k: v for k, v in params.items() if k.startswith("head.") or not only_head}
        rest = {**buffers_of(model), **{k: v for k, v in params.items() if k not in moving}}
        loss = F.cross_entropy if sign > 0 else (lambda a, b: -F.cross_entropy(a, b))
        step = lr if lr_scale is None else lr_scale
        new, _ = inner_loop(model, moving, rest, x_s, y_s, loss, step, steps_taken or steps)
        return new if head_only_out else {**params, **new}
    return fn


EXERCISE = Exercise(
    name="anil_adapt", notebook="08_compare_and_next", solution=anil_adapt, check=check_anil_adapt,
    mistakes=(
        Mistake("every weight adapted (that is MAML)", _anil(only_head=False), "adapts only the head"),
        Mistake("one step only", _anil(steps_taken=1), "one step"),
        Mistake("the head alone returned", _anil(head_only_out=True), "body included"),
        Mistake("gradient ascent", _anil(sign=-1.0), "wrong sign"),
        Mistake("the learning rate left out", _anil(lr_scale=1.0), "learning rate is missing"),
    ),
)
