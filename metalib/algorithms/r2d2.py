"""R2-D2: ridge regression as a differentiable head (Bertinetto, Henriques, Torr & Vedaldi, ICLR 2019)."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..functional import check_positive
from .base import EpisodeClassifier, check_network, no_loss_fn, register
from .settings import FewShotConfig, setting

Solver = Literal["auto", "primal", "woodbury"]


def ridge_solution(x: Tensor, y: Tensor, lam: Tensor, solver: Solver = "auto") -> Tensor:
    r"""The ridge-regression weights :math:`W = \arg\min_W \|XW - Y\|^2 + \lambda\|W\|^2`, differentiably.

    .. math:: W = (X^\top X + \lambda I_p)^{-1} X^\top Y \quad\text{(primal, a } p \times p \text{ system)}
              \;=\; X^\top (X X^\top + \lambda I_n)^{-1} Y \quad\text{(Woodbury, } n \times n\text{)}

    (Bertinetto et al. 2019, eqs. 5-6). Both are solved with :func:`torch.linalg.solve` (never an explicit
    inverse), so autograd differentiates through the solve.

    Args:
        x: ``[..., n, p]`` (rows: examples); y: ``[..., n, m]`` targets; lam: :math:`\lambda > 0` (a number
            or a 0-dim tensor).
        solver: ``"primal"``, ``"woodbury"``, or ``"auto"`` (default): Woodbury when the features
            outnumber the examples (``p > n``), the smaller system either way.
    Returns:
        ``[..., p, m]``.
    """
    if x.dim() < 2 or y.dim() != x.dim() or x.shape[:-1] != y.shape[:-1]:
        raise ValueError(f"x [..., n, p] and y [..., n, m] must share their leading dimensions; got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    n, p = x.shape[-2:]
    if solver not in ("auto", "primal", "woodbury"):
        raise ValueError(f"solver must be 'auto', 'primal' or 'woodbury', got {solver!r}")
    woodbury = solver == "woodbury" or (solver == "auto" and p > n)
    xt = x.transpose(-1, -2)
    if woodbury:
        a = x @ xt + lam * torch.eye(n, dtype=x.dtype, device=x.device)
        return xt @ torch.linalg.solve(a, y)
    a = xt @ x + lam * torch.eye(p, dtype=x.dtype, device=x.device)
    return torch.linalg.solve(a, xt @ y)


@dataclass(kw_only=True)
class R2D2Config(FewShotConfig):
    """An R2-D2 run: the ridge regulariser λ and the output calibration."""

    init_lambda: float = setting(50.0, "initial ridge regulariser lambda", low=0)
    init_scale: float = setting(10.0, "initial output scale alpha", low=0)
    init_bias: float = setting(0.0, "initial output bias beta")
    learn_lambda: bool = setting(True, "meta-learn lambda (else it stays at init_lambda)")
    solver: str = setting("auto", "the ridge solve: auto, primal or woodbury")


class R2D2(EpisodeClassifier):
    r"""R2-D2: a closed-form ridge-regression classifier on the embedding of the support set.

    For one N-way task with ``n = N·K`` support images: embed them, :math:`Z = f_\phi(x_s)` ``[n, d]``, append
    a column of ones for the bias, :math:`X = [Z, \mathbf 1] / \sqrt n` ``[n, d+1]``, and regress the one-hot
    labels :math:`Y / \sqrt n` ``[n, N]`` (the official code's scaling, equivalent to :math:`\lambda n` on the
    unscaled problem):

    .. math:: W = \Lambda(Z, Y) = (X^\top X + \lambda I)^{-1} X^\top Y = X^\top (X X^\top + \lambda I)^{-1} Y
              \qquad [d+1, N]

    (eqs. 5-6; the Woodbury form is an ``n × n`` system — 5 × 5 for 5-way 1-shot against 65 × 65 for the
    primal on a 64-dimensional embedding). The queries are scored by the regression, then calibrated by a
    learned scale and bias for the softmax (sec. 3.2): :math:`\hat Y_q = \alpha\,[Z_q, \mathbf 1]\,W + \beta`
    ``[Q, N]``, and the loss is the query cross-entropy. The meta-parameters — the embedding :math:`\phi`,
    :math:`\alpha`, :math:`\beta` and :math:`\lambda` — are learned by back-propagating through the solve; there is
    no inner loop to unroll.

    :math:`\lambda` is learned as the paper describes, as :math:`\log\lambda` (metalib's parameterisation: it stays
    positive under any Adam step; the official code learns λ itself and, in its default config, keeps it
    fixed at its initial 50).

    BatchNorm: the support and query images of a task are embedded in one forward pass (as the official
    code does in training, and as metalib's ProtoNet does), so with Conv-4's batch statistics the episode is
    normalised transductively, at training and test time (the code switches to running statistics at test).

    Args:
        encoder: maps ``[n, *x_shape]`` to embeddings (flattened after the batch dimension), e.g. Conv-4
            without a head.
        init_lambda: λ's initial value (the official code: 50).
        init_scale, init_bias: α's and β's initial values (the official code: scale 10 on Omniglot and
            CIFAR-FS, 1e-4 on miniImageNet; bias 0).
        learn_lambda: meta-learn λ (default, the paper) or keep it fixed.
        solver: ``"auto"`` (Woodbury when features outnumber support images), ``"primal"`` or ``"woodbury"``.
    """

    name = "r2d2"
    short_name = "R2-D2"  # a table column's name
    family = "optimisation-based"
    config_class = R2D2Config
    needs_head = False
    # Bertinetto et al. 2019 and the official code (github.com/bertinetto/r2d2: scripts/train/experiments.sh,
    # conf/fewshots.yaml): Adam 5e-3 halved every 20 epochs of 100 episodes (= 2,000 episodes), one episode
    # per update; Omniglot trained 60-way (miniImageNet 16-way) with a random number of shots per class
    # (1-10; metalib trains with the test K — its sampler has a fixed K), init scale 10 (Omniglot) / 1e-4
    # (miniImageNet), λ 50; at most 1,200 epochs with early stopping (patience 300): 120,000 episodes is
    # the code's bound, not a trained length. Test: 10,000 episodes in the code (metalib: 600). The code's
    # backbone is 96-192-384-512 filters (or 64 x 4, "RRNet_small"): metalib uses Conv-4 (64 filters).
    # train_query (queries per class in training episodes) is metalib's choice.
    paper_settings = {
        **{("omniglot", n, k): R2D2Config(train_way=60, train_query=5, meta_batch=1, meta_lr=5e-3, lr_decay_every=2000,
                                    iterations=120_000, init_scale=10.0, init_lambda=50.0)
           for n in (5, 20) for k in (1, 5)},
        **{("miniimagenet", 5, k): R2D2Config(train_way=16, train_query=15, meta_batch=1, meta_lr=5e-3, lr_decay_every=2000,
                                        iterations=120_000, init_scale=1e-4, init_lambda=50.0)
           for k in (1, 5)},
    }
    # issue #29: a schedule for ~30 CPU-minutes on one thread, chosen on the validation split
    # (benchmarks/README.md "Time to accuracy"; grid and results in benchmarks/results/budget_search.json):
    # Adam 0.004, cosine to x0.02 over 29,900 iterations, one 5-way 1-shot episode (15 queries/class) per update
    budget_settings = {
        ("omniglot", 5, 1): dataclasses.replace(paper_settings[("omniglot", 5, 1)], train_way=5, train_shot=1, train_query=15, meta_batch=1, meta_lr=0.004,
                                 lr_schedule="cosine", lr_decay_every=29900, lr_decay=0.02, iterations=29900),
    }

    def __init__(self, encoder: nn.Module, init_lambda: float = 50.0, init_scale: float = 10.0, init_bias: float = 0.0,
                 learn_lambda: bool = True, solver: Solver = "auto", loss_fn=None) -> None:
        check_network(encoder, "encoder")
        no_loss_fn(loss_fn, "R2-D2's loss is the query cross-entropy of its calibrated ridge scores")
        super().__init__(None)
        if solver not in ("auto", "primal", "woodbury"):
            raise ValueError(f"solver must be 'auto', 'primal' or 'woodbury', got {solver!r}")
        check_positive("init_lambda", init_lambda)
        if isinstance(init_scale, bool) or not isinstance(init_scale, (int, float)) or not math.isfinite(init_scale):
            raise ValueError(f"init_scale must be a finite number, got {init_scale!r}")
        if isinstance(init_bias, bool) or not isinstance(init_bias, (int, float)) or not math.isfinite(init_bias):
            raise ValueError(f"init_bias must be a finite number, got {init_bias!r}")
        self.encoder = encoder
        self.solver = solver
        self.learn_lambda = bool(learn_lambda)
        log_lam = torch.tensor(math.log(init_lambda))
        if self.learn_lambda:
            self.log_lambda = nn.Parameter(log_lam)
        else:
            self.register_buffer("log_lambda", log_lam)
        self.scale = nn.Parameter(torch.tensor(float(init_scale)))
        self.bias = nn.Parameter(torch.tensor(float(init_bias)))

    @property
    def model(self) -> nn.Module:
        """The embedding network, under the name every learner uses."""
        return self.encoder

    @property
    def lam(self) -> Tensor:
        """λ (0-dim, differentiable when learned)."""
        return self.log_lambda.exp()

    # ------------------------------------------------------------------ the base learner
    def embed(self, x: Tensor, params=None) -> Tensor:
        """``[n, *x_shape] -> [n, d]`` (R2-D2 does not adapt the network: ``params`` must be None)."""
        if params is not None:
            raise ValueError("R2-D2 does not adapt the embedding: params must be None")
        return self.encoder(x).flatten(1)

    def head(self, z_s: Tensor, y_s: Tensor, n_way: int) -> Tensor:
        r"""The ridge weights ``[d+1, N]`` (last row: the bias) for support embeddings ``z_s [n, d]`` and labels
        ``y_s [n]`` (see the class docstring)."""
        n = z_s.shape[0]
        x = torch.cat([z_s, z_s.new_ones(n, 1)], 1) / math.sqrt(n)
        y = F.one_hot(y_s, n_way).to(z_s.dtype) / math.sqrt(n)
        return ridge_solution(x, y, self.lam.to(z_s.dtype), self.solver)

    def scores(self, z_q: Tensor, w: Tensor) -> Tensor:
        r"""Calibrated query logits :math:`\alpha [Z_q, 1] W + \beta`: ``[Q, d] x [d+1, N] -> [Q, N]``."""
        return self.scale * (z_q @ w[:-1] + w[-1]) + self.bias

    def _split_embed(self, x_s: Tensor, x_q: Tensor) -> Tuple[Tensor, Tensor]:
        z = self.embed(torch.cat([x_s, x_q]))
        return z[: x_s.shape[0]], z[x_s.shape[0]:]

    def explain(self, x_s: Tensor, y_s: Tensor, x_q: Tensor, params=None):
        """One task in the embedding: ``z_s``, ``z_q``, ``logits``, the solved ``weight [N, d]`` / ``bias [N]``
        (scale and bias folded in) and ``rule`` (see :meth:`metalib.algorithms.Learner.explain`)."""
        if params is not None:
            raise ValueError("R2-D2 does not adapt the embedding: params must be None")
        z_s, z_q = self._split_embed(x_s, x_q)
        w = self.head(z_s, y_s, int(y_s.max()) + 1)
        weight, bias = (self.scale * w[:-1].T).detach(), (self.scale * w[-1] + self.bias).detach()
        return {"z_s": z_s, "z_q": z_q, "logits": F.linear(z_q, weight, bias), "weight": weight, "bias": bias,
                "rule": lambda v: F.linear(v, weight, bias)}

    def task_logits(self, x_s: Tensor, y_s: Tensor, x_q: Tensor, n_way: int) -> Tensor:
        """Calibrated ridge scores ``[Q, N]`` of one task (``x_s [N*K, ...]``, ``y_s [N*K]``, ``x_q [Q, ...]``);
        :meth:`logits`, the query cross-entropy, ``meta_backward`` and ``predict`` (no inner steps: the head is
        solved in closed form) come from :class:`EpisodeClassifier`."""
        z_s, z_q = self._split_embed(x_s, x_q)
        return self.scores(z_q, self.head(z_s, y_s, n_way))

    def describe(self) -> str:
        return "R2-D2 (ridge-regression head)"


    def __repr__(self) -> str:
        return (f"R2D2(encoder={self.encoder.__class__.__name__}, lambda={float(self.lam.detach()):.4g} "
                f"({'learned' if self.learn_lambda else 'fixed'}), scale={float(self.scale.detach()):.4g}, "
                f"bias={float(self.bias.detach()):.4g}, solver={self.solver!r})")


register("r2d2", R2D2)
