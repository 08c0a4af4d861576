"""Exercise of ``12_generative_meta_learning``: the KL divergence of two diagonal Gaussians (PLATIPUS's KL term)."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .base import CheckFailed, Exercise, Feedback, Mistake, call_checked, run_check


def kl_diagonal(mu_q, sigma_q, mu_p, sigma_p):
    """KL(N(mu_q, sigma_q²) || N(mu_p, sigma_p²)) of diagonal Gaussians (standard deviations given), summed."""
    return (torch.log(sigma_p / sigma_q) + (sigma_q ** 2 + (mu_q - mu_p) ** 2) / (2 * sigma_p ** 2) - 0.5).sum()


def _cases():
    g = torch.Generator().manual_seed(0)
    for n in ((1,), (7,), (3, 4)):
        mu_q, mu_p = torch.randn(n, generator=g, dtype=torch.float64), torch.randn(n, generator=g, dtype=torch.float64)
        s_q = torch.rand(n, generator=g, dtype=torch.float64) * 1.5 + 0.2
        s_p = torch.rand(n, generator=g, dtype=torch.float64) * 1.5 + 0.2
        yield mu_q, s_q, mu_p, s_p


def _by_distributions(mu_q: Tensor, s_q: Tensor, mu_p: Tensor, s_p: Tensor) -> float:
    """The independent computation: torch.distributions' KL of two Normals, summed."""
    N = torch.distributions.Normal
    return float(torch.distributions.kl_divergence(N(mu_q, s_q), N(mu_p, s_p)).sum())


def check_kl_diagonal(fn: Callable) -> Feedback:
    """``kl_diagonal(mu_q, sigma_q, mu_p, sigma_p)`` returns the KL divergence from N(mu_q, sigma_q²) to
    N(mu_p, sigma_p²), diagonal, summed over every entry (a 0-dim tensor) — with *standard deviations*
    as arguments. Compared with the hand-worked value ln 2 + 1/8 for q = N(1, 0.5²), p = N(0, 1) and with
    ``torch.distributions.kl_divergence`` on random cases; its gradient must reach mu_q and sigma_q."""

    def body() -> str:
        one = call_checked("kl_diagonal", fn, torch.tensor([1.0], dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64),
                           torch.tensor([0.0], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64))
        cases = 0
        for mu_q, s_q, mu_p, s_p in [*_cases()]:
            leaves = [t.clone().requires_grad_(True) for t in (mu_q, s_q)]
            out = call_checked("kl_diagonal", fn, leaves[0], leaves[1], mu_p.clone(), s_p.clone())
            if not isinstance(out, Tensor):
                raise CheckFailed(f"return a tensor, got {type(out).__name__}.")
            if out.dim() != 0:
                if out.shape == mu_q.shape:
                    raise CheckFailed("you returned one KL per entry: a diagonal Gaussian's KL is the *sum* over its "
                                      "entries (add .sum()).")
                raise CheckFailed(f"return one number (a 0-dim tensor), got shape {tuple(out.shape)}.")
            got, want = float(out.detach()), _by_distributions(mu_q, s_q, mu_p, s_p)

            def near(v: float) -> bool:
                return abs(got - v) <= 1e-6 * max(1.0, abs(v))

            if not near(want):
                if near(_by_distributions(mu_p, s_p, mu_q, s_q)):
                    raise CheckFailed("the direction is reversed: you computed KL(p || q). PLATIPUS's term is "
                                      "KL(q || p) — the inference network q first, the prior p second.")
                if near(float(kl_diagonal(mu_q, s_q.sqrt(), mu_p, s_p.sqrt()))):
                    raise CheckFailed("you treated the standard deviations as variances: the arguments are σ, so the "
                                      "variances are sigma_q**2 and sigma_p**2 (and log(σ_p/σ_q), not half of it).")
                if near(want + 0.5 * mu_q.numel()):
                    raise CheckFailed("the −½ per entry is missing: KL(q || q) must be 0.")
                if near(want / mu_q.numel()):
                    raise CheckFailed("you averaged over the entries: the KL of a diagonal Gaussian is their sum.")
                if near(float((torch.log(s_q / s_p) + (s_q ** 2 + (mu_q - mu_p) ** 2) / (2 * s_p ** 2) - 0.5).sum())):
                    raise CheckFailed("the log term is upside down: it is log(σ_p / σ_q) (the prior's σ on top).")
                if near(float((torch.log(s_p / s_q) + (s_q ** 2 + (mu_q - mu_p) ** 2) / s_p ** 2 - 0.5).sum())):
                    raise CheckFailed("the quadratic term needs a 2 in its denominator: (σ_q² + (μ_q − μ_p)²) / (2σ_p²).")
                raise CheckFailed(f"got {got:.6f}, expected {want:.6f} (torch.distributions.kl_divergence of the two "
                                  "Normals, summed).")
            grads = torch.autograd.grad(out, leaves, allow_unused=True) if out.requires_grad else (None, None)
            if any(g is None or not bool(g.abs().sum() > 0) for g in grads):
                raise CheckFailed("the value is right but no gradient reaches mu_q and sigma_q: the ELBO trains them "
                                  "through this term. Avoid .item(), float(...), .detach() and math.log.")
            cases += 1
        if not isinstance(one, Tensor) or abs(float(one.sum()) - 0.8181471805599453) > 1e-6:
            raise CheckFailed("q = N(1, 0.5²), p = N(0, 1) should give ln 2 + 1/8 ≈ 0.81815.")
        return (f"matches the hand-worked ln 2 + 1/8 and torch.distributions.kl_divergence on {cases} random cases, "
                "with gradients to mu_q and sigma_q.")

    return run_check("kl_diagonal", body)


