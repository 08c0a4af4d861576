r"""PLATIPUS: probabilistic MAML (Finn, Xu & Levine, "Probabilistic Model-Agnostic Meta-Learning", NeurIPS 2018).

MAML adapts *one* initialisation to a task, so it returns one function even when a few support points
fit several (a line or a sinusoid through five noisy points). PLATIPUS meta-learns a *distribution*
over the initialisation and samples several adapted models, spread where the data is ambiguous.

The model (the paper's section 4 and Algorithms 1-2). Meta-parameters
:math:`\Theta = \{\mu_\theta, \sigma_\theta, v_q, \gamma_p, \gamma_q\}` (every tensor of the network has a
mean :math:`\mu_\theta` and per-entry standard deviations :math:`\sigma_\theta`, :math:`v_q`; the
:math:`\gamma` are learned step sizes):

* prior, updated by the support set :math:`D^s`:
  :math:`p(\theta \mid D^s) = \mathcal{N}\big(\mu_\theta - \gamma_p \nabla_{\mu}\mathcal{L}(\mu_\theta, D^s),\ \sigma_\theta^2\big)`;
* inference network (training only, it sees the query set :math:`D^q`):
  :math:`q(\theta \mid D^q) = \mathcal{N}\big(\mu_\theta - \gamma_q \nabla_{\mu}\mathcal{L}(\mu_\theta, D^q),\ v_q^2\big)`;
* a sample, reparameterised: :math:`\theta = \mu + \sigma \odot \varepsilon`, :math:`\varepsilon \sim \mathcal{N}(0, I)`;
* then MAML's inner step(s) on the support set: :math:`\phi = \theta - \alpha \nabla_\theta \mathcal{L}(\theta, D^s)`.

Meta-training (Algorithm 1) minimises, over tasks, the negative ELBO

.. math:: \mathcal{L}^q(\phi(\theta), D^q) + \beta\, D_{KL}\big(q(\theta \mid D^q)\,\|\,p(\theta \mid D^s)\big),
          \quad \theta \sim q(\theta \mid D^q),

with the closed-form KL of diagonal Gaussians (:func:`kl_diagonal_gaussians`)

.. math:: D_{KL}(\mathcal{N}(m_1, s_1^2)\,\|\,\mathcal{N}(m_2, s_2^2)) = \sum \log\frac{s_2}{s_1}
          + \frac{s_1^2 + (m_1 - m_2)^2}{2 s_2^2} - \frac12 .

Meta-testing (Algorithm 2) samples :math:`\theta \sim p(\theta \mid D^s)` and takes the inner step: each
sample is one plausible adapted model. With :math:`\sigma_\theta = v_q = 0`, :math:`\gamma_q = 0` and
:math:`\beta = 0` the objective is MAML's (``tests/test_platipus.py`` checks the meta-gradients are equal).

The algorithm is :func:`elbo_loss` (training, one task) and :func:`sample_adapted` (testing, one task);
:class:`PLATIPUS` runs them on a batch through MAML's machinery (:mod:`metalib.engine`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..functional import LossFn, Params, buffers_of, check_positive, forward, params_of, sgd_step, support_grad
from .base import register
from .settings import FewShotConfig, retemplate, setting
from .maml import MAML, Batching, BNMode, adapt_task


# ============================================================================ the algorithm (pure functions)
def kl_diagonal_gaussians(mu_q: Params, sigma_q: Params, mu_p: Params, sigma_p: Params) -> Tensor:
    r""":math:`D_{KL}(\mathcal{N}(\mu_q, \sigma_q^2) \| \mathcal{N}(\mu_p, \sigma_p^2))` of two diagonal Gaussians,
    summed over every entry of every tensor (dicts of equal shapes; standard deviations, not variances):
    :math:`\sum \log\frac{\sigma_p}{\sigma_q} + \frac{\sigma_q^2 + (\mu_q-\mu_p)^2}{2\sigma_p^2} - \frac12`. 0-dim."""
    total = 0.0
    for k, m_q in mu_q.items():
        s_q, s_p, m_p = sigma_q[k], sigma_p[k], mu_p[k]
        total = total + (torch.log(s_p / s_q) + (s_q ** 2 + (m_q - m_p) ** 2) / (2 * s_p ** 2) - 0.5).sum()
    return total if isinstance(total, Tensor) else torch.zeros(())


def reparameterised_sample(mu: Params, sigma: Params, noise: Params) -> Params:
    r""":math:`\theta = \mu + \sigma \odot \varepsilon` for every tensor (``noise`` = :math:`\varepsilon`, standard
    normal, of each tensor's shape): differentiable in :math:`\mu` and :math:`\sigma`."""
    return {k: m + sigma[k] * noise[k] for k, m in mu.items()}


def gradient_shift(model: nn.Module, mu: Params, buffers: Params, x: Tensor, y: Tensor, loss_fn: LossFn,
                   gamma: Tensor, create_graph: bool = True) -> Params:
    r"""The mean of the prior (:math:`D^s`) or of the inference network (:math:`D^q`):
    :math:`\mu - \gamma \nabla_\mu \mathcal{L}(\mu, (x, y))`, differentiable in :math:`\mu` and :math:`\gamma`."""
    grads, _ = support_grad(model, mu, buffers, x, y, loss_fn, create_graph=create_graph)
    return sgd_step(mu, grads, gamma)


def elbo_loss(model: nn.Module, mu: Params, sigma: Params, v_q: Params, gamma_p: Tensor, gamma_q: Tensor,
              buffers: Params, task: Sequence[Tensor], loss_fn: LossFn, lr: float, steps: int, noise: Params,
              kl_weight: float = 1.0, first_order: bool = False) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""Algorithm 1 on one task ``(x_s [n_s, ...], y_s, x_q [n_q, ...], y_q)``: the negative ELBO
    :math:`\mathcal{L}^q(\phi, D^q) + \beta D_{KL}(q \| p)` with :math:`\theta = \mu_q + v_q \odot \varepsilon`
    (``noise`` = :math:`\varepsilon`) and :math:`\phi` = ``steps`` MAML steps of size ``lr`` from :math:`\theta`.
    ``kl_weight`` = :math:`\beta`; at 0 the KL is not computed (so :math:`\sigma = 0` is allowed).
    Returns ``(loss (0-dim), query predictions [n_q, ...], support losses [steps], KL (0-dim, detached))``."""
    x_s, y_s, x_q, y_q = task
    mu_q = gradient_shift(model, mu, buffers, x_q, y_q, loss_fn, gamma_q)                  # q's mean
    theta = reparameterised_sample(mu_q, v_q, noise)                                      # θ ~ q(θ | D^q)
    phi, support_losses = adapt_task(model, theta, buffers, x_s, y_s, loss_fn, lr, steps, first_order)
    pred = forward(model, phi, buffers, x_q)
    loss = loss_fn(pred, y_q)
    kl = loss.new_zeros(())
    if kl_weight:
        mu_p = gradient_shift(model, mu, buffers, x_s, y_s, loss_fn, gamma_p)             # p's mean
        kl = kl_diagonal_gaussians(mu_q, v_q, mu_p, sigma)
        loss = loss + kl_weight * kl
    return loss, pred, support_losses, kl.detach()


def sample_adapted(model: nn.Module, mu: Params, sigma: Params, gamma_p: Tensor, buffers: Params, x_s: Tensor,
                   y_s: Tensor, loss_fn: LossFn, lr: float, steps: int, noise: Params,
                   first_order: bool = True) -> Tuple[Params, Tensor]:
    r"""Algorithm 2 on one task: :math:`\theta \sim p(\theta \mid D^s) = \mathcal{N}(\mu - \gamma_p\nabla_\mu
    \mathcal{L}(\mu, D^s), \sigma^2)` (``noise`` = :math:`\varepsilon`), then ``steps`` inner steps on the support
    set ``x_s [n_s, ...]``, ``y_s``. Returns ``(phi, support losses [steps])``: one sampled adapted model."""
    mu_p = gradient_shift(model, mu, buffers, x_s, y_s, loss_fn, gamma_p, create_graph=not first_order)
    theta = reparameterised_sample(mu_p, sigma, noise)
    return adapt_task(model, theta, buffers, x_s, y_s, loss_fn, lr, steps, first_order)


def standard_normal_like(params: Params, generator: Optional[torch.Generator] = None) -> Params:
    """:math:`\\varepsilon`: a standard-normal tensor of each entry's shape (drawn on the CPU in float64 from
    ``generator`` when one is given, so a seed gives the same draw on every device; else the global RNG)."""
    if generator is None:
        return {k: torch.randn_like(p) for k, p in params.items()}
    return {k: torch.randn(p.shape, generator=generator, dtype=torch.float64).to(p) for k, p in params.items()}


# ============================================================================ calibration of sampled functions
def mixture_log_likelihood(samples: Tensor, y: Tensor, noise_std: float) -> Tensor:
    r"""Held-out log-likelihood of targets ``y [..., n]`` under the equal mixture of the ``S`` sampled predictions
    ``samples [S, ..., n]``, each with Gaussian observation noise ``noise_std``:
    :math:`\log \frac1S \sum_s \mathcal{N}(y \mid f_s(x), \sigma_y^2)`, averaged over the points (one sample:
    a single model's Gaussian log-likelihood — MAML's). Returns a 0-dim tensor (nats per point)."""
    check_positive("noise_std", noise_std)
    log_n = -0.5 * ((y.unsqueeze(0) - samples) / noise_std) ** 2 - math.log(noise_std * math.sqrt(2 * math.pi))
    return (torch.logsumexp(log_n, dim=0) - math.log(samples.shape[0])).mean()


def band_coverage(samples: Tensor, truth: Tensor, margin: float) -> Tensor:
    r"""The fraction of the points of the true function ``truth [..., n]`` that lie inside the sampled band
    :math:`[\min_s f_s - m, \max_s f_s + m]` of ``samples [S, ..., n]`` (``margin`` :math:`m`, e.g. two noise
    standard deviations; one sample: a single model's :math:`f \pm m` — MAML's). 0-dim, in [0, 1]."""
    lo, hi = samples.min(0).values - margin, samples.max(0).values + margin
    return ((truth >= lo) & (truth <= hi)).float().mean()


# ============================================================================ the learner
def _key(name: str) -> str:
    return name.replace(".", "/")  # nn.ParameterDict keys cannot hold "."


@dataclass(kw_only=True)
class PlatipusConfig(FewShotConfig):
    """A PLATIPUS run: the run's fields, MAML's inner loop and PLATIPUS's own (passed to :class:`PLATIPUS`)."""

    inner_lr: float = setting(0.01, "inner-loop step size alpha (and the initial gamma_p, gamma_q)", low=0)
    inner_steps: int = setting(1, "inner steps in training", low=0)
    test_inner_steps: int = setting(0, "inner steps at validation and test (0: inner_steps)", low=0)
    first_order: bool = setting(False, "first-order: no second-order terms")
    batching: str = setting("auto", "auto, loop (a task loop) or vmap (batched)")
    bn_mode: str = setting("transductive", "BatchNorm: transductive (batch statistics) or module")
    kl_weight: float = setting(1.0, "weight of the KL term of the ELBO", low=0)
    sigma_init: float = setting(0.01, "initial sigma_theta and v_q (every entry)", low=0)
    eval_samples: int = setting(1, "models sampled per task at prediction (outputs averaged)", low=1)
    gamma_init: Optional[float] = setting(None, "initial gamma_p and gamma_q (default: inner_lr)", low=0)


