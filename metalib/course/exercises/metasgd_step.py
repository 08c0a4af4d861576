"""Exercise of ``10_learning_the_update``: one Meta-SGD inner step, θ − α ∘ ∇L (Li et al. 2017)."""
from __future__ import annotations

from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call, grad

from ...models import MLP
from .base import CheckFailed, Exercise, Feedback, Mistake, call_checked, run_check


def metasgd_step(model, params, alpha, x, y):
    """Reference solution: one Meta-SGD inner step on the MSE, ``θ − α ∘ ∇L``, differentiable with respect to
    ``params`` (second order) and to ``alpha``."""
    def loss(p):
        return F.mse_loss(functional_call(model, p, (x,)), y)

    g = grad(loss)(params)
    return {name: p - alpha[name] * g[name] for name, p in params.items()}


def _exercise_case(seed: int):
    torch.manual_seed(seed)
    model = MLP(1, (6, 6), 1).double()
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(7, 1, generator=gen, dtype=torch.float64) * 10 - 5
    y = 2.0 * torch.sin(x - 0.3)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    # entries spread over two orders of magnitude, some negative: a scalar can't imitate them
    alpha = {k: (torch.rand(v.shape, generator=gen, dtype=torch.float64) * 0.2 - 0.03).requires_grad_(True)
             for k, v in params.items()}
    return model, params, alpha, x, y


