"""Exercise of ``06_maml_on_omniglot``: MAML's inner loop for classification (several steps, second order)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call, grad

from ...functional import inner_loop
from ...models import MLP
from .base import CheckFailed, Exercise, Feedback, Mistake, as_float, call_checked, close, run_check


def adapt_ce(model, params, x, y, lr, steps):
    """``steps`` SGD steps on the cross-entropy of ``model`` (run with ``params``) on ``(x, y)``;
    differentiable with respect to ``params`` through every step (second order)."""
    def loss(p):
        return F.cross_entropy(functional_call(model, p, (x,)), y)
    for _ in range(steps):
        g = grad(loss)(params)                       # differentiable: keeps the second-order path
        params = {name: p - lr * g[name] for name, p in params.items()}
    return params


def _case(seed: int, n_way: int = 3):
    torch.manual_seed(seed)
    model = MLP(4, (8,), n_way).double()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2 * n_way, 4, generator=gen, dtype=torch.float64)
    y = torch.arange(n_way).repeat(2)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    return model, params, x, y


def check_adapt_ce(fn: Callable) -> Feedback:
    """``adapt_ce(model, params, x, y, lr, steps)`` takes ``steps`` SGD steps on the cross-entropy of
    ``model`` (run with ``params``) and returns the adapted dict, differentiable with respect to
    ``params`` through every step. Compared with :func:`metalib.functional.inner_loop` — values and
    the gradient through the steps."""

    def body() -> str:
        cases = 0
        for seed, lr, steps in ((1, 0.1, 1), (0, 0.5, 3), (2, 0.3, 2)):
            model, params, x, y = _case(seed)
            before = {k: v.detach().clone() for k, v in params.items()}
            out = call_checked("adapt_ce", fn, model, params, x, y, lr, steps)
            if not isinstance(out, dict) or set(out) != set(params):
                raise CheckFailed("return a dict {name: tensor} with the same keys as params.")
            if any(not isinstance(v, Tensor) or v.shape != params[k].shape for k, v in out.items()):
                raise CheckFailed("every entry of the result must be a tensor of its parameter's shape.")
            if any(not torch.equal(params[k].detach(), before[k]) for k in params):
                raise CheckFailed("`params` was modified in place; build new dicts and leave θ alone.")
            ref, _ = inner_loop(model, params, {}, x, y, F.cross_entropy, lr, steps)
            got = {k: as_float(v) for k, v in out.items()}
            if not all(close(got[k], ref[k].detach()) for k in params):
                one, _ = inner_loop(model, params, {}, x, y, F.cross_entropy, lr, 1)
                g0 = {k: (before[k] - one[k].detach()) / lr for k in params}   # the gradient at θ
                if steps > 1 and all(close(got[k], one[k].detach()) for k in params):
                    raise CheckFailed(f"only one step was taken; take `steps` (here {steps}) steps, each from the "
                                      "result of the previous one.")
                if steps > 1 and all(close(got[k], before[k] - steps * lr * g0[k]) for k in params):
                    raise CheckFailed("the gradient was computed only once, at θ, and applied `steps` times: "
                                      "recompute it inside the loop, at the parameters of the previous step.")
                up, _ = inner_loop(model, params, {}, x, y, lambda a, b: -F.cross_entropy(a, b), lr, steps)
                if all(close(got[k], up[k].detach()) for k in params):
                    raise CheckFailed("wrong sign: gradient *descent* is φ − lr·∇L.")
                if all(close(got[k], before[k]) for k in params):
                    raise CheckFailed("the parameters did not move: return φ − lr·∇L after each step.")
                no_lr, _ = inner_loop(model, params, {}, x, y, F.cross_entropy, 1.0, steps)
                if all(close(got[k], no_lr[k].detach()) for k in params):
                    raise CheckFailed("the learning rate is missing: φ − lr·∇L.")
                err = max(float((got[k] - ref[k].detach()).abs().max()) for k in params)
                raise CheckFailed(f"the adapted parameters differ from {steps} SGD step{'s' if steps > 1 else ''} on the cross-entropy by up "
                                  f"to {err:.2e}. Is the loss F.cross_entropy(functional_call(model, p, (x,)), y) — "
                                  "the cross-entropy of the logits against the integer labels, not an MSE?")
            if any(not v.requires_grad for v in out.values()):
                raise CheckFailed("the result is detached from params: the outer loop cannot differentiate through "
                                  "the adaptation. Avoid .detach(), .data, torch.no_grad().")
            v = {k: torch.randn(p.shape, generator=torch.Generator().manual_seed(7), dtype=p.dtype)
                 for k, p in params.items()}

            def vjp(result):
                s = sum((result[k] * v[k]).sum() for k in params)
                g = torch.autograd.grad(s, list(params.values()), allow_unused=True, retain_graph=True)
                return [torch.zeros_like(p) if t is None else t for t, p in zip(g, params.values())]

            ref_g = vjp(ref)
            try:
                got_g = vjp(out)
            except RuntimeError as e:
                raise CheckFailed(f"could not differentiate through your result: {e}") from None
            if not all(close(a, b) for a, b in zip(got_g, ref_g)):
                if all(close(a, v[k]) for a, k in zip(got_g, params)):
                    raise CheckFailed("the values are right, but every inner gradient is treated as a constant "
                                      "(dφ/dθ = I): that is first-order MAML. For MAML keep the gradients in the "
                                      "graph (torch.func.grad does; torch.autograd.grad needs create_graph=True).")
                raise CheckFailed("the values are right, but the gradient through your steps differs from MAML's "
                                  "second-order one (is one of the steps detached?).")
            cases += 1
        return (f"matches metalib.functional.inner_loop with F.cross_entropy on {cases} cases (1-3 steps) — "
                "values and the second-order gradient through every step.")

    return run_check("adapt_ce", body)


# ---------------------------------------------------------------------------- common mistakes
def _mse(logits, y):
    return F.mse_loss(logits, F.one_hot(y, logits.shape[-1]).to(logits.dtype))


def _adapt(sign=-1.0, one_step=False, detach=False, loss=F.cross_entropy, no_lr=False, detach_out=False,
           gradient_once=False, inplace=False):
    def fn(model, params, x, y, lr, steps):
        def L(p):
            return loss(functional_call(model, p, (x,)), y)

        if inplace:
            out = adapt_ce(model, params, x, y, lr, steps)
            with torch.no_grad():
                for p in params.values():
                    p.add_(1.0)
            return out
        g = grad(L)(params)
        for _ in range(1 if one_step else steps):
            if not gradient_once:
                g = grad(L)(params)
            if detach:
                g = {k: v.detach() for k, v in g.items()}
            params = {k: p + sign * (1.0 if no_lr else lr) * g[k] for k, p in params.items()}
        return {k: v.detach() for k, v in params.items()} if detach_out else params
    return fn


EXERCISE = Exercise(
    name="adapt_ce", notebook="06_maml_on_omniglot", solution=adapt_ce, check=check_adapt_ce,
    mistakes=(
        Mistake("gradient ascent", _adapt(sign=+1.0), "wrong sign"),
        Mistake("one step only", _adapt(one_step=True), "only one step"),
        Mistake("the gradient computed once, at θ", _adapt(gradient_once=True), "computed only once"),
        Mistake("the inner gradients detached", _adapt(detach=True), "first-order MAML"),
        Mistake("the result detached", _adapt(detach_out=True), "detached"),
        Mistake("an MSE on one-hot labels", _adapt(loss=_mse), "not an MSE"),
        Mistake("the learning rate left out", _adapt(no_lr=True), "learning rate is missing"),
        Mistake("θ changed in place", _adapt(inplace=True), "modified in place"),
    ),
)
