"""Automatic checks for the few-shot notebooks' exercises (05, 06), in the style of :mod:`metalib.exercises`.

Each ``check_*`` function runs the student's function on a few random cases, compares it with an
independent computation and returns a :class:`metalib.exercises.Feedback` that names the mistake::

    from metalib.course.exercises_fewshot import check_proto_logits, solution
    check_proto_logits(proto_logits)     # ✓ ... or ✗ <what is wrong> + a hint
    solution("proto_logits")             # prints a reference solution (try first!)

=================  =========================================  ===============================
exercise           notebook                                    check
=================  =========================================  ===============================
proto_logits       05_prototypical_networks                    :func:`check_proto_logits`
adapt_ce           06_maml_on_omniglot                         :func:`check_adapt_ce`
=================  =========================================  ===============================
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call, grad

from .exercises import Feedback, as_float, call_checked, close, CheckFailed, run_check
from ..functional import inner_loop
from ..models import MLP

__all__ = ["check_proto_logits", "check_adapt_ce", "solution", "EXERCISES", "Feedback"]


# ============================================================================ reference solutions
def proto_logits(z_s: Tensor, y_s: Tensor, z_q: Tensor, n_way: int) -> Tensor:
    """Prototypical Networks' logits (Snell et al. 2017, eq. 1-2): prototypes c_k = mean of the
    support embeddings of class k; logits = -||z_q - c_k||^2.
    ``z_s: [n_support, d]``, ``y_s: [n_support]``, ``z_q: [n_query, d]`` -> ``[n_query, n_way]``."""
    protos = torch.stack([z_s[y_s == k].mean(0) for k in range(n_way)])   # [n_way, d]
    return -((z_q[:, None, :] - protos[None, :, :]) ** 2).sum(-1)          # [n_query, n_way]


def adapt_ce(model, params, x, y, lr, steps):
    """MAML's inner loop for classification: ``steps`` SGD steps on the cross-entropy of ``model``
    (run with ``params``) on ``(x, y)``; differentiable with respect to ``params`` (second order)."""

    def loss(p):
        return F.cross_entropy(functional_call(model, p, (x,)), y)

    for _ in range(steps):
        g = grad(loss)(params)
        params = {name: p - lr * g[name] for name, p in params.items()}
    return params


# ============================================================================ 05: ProtoNet logits
def _proto_case(seed: int, n_way: int, k_shot: int, n_query: int, d: int):
    gen = torch.Generator().manual_seed(seed)
    y_s = torch.arange(n_way).repeat_interleave(k_shot)
    y_s = y_s[torch.randperm(y_s.numel(), generator=gen)]  # shuffled: no "sorted by class" assumption
    z_s = torch.randn(n_way * k_shot, d, generator=gen, dtype=torch.float64) + 2 * y_s[:, None].double().cos()
    z_q = torch.randn(n_query, d, generator=gen, dtype=torch.float64)
    return z_s, y_s, z_q


def check_proto_logits(fn: Callable) -> Feedback:
    """Exercise of ``05_prototypical_networks``: ``proto_logits(z_s, y_s, z_q, n_way)`` returns the
    logits ``-||z_q - c_k||^2`` ``[n_query, n_way]`` with ``c_k`` the mean support embedding of class k.
    Compared with an explicit double loop over queries and classes."""

    def body() -> str:
        for seed, (n, k, q, d) in enumerate(((5, 1, 7, 4), (3, 4, 5, 6), (20, 5, 9, 3))):
            z_s, y_s, z_q = _proto_case(seed, n, k, q, d)
            before = (z_s.clone(), y_s.clone(), z_q.clone())
            out = call_checked("proto_logits", fn, z_s, y_s, z_q, n)
            if not isinstance(out, Tensor):
                raise CheckFailed(f"return a tensor of logits [n_query, n_way]; got {type(out).__name__}.")
            if not (torch.equal(z_s, before[0]) and torch.equal(y_s, before[1]) and torch.equal(z_q, before[2])):
                raise CheckFailed("an input was modified in place; compute new tensors instead.")
            # independent computation: a plain double loop
            protos = [sum(z_s[i] for i in range(len(y_s)) if y_s[i] == c) / k for c in range(n)]
            ref = torch.tensor([[-float(((z_q[j] - protos[c]) ** 2).sum()) for c in range(n)] for j in range(q)],
                               dtype=torch.float64)
            if out.shape != ref.shape:
                if out.shape == ref.T.shape:
                    raise CheckFailed(f"the shape is [n_way, n_query] = {tuple(out.shape)}; return one row per query: "
                                f"[n_query, n_way] = {tuple(ref.shape)}.")
                raise CheckFailed(f"expected logits of shape [n_query, n_way] = {tuple(ref.shape)}, got {tuple(out.shape)}.")
            got = as_float(out)
            if close(got, ref):
                continue
            if close(got, -ref):
                raise CheckFailed("wrong sign: the logits are the *negative* squared distances (a closer prototype "
                            "must get a larger logit).")
            if close(got, -(-ref).sqrt()) or close(got, (-ref).sqrt()):
                raise CheckFailed("you used the Euclidean distance; Snell et al. use the *squared* Euclidean "
                            "distance, -||z - c||² (eq. 2; it makes the classifier linear in z).")
            sums = [p * k for p in protos]
            ref_sum = torch.tensor([[-float(((z_q[j] - sums[c]) ** 2).sum()) for c in range(n)] for j in range(q)],
                                   dtype=torch.float64)
            if k > 1 and close(got, ref_sum):
                raise CheckFailed("the prototypes are sums of the support embeddings; take the mean (eq. 1).")
            sorted_protos = [z_s[c * k:(c + 1) * k].mean(0) for c in range(n)]
            ref_sorted = torch.tensor([[-float(((z_q[j] - sorted_protos[c]) ** 2).sum()) for c in range(n)]
                                       for j in range(q)], dtype=torch.float64)
            if close(got, ref_sorted):
                raise CheckFailed("your prototypes assume the support set is sorted by class (rows c·K … c·K+K−1); "
                            "select each class's rows by its label instead: z_s[y_s == k].")
            if close(got.softmax(-1), ref.softmax(-1)):
                continue  # a constant shift per query changes nothing in the softmax: accept
            err = float((got - ref).abs().max())
            raise CheckFailed(f"the logits differ from -||z_q - c_k||² by up to {err:.2e} (checked against a plain loop).")
        return "−‖z_q − c_k‖² with c_k the class means, for 1- and 5-shot, 3- to 20-way, support in any order."

    return run_check("proto_logits", body)


# ============================================================================ 06: the inner loop with cross-entropy
def _ce_case(seed: int, n_way: int = 3):
    torch.manual_seed(seed)
    model = MLP(4, (8,), n_way).double()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2 * n_way, 4, generator=gen, dtype=torch.float64)
    y = torch.arange(n_way).repeat(2)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    return model, params, x, y


def check_adapt_ce(fn: Callable) -> Feedback:
    """Exercise of ``06_maml_on_omniglot``: ``adapt_ce(model, params, x, y, lr, steps)`` takes ``steps``
    SGD steps on the cross-entropy of ``model`` (run with ``params``) and returns the adapted dict,
    differentiable with respect to ``params`` through every step (second order). Compared with
    :func:`metalib.functional.inner_loop` — values and the gradient through the steps."""

    def body() -> str:
        cases = 0
        for seed, lr, steps in ((1, 0.1, 1), (0, 0.5, 3), (2, 0.3, 2)):
            model, params, x, y = _ce_case(seed)
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
                unmoved = all(close(got[k], before[k]) for k in params)
                if steps > 1 and all(close(got[k], one[k].detach()) for k in params):
                    raise CheckFailed(f"only one step was taken; take `steps` (here {steps}) steps, each from the "
                                "result of the previous one.")
                up, _ = inner_loop(model, params, {}, x, y, lambda a, b: -F.cross_entropy(a, b), lr, steps)
                if all(close(got[k], up[k].detach()) for k in params):
                    raise CheckFailed("wrong sign: gradient *descent* is φ − lr·∇L.")
                if unmoved:
                    raise CheckFailed("the parameters did not move: return φ − lr·∇L after each step.")
                g0 = {k: (before[k] - one[k].detach()) / lr for k in params}
                if steps == 1 and all(close(got[k], before[k] - g0[k]) for k in params):
                    raise CheckFailed("the learning rate is missing: φ − lr·∇L.")
                err = max(float((got[k] - ref[k].detach()).abs().max()) for k in params)
                raise CheckFailed(f"the adapted parameters differ from {steps} SGD steps on F.cross_entropy by up to "
                            f"{err:.2e}. Is the loss F.cross_entropy(functional_call(model, p, (x,)), y) "
                            "(logits first, integer labels second)?")
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


# ============================================================================ solutions
EXERCISES: Dict[str, Callable] = {"proto_logits": proto_logits, "adapt_ce": adapt_ce}


def solution(name: str, show: bool = True) -> Optional[str]:
    """Print (``show=True``) or return the source of the reference solution of exercise ``name``."""
    from .exercises import solution as _solution

    return _solution(name, show, EXERCISES)