def check_metasgd_step(fn: Callable) -> Feedback:
    """Exercise of ``10_learning_the_update``: ``metasgd_step(model, params, alpha, x, y)`` returns the new
    parameters after one Meta-SGD step on the MSE of ``model`` (run with ``params``) on ``(x, y)``:
    ``{name: params[name] - alpha[name] * grad[name]}`` — element-wise, differentiable with respect to ``alpha``
    (the outer loop learns it) and to ``params`` (second order). Compared with :func:`metasgd_step` and with the
    meta-gradients autograd gives for the reference."""

    def body() -> str:
        for seed in (0, 1):
            model, params, alpha, x, y = _exercise_case(seed)
            before = {k: v.detach().clone() for k, v in params.items()}
            out = call_checked("metasgd_step", fn, model, params, alpha, x, y)
            if not isinstance(out, dict):
                raise CheckFailed(f"return a dict {{name: tensor}} like `params`; got {type(out).__name__}.")
            if set(out) != set(params):
                raise CheckFailed(f"return the same names as params: missing {sorted(set(params) - set(out))}, "
                            f"unexpected {sorted(set(out) - set(params))}.")
            for k, v in out.items():
                if not isinstance(v, Tensor) or v.shape != params[k].shape:
                    raise CheckFailed(f"out[{k!r}] must be a tensor of the parameter's shape {tuple(params[k].shape)}.")
            if any(not torch.equal(params[k].detach(), before[k]) for k in params):
                raise CheckFailed("`params` was modified in place: build a new dict, θ is still needed by the outer loop.")
            ref = metasgd_step(model, params, alpha, x, y)
            theta = {k: v.detach() for k, v in params.items()}
            a = {k: v.detach() for k, v in alpha.items()}
            g = grad(lambda p: F.mse_loss(functional_call(model, p, (x,)), y))(theta)  # the true gradient

            def matches(step: Mapping[str, Tensor]) -> bool:
                return all(_close(out[k], theta[k] - step[k]) for k in params)

            if not matches({k: a[k] * g[k] for k in params}):
                if matches({k: -a[k] * g[k] for k in params}):
                    raise CheckFailed("wrong sign: you stepped up the gradient (θ + α∘∇L). The inner step descends: θ − α∘∇L.")
                if matches(g):
                    raise CheckFailed("the learning rates are missing: you returned θ − ∇L; multiply each gradient by its α.")
                for what, s in (("the mean of α", None), ("one entry of α", 0)):
                    scalars = {k: (v.mean() if s is None else v.flatten()[s]) for k, v in a.items()}
                    if matches({k: scalars[k] * g[k] for k in params}) or matches(
                            {k: next(iter(scalars.values())) * g[k] for k in params}):
                        raise CheckFailed(f"you used a scalar α ({what}) for a whole tensor: Meta-SGD has one learning rate "
                                    "per parameter *entry* — multiply element-wise, alpha[name] * grad[name].")
                if matches({k: a[k].abs() * g[k] for k in params}):
                    raise CheckFailed("you used |α|: the learned α may be negative (it sets the direction too); use α itself.")
                err = max(float((out[k].detach() - ref[k].detach()).abs().max()) for k in params)
                raise CheckFailed(f"the new parameters differ from θ − α∘∇MSE by up to {err:.2e}. Is the loss "
                            "F.mse_loss(functional_call(model, params, (x,)), y)?")
            probe = {k: torch.randn(v.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
                     for k, v in params.items()}

            def meta(outs):
                s = sum((outs[k] * probe[k]).sum() for k in outs)
                if not s.requires_grad:
                    return None
                return torch.autograd.grad(s, [*alpha.values(), *params.values()], allow_unused=True)

            got, want = meta(out), meta(ref)
            tol = 1e-4 if any(v.dtype == torch.float32 for v in out.values()) else 1e-8   # computed in float32
            n = len(alpha)
            if got is None or all(t is None or not bool(t.abs().sum() > 0) for t in got[:n]):
                raise CheckFailed("α is detached: the result carries no gradient to alpha, so the outer loop could never "
                            "learn the learning rates. Don't .detach() α, don't wrap the step in torch.no_grad(), "
                            "and use alpha[name] itself (not a copy such as float(...) or .item()).")
            if not all(u is not None and _close(u, v, tol) for u, v in zip(got[:n], want[:n])):
                raise CheckFailed("the gradient reaching α is wrong: it should be −∇L element-wise (∂(θ − α∘g)/∂α = −g).")
            if not all(u is not None and _close(u, v, tol) for u, v in zip(got[n:], want[n:])):
                raise CheckFailed("the step is right but not differentiable the second-order way with respect to θ: take "
                            "the gradient with torch.func.grad (or torch.autograd.grad(..., create_graph=True)).")
        return ("θ − α∘∇L element-wise, with the gradient reaching α (−∇L) and θ (second order) — checked on two "
                "networks whose α entries span two orders of magnitude and both signs.")

    return run_check("metasgd_step", body)


def _close(a: Tensor, b: Tensor, tol: float = 1e-9) -> bool:
    """Equal within ``tol`` — or within float32's rounding (1e-5) where either side is float32."""
    if torch.float32 in (a.dtype, b.dtype):
        tol = max(tol, 1e-5)
    return a.shape == b.shape and bool(torch.allclose(a.detach().double(), b.detach().double(), rtol=tol, atol=tol))


# ---------------------------------------------------------------------------- common mistakes
def _mistake(kind: str):
    def fn(model, params, alpha, x, y):
        def loss(p):
            return F.mse_loss(functional_call(model, p, (x,)), y)

        if kind == "first order":  # the gradient taken at a detached copy: no second-order path
            g = grad(loss)({k: v.detach() for k, v in params.items()})
        else:
            g = grad(loss)(params)
        steps = {
            "scalar": lambda a, gk: a.mean() * gk, "float": lambda a, gk: float(a.detach().flatten()[0]) * gk,
            "detached": lambda a, gk: a.detach() * gk, "sign": lambda a, gk: -a * gk,
            "no alpha": lambda a, gk: gk, "abs": lambda a, gk: a.abs() * gk, "first order": lambda a, gk: a * gk,
        }
        return {name: p - steps[kind](alpha[name], g[name]) for name, p in params.items()}
    return fn


EXERCISE = Exercise(
    name="metasgd_step", notebook="10_learning_the_update", solution=metasgd_step, check=check_metasgd_step,
    mistakes=(
        Mistake("one scalar α per tensor (its mean)", _mistake("scalar"), "scalar α"),
        Mistake("a Python number taken from α", _mistake("float"), "scalar α"),
        Mistake("α detached", _mistake("detached"), "α is detached"),
        Mistake("gradient ascent", _mistake("sign"), "wrong sign"),
        Mistake("α left out", _mistake("no alpha"), "learning rates are missing"),
        Mistake("|α| instead of α", _mistake("abs"), "|α|"),
        Mistake("a first-order step (no second-order path)", _mistake("first order"), "second-order"),
    ),
)
