"""ANIL — Almost No Inner Loop (Raghu, Raghu, Bengio & Vinyals, ICLR 2020)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

from torch import Tensor, nn

from ..functional import LearningRate, LossFn, Params, params_of
from .base import register
from .maml import MAML, Batching, BNMode, MAMLConfig, query_loss as maml_query_loss
from .settings import retemplate, setting


def query_loss(model: nn.Module, theta: Params, buffers: Params, task: Sequence[Tensor], loss_fn: LossFn,
               lr: LearningRate, steps: int, first_order: bool = False, head: str = "head."):
    """ANIL's objective on one task: MAML's :func:`~metalib.algorithms.maml.query_loss` with one change —
    the inner loop adapts the head :math:`\\theta_h` only; the body :math:`\\theta_b` goes in with the
    fixed tensors (so the adapted body is θ_b itself). Returns what MAML's does."""
    body = {k: v for k, v in theta.items() if not k.startswith(head)}
    heads = {k: v for k, v in theta.items() if k.startswith(head)}
    return maml_query_loss(model, heads, {**buffers, **body}, task, loss_fn, lr, steps, first_order)


@dataclass(kw_only=True)
class ANILConfig(MAMLConfig):
    """An ANIL run: MAML's settings and the name prefix of the head (the parameters the inner loop adapts)."""

    head: str = setting("head.", "name prefix of the parameters the inner loop adapts (the head)")


class ANIL(MAML):
    r"""MAML whose inner loop adapts the network's head only; the body is shared by all tasks.

    Split :math:`\theta = (\theta_b, \theta_h)` into the body :math:`\theta_b` (the feature extractor) and
    the head :math:`\theta_h` (the parameters whose names start with ``head``, e.g. Conv-4's linear
    classifier ``head.weight [N, d]``, ``head.bias [N]``). For each task the inner loop is MAML's on the
    head alone (Raghu et al. 2020, sec. 4):

    .. math:: \phi_h^{(0)} = \theta_h,\qquad
              \phi_h^{(j+1)} = \phi_h^{(j)} - \alpha \nabla_{\phi_h} \mathcal{L}^{s}_{\mathcal{T}_i}\big(f_{(\theta_b,\, \phi_h^{(j)})}\big),
              \qquad \phi_b = \theta_b \ \text{(not adapted)},

    and the outer loop minimises MAML's objective :math:`\frac{1}{T}\sum_i \mathcal{L}^{q}_{\mathcal{T}_i}(f_{(\theta_b,
    \phi_{h,i})})` over *both* :math:`\theta_b` and :math:`\theta_h`. Second order, the body's meta-gradient flows
    through the query features and through the support features that the head's inner gradients depend on;
    ``first_order=True`` treats the inner gradients as constants (the body then learns from the query
    features only). The paper's finding: this matches MAML's accuracy — MAML's inner loop mostly *reuses*
    features rather than learning new ones.

    Implementation: MAML's :func:`~metalib.algorithms.maml.query_loss` with the head as ``theta`` and the
    body as fixed tensors (passed with the buffers): :meth:`inner_params` is all that differs from MAML.

    Args:
        model: a network whose head parameters are named ``head.*`` (Conv-4 with ``n_classes``), or name
            them with ``head``.
        head: the name prefix (or prefixes) of the parameters the inner loop adapts (default ``"head."``;
            ``ANILConfig.head``, ``--head`` of ``train_fewshot.py``: one prefix).
        inner_lr, inner_steps, first_order, batching, bn_mode, recompute_steps, loss_fn, eval_steps: as
            :class:`metalib.algorithms.MAML`.
    """

    name = "anil"
    config_class = ANILConfig
    # Raghu et al. 2020 (sec. 4 and appendix): ANIL is trained with MAML's hyperparameters and
    # architecture, so its settings are MAML's (Finn et al. 2017, appendix A.1, see maml.py). The paper
    # reports Omniglot 20-way and miniImageNet 5-way; 5-way Omniglot uses MAML's 5-way settings.
    paper_settings = retemplate(MAML.paper_settings, ANILConfig)
    # issue #29: a schedule for ~30 CPU-minutes on one thread, chosen on the validation split
    # (benchmarks/README.md "Time to accuracy"; grid and results in benchmarks/results/budget_search.json):
    # Adam 0.004 halved every 6,950 iterations, one 5-way 1-shot episode (15 queries/class) per update
    budget_settings = {
        ("omniglot", 5, 1): dataclasses.replace(paper_settings[("omniglot", 5, 1)], train_way=5, train_shot=1, train_query=15, meta_batch=1, meta_lr=0.004,
                                 lr_schedule="step", lr_decay_every=6950, lr_decay=0.5, iterations=27800),
    }

    def __init__(
        self,
        model: nn.Module,
        inner_lr: float = 0.01,
        inner_steps: int = 1,
        first_order: bool = False,
        head: Union[str, Sequence[str]] = "head.",
        batching: Batching = "auto",
        bn_mode: BNMode = "transductive",
        recompute_steps: bool = False,
        loss_fn: Optional[LossFn] = None,
        eval_steps: Optional[int] = None,
    ) -> None:
        super().__init__(model, inner_lr=inner_lr, inner_steps=inner_steps, first_order=first_order,
                         batching=batching, bn_mode=bn_mode, recompute_steps=recompute_steps, loss_fn=loss_fn,
                         eval_steps=eval_steps)
        prefixes = (head,) if isinstance(head, str) else tuple(head)
        if not prefixes or not all(isinstance(p, str) and p for p in prefixes):
            raise ValueError(f"head must be a non-empty name prefix or a list of them, got {head!r}")
        self.head_prefixes: Tuple[str, ...] = prefixes
        names = list(params_of(model))
        heads = [n for n in names if self.is_head(n)]
        if not heads:
            raise ValueError(f"no parameter of the model starts with {' or '.join(map(repr, prefixes))}; ANIL adapts "
                             f"the head only: name it with head=... (parameters: {', '.join(names[:6])}"
                             f"{', ...' if len(names) > 6 else ''})")
        if len(heads) == len(names):
            raise ValueError(f"every parameter starts with {' or '.join(map(repr, prefixes))}: ANIL would adapt the "
                             "whole network (that is MAML); name only the head's parameters")

    def is_head(self, name: str) -> bool:
        """Whether parameter ``name`` belongs to the head (is adapted by the inner loop)."""
        return name.startswith(self.head_prefixes)

    def inner_params(self, theta: Params, buffers: Params) -> Tuple[Params, Params]:
        """The one change to MAML (:func:`query_loss`): the inner loop adapts the head; the body is held fixed."""
        head = {k: v for k, v in theta.items() if self.is_head(k)}
        return head, {**buffers, **{k: v for k, v in theta.items() if k not in head}}

    def describe(self) -> str:
        return f"ANIL ({'first' if self.first_order else 'second'}-order)"

    @property
    def short_name(self) -> str:
        return "FO-ANIL" if self.first_order else "ANIL"

    def __repr__(self) -> str:
        return (f"ANIL(inner_lr={self.inner_lr}, inner_steps={self.inner_steps}, first_order={self.first_order}, "
                f"head={self.head_prefixes!r}, batching={self.batching!r}, bn_mode={self.bn_mode!r})")


register("anil", ANIL)
register("foanil", ANIL, first_order=True)