class PLATIPUS(MAML):
    r"""PLATIPUS (see the module docstring): MAML with a learned Gaussian over its initialisation.

    θ's mean :math:`\mu_\theta` is the network's own parameters (``model``), so everything MAML does with
    them (the vmap/task-loop engine, BatchNorm modes, per-task backward) is unchanged; the learner adds
    ``log_sigma`` (:math:`\log\sigma_\theta`) and ``log_v_q`` (:math:`\log v_q`), one tensor per parameter
    (``nn.ParameterDict``), and the scalar step sizes ``gamma_p``, ``gamma_q`` — all trained by the outer
    optimiser (``learner.parameters()`` holds them).

    Training (:meth:`meta_gradient`, via MAML's ``task_loss``) minimises :func:`elbo_loss` with a fresh
    :math:`\varepsilon` per task (the reported training "loss" is the negative ELBO: query loss + β·KL).
    :meth:`predict` averages the outputs of ``eval_samples`` models sampled by :func:`sample_adapted`;
    :meth:`sample_functions` returns every sample (reproducible with a seeded ``generator``).

    Args:
        model: the network (its parameters are :math:`\mu_\theta`).
        inner_lr: α of the inner step from the sampled θ. inner_steps, first_order: as MAML.
        kl_weight: β (default 1, the ELBO).
        sigma_init: initial :math:`\sigma_\theta` and :math:`v_q` (every entry); ``0`` gives MAML's
            deterministic initialisation (then ``kl_weight`` must be 0).
        gamma_init: initial :math:`\gamma_p` and :math:`\gamma_q` (default ``inner_lr``).
        eval_samples: models sampled per task by :meth:`predict` (their outputs averaged).
        batching, bn_mode, loss_fn, eval_steps: as :class:`metalib.algorithms.MAML`.
    """

    name = "platipus"
    family = "generative"
    config_class = PlatipusConfig
    # Finn, Xu & Levine 2018 report PLATIPUS on ambiguous regression (sinusoids and lines, 5 support points)
    # and on celebA / miniImageNet classification; their classification schedules were not verified here
    # (docs/references.md), so a few-shot run starts from MAML's settings (metalib's choice, not the paper's).
    paper_settings = retemplate(MAML.paper_settings, PlatipusConfig)

    def __init__(self, model: nn.Module, inner_lr: float = 0.01, inner_steps: int = 1, first_order: bool = False,
                 kl_weight: float = 1.0, sigma_init: float = 0.01, gamma_init: Optional[float] = None,
                 eval_samples: int = 1, batching: Batching = "auto", bn_mode: BNMode = "transductive",
                 loss_fn: Optional[LossFn] = None, eval_steps: Optional[int] = None) -> None:
        super().__init__(model, inner_lr=inner_lr, inner_steps=inner_steps, first_order=first_order, batching=batching,
                         bn_mode=bn_mode, loss_fn=loss_fn, eval_steps=eval_steps)
        self.kl_weight = check_positive("kl_weight", kl_weight, allow_zero=True)
        sigma_init = check_positive("sigma_init", sigma_init, allow_zero=True)
        if sigma_init == 0 and self.kl_weight:
            raise ValueError("sigma_init=0 makes the KL term infinite: use kl_weight=0 with it (MAML's objective)")
        gamma = inner_lr if gamma_init is None else gamma_init
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not math.isfinite(gamma):
            raise ValueError(f"gamma_init must be a finite number, got {gamma_init!r}")
        if isinstance(eval_samples, bool) or not isinstance(eval_samples, int) or eval_samples < 1:
            raise ValueError(f"eval_samples must be an int >= 1, got {eval_samples!r}")
        self.sigma_init, self.eval_samples = float(sigma_init), eval_samples
        log_s = math.log(sigma_init) if sigma_init > 0 else -math.inf
        self.log_sigma, self.log_v_q = nn.ParameterDict(), nn.ParameterDict()
        for n, p in params_of(model).items():
            self.log_sigma[_key(n)] = nn.Parameter(torch.full_like(p.detach(), log_s))
            self.log_v_q[_key(n)] = nn.Parameter(torch.full_like(p.detach(), log_s))
        ref = next(iter(params_of(model).values()))
        self.gamma_p = nn.Parameter(torch.tensor(float(gamma), dtype=ref.dtype, device=ref.device))
        self.gamma_q = nn.Parameter(torch.tensor(float(gamma), dtype=ref.dtype, device=ref.device))

    # ------------------------------------------------------------------ the distribution
    def sigma(self) -> Params:
        r""":math:`\sigma_\theta` per parameter (``{name: tensor}``, differentiable)."""
        return {n: self.log_sigma[_key(n)].exp() for n in params_of(self.model)}

    def v_q(self) -> Params:
        r""":math:`v_q` per parameter (``{name: tensor}``, differentiable)."""
        return {n: self.log_v_q[_key(n)].exp() for n in params_of(self.model)}

    # ------------------------------------------------------------------ MAML's two hooks, made probabilistic
    def task_loss(self, theta: Params, buffers: Params, task: Sequence[Tensor], loss_fn: LossFn, steps: int,
                  first_order: bool) -> Tuple[Tensor, Tensor, Tensor]:
        """:func:`elbo_loss` of one task with a fresh ε (training and :meth:`task_losses`)."""
        loss, pred, support_losses, _ = elbo_loss(
            self.model, theta, self.sigma(), self.v_q(), self.gamma_p, self.gamma_q, buffers, task, loss_fn,
            self.inner_lr, steps, standard_normal_like(theta), self.kl_weight, first_order)
        return loss, pred, support_losses

    def _adapt(self, theta: Params, buffers: Params, x_s: Tensor, y_s: Tensor, loss_fn: LossFn, steps: int,
               first_order: bool) -> Tuple[Params, Params, Tensor]:
        """One model sampled by :func:`sample_adapted` (Algorithm 2) — what :meth:`predict` and
        :meth:`adapt` use. Returns ``(phi, buffers, support losses)``."""
        phi, losses = sample_adapted(self.model, theta, self.sigma(), self.gamma_p, buffers, x_s, y_s, loss_fn,
                                     self.inner_lr, steps, standard_normal_like(theta), first_order)
        return phi, buffers, losses

    def predict(self, x_s: Tensor, y_s: Tensor, x_q: Tensor, n_way: Optional[int] = None,
                steps: Optional[int] = None) -> Tensor:
        """The mean output of ``eval_samples`` sampled adapted models (logits for classification):
        ``[Q, ...]`` for one task, ``[T, Q, ...]`` for a batch."""
        outs = [super(PLATIPUS, self).predict(x_s, y_s, x_q, n_way, steps) for _ in range(self.eval_samples)]
        return outs[0] if len(outs) == 1 else torch.stack(outs).mean(0)

    def sample_functions(self, x_s: Tensor, y_s: Tensor, x: Tensor, n_samples: int,
                         generator: Optional[torch.Generator] = None, steps: Optional[int] = None) -> Tensor:
        """``n_samples`` models sampled for one task (support ``x_s [n_s, ...]``, ``y_s``), evaluated at
        ``x [n, ...]``: ``[n_samples, n, ...]``, detached. A seeded ``generator`` gives the same samples."""
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
            raise ValueError(f"n_samples must be an int >= 1, got {n_samples!r}")
        steps = self.eval_steps if steps is None else steps
        self.check_data(x_s, y_s, "support", self.loss_fn)
        mu, buffers, sigma = self.initial_params(), buffers_of(self.model), self.sigma()
        outs = []
        with self._bn_context(), torch.no_grad():  # support gradients are still taken under no_grad
            for _ in range(n_samples):
                phi, _ = sample_adapted(self.model, mu, sigma, self.gamma_p, buffers, x_s, y_s, self.loss_fn,
                                        self.inner_lr, steps, standard_normal_like(mu, generator), True)
                outs.append(forward(self.model, phi, buffers, x).detach())
        return torch.stack(outs)

    def describe(self) -> str:
        return "PLATIPUS"

    @property
    def short_name(self) -> str:
        return "PLATIPUS"

    def __repr__(self) -> str:
        return (f"PLATIPUS(inner_lr={self.inner_lr}, inner_steps={self.inner_steps}, kl_weight={self.kl_weight}, "
                f"sigma_init={self.sigma_init}, gamma_p={self.gamma_p.item():.4g}, gamma_q={self.gamma_q.item():.4g}, "
                f"eval_samples={self.eval_samples})")


register("platipus", PLATIPUS)
