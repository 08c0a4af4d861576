"""Meta-SGD (Li, Zhou, Chen & Li, 2017): MAML with a learned learning rate for every parameter entry."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ..functional import LossFn, Params, params_of
from .base import register
from .maml import MAML, Batching, BNMode, MAMLConfig, query_loss as maml_query_loss
from .settings import setting

AlphaInit = Union[float, Sequence[float]]

PAPER_ALPHA_RANGE = (0.005, 0.1)
"""Li et al. 2017, sec. 4 (experimental setup): every entry of α is initialised at random in [0.005, 0.1]."""


def alpha_key(name: str) -> str:
    """The key of parameter ``name`` in :attr:`MetaSGD.alpha` (``nn.ParameterDict`` keys cannot hold ``.``)."""
    return name.replace(".", "/")


def check_alpha_init(alpha_init: AlphaInit) -> Tuple[float, float]:
    """``(low, high)`` of α's initial values: a number ``c`` gives ``(c, c)``; a pair gives a uniform range.
    Raises ``ValueError`` for anything else (negative, non-finite, low > high)."""
    if isinstance(alpha_init, bool):
        raise TypeError(f"alpha_init must be a number or a (low, high) pair, got {alpha_init!r}")
    if isinstance(alpha_init, (int, float)):
        low = high = float(alpha_init)
    else:
        try:
            low, high = (float(v) for v in alpha_init)
        except (TypeError, ValueError):
            raise TypeError(f"alpha_init must be a number or a (low, high) pair, got {alpha_init!r}") from None
    if not (math.isfinite(low) and math.isfinite(high)) or low < 0 or high < low:
        raise ValueError(f"alpha_init must give 0 <= low <= high (finite), got {alpha_init!r}")
    return low, high


def query_loss(model: nn.Module, theta: Params, alpha: Dict[str, Tensor], buffers: Params, task: Sequence[Tensor],
               loss_fn: LossFn, steps: int, first_order: bool = False):
    """Meta-SGD's objective on one task: MAML's :func:`~metalib.algorithms.maml.query_loss` with one change —
    the step size is α, a tensor per parameter (``{name: tensor of the parameter's shape}``), so each
    inner step is :math:`\\theta - \\boldsymbol\\alpha \\circ \\nabla \\mathcal{L}^s` and α is meta-learned too."""
    return maml_query_loss(model, theta, buffers, task, loss_fn, alpha, steps, first_order)


@dataclass(kw_only=True)
class MetaSGDConfig(MAMLConfig):
    """A Meta-SGD run: MAML's settings but ``inner_lr``: the step sizes α are learned, from ``alpha_init``."""

    alpha_init: Any = setting(PAPER_ALPHA_RANGE, "initial step sizes alpha: a number, or [low, high] (uniform)")
    unused = ("inner_lr",)


class MetaSGD(MAML):
    r"""Meta-SGD: learn the initialisation :math:`\theta` *and* a step size for every entry of it.

    The inner step of MAML with the scalar :math:`\alpha` replaced by a tensor :math:`\boldsymbol\alpha`
    of the shape of :math:`\theta` (Li et al. 2017, eq. 3), applied element-wise:

    .. math:: \phi_i = \theta - \boldsymbol\alpha \circ \nabla_\theta \mathcal{L}^{s}_{\mathcal{T}_i}(f_\theta),
              \qquad \boldsymbol\alpha_w \in \mathbb{R}^{\text{shape}(w)}\ \text{for every tensor } w \text{ of } \theta,

    repeated ``inner_steps`` times with the same :math:`\boldsymbol\alpha`. The meta-objective is MAML's
    (eq. 4): :math:`\min_{\theta, \boldsymbol\alpha} \frac{1}{T}\sum_i \mathcal{L}^{q}_{\mathcal{T}_i}(f_{\phi_i})`,
    minimised over *both* by the outer optimiser. Because :math:`\boldsymbol\alpha` is a vector, it sets the
    direction of the update as well as its size (its entries may become negative).

    :math:`\boldsymbol\alpha` lives in :attr:`alpha` (an ``nn.ParameterDict`` of the learner, one tensor per
    parameter of ``model``, keyed by :func:`alpha_key`), so ``learner.parameters()`` — what the outer optimiser
    is built on — holds θ *and* α, and ``state_dict()`` saves both. Everything else is MAML's machinery
    (task loop or vmap, per-task backward, ``recompute_steps``, BatchNorm mode): only the step size
    (:meth:`step_size`) differs.

    Args:
        model: the network (θ is its parameters).
        inner_steps: inner steps at meta-training (the paper: 1).
        first_order: drop the second-order terms of θ (the α-gradient is kept: ∂φ/∂α = −∇L).
        alpha_init: α's initial entries — a number (every entry), or ``(low, high)``: uniform in
            that range (default: the paper's ``(0.005, 0.1)``).
        batching, bn_mode, recompute_steps, loss_fn, eval_steps: as :class:`metalib.algorithms.MAML`.
    """

    name = "metasgd"
    config_class = MetaSGDConfig
    # Li et al. 2017, sec. 4: one adaptation step at meta-training *and* at meta-test time, α initialised in
    # [0.005, 0.1] (PAPER_ALPHA_RANGE). The paper's other classification settings (meta-batch, iterations)
    # were not verified here: metalib uses MAML's (Finn et al. 2017, appendix A.1): Omniglot 5-way
    # meta-batch 32, 60,000 iterations, Adam 1e-3, queries = K per class; miniImageNet meta-batch 4,
    # 15 queries, 32 filters. Those are metalib's choice, not Meta-SGD's published ones.
    paper_settings = {
        **{("omniglot", 5, k): MetaSGDConfig(inner_steps=1, test_inner_steps=1, meta_batch=32, iterations=60_000,
                                             train_query=k, meta_lr=1e-3) for k in (1, 5)},
        **{("omniglot", 20, k): MetaSGDConfig(inner_steps=1, test_inner_steps=1, meta_batch=16, iterations=60_000,
                                              train_query=k, meta_lr=1e-3) for k in (1, 5)},
        **{("miniimagenet", 5, k): MetaSGDConfig(inner_steps=1, test_inner_steps=1, meta_batch=4, iterations=60_000,
                                                 train_query=15, meta_lr=1e-3, hidden=32) for k in (1, 5)},
    }
    # issue #29: a schedule for ~30 CPU-minutes on one thread, chosen on the validation split
    # (benchmarks/README.md "Time to accuracy"; grid and results in benchmarks/results/budget_search.json):
    # Adam 0.002, cosine to x0.02 over 25,300 iterations, one 5-way 1-shot episode (15 queries/class) per update
    budget_settings = {
        ("omniglot", 5, 1): dataclasses.replace(paper_settings[("omniglot", 5, 1)], train_way=5, train_shot=1, train_query=15, meta_batch=1, meta_lr=0.002,
                                 lr_schedule="cosine", lr_decay_every=25300, lr_decay=0.02, iterations=25300),
    }

    def __init__(
        self,
        model: nn.Module,
        inner_steps: int = 1,
        first_order: bool = False,
        alpha_init: AlphaInit = PAPER_ALPHA_RANGE,
        batching: Batching = "auto",
        bn_mode: BNMode = "transductive",
        recompute_steps: bool = False,
        loss_fn: Optional[LossFn] = None,
        eval_steps: Optional[int] = None,
    ) -> None:
        low, high = check_alpha_init(alpha_init)
        # MAML's scalar inner_lr is not used by Meta-SGD's step; it records the mean initial α (for display)
        super().__init__(model, inner_lr=max((low + high) / 2, 1e-12), inner_steps=inner_steps,
                         first_order=first_order, batching=batching, bn_mode=bn_mode,
                         recompute_steps=recompute_steps, loss_fn=loss_fn, eval_steps=eval_steps)
        self.alpha_init = (low, high)
        self.alpha = nn.ParameterDict()
        for n, p in params_of(model).items():
            a = torch.empty_like(p, requires_grad=False)
            a.uniform_(low, high) if high > low else a.fill_(low)
            self.alpha[alpha_key(n)] = nn.Parameter(a)

    # ------------------------------------------------------------------ α
    def learning_rates(self) -> Dict[str, Tensor]:
        r"""``{parameter name: α tensor}`` — the per-entry step sizes (the learner's own parameters, with
        their autograd history: differentiable)."""
        return {n: self.alpha[alpha_key(n)] for n in params_of(self.model)}

    def step_size(self) -> Dict[str, Tensor]:
        """The one change to MAML (:func:`query_loss`): the step size is α, per parameter entry."""
        lr = self.learning_rates()
        missing = sorted(set(params_of(self.model)) - set(lr))
        if missing:
            raise ValueError(f"Meta-SGD has no learning rate for {missing}: the model's parameters changed after "
                             "the learner was built")
        return lr

    def describe(self) -> str:
        return f"Meta-SGD ({'first' if self.first_order else 'second'}-order)"

    @property
    def short_name(self) -> str:
        return "FO-Meta-SGD" if self.first_order else "Meta-SGD"

    def __repr__(self) -> str:
        n = sum(a.numel() for a in self.alpha.values())
        return (f"MetaSGD(inner_steps={self.inner_steps}, first_order={self.first_order}, alpha: {n:,} entries "
                f"initialised in [{self.alpha_init[0]:g}, {self.alpha_init[1]:g}], batching={self.batching!r}, "
                f"bn_mode={self.bn_mode!r})")


register("metasgd", MetaSGD)
