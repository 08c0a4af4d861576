"""The LSTM meta-learner (Ravi & Larochelle, ICLR 2017): an LSTM whose cell state is the learner's weights."""
from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..batch import as_batch, check_pair
from ..functional import (
    LossFn, Params, batchnorm_context, buffers_of, check_finite, check_steps, forward, params_of, support_grad,
)
from ..engine import FusedMetaLSTMCell
from .base import Learner, callable_loss, register
from .maml import MAML, BNMode
from .settings import FewShotConfig, setting

PREPROCESS_P = 10.0
"""Andrychowicz et al. 2016 (appendix A): the preprocessing constant p = 10."""


def preprocess(x: Tensor, p: float = PREPROCESS_P) -> Tensor:
    r"""Andrychowicz et al.'s (2016, appendix A) scaling of gradients and losses for an LSTM input:

    .. math:: x \mapsto \begin{cases} \big(\tfrac{\log |x|}{p},\ \operatorname{sgn}(x)\big) & |x| \ge e^{-p} \\
              \big(-1,\ e^{p} x\big) & \text{otherwise} \end{cases}

    so magnitudes spanning many orders become numbers of order one. ``[...] -> [..., 2]``.
    """
    big = x.abs() >= math.exp(-p)
    tiny = torch.finfo(x.dtype).tiny
    first = torch.where(big, torch.log(x.abs().clamp_min(tiny)) / p, torch.full_like(x, -1.0))
    second = torch.where(big, torch.sign(x), x * math.exp(p))
    return torch.stack([first, second], -1)


@dataclass
class Unroll:
    """One task's inner loop, step by step (what :meth:`LSTMMetaLearner.unroll` records; all detached).

    ``names``/``shapes``: the learner's parameters in the order of the flat vectors; ``losses [steps]``:
    the support loss before each step; ``grads``, ``input_gates``, ``forget_gates``, ``updates``:
    ``[steps, P]`` — per coordinate, the gradient ∇_t, the gates i_t and f_t, and the change
    c_t − c_{t−1} the LSTM made (SGD's for the same gradient would be −η ∇_t).
    """

    names: List[str]
    shapes: List[torch.Size]
    losses: Tensor
    grads: Tensor
    input_gates: Tensor
    forget_gates: Tensor
    updates: Tensor
    start: Tensor
    params: Params = field(repr=False, default_factory=dict)

    def slices(self) -> Dict[str, slice]:
        """``{parameter name: its slice of the flat vectors}``."""
        out, at = {}, 0
        for n, s in zip(self.names, self.shapes):
            k = math.prod(s)
            out[n] = slice(at, at + k)
            at += k
        return out


@dataclass(kw_only=True)
class LSTMMetaConfig(FewShotConfig):
    """An LSTM meta-learner run (``hidden`` is the Conv-4 width; ``lstm_hidden`` the optimiser LSTM's first layer's)."""

    inner_steps: int = setting(5, "steps of the learned optimiser in training", low=0)
    test_inner_steps: int = setting(0, "its steps at validation and test (0: inner_steps)", low=0)
    max_grad_norm: float = setting(0.25, "clip the meta-gradient's norm to this (0: no clipping)", low=0)
    lstm_hidden: int = setting(20, "hidden units of the optimiser LSTM's first layer (the paper: 20)", low=1)
    bn_mode: str = setting("transductive", "BatchNorm: transductive (batch statistics) or module")
    fused: bool = setting(True, "the fused cell step (hand-written backward; the same function, faster)")


