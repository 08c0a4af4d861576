r"""MetaGAN with MAML (Zhang, Che, Ghahramani, Bengio & Song, "MetaGAN: An Adversarial Approach to Few-Shot
Learning", NeurIPS 2018).

A task-conditioned generator :math:`G(z, c_\mathcal{T})` makes fake samples for each episode; the few-shot
classifier becomes an :math:`(N+1)`-way *discriminator-classifier* :math:`D` whose extra class is "fake". With
:math:`p_j(x)` the softmax of :math:`D`'s :math:`N+1` logits (class :math:`N` = fake), the discriminator's loss on
real labelled samples :math:`(x, y)` and fakes :math:`\tilde x` is (the semi-supervised GAN loss the paper builds on)

.. math:: \mathcal{L}_D = \mathbb{E}_{(x,y)}\big[-\log p_y(x)\big] + \lambda\,\mathbb{E}_{\tilde x}\big[-\log p_N(\tilde x)\big],

(:math:`\lambda` = ``fake_weight``, 1 as written),

used as MAML's task loss: the inner step adapts :math:`D` on the support set and its fakes,
:math:`\phi = \theta - \alpha\nabla_\theta \mathcal{L}_D(\theta; D^s, \tilde X^s)`, and the outer loss is
:math:`\mathcal{L}_D(\phi; D^q, \tilde X^q)`. The generator gets *only* the fake term, reversed (non-saturating):
:math:`\mathcal{L}_G = \mathbb{E}_{\tilde x}\big[-\log(1 - p_N(\tilde x))\big]` under the adapted :math:`\phi`
(held fixed), so it learns to make samples the classifier takes for real ones of the task ("bad" samples near the
task's classes sharpen its decision boundaries, the paper's argument). Predictions are the first :math:`N` logits.

The task context :math:`c_\mathcal{T}` is the mean of an encoding of the support images (the paper: an instance
encoder and mean pooling); the generator is a small MLP here (the paper: a deconvolutional network).

Real and fake images go through :math:`D` in *separate* forward passes: with transductive BatchNorm a batch is
normalised by its own statistics, and a query batch at test time holds no fakes; one concatenated [real; fake]
batch in training normalised the real images differently from test time (the first version did this, and its
with-generator accuracy fell far below the ablation's: RESULTS.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..functional import LossFn, Params, forward, sgd_step
from .base import register
from .settings import FewShotConfig, retemplate, setting
from .maml import MAML, Batching, BNMode, adapt_task


def discriminator_loss(logits_real: Tensor, y_real: Tensor, logits_fake: Tensor, fake_weight: float = 1.0) -> Tensor:
    r""":math:`\mathcal{L}_D`: mean :math:`-\log p_y` over the real samples (``logits_real [n, N+1]``, labels in
    ``[0, N)``) plus ``fake_weight`` :math:`\lambda` times the mean :math:`-\log p_N` (the fake class, the last)
    over the fakes (``logits_fake [m, N+1]``)."""
    fake = torch.full((logits_fake.shape[0],), logits_fake.shape[1] - 1, dtype=torch.long, device=logits_fake.device)
    return F.cross_entropy(logits_real, y_real) + fake_weight * F.cross_entropy(logits_fake, fake)


def generator_loss(logits_fake: Tensor) -> Tensor:
    r""":math:`\mathcal{L}_G = \text{mean}\,[-\log(1 - p_N(\tilde x))]`: the discriminator's fake term, reversed
    (non-saturating), from the fakes' logits ``[m, N+1]``; :math:`1 - p_N` is the probability of the real classes."""
    logp = F.log_softmax(logits_fake, dim=-1)
    return -torch.logsumexp(logp[:, :-1], dim=-1).mean()


