"""Exercise of ``11_model_based_learning``: LRUA's write weights and usage update (Santoro et al. 2016, eq. 5-7)."""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import CheckFailed, Exercise, Feedback, Mistake, call_checked, run_check


def lrua_write(read_prev, usage_prev, alpha, read, gamma):
    """Eq. 5-7 for one episode: ``read_prev`` w^r_{t-1} [H, S], ``usage_prev`` w^u_{t-1} [S], ``alpha``
    the gates before the sigmoid [H], ``read`` w^r_t [H, S], ``gamma`` the decay -> (write [H, S], usage [S]).
    Head h interpolates towards the h-th least-used slot of ``usage_prev``."""
    heads, slots = read_prev.shape
    order = torch.sort(usage_prev, stable=True).indices              # least used first
    least_used = F.one_hot(order[:heads], slots).to(read_prev.dtype)  # head h -> the h-th least-used slot
    sigma = torch.sigmoid(alpha).unsqueeze(-1)                        # [H, 1]
    write = sigma * read_prev + (1 - sigma) * least_used              # eq. 7
    usage = gamma * usage_prev + read.sum(0) + write.sum(0)           # eq. 5
    return write, usage


def reference(read_prev, usage_prev, alpha, read, gamma, variant: str = ""):
    """An independent loop computation of eq. 5-7 in float64, or one of the usual mistakes (``variant``)."""
    H, S = read_prev.shape
    u = usage_prev.tolist()
    ranked = sorted(range(S), key=lambda i: (u[i], i))                      # least used first, ties -> lower index
    if variant == "most_used":
        ranked = sorted(range(S), key=lambda i: (-u[i], i))
    if variant == "reversed_heads":                                         # head h -> the (H-1-h)-th least used
        ranked = ranked[:H][::-1] + ranked[H:]
    gates = [1 / (1 + math.exp(-float(alpha[h]))) for h in range(H)]
    if variant == "softmax_gate":                                           # normalised over the heads
        e = [math.exp(float(alpha[h])) for h in range(H)]
        gates = [v / sum(e) for v in e]
    write = torch.zeros(H, S, dtype=torch.float64)
    for h in range(H):
        s = gates[h]
        if variant == "no_sigmoid":
            s = float(alpha[h])
        lu = ranked[0] if variant == "same_slot" else ranked[h]
        src = read if variant == "current_read" else read_prev
        a, b = (1 - s, s) if variant == "swapped" else (s, 1 - s)
        for i in range(S):
            write[h, i] = a * float(src[h, i]) + b * (1.0 if i == lu else 0.0)
    usage = torch.zeros(S, dtype=torch.float64)
    for i in range(S):
        r = sum(float(read[h, i]) for h in range(H))
        w = sum(float(write[h, i]) for h in range(H))
        if variant == "no_decay":
            usage[i] = u[i] + r + w
        elif variant == "decay_all":
            usage[i] = gamma * (u[i] + r + w)
        elif variant == "no_write_in_usage":
            usage[i] = gamma * u[i] + r
        elif variant == "no_read_in_usage":
            usage[i] = gamma * u[i] + w
        elif variant == "previous_read_in_usage":
            usage[i] = gamma * u[i] + sum(float(read_prev[h, i]) for h in range(H)) + w
        elif variant == "mean_over_heads":
            usage[i] = gamma * u[i] + (r + w) / H
        elif variant == "mean_of_reads":
            usage[i] = gamma * u[i] + r / H + w
        elif variant == "mean_of_writes":
            usage[i] = gamma * u[i] + r + w / H
        else:
            usage[i] = gamma * u[i] + r + w
    return write, usage