class LSTMMetaLearner(Learner):
    r"""Optimisation as a model for few-shot learning: a coordinate-wise LSTM *is* the learner's optimiser.

    The cell state of the meta-learner LSTM holds the learner's parameters, :math:`c_t = \theta_t`, and its
    update is a learned gradient step (Ravi & Larochelle 2017, eqs. 2-4):

    .. math::
        c_t &= f_t \circ c_{t-1} - i_t \circ \nabla_t,\qquad \nabla_t = \nabla_{\theta_{t-1}}\mathcal{L}^{s}(f_{\theta_{t-1}}),\\
        i_t &= \sigma\big(W_I \cdot [h_t,\ c_{t-1},\ i_{t-1}] + b_I\big),\qquad
        f_t = \sigma\big(W_F \cdot [h_t,\ c_{t-1},\ f_{t-1}] + b_F\big),

    for every coordinate of θ separately with *shared* weights :math:`W_I, W_F \in \mathbb{R}^{H+2}` and biases
    :math:`b_I, b_F` (coordinate-wise: ``P`` parameters are ``P`` rows of one batch). :math:`h_t \in \mathbb{R}^{H}` is
    the output of a first, ordinary LSTM (``nn.LSTMCell``, hidden size :math:`H = 20`, also shared across
    coordinates) whose input is the preprocessed loss and gradient
    ``[preprocess(L_t), preprocess(∇_t)]`` ``[P, 4]`` (:func:`preprocess`, Andrychowicz et al. 2016) — the
    paper's 2-layer arrangement, where the gates see (∇, L, θ_{t−1}, the previous gate). With
    :math:`f_t = 1`, :math:`i_t = \eta` the update is SGD with learning rate η (:meth:`gates_pinned`).

    * **The learner's initialisation is the LSTM's initial cell state**, :math:`c_0 = \theta_0`: the network's
      own parameters (``model``), meta-learned with the LSTM.
    * **Training** (sec. 3.2): ``inner_steps`` updates on the support set (the whole support set per step),
      then the query cross-entropy of :math:`\theta_T = c_T`, back-propagated through the unrolled updates
      into the LSTMs and :math:`c_0`. As in the paper, the learner's gradients and losses are inputs that
      do not depend on the meta-learner (:math:`\partial \nabla_t / \partial(\cdot) = 0`: no second derivatives).
    * **Initialisation** (the official code): every LSTM weight uniform in [−0.01, 0.01], :math:`b_F` in [4, 5]
      and :math:`b_I` in [−5, −4], so training starts close to gradient descent with a small step size and
      a forget gate near 1.
    * **BatchNorm**: the paper (sec. 3.4) uses batch statistics while meta-training, and at meta-test the
      statistics of the episode's training set, accumulated over the inner steps, for its test set.
      metalib normalises each batch with its own statistics (transductive, as metalib's MAML) at
      meta-training *and* meta-test time: the support at each step, the queries at prediction.
    * **Outer step**: Adam on all meta-parameters, the meta-gradient's global norm clipped to
      ``max_grad_norm`` (0.25 in the official code).

    Args:
        model: the learner network (a Conv-4 with an ``N``-way head); its parameters are :math:`c_0`.
        inner_steps: updates per task (the paper: 12 for miniImageNet 1-shot, 5 for 5-shot).
        lstm_hidden: :math:`H`, the first LSTM's hidden size (20; the config's ``lstm_hidden``).
        max_grad_norm: clip the meta-gradient's norm before the outer step (``0``: no clipping).
        bn_mode: as :class:`metalib.algorithms.MAML`.
        loss_fn: the task loss (default cross-entropy).
        eval_steps: updates at test time (default ``inner_steps``).
        fused: each step of the cell as :class:`metalib.engine.FusedMetaLSTMCell` (a hand-written backward; the same function,
            tested equal in float64; on one CPU thread ~2.8x faster per cell step over Conv-4's 112k
            coordinates, ``benchmarks/bench_lstm_meta.py`` for whole iterations); ``False``: the plain
            ``nn.LSTMCell`` + autograd cell, the reference. Within :meth:`gates_pinned` the plain cell runs.
    """

    name = "lstm-meta"
    family = "optimisation-based"
    config_class = LSTMMetaConfig
    needs_head = True
    stateless_adaptation = False  # an update depends on the LSTMs' states, not on the weights alone
    # Ravi & Larochelle 2017 (sec. 4) and the official code (twitter-research/meta-learning-lstm:
    # config/lstm/train-imagenet-{1,5}shot.lua, train-omniglot-1shot-5class.lua,
    # model/lstm/meta-learner-lstm.lua): Adam 1e-3, gradient norm clipped to 0.25, one episode per update,
    # 1st-layer LSTM with 20 hidden units; miniImageNet: 12 updates (1-shot) / 5 epochs of 5 minibatches
    # (5-shot; metalib: 5 full-support updates), 75,000 episodes, 32 filters, 15 queries per class
    # (the paper's evaluation); Omniglot 5-way 1-shot: 15 updates of 5 images, 50,000 episodes (the code's
    # config: the paper reports no Omniglot numbers). train_query on Omniglot is metalib's choice.
    paper_settings = {
        ("miniimagenet", 5, 1): LSTMMetaConfig(inner_steps=12, test_inner_steps=12, meta_batch=1, meta_lr=1e-3,
                                     iterations=75_000, train_query=15, hidden=32),
        ("miniimagenet", 5, 5): LSTMMetaConfig(inner_steps=5, test_inner_steps=5, meta_batch=1, meta_lr=1e-3,
                                     iterations=75_000, train_query=15, hidden=32),
        **{("omniglot", 5, k): LSTMMetaConfig(inner_steps=15, test_inner_steps=15, meta_batch=1, meta_lr=1e-3,
                                    iterations=50_000, train_query=5) for k in (1, 5)},
    }
    # issue #29: a schedule for ~30 CPU-minutes on one thread, chosen on the validation split
    # (benchmarks/README.md "Time to accuracy"; grid and results in benchmarks/results/budget_search.json):
    # Adam 0.002, cosine to x0.02 over 800 episodes, one 5-way 1-shot episode (15 queries/class) per update
    budget_settings = {
        ("omniglot", 5, 1): dataclasses.replace(paper_settings[("omniglot", 5, 1)], train_way=5, train_shot=1,
                                                train_query=15, meta_batch=1, meta_lr=0.002, lr_schedule="cosine",
                                                lr_decay_every=800, lr_decay=0.02, iterations=800),
    }

    def __init__(self, model: nn.Module, inner_steps: int = 5, lstm_hidden: int = 20, max_grad_norm: float = 0.25,
                 bn_mode: BNMode = "transductive", loss_fn: Optional[LossFn] = None,
                 eval_steps: Optional[int] = None, fused: bool = True) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        super().__init__(loss_fn)
        if isinstance(lstm_hidden, bool) or not isinstance(lstm_hidden, int) or lstm_hidden < 1:
            raise ValueError(f"lstm_hidden must be a positive int, got {lstm_hidden!r}")
        if not isinstance(fused, bool):
            raise TypeError(f"fused must be True or False, got {fused!r}")
        if isinstance(max_grad_norm, bool) or not isinstance(max_grad_norm, (int, float)) or not max_grad_norm >= 0:
            raise ValueError(f"max_grad_norm must be a number >= 0 (0: no clipping), got {max_grad_norm!r}")
        self.model = model
        self.inner_steps = check_steps("inner_steps", inner_steps)
        self.eval_steps = self.inner_steps if eval_steps is None else check_steps("eval_steps", eval_steps)
        self.bn_mode = bn_mode
        batchnorm_context(model, bn_mode)  # validates bn_mode
        self.max_grad_norm = float(max_grad_norm)
        self.hidden = hidden = lstm_hidden
        self.fused = fused
        self.lstm = nn.LSTMCell(4, hidden)            # layer 1: [preprocessed loss, preprocessed ∇] -> h_t
        self.w_f = nn.Parameter(torch.empty(hidden + 2))  # layer 2: [h_t, c_{t-1}, f_{t-1}] -> f_t
        self.w_i = nn.Parameter(torch.empty(hidden + 2))  #          [h_t, c_{t-1}, i_{t-1}] -> i_t
        self.b_f = nn.Parameter(torch.empty(()))
        self.b_i = nn.Parameter(torch.empty(()))
        with torch.no_grad():
            for p in (*self.lstm.parameters(), self.w_f, self.w_i):
                p.uniform_(-0.01, 0.01)
            self.b_f.uniform_(4.0, 5.0)    # f ≈ 0.98-0.99: keep the weights
            self.b_i.uniform_(-5.0, -4.0)  # i ≈ 0.007-0.018: a small gradient step
        self._pinned: Optional[Tuple[Optional[float], Optional[float]]] = None

    def _bn_context(self):
        return batchnorm_context(self.model, self.bn_mode)

    def initial_params(self) -> Params:
        """:math:`\\theta_0 = c_0`, the network's parameters (the tensors themselves)."""
        return params_of(self.model)

    # ------------------------------------------------------------------ the update rule
    @contextlib.contextmanager
    def gates_pinned(self, forget: Optional[float] = None, input: Optional[float] = None) -> Iterator[None]:
        """Within the block, every forget gate is ``forget`` and every input gate ``input`` (``None``: computed as
        usual). ``gates_pinned(forget=1.0, input=eta)`` turns the update into SGD with learning rate ``eta``."""
        for name, v in (("forget", forget), ("input", input)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
                raise ValueError(f"{name} must be a finite number or None, got {v!r}")
        saved, self._pinned = self._pinned, (forget, input)
        try:
            yield
        finally:
            self._pinned = saved

    def cell(self, grad: Tensor, loss: Tensor, c_prev: Tensor, state=None):
        r"""One update of every coordinate: ``grad``, ``c_prev`` ``[P]`` (flat), ``loss`` 0-dim; ``state``: the
        previous call's (``None`` at the first step; its layout is the cell's own: ``h``, ``cell`` ``[H, P]`` fused,
        ``[P, H]`` plain). Returns ``(c_t [P], state, (i_t [P], f_t [P]))`` with
        :math:`c_t = f_t \circ c_{t-1} - i_t \circ \nabla_t` (see the class docstring)."""
        if self.fused and self._pinned is None:
            return self._fused_cell(grad, loss, c_prev, state)
        P = grad.shape[0]
        x = torch.cat([preprocess(loss.reshape(1)).expand(P, 2), preprocess(grad)], 1).to(c_prev.dtype)  # [P, 4]
        if state is None:
            zeros = c_prev.new_zeros(P)
            h, cell, f_prev, i_prev = None, None, zeros, zeros
        else:
            h, cell, f_prev, i_prev = state
        h, cell = self.lstm(x, None if h is None else (h, cell))           # [P, H] each
        hc = torch.cat([h, c_prev.unsqueeze(1)], 1)                        # [P, H + 1]
        f = torch.sigmoid(torch.cat([hc, f_prev.unsqueeze(1)], 1) @ self.w_f + self.b_f)
        i = torch.sigmoid(torch.cat([hc, i_prev.unsqueeze(1)], 1) @ self.w_i + self.b_i)
        if self._pinned is not None:
            pf, pi = self._pinned
            f = f if pf is None else torch.full_like(f, pf)
            i = i if pi is None else torch.full_like(i, pi)
        c = f * c_prev - i * grad
        return c, (h, cell, f, i), (i, f)

    def _fused_cell(self, grad: Tensor, loss: Tensor, c_prev: Tensor, state=None):
        """:meth:`cell` as :class:`metalib.engine.FusedMetaLSTMCell` (the same values and gradients)."""
        dtype = c_prev.dtype
        w_ih = self.lstm.weight_ih                                        # [4H, 4]: loss (2), ∇ (2) columns
        bias = torch.addmv(self.lstm.bias_ih + self.lstm.bias_hh, w_ih[:, :2], preprocess(loss.reshape(1))[0].to(dtype))
        h, cell, f_prev, i_prev = (None,) * 4 if state is None else state
        c, h, cell, f, i = FusedMetaLSTMCell.apply(preprocess(grad).to(dtype), bias, w_ih[:, 2:], self.lstm.weight_hh, h, cell,
                                            f_prev, i_prev, c_prev, grad, self.w_f, self.w_i, self.b_f, self.b_i)
        return c, (h, cell, f, i), (i, f)

    def unroll(self, x_s: Tensor, y_s: Tensor, steps: Optional[int] = None, params: Optional[Params] = None,
               loss_fn: Optional[LossFn] = None, record: bool = False):
        """The inner loop of one task (``x_s [N*K, ...]``, ``y_s [N*K]``): ``steps`` LSTM updates from ``params``
        (default :math:`c_0 = \\theta_0`). Returns ``(adapted params, support losses [steps])``, with
        ``record=True`` an :class:`Unroll` instead (every step's gradient, gates and update, detached)."""
        loss_fn = callable_loss(loss_fn, self.loss_fn)
        check_pair(x_s, y_s, "support")
        steps = self.inner_steps if steps is None else check_steps("steps", steps)
        start = self.initial_params() if params is None else params
        names = list(start)
        shapes = [start[n].shape for n in names]
        sizes = [math.prod(s) for s in shapes]
        c = torch.cat([start[n].reshape(-1) for n in names])
        buffers = buffers_of(self.model)

        def unflatten(flat: Tensor) -> Params:
            return {n: t.view(s) for n, t, s in zip(names, flat.split(sizes), shapes)}

        state, losses, rec = None, [], {k: [] for k in ("grads", "input_gates", "forget_gates", "updates")}
        for _ in range(steps):
            current = {n: t.detach() for n, t in unflatten(c).items()}
            with self._bn_context():  # ∇_t and L_t are inputs: no graph to the meta-learner (first order)
                grads, loss = support_grad(self.model, current, buffers, x_s, y_s, loss_fn, create_graph=False)
            g = torch.cat([grads[n].reshape(-1) for n in names]).detach()
            c_new, state, (i, f) = self.cell(g, loss.detach(), c, state)
            if record:
                rec["grads"].append(g)
                rec["input_gates"].append(i.detach())
                rec["forget_gates"].append(f.detach())
                rec["updates"].append((c_new - c).detach())
            c = c_new
            losses.append(loss.detach())
        losses_t = torch.stack(losses) if losses else x_s.new_zeros(0)
        adapted = unflatten(c)
        if not record:
            return adapted, losses_t
        stack = {k: torch.stack(v) if v else c.new_zeros(0, c.numel()) for k, v in rec.items()}
        return Unroll(names, shapes, losses_t, stack["grads"], stack["input_gates"], stack["forget_gates"],
                      stack["updates"], torch.cat([start[n].reshape(-1) for n in names]).detach(),
                      {n: t.detach() for n, t in adapted.items()})

    def adapt(self, x_s: Tensor, y_s: Tensor, loss_fn: Optional[LossFn] = None, steps: Optional[int] = None,
              params: Optional[Params] = None) -> Params:
        """Adapt to one task: ``steps`` LSTM updates on its support set; the adapted ``{name: tensor}``
        (differentiable with respect to the meta-parameters)."""
        adapted, losses = self.unroll(x_s, y_s, steps, params, loss_fn)
        check_finite(losses, "the inner-loop (support) loss")
        return adapted

    def forward(self, params: Params, x: Tensor) -> Tensor:
        """Predictions of the network with ``params`` on ``x``."""
        with self._bn_context():
            return forward(self.model, params, buffers_of(self.model), x)

    # ------------------------------------------------------------------ the Learner interface
    def _run(self, batch: Sequence[Tensor], loss_fn: Optional[LossFn], steps: Optional[int], backward: bool):
        """Per task: unroll, predict the queries, (with ``backward``) back-propagate ``loss / T`` at once."""
        loss_fn = callable_loss(loss_fn, self.loss_fn)
        if batch[3] is None:
            x_s, y_s, x_q, _ = as_batch((*batch[:3], batch[2].new_zeros(batch[2].shape[:2], dtype=torch.long)))
            y_q = None
        else:
            x_s, y_s, x_q, y_q = as_batch(batch)
        T = x_s.shape[0]
        losses, preds, inner = [], [], []
        for t in range(T):
            phi, support = self.unroll(x_s[t], y_s[t], steps, loss_fn=loss_fn)
            pred = self(phi, x_q[t])
            loss = loss_fn(pred, y_q[t]) if y_q is not None else pred.new_zeros(())
            if backward:
                (loss / T).backward()
                loss, pred = loss.detach(), pred.detach()
            losses.append(loss)
            preds.append(pred)
            inner.append(support)
        losses_t = torch.stack(losses)
        check_finite(torch.stack(inner), "the inner-loop (support) loss")
        check_finite(losses_t.detach(), "the query loss")
        return losses_t, torch.stack(preds)

    def task_losses(self, batch: Sequence[Tensor], loss_fn: Optional[LossFn] = None, steps: Optional[int] = None):
        """``(query losses [T], query predictions [T, Q, ...])`` after each task's unrolled updates."""
        return self._run(batch, loss_fn, steps, backward=False)

    def meta_loss(self, batch: Sequence[Tensor], loss_fn: Optional[LossFn] = None, steps: Optional[int] = None) -> Tensor:
        """Mean query loss over the batch after the unrolled updates (``.backward()`` gives the meta-gradient)."""
        return self.task_losses(batch, loss_fn, steps)[0].mean()

    def meta_gradient(self, batch: Sequence[Tensor], loss_fn: Optional[LossFn] = None, steps: Optional[int] = None):
        """The meta-gradient into ``.grad`` (each task's ``loss / T`` back-propagated as soon as it is computed)."""
        losses, preds = self._run(batch, loss_fn, steps, backward=True)
        return losses.mean(), preds

    def clip_gradients(self) -> None:
        """The meta-gradient's norm clipped to ``max_grad_norm`` before the outer step (Ravi & Larochelle's
        code: 0.25); a hook, so the data-parallel step clips too."""
        if self.max_grad_norm:
            nn.utils.clip_grad_norm_(self.parameters(), self.max_grad_norm)

    # Unroll on each task's support set (``steps``, default :attr:`eval_steps`) and predict its queries:
    # ``[Q, N]`` for one task, ``[T, Q, N]`` for a batch — MAML's predict, on this learner's ``_run``.
    predict = MAML.predict

    def describe(self) -> str:
        return "LSTM meta-learner"

    @property
    def short_name(self) -> str:
        return "Meta-LSTM"

    def __repr__(self) -> str:
        return (f"LSTMMetaLearner(inner_steps={self.inner_steps}, lstm_hidden={self.hidden}, max_grad_norm="
                f"{self.max_grad_norm}, bn_mode={self.bn_mode!r}, coordinates={sum(p.numel() for p in self.initial_params().values()):,})")


register("lstm-meta", LSTMMetaLearner)