class TaskGenerator(nn.Module):
    r""":math:`G(z, c)`: ``n`` fake images ``[n, C, H, W]`` in (0, 1) from noise :math:`z \sim \mathcal{N}(0, I)` and
    the task context :math:`c` = mean of ``tanh(W x)`` over the support images (``[k, C, H, W]``)."""

    def __init__(self, in_channels: int, image_size: int, noise: int = 16, context: int = 32, hidden: int = 128):
        super().__init__()
        self.shape, self.noise = (in_channels, image_size, image_size), noise
        self.encode = nn.Linear(in_channels * image_size * image_size, context)
        self.net = nn.Sequential(nn.Linear(noise + context, hidden), nn.ReLU(),
                                 nn.Linear(hidden, in_channels * image_size * image_size))

    def forward(self, x_support: Tensor, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """``n`` fakes for the task of ``x_support``; ``generator``: a seeded ``torch.Generator`` for :math:`z`."""
        c = torch.tanh(self.encode(x_support.flatten(1))).mean(0)
        z = torch.randn(n, self.noise, generator=generator, device=x_support.device, dtype=x_support.dtype)
        return torch.sigmoid(self.net(torch.cat([z, c.expand(n, -1)], dim=1))).view(n, *self.shape)


def real_and_fake_logits(model: nn.Module, params: Params, buffers: Params, x_real: Tensor,
                         x_fake: Tensor) -> Tuple[Tensor, Tensor]:
    """``(D(x_real) [n, N+1], D(x_fake) [m, N+1])`` in two separate forward passes: with transductive BatchNorm
    each batch is normalised by its own statistics, so the real images are normalised as at test time (where no
    fakes are in the query batch) and the fakes cannot shift them (one concatenated batch did: a train/test
    mismatch)."""
    return forward(model, params, buffers, x_real), forward(model, params, buffers, x_fake)


def adapt_with_fakes(model: nn.Module, theta: Params, buffers: Params, x_s: Tensor, y_s: Tensor, f_s: Tensor,
                     lr: float, steps: int, first_order: bool = False,
                     fake_weight: float = 1.0) -> Tuple[Params, Tensor]:
    r"""MAML's inner loop on :math:`\mathcal{L}_D` (:func:`discriminator_loss`) of the support set ``x_s [k, ...]``,
    ``y_s [k]`` and the fakes ``f_s [m, ...]`` (held constant), real and fake in separate forward passes
    (:func:`real_and_fake_logits`): :math:`\phi \leftarrow \phi - \alpha\nabla_\phi\mathcal{L}_D`, ``steps`` times.
    Second order unless ``first_order`` (as :func:`metalib.algorithms.maml.adapt_task`).
    Returns ``(phi, support losses [steps])``."""
    phi, losses = theta, []
    create = not first_order and torch.is_grad_enabled()
    for _ in range(steps):
        with torch.enable_grad():
            src = {k: p if create and p.requires_grad else p.detach().requires_grad_() for k, p in phi.items()}
            real, fake = real_and_fake_logits(model, src, buffers, x_s, f_s)
            loss = discriminator_loss(real, y_s, fake, fake_weight)
            grads = torch.autograd.grad(loss, list(src.values()), create_graph=create, allow_unused=True,
                                        materialize_grads=True)
        phi = sgd_step(phi, dict(zip(src, grads)), lr)  # first order: phi still moves with theta, g is constant
        losses.append(loss.detach())
    return phi, torch.stack(losses) if losses else x_s.new_zeros(0)


def metagan_task(model: nn.Module, generator: nn.Module, theta: Params, buffers: Params, task: Sequence[Tensor],
                 lr: float, steps: int, n_fake: int, first_order: bool = False,
                 fake_weight: float = 1.0) -> Tuple[Tensor, Tensor, Tensor]:
    r"""One task ``(x_s, y_s, x_q, y_q)``: fakes for the support and the query sets (detached for :math:`D`),
    MAML's inner loop on :math:`\mathcal{L}_D` (support + fakes, :func:`adapt_with_fakes`), then
    :math:`\mathcal{L}_D(\phi)` on the query set and its fakes plus :math:`\mathcal{L}_G` (gradient into :math:`G`
    only); real and fake images always in separate forward passes. Returns ``(L_D + L_G, query logits [n_q, N],
    support losses [steps])``."""
    x_s, y_s, x_q, y_q = task
    fakes = generator(x_s, 2 * n_fake)
    f_s, f_q = fakes[:n_fake].detach(), fakes[n_fake:]
    phi, support_losses = adapt_with_fakes(model, theta, buffers, x_s, y_s, f_s, lr, steps, first_order, fake_weight)
    out, out_fake = real_and_fake_logits(model, phi, buffers, x_q, f_q.detach())
    loss_d_q = discriminator_loss(out, y_q, out_fake, fake_weight)
    fixed = {k: v.detach() for k, v in phi.items()}
    loss_g = generator_loss(forward(model, fixed, buffers, f_q))
    return loss_d_q + loss_g, out[:, :-1], support_losses


@dataclass(kw_only=True)
class MetaGANConfig(FewShotConfig):
    """A MetaGAN-on-MAML run: the run's fields, MAML's inner loop and MetaGAN's own (passed to :class:`MetaGAN`)."""

    inner_lr: float = setting(0.01, "inner-loop step size alpha", low=0)
    inner_steps: int = setting(1, "inner steps in training", low=0)
    test_inner_steps: int = setting(0, "inner steps at validation and test (0: inner_steps)", low=0)
    first_order: bool = setting(False, "first-order: no second-order terms")
    batching: str = setting("loop", "loop (a task loop) or vmap (batched)")
    bn_mode: str = setting("transductive", "BatchNorm: transductive (batch statistics) or module")
    n_fake: int = setting(5, "fake samples per set (support and query) of each task", low=1)
    use_generator: bool = setting(True, "train with the generator (false: the ablation, MAML on the (N+1)-way head)")
    fake_weight: float = setting(1.0, "weight of the fake-class term of the discriminator's loss", low=0)


class MetaGAN(MAML):
    r"""MetaGAN on MAML (see the module docstring): MAML's learner whose network has an :math:`(N+1)`-way head and
    whose task loss is :func:`metagan_task`; ``generator`` (:class:`TaskGenerator`) is part of the learner, so the
    outer optimiser trains it too. ``n_fake``: fake samples per set (support and query) of each task; ``fake_weight``: :math:`\lambda`, the weight of
    the fake-class term of :math:`\mathcal{L}_D` (1: the semi-supervised GAN loss as written).
    ``generator=False`` is the ablation "without the generator": plain MAML on the same (N+1)-way network."""

    name = "metagan"
    family = "generative"
    config_class = MetaGANConfig
    # the paper's schedules were not verified here (docs/references.md): a few-shot run starts from MAML's settings
    # (metalib's choice, not the paper's)
    paper_settings = retemplate(MAML.paper_settings, MetaGANConfig)

    def __init__(self, model: nn.Module, inner_lr: float = 0.01, inner_steps: int = 1, first_order: bool = False,
                 n_fake: int = 5, use_generator: bool = True, fake_weight: float = 1.0, batching: Batching = "loop",
                 bn_mode: BNMode = "transductive", loss_fn: Optional[LossFn] = None,
                 eval_steps: Optional[int] = None) -> None:
        super().__init__(model, inner_lr=inner_lr, inner_steps=inner_steps, first_order=first_order,
                         batching=batching, bn_mode=bn_mode, loss_fn=loss_fn, eval_steps=eval_steps)
        head = getattr(model, "head", None)
        if not isinstance(head, nn.Linear) or head.out_features < 2:
            raise ValueError("MetaGAN needs a network with a linear (N+1)-way head (model.head), e.g. Conv4(n_classes=N+1)")
        if isinstance(n_fake, bool) or not isinstance(n_fake, int) or n_fake < 1:
            raise ValueError(f"n_fake must be an int >= 1, got {n_fake!r}")
        if isinstance(fake_weight, bool) or not isinstance(fake_weight, (int, float)) or not fake_weight >= 0:
            raise ValueError(f"fake_weight must be a number >= 0, got {fake_weight!r}")
        self.n_fake, self.use_generator, self.fake_weight = n_fake, bool(use_generator), float(fake_weight)
        self.generator = TaskGenerator(getattr(model, "in_channels", 1), getattr(model, "image_size", 28))

    @classmethod
    def default_model(cls, in_channels: int, image_size: int, hidden: int, n_way: int) -> nn.Module:
        """Conv-4 with an ``n_way + 1`` head (the extra class: fake)."""
        from ..models import Conv4

        return Conv4(in_channels=in_channels, n_classes=n_way + 1, hidden=hidden, image_size=image_size)

    @property
    def fixed_way(self) -> Optional[int]:
        """N: the head's outputs less the fake class."""
        return int(self.model.head.out_features) - 1

    def uses_vmap(self) -> bool:
        return False  # the generator draws its own noise per task: the task loop

    def task_loss(self, theta: Params, buffers: Params, task: Sequence[Tensor], loss_fn: LossFn, steps: int,
                  first_order: bool) -> Tuple[Tensor, Tensor, Tensor]:
        if not self.use_generator:  # the ablation: MAML's loss on the first N logits
            x_s, y_s, x_q, y_q = task
            phi, losses = adapt_task(self.model, theta, buffers, x_s, y_s, _first_n_ce, self.inner_lr, steps, first_order)
            out = forward(self.model, phi, buffers, x_q)[:, :-1]
            return F.cross_entropy(out, y_q), out, losses
        return metagan_task(self.model, self.generator, theta, buffers, task, self.inner_lr, steps, self.n_fake,
                            first_order, self.fake_weight)

    def _adapt(self, theta: Params, buffers: Params, x_s: Tensor, y_s: Tensor, loss_fn: LossFn, steps: int,
               first_order: bool):
        """Test time: the inner loop on the support set and fresh fakes (without the generator: the support alone)."""
        if not self.use_generator:
            phi, losses = adapt_task(self.model, theta, buffers, x_s, y_s, _first_n_ce, self.inner_lr, steps, first_order)
            return phi, buffers, losses
        f_s = self.generator(x_s, self.n_fake).detach()
        phi, losses = adapt_with_fakes(self.model, theta, buffers, x_s, y_s, f_s, self.inner_lr, steps, first_order,
                                       self.fake_weight)
        return phi, buffers, losses

    def predict(self, x_s: Tensor, y_s: Tensor, x_q: Tensor, n_way: Optional[int] = None,
                steps: Optional[int] = None) -> Tensor:
        """The first N logits (the real classes) of the adapted discriminator-classifier."""
        return super().predict(x_s, y_s, x_q, n_way, steps)[..., :-1]

    @torch.no_grad()
    def discriminate(self, x_s: Tensor, y_s: Tensor, x: Tensor, steps: Optional[int] = None,
                     generator: Optional[torch.Generator] = None) -> Tuple[Tensor, Tensor, Tensor]:
        r"""One task's view of the discriminator-classifier: ``n_fake`` fakes from :math:`G` for the support set
        ``x_s [k, C, H, W]`` (noise from ``generator``), the inner loop on the support set and those fakes
        (``steps``, default :attr:`eval_steps`; the ablation: the support set alone), and the :math:`(N+1)`-way
        probabilities (last: fake) of the adapted :math:`D` for ``x [n, C, H, W]`` and for the fakes.
        Returns ``(fakes [m, C, H, W], p(x) [n, N+1], p(fakes) [m, N+1])``."""
        steps = self.eval_steps if steps is None else steps
        theta, buffers = dict(self.model.named_parameters()), dict(self.model.named_buffers())
        fakes = self.generator(x_s, self.n_fake, generator=generator)
        with self._bn_context():
            if self.use_generator:
                phi, _ = adapt_with_fakes(self.model, theta, buffers, x_s, y_s, fakes, self.inner_lr, steps, True,
                                          self.fake_weight)
            else:
                phi, _ = adapt_task(self.model, theta, buffers, x_s, y_s, _first_n_ce, self.inner_lr, steps, True)
            p_x, p_fake = (F.softmax(logits, dim=-1) for logits in real_and_fake_logits(self.model, phi, buffers, x,
                                                                                        fakes))
        return fakes, p_x, p_fake

    def describe(self) -> str:
        return "MetaGAN (MAML)" if self.use_generator else "MAML on an (N+1)-way head (MetaGAN without generator)"

    @property
    def short_name(self) -> str:
        return "MetaGAN" if self.use_generator else "MetaGAN-noG"


def _first_n_ce(pred: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(pred[:, :-1], y)


register("metagan", MetaGAN)