WRITE_MISTAKES = {
    "no_sigmoid": "the gate is σ(α), not α itself: pass alpha through torch.sigmoid before interpolating (eq. 7).",
    "swapped": "the gate is swapped: σ(α) weights the *last read* weights w^r_{t−1}, and 1 − σ(α) the least-used slot "
               "(eq. 7: a high gate re-writes where the head just read).",
    "most_used": "you wrote to the *most* used slots; LRUA writes to the *least* used ones (smallest usage w^u_{t−1}).",
    "same_slot": "every head wrote to the single least-used slot; head h takes the h-th least-used slot, so the heads "
                 "write to different slots.",
    "softmax_gate": "the gate is a sigmoid per head, σ(α_h) (eq. 7), not a softmax over the heads: each head "
                    "interpolates on its own, the heads' gates need not sum to 1.",
    "reversed_heads": "the heads take the least-used slots in reverse order: head h (h = 0, 1, …) takes the h-th "
                      "least-used slot — head 0 the least used of all.",
    "current_read": "you interpolated with this step's read weights w^r_t; the write at step t uses the *previous* "
                    "step's read weights w^r_{t−1} (the slot read before the label arrived).",
}
USAGE_MISTAKES = {
    "no_decay": "the usage did not decay: w^u_t = γ·w^u_{t−1} + Σ_h w^r_t + Σ_h w^w_t — multiply the old usage by γ.",
    "decay_all": "γ multiplies only the *old* usage w^u_{t−1}, not this step's read and write weights.",
    "no_write_in_usage": "the usage leaves out the write weights: a slot just written must count as used (+ Σ_h w^w_t).",
    "no_read_in_usage": "the usage leaves out the read weights: a slot just read must count as used (+ Σ_h w^r_t).",
    "previous_read_in_usage": "the usage adds the *previous* step's read weights w^r_{t−1}; eq. 5 adds this step's "
                              "reads w^r_t (and writes w^w_t).",
    "mean_over_heads": "you averaged the read and write weights over the heads; eq. 5 *sums* them: Σ_h w^r_t + Σ_h w^w_t.",
    "mean_of_reads": "you averaged the read weights over the heads; eq. 5 *sums* them: Σ_h w^r_t.",
    "mean_of_writes": "you averaged the write weights over the heads; eq. 5 *sums* them: Σ_h w^w_t.",
}


def _case(seed: int, heads: int, slots: int):
    g = torch.Generator().manual_seed(seed)
    read_prev = torch.rand(heads, slots, generator=g, dtype=torch.float64).softmax(-1)
    usage_prev = torch.rand(slots, generator=g, dtype=torch.float64) * 2          # distinct (no ties)
    alpha = torch.randn(heads, generator=g, dtype=torch.float64) * 1.5
    read = torch.rand(heads, slots, generator=g, dtype=torch.float64).softmax(-1)
    return read_prev, usage_prev, alpha, read, 0.9


def _close(a: Tensor, b: Tensor) -> bool:
    return tuple(a.shape) == tuple(b.shape) and bool(torch.allclose(a.double(), b.double(), rtol=1e-6, atol=1e-8))


def check_lrua_write(fn: Callable) -> Feedback:
    """``lrua_write(read_prev [H, S], usage_prev [S], alpha [H], read [H, S], gamma) -> (write [H, S], usage [S])``:
    LRUA's write weights (eq. 6-7) and usage update (eq. 5), compared with an explicit loop for 1, 3 and 4
    heads; the usual mistakes are named."""

    def body() -> str:
        for seed, (heads, slots) in enumerate(((1, 5), (3, 8), (4, 12))):
            args = _case(seed, heads, slots)
            before = [a.clone() if isinstance(a, Tensor) else a for a in args]
            out = call_checked("lrua_write", fn, *args)
            if not all(torch.equal(a, b) for a, b in zip(args, before) if isinstance(a, Tensor)):
                raise CheckFailed("an input was modified in place (e.g. `usage_prev *= gamma`): the caller's tensor "
                                  "changed; compute new tensors instead.")
            if not isinstance(out, (tuple, list)) or len(out) != 2 or not all(isinstance(t, Tensor) for t in out):
                raise CheckFailed("return two tensors: (write weights [H, S], usage [S]).")
            write, usage = (t.detach() for t in out)
            ref_w, ref_u = reference(*before)
            if tuple(write.shape) != (heads, slots):
                hint = " (transposed?)" if tuple(write.shape) == (slots, heads) else ""
                raise CheckFailed(f"the write weights should be [H, S] = [{heads}, {slots}], got "
                                  f"{tuple(write.shape)}{hint}.")
            if tuple(usage.shape) != (slots,):
                raise CheckFailed(f"the usage should be [S] = [{slots}], got {tuple(usage.shape)}.")
            if not _close(write, ref_w):
                for variant, msg in WRITE_MISTAKES.items():
                    if not (heads == 1 and variant == "same_slot") and _close(write, reference(*before, variant)[0]):
                        raise CheckFailed(msg)
                err = float((write.double() - ref_w).abs().max())
                raise CheckFailed(f"the write weights differ from σ(α)·w^r_{{t−1}} + (1 − σ(α))·w^lu_{{t−1}} by up to "
                                  f"{err:.2e} (checked with {heads} head(s), {slots} slots).")
            if not _close(usage, ref_u):
                for variant, msg in USAGE_MISTAKES.items():
                    if _close(usage, reference(*before, variant)[1]):
                        raise CheckFailed(msg)
                err = float((usage.double() - ref_u).abs().max())
                raise CheckFailed(f"the usage differs from γ·w^u_{{t−1}} + Σ_h w^r_t + Σ_h w^w_t by up to {err:.2e}.")
        return ("write weights σ(α)·w^r_{t−1} + (1 − σ(α))·(h-th least-used slot) and usage "
                "γ·w^u_{t−1} + Σ w^r_t + Σ w^w_t, for 1, 3 and 4 heads.")

    return run_check("lrua_write", body)