# ---------------------------------------------------------------------------- common mistakes
def _reversed(mu_q, sigma_q, mu_p, sigma_p):
    return kl_diagonal(mu_p, sigma_p, mu_q, sigma_q)


def _variances(mu_q, sigma_q, mu_p, sigma_p):
    return (0.5 * torch.log(sigma_p / sigma_q) + (sigma_q + (mu_q - mu_p) ** 2) / (2 * sigma_p) - 0.5).sum()


def _no_half(mu_q, sigma_q, mu_p, sigma_p):
    return (torch.log(sigma_p / sigma_q) + (sigma_q ** 2 + (mu_q - mu_p) ** 2) / (2 * sigma_p ** 2)).sum()


def _per_entry(mu_q, sigma_q, mu_p, sigma_p):
    return torch.log(sigma_p / sigma_q) + (sigma_q ** 2 + (mu_q - mu_p) ** 2) / (2 * sigma_p ** 2) - 0.5


def _mean(mu_q, sigma_q, mu_p, sigma_p):
    return _per_entry(mu_q, sigma_q, mu_p, sigma_p).mean()


def _log_flipped(mu_q, sigma_q, mu_p, sigma_p):
    return (torch.log(sigma_q / sigma_p) + (sigma_q ** 2 + (mu_q - mu_p) ** 2) / (2 * sigma_p ** 2) - 0.5).sum()


def _no_two(mu_q, sigma_q, mu_p, sigma_p):
    return (torch.log(sigma_p / sigma_q) + (sigma_q ** 2 + (mu_q - mu_p) ** 2) / sigma_p ** 2 - 0.5).sum()


def _detached(mu_q, sigma_q, mu_p, sigma_p):
    return kl_diagonal(mu_q.detach(), sigma_q.detach(), mu_p, sigma_p)


EXERCISE = Exercise(
    name="kl_diagonal", notebook="12_generative_meta_learning", solution=kl_diagonal, check=check_kl_diagonal,
    mistakes=(
        Mistake("KL(p || q) instead of KL(q || p)", _reversed, "direction is reversed"),
        Mistake("standard deviations used as variances", _variances, "as variances"),
        Mistake("the −½ left out", _no_half, "−½ per entry is missing"),
        Mistake("one KL per entry (no sum)", _per_entry, "one KL per entry"),
        Mistake("the mean over entries", _mean, "averaged over the entries"),
        Mistake("log(σ_q / σ_p)", _log_flipped, "log term is upside down"),
        Mistake("no 2 in the denominator", _no_two, "needs a 2"),
        Mistake("detached from mu_q and sigma_q", _detached, "no gradient reaches"),
    ),
)
