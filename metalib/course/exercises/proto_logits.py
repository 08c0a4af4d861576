"""Exercise of ``05_prototypical_networks``: the prototype classifier's logits."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .base import CheckFailed, Exercise, Feedback, Mistake, as_float, call_checked, close, run_check


def proto_logits(z_s, y_s, z_q, n_way):
    """−‖z_q − c_k‖² ``[n_query, n_way]``, c_k the mean of the support embeddings of class k (Snell et
    al. 2017, eq. 1–2); ``z_s: [n_support, d]``, ``y_s: [n_support]``, ``z_q: [n_query, d]``."""
    protos = torch.stack([z_s[y_s == k].mean(0) for k in range(n_way)])   # [n_way, d]
    return -((z_q[:, None, :] - protos[None, :, :]) ** 2).sum(-1)          # [n_query, n_way]


def _case(seed: int, n_way: int, k_shot: int, n_query: int, d: int):
    gen = torch.Generator().manual_seed(seed)
    y_s = torch.arange(n_way).repeat_interleave(k_shot)
    y_s = y_s[torch.randperm(y_s.numel(), generator=gen)]  # shuffled: no "sorted by class" assumption
    z_s = torch.randn(n_way * k_shot, d, generator=gen, dtype=torch.float64) + 2 * y_s[:, None].double().cos()
    z_q = torch.randn(n_query, d, generator=gen, dtype=torch.float64)
    return z_s, y_s, z_q


def _table(z_q, protos, q, n):
    return torch.tensor([[-float(((z_q[j] - protos[c]) ** 2).sum()) for c in range(n)] for j in range(q)],
                        dtype=torch.float64)


def check_proto_logits(fn: Callable) -> Feedback:
    """``proto_logits(z_s, y_s, z_q, n_way)`` returns ``-||z_q - c_k||^2`` ``[n_query, n_way]`` with
    ``c_k`` the mean support embedding of class k. Compared with a plain double loop."""

    def body() -> str:
        for seed, (n, k, q, d) in enumerate(((5, 1, 7, 4), (3, 4, 5, 6), (20, 5, 9, 3))):
            z_s, y_s, z_q = _case(seed, n, k, q, d)
            before = (z_s.clone(), y_s.clone(), z_q.clone())
            out = call_checked("proto_logits", fn, z_s, y_s, z_q, n)
            if not isinstance(out, Tensor):
                raise CheckFailed(f"return a tensor of logits [n_query, n_way]; got {type(out).__name__}.")
            if not (torch.equal(z_s, before[0]) and torch.equal(y_s, before[1]) and torch.equal(z_q, before[2])):
                raise CheckFailed("an input was modified in place; compute new tensors instead.")
            protos = [sum(z_s[i] for i in range(len(y_s)) if y_s[i] == c) / k for c in range(n)]
            ref = _table(z_q, protos, q, n)
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
            if k > 1 and close(got, _table(z_q, [p * k for p in protos], q, n)):
                raise CheckFailed("the prototypes are sums of the support embeddings; take the mean (eq. 1).")
            sorted_protos = [z_s[c * k:(c + 1) * k].mean(0) for c in range(n)]
            if close(got, _table(z_q, sorted_protos, q, n)):
                raise CheckFailed("your prototypes assume the support set is sorted by class (rows c·K … c·K+K−1); "
                                  "select each class's rows by its label instead: z_s[y_s == k].")
            if close(got.softmax(-1), ref.softmax(-1)):
                continue  # a constant shift per query changes nothing in the softmax: accept
            err = float((got - ref).abs().max())
            raise CheckFailed(f"the logits differ from -||z_q - c_k||² by up to {err:.2e} (checked against a plain loop).")
        return "−‖z_q − c_k‖² with c_k the class means, for 1- and 5-shot, 3- to 20-way, support in any order."

    return run_check("proto_logits", body)


# ---------------------------------------------------------------------------- common mistakes
def _proto_fn(sign=-1.0, squared=True, how="mean", transpose=False, inplace=False):
    def fn(z_s, y_s, z_q, n_way):
        if how == "sorted":
            k = z_s.shape[0] // n_way
            c = torch.stack([z_s[i * k:(i + 1) * k].mean(0) for i in range(n_way)])
        else:
            c = torch.stack([getattr(z_s[y_s == i], how)(0) for i in range(n_way)])
        d = ((z_q[:, None] - c[None]) ** 2).sum(-1)
        if not squared:
            d = d.sqrt()
        if inplace:
            z_q.add_(1.0)
        out = sign * d
        return out.T if transpose else out
    return fn


EXERCISE = Exercise(
    name="proto_logits", notebook="05_prototypical_networks", solution=proto_logits, check=check_proto_logits,
    mistakes=(
        Mistake("+‖z − c‖² (wrong sign)", _proto_fn(sign=+1.0), "wrong sign"),
        Mistake("the Euclidean distance, not squared", _proto_fn(squared=False), "*squared* Euclidean"),
        Mistake("prototypes as sums", _proto_fn(how="sum"), "sums of the support embeddings"),
        Mistake("a support set assumed sorted by class", _proto_fn(how="sorted"), "sorted by class"),
        Mistake("[n_way, n_query] (transposed)", _proto_fn(transpose=True), "one row per query"),
        Mistake("an input changed in place", _proto_fn(inplace=True), "modified in place"),
    ),
)