# ---------------------------------------------------------------------------- common mistakes
def _mistake(kind: str) -> Callable:
    def fn(read_prev, usage_prev, alpha, read, gamma):
        heads, slots = read_prev.shape
        order = torch.argsort(usage_prev, descending=(kind == "most_used"))
        idx = order[:1].repeat(heads) if kind == "same_slot" else order[:heads]
        if kind == "reversed_heads":
            idx = idx.flip(0)
        lu = F.one_hot(idx, slots).to(read_prev.dtype)
        s = alpha.unsqueeze(-1) if kind == "no_sigmoid" else torch.sigmoid(alpha).unsqueeze(-1)
        if kind == "softmax_gate":
            s = alpha.softmax(0).unsqueeze(-1)
        src = read if kind == "current_read" else read_prev
        write = (1 - s) * src + s * lu if kind == "swapped" else s * src + (1 - s) * lu
        if kind == "no_decay":
            usage = usage_prev + read.sum(0) + write.sum(0)
        elif kind == "decay_all":
            usage = gamma * (usage_prev + read.sum(0) + write.sum(0))
        elif kind == "no_write_in_usage":
            usage = gamma * usage_prev + read.sum(0)
        elif kind == "no_read_in_usage":
            usage = gamma * usage_prev + write.sum(0)
        elif kind == "previous_read_in_usage":
            usage = gamma * usage_prev + read_prev.sum(0) + write.sum(0)
        elif kind == "mean_over_heads":
            usage = gamma * usage_prev + read.mean(0) + write.mean(0)
        else:
            usage = gamma * usage_prev + read.sum(0) + write.sum(0)
        return (write.T if kind == "transposed" else write), usage
    return fn


EXERCISE = Exercise(
    name="lrua_write", notebook="11_model_based_learning", solution=lrua_write, check=check_lrua_write,
    mistakes=(
        Mistake("the gate α used without the sigmoid", _mistake("no_sigmoid"), "σ(α), not α"),
        Mistake("the gate's two sides swapped", _mistake("swapped"), "gate is swapped"),
        Mistake("the most used slot written", _mistake("most_used"), "*most* used"),
        Mistake("every head on the same least-used slot", _mistake("same_slot"), "h-th least-used"),
        Mistake("this step's read weights instead of the previous", _mistake("current_read"), "*previous*"),
        Mistake("the write weights transposed", _mistake("transposed"), "transposed"),
        Mistake("no usage decay", _mistake("no_decay"), "did not decay"),
        Mistake("the decay applied to the new weights too", _mistake("decay_all"), "only the *old* usage"),
        Mistake("the write weights left out of the usage", _mistake("no_write_in_usage"), "leaves out the write"),
        Mistake("the read weights left out of the usage", _mistake("no_read_in_usage"), "leaves out the read"),
        Mistake("the previous step's reads in the usage", _mistake("previous_read_in_usage"), "*previous* step's read"),
        Mistake("a softmax over the heads as the gate", _mistake("softmax_gate"), "not a softmax over the heads"),
        Mistake("the heads' least-used slots in reverse order", _mistake("reversed_heads"), "reverse order"),
        Mistake("the mean over the heads for the sum", _mistake("mean_over_heads"), "*sums* them"),
    ),
)
