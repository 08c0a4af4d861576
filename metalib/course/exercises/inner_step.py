"""Exercise of ``02_maml_from_scratch``: MAML's inner step, differentiable (second order)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call, grad

from ...functional import inner_loop
from ...models import MLP
from .base import CheckFailed, Exercise, Feedback, Mistake, as_float, call_checked, close, run_check


def inner_step(model, params, x, y, lr):
    """One MAML inner step, φ = θ − lr·∇θ MSE(f_θ(x), y), kept differentiable with respect to θ."""
    def support_loss(p):
        return F.mse_loss(functional_call(model, p, (x,)), y)
    g = grad(support_loss)(params)
    return {name: p - lr * g[name] for name, p in params.items()}


def _case(seed: int):
    torch.manual_seed(seed)
    model = MLP(1, (8, 8), 1).double()
    gen = torch.Generator().manual_seed(seed)
    n = 5 + seed
    x = torch.rand(n, 1, generator=gen, dtype=torch.float64) * 10 - 5
    y = 2 * torch.sin(x - 0.5)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    return model, params, x, y


def check_inner_step(fn: Callable) -> Feedback:
    """``inner_step(model, params, x, y, lr)`` takes one SGD step on the MSE of ``model`` (run with
    ``params``) on ``(x, y)`` and returns the new params dict, differentiable with respect to
    ``params`` — second-order terms included. Compared with :func:`metalib.functional.inner_loop`
    and its gradient."""

    def body() -> str:
        cases = 0
        for seed, lr in ((0, 0.1), (1, 0.03), (2, 0.5)):
            model, params, x, y = _case(seed)
            before = {k: v.detach().clone() for k, v in params.items()}
            out = call_checked("inner_step", fn, model, params, x, y, lr)
            if isinstance(out, tuple) and out and isinstance(out[0], dict):
                raise CheckFailed("return only the dict of new parameters, not a tuple.")
            if not isinstance(out, dict):
                raise CheckFailed(f"return a dict {{name: tensor}} like `params`; got {type(out).__name__}.")
            if set(out) != set(params):
                missing, extra = set(params) - set(out), set(out) - set(params)
                raise CheckFailed(f"the returned dict must have the same keys as params; missing {sorted(missing)}"
                                  + (f", unexpected {sorted(extra)}" if extra else "") + ".")
            for k, v in out.items():
                if not isinstance(v, Tensor):
                    raise CheckFailed(f"out[{k!r}] should be a tensor, got {type(v).__name__}.")
                if v.shape != params[k].shape:
                    raise CheckFailed(f"out[{k!r}] has shape {tuple(v.shape)}, but the parameter has shape "
                                      f"{tuple(params[k].shape)}.")
            if any(not torch.equal(params[k].detach(), before[k]) for k in params):
                raise CheckFailed("`params` was modified in place. Build a new dict ({k: p - lr * g[k] ...}) and "
                                  "leave θ alone: the outer loop still needs it.")
            ref, _ = inner_loop(model, params, {}, x, y, F.mse_loss, lr, 1)
            theta = {k: v.detach() for k, v in params.items()}
            g = {k: (theta[k] - ref[k].detach()) / lr for k in params}  # the true gradient
            got = {k: as_float(v) for k, v in out.items()}

            def matches(scale: float, sign: float = -1.0) -> bool:
                return all(close(got[k], theta[k] + sign * scale * g[k]) for k in params)

            if not matches(lr):
                if matches(lr, +1.0):
                    raise CheckFailed("wrong sign: you stepped *up* the gradient (θ + lr·g). Gradient descent is θ − lr·∇L.")
                if matches(1.0):
                    raise CheckFailed("the learning rate is missing: you returned θ − ∇L; multiply the gradient by lr.")
                if all(close(got[k], theta[k]) for k in params):
                    raise CheckFailed("the parameters did not move: return θ − lr·∇L (is the gradient zero or lr unused?).")
                if matches(lr * x.shape[0]):
                    raise CheckFailed("the step is n times too large: use the mean squared error (F.mse_loss), not the sum.")
                if matches(lr * 2) or matches(lr / 2):
                    raise CheckFailed("the step is off by a factor of 2: the loss is F.mse_loss(prediction, y), "
                                      "the plain mean of squared errors (no 1/2).")
                err = max(float((got[k] - (theta[k] - lr * g[k])).abs().max()) for k in params)
                raise CheckFailed(f"the new parameters differ from θ − lr·∇MSE by up to {err:.2e}. Is the loss the "
                                  "MSE of functional_call(model, params, (x,)) against y?")
            if any(not v.requires_grad for v in out.values()):
                raise CheckFailed("the result is detached from params (no autograd history): the outer loop "
                                  "cannot differentiate through φ(θ). Avoid .detach(), .data, torch.no_grad() "
                                  "and .item() in the update.")
            v = {k: torch.randn(p.shape, generator=torch.Generator().manual_seed(7), dtype=p.dtype)
                 for k, p in params.items()}

            def meta_grad(result):
                s = sum((result[k] * v[k]).sum() for k in params)
                return torch.autograd.grad(s, list(params.values()), allow_unused=True, retain_graph=True)

            ref_g = meta_grad(ref)
            try:
                got_g = meta_grad(out)
            except RuntimeError as e:
                raise CheckFailed(f"could not differentiate through your result: {e}") from None
            got_g = [torch.zeros_like(p) if t is None else t for t, p in zip(got_g, params.values())]
            if not all(close(a, b) for a, b in zip(got_g, ref_g)):
                if all(close(a, v[k]) for a, k in zip(got_g, params)):
                    raise CheckFailed("the values are right, but the inner gradient is treated as a constant "
                                      "(dφ/dθ = I): that is first-order MAML. For MAML keep it in the graph — "
                                      "torch.func.grad does; torch.autograd.grad needs create_graph=True — and "
                                      "don't .detach() it.")
                raise CheckFailed("the values are right, but the gradient through your step differs from "
                                  "MAML's second-order one.")
            cases += 1
        return (f"matches metalib.functional.inner_loop on {cases} random cases — values and the "
                "second-order gradient through the step.")

    return run_check("inner_step", body)


# ---------------------------------------------------------------------------- common mistakes
def _step(scale=1.0, sign=-1.0, detach_grad=False, detach_out=False, loss="mean", tuple_out=False, inplace=False,
          no_lr=False, autograd_first_order=False):
    def fn(model, params, x, y, lr):
        def L(p):
            return F.mse_loss(functional_call(model, p, (x,)), y, reduction="sum" if loss == "sum" else "mean")

        if autograd_first_order:  # torch.autograd.grad without create_graph=True
            gs = torch.autograd.grad(L(params), list(params.values()))
            g = dict(zip(params, gs))
        else:
            g = grad(L)(params)
        if detach_grad:
            g = {k: v.detach() for k, v in g.items()}
        if inplace:
            with torch.no_grad():
                for k in params:
                    params[k].sub_(lr * g[k])
            return dict(params)
        step = 1.0 if no_lr else lr
        out = {k: p + sign * scale * step * g[k] for k, p in params.items()}
        if detach_out:
            out = {k: v.detach() for k, v in out.items()}
        return (out, 0.0) if tuple_out else out
    return fn


EXERCISE = Exercise(
    name="inner_step", notebook="02_maml_from_scratch", solution=inner_step, check=check_inner_step,
    mistakes=(
        Mistake("θ + lr·∇L (gradient ascent)", _step(sign=+1.0), "wrong sign"),
        Mistake("the learning rate left out", _step(no_lr=True), "learning rate is missing"),
        Mistake("the inner gradient detached", _step(detach_grad=True), "first-order MAML"),
        Mistake("torch.autograd.grad without create_graph=True", _step(autograd_first_order=True), "create_graph=True"),
        Mistake("the result detached", _step(detach_out=True), "detached"),
        Mistake("the summed squared error", _step(loss="sum"), "mean squared error"),
        Mistake("half the step (a ½ in the loss)", _step(scale=0.5), "factor of 2"),
        Mistake("(params, loss) returned", _step(tuple_out=True), "not a tuple"),
        Mistake("θ changed in place", _step(inplace=True), "modified in place"),
    ),
)
