"""The speed paths beneath the algorithms: the same computation as the plain functions, faster.

The algorithm files state each method as a short pure function of one task (e.g.
:func:`metalib.algorithms.maml.query_loss`). Running it on a batch of tasks fast is this module's
business, not theirs — and every path here is tested equal to the plain function in float64
(``tests/test_inner_engine.py``, ``test_batched.py``, ``test_recompute_steps.py``):

* :func:`run_tasks` — a batch of tasks with :func:`torch.func.vmap` (all tasks at once) or in a
  Python loop with a per-task ``backward()`` (one task's graph alive at a time);
* :func:`plain_batchnorm` / :func:`bn_context` — BatchNorm as plain tensor operations, whose
  second-order meta-gradient under ``vmap`` is exact (``F.batch_norm``'s is not);
* :func:`choose_vmap` — which of the two a learner's ``batching="auto"`` runs, per device;
* :func:`inner_loop_checkpointed` — the second-order inner loop with each step recomputed during
  ``backward()`` (memory that grows slowly with the number of steps);
* :class:`CudaGraphStep` — a whole meta-iteration captured as one CUDA graph and replayed;
* :class:`FusedMetaLSTMCell` — one step of the LSTM meta-learner's cell with a hand-written backward.

It sits beside :mod:`metalib.functional` (it imports nothing of metalib but that), below the
algorithms, so the training harness (:mod:`metalib.training`) and the algorithms both use it.
"""
from __future__ import annotations

import contextlib
import types
import warnings
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.func import vmap
from torch.utils.checkpoint import checkpoint

from .functional import (
    FiniteChecks, LearningRate, LossFn, NonFiniteLossError, Params, batchnorm_context, check_finite, deferred_finite_checks,
    deferring_finite_checks, forward, has_batchnorm, has_conv, inner_loop, sgd_step,
)


# ============================================================================ a batch of tasks
def run_tasks(task_fn: Callable[..., Tuple[Tensor, ...]], tasks: Sequence[Tensor], vmapped: bool,
              backward: bool) -> Tuple[Tensor, ...]:
    """``task_fn`` on every task of ``tasks`` (tensors with a leading task dimension ``T``), its
    outputs stacked to ``[T, ...]``; ``task_fn``'s first output is the task's scalar loss.

    ``vmapped``: all tasks at once with :func:`torch.func.vmap`; with ``backward``, the mean loss is
    back-propagated once. Otherwise a Python loop; with ``backward``, each task's ``loss / T`` is
    back-propagated as soon as it is computed (its graph freed before the next task is built: the
    memory of one task; the ``.grad`` sum equals the mean's up to float rounding). With ``backward``
    the outputs come back detached.
    """
    if vmapped:
        outs = vmap(task_fn, randomness="different")(*tasks)
        if backward:
            outs[0].mean().backward()
            outs = tuple(o.detach() for o in outs)
        return outs
    T = tasks[0].shape[0]
    rows = []
    for task in zip(*tasks):
        out = task_fn(*task)
        if backward:
            (out[0] / T).backward()
            out = tuple(o.detach() for o in out)
        rows.append(out)
    return tuple(torch.stack(o) for o in zip(*rows))


# ============================================================================ BatchNorm under vmap
def _plain_batchnorm_forward(self: nn.modules.batchnorm._BatchNorm, x: Tensor) -> Tensor:
    r"""BatchNorm as plain tensor operations (what :func:`plain_batchnorm` installs).

    ``x: [n, C, *spatial]``. With batch statistics (training mode, or no running statistics):

    .. math:: \mu_c = \operatorname{mean}_{n, *} x, \quad
              \sigma^2_c = \operatorname{mean}_{n, *} (x - \mu_c)^2, \quad
              y = \gamma_c \frac{x - \mu_c}{\sqrt{\sigma^2_c + \epsilon}} + \beta_c

    (the biased variance, as ``F.batch_norm`` normalises with); otherwise the running statistics.
    Running statistics are never updated here (callers refuse the modes that would update them).
    """
    dims = [0] + list(range(2, x.dim()))
    shape = [1, -1] + [1] * (x.dim() - 2)
    if self.training or self.running_mean is None or self.running_var is None:
        mean = x.mean(dims, keepdim=True)
        var = (x - mean).square().mean(dims, keepdim=True)
    else:
        mean, var = self.running_mean.view(shape), self.running_var.view(shape)
    y = (x - mean) * torch.rsqrt(var + self.eps)
    if self.affine:
        y = y * self.weight.view(shape) + self.bias.view(shape)
    return y


@contextlib.contextmanager
def plain_batchnorm(model: nn.Module) -> Iterator[None]:
    """Make every BatchNorm layer of ``model`` compute with plain tensor operations
    (:func:`_plain_batchnorm_forward`: mean, variance, rsqrt) instead of ``F.batch_norm``.

    Why: under :func:`torch.func.vmap` over tasks, the second-order meta-gradient through
    ``F.batch_norm`` is silently wrong (torch 2.x; relative error ~1e-2 even in float64,
    ``tests/test_batched.py`` shows it), while vmap's double backward of these plain operations is
    exact. This is what MAML's batched path (``batching="vmap"``) runs; the task loop keeps
    ``F.batch_norm`` (the same values up to float rounding). Nothing else changes: parameters and
    buffers are those of the module (so :func:`torch.func.functional_call` substitutes them as usual).
    """
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in layers:
        m.forward = types.MethodType(_plain_batchnorm_forward, m)  # an instance attribute shadows the class's
    try:
        yield
    finally:
        for m in layers:
            m.__dict__.pop("forward", None)


def bn_context(model: nn.Module, bn_mode: str, plain: bool = False):
    """:func:`metalib.functional.batchnorm_context` (``bn_mode``), and with ``plain`` BatchNorm as
    plain tensor operations (:func:`plain_batchnorm`; the batched path under ``vmap``)."""
    ctx = batchnorm_context(model, bn_mode)
    if not plain:
        return ctx
    stack = contextlib.ExitStack()
    stack.enter_context(ctx)
    stack.enter_context(plain_batchnorm(model))
    return stack


# Whether batching="auto" runs a conv/BatchNorm network's tasks batched (vmap with plain BatchNorm)
# rather than in a loop, per device type: decided by `benchmarks/bench_maml.py` (numbers and the
# decision in benchmarks/README.md, section "Batched MAML"). Devices not listed: the loop.
BATCHED_BY_DEFAULT: Dict[str, bool] = {"cpu": False, "cuda": True}


def choose_vmap(model: nn.Module, batching: str, second_order: bool, bn_mode: str = "transductive",
                device: Optional[torch.device] = None) -> bool:
    """Whether to process a batch of tasks with :func:`torch.func.vmap` rather than a Python loop.

    ``"loop"``: never. ``"vmap"``: always, where it is right: BatchNorm layers then run as plain
    tensor operations (:func:`plain_batchnorm`, which the caller enters with
    ``bn_context(..., plain=True)``), whose second-order meta-gradient under vmap equals the
    loop's; refused only for BatchNorm layers that would update running statistics. ``"auto"``:
    vmap for models without convolutions or BatchNorm (the sinusoid MLP: several times faster on
    CPU); for conv/BatchNorm models, :data:`BATCHED_BY_DEFAULT` of ``device``'s type (the numbers
    that decided it are in ``benchmarks/README.md``), the loop when ``device`` is None (callers that
    never run the plain-BatchNorm path, e.g. Reptile, pass none and keep the loop).

    ``second_order`` is kept for callers' clarity; with plain BatchNorm it no longer restricts vmap.
    """
    if batching not in ("auto", "loop", "vmap"):
        raise ValueError(f"batching must be 'auto', 'loop' or 'vmap', got {batching!r}")
    if batching == "loop":
        return False
    bn = has_batchnorm(model)
    updates_stats = bn and bn_mode == "module" and model.training and any(
        getattr(m, "track_running_stats", False) for m in model.modules())
    if batching == "auto":
        if not bn and not has_conv(model):
            return True
        kind = torch.device(device).type if device is not None else None
        return bool(kind is not None and BATCHED_BY_DEFAULT.get(kind, False)) and not updates_stats
    if updates_stats:
        raise ValueError(
            "BatchNorm layers that update running statistics cannot run under vmap; use "
            "bn_mode='transductive' or batching='loop'"
        )
    return True


# ============================================================================ checkpointed inner steps
def inner_loop_checkpointed(
    model: nn.Module,
    params: Params,
    buffers: Params,
    x_s: Tensor,
    y_s: Tensor,
    loss_fn: LossFn,
    lr: LearningRate,
    steps: int,
    context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> Tuple[Params, Tensor]:
    r"""The second-order :func:`inner_loop` with gradient checkpointing over the inner steps.

    Same result and same meta-gradient as ``inner_loop(..., first_order=False)``, but the autograd
    graph of each step (the forward activations *and* the graph of the inner gradient) is not kept:
    only :math:`\phi_0, \dots, \phi_{steps}` are, and each step is recomputed once during the outer
    ``backward()`` (:func:`torch.utils.checkpoint.checkpoint`, non-reentrant). Memory then grows with
    ``steps`` by one parameter copy per step instead of one set of activations per step, for about
    one extra forward+backward per step of compute.

    ``context`` is entered around every (re)computation of a step, e.g. the BatchNorm mode
    (:func:`bn_context`): the recomputation runs inside ``backward()``, outside the caller's
    ``with`` blocks. The inner gradient is taken with :func:`torch.autograd.grad` because
    ``torch.func.grad`` does not run under checkpointing's saved-tensor hooks. Not for ``vmap``.

    Args/Returns: as :func:`inner_loop`.
    """
    names = list(params)

    if not torch.is_grad_enabled():  # nothing to differentiate, nothing to save: the plain loop
        return inner_loop(model, params, buffers, x_s, y_s, loss_fn, lr, steps)

    def step(xs: Tensor, ys: Tensor, *flat: Tensor) -> Tuple[Tensor, ...]:
        # A start that carries no history (e.g. detached weights) still needs an inner gradient.
        flat = tuple(w if w.requires_grad else w.detach().requires_grad_() for w in flat)
        with context():
            loss = loss_fn(forward(model, dict(zip(names, flat)), buffers, xs), ys)
            grads = torch.autograd.grad(loss, flat, create_graph=True)
        new = sgd_step(dict(zip(names, flat)), dict(zip(names, grads)), lr)
        return tuple(new[k] for k in names) + (loss.detach(),)

    flat = tuple(params[k] for k in names)
    losses = []
    for _ in range(steps):
        *flat, loss = checkpoint(step, x_s, y_s, *flat, use_reentrant=False)
        losses.append(loss)
    if not losses:
        return dict(params), x_s.new_zeros(0)
    return dict(zip(names, flat)), torch.stack(losses)



def query_loss_checkpointed(model: nn.Module, params: Params, buffers: Params, task: Sequence[Tensor],
                            loss_fn: LossFn, lr: LearningRate, steps: int,
                            context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                            ) -> Tuple[Tensor, Tensor, Tensor]:
    """:func:`metalib.algorithms.maml.query_loss` (second order) with :func:`inner_loop_checkpointed`
    as its inner loop: the same ``(query loss, query predictions, support losses)``."""
    x_s, y_s, x_q, y_q = task
    phi, support_losses = inner_loop_checkpointed(model, params, buffers, x_s, y_s, loss_fn, lr, steps, context)
    pred = forward(model, phi, buffers, x_q)
    return loss_fn(pred, y_q), pred, support_losses

# ============================================================================ CUDA graphs
class _NoStep:
    """An optimiser stand-in inside the captured graph: ``zero_grad`` is the real one's, ``step``
    does nothing (the real step runs eagerly after each replay)."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self._opt = optimizer

    def zero_grad(self, set_to_none: bool = True) -> None:
        self._opt.zero_grad(set_to_none=set_to_none)

    def step(self, closure=None) -> None:
        return None

    def __getattr__(self, name: str):
        return getattr(self._opt, name)


class CudaGraphStep:
    """A meta-iteration captured as one CUDA graph and replayed (static shapes per capture).

    The graph holds the gradient computation of ``step_fn(batch, optimizer)`` — ``zero_grad``, the
    inner steps, the outer backward, the finiteness checks (recorded on the device, see
    :func:`metalib.functional.deferred_finite_checks`) and the metrics; the optimiser's ``step()``
    (and the schedule) run eagerly after each replay, so any optimiser and learning-rate schedule
    work unchanged. The first ``warmup`` calls per shape run eagerly on a side stream (as
    :func:`torch.cuda.graph` requires before a capture); a batch of another shape is captured anew.
    Each call copies the batch into the static input tensors, replays, and returns clones of the
    metrics (the static outputs are overwritten by the next replay).

    If the capture fails (an operation that needs a host sync, an unsupported kernel), the error is
    kept in :attr:`error` and every later call runs the plain step.

    Bad input or divergence: the input contract's finiteness checks of the batch (``"... inputs"``) are
    captured as a flag of their own, so a replay reports NaN/inf in the batch as bad data and a non-finite
    loss or gradient of finite inputs as a divergence (:meth:`report`); checking the inputs on the host
    before each replay would cost the host sync the graph exists to avoid.
    """

    def __init__(self, step_fn: Callable[..., Dict[str, Tensor]], optimizer: torch.optim.Optimizer,
                 warmup: int = 3) -> None:
        self.step_fn, self.optimizer, self.warmup = step_fn, optimizer, warmup
        self.graph = None
        self.shapes = None
        self.calls = 0           # eager calls since the last change of shape
        self.captures = 0
        self.error: Optional[str] = None
        self._static_in: Tuple[Tensor, ...] = ()
        self._static_out: Dict[str, Tensor] = {}
        self._static_ok: Optional[Tensor] = None
        self._static_inputs_ok: Optional[Tensor] = None  # the batch's inputs were finite (None: not checked)
        self._static_grads: List[Tuple[Tensor, Tensor]] = []

    @staticmethod
    def _signature(batch: Sequence[Tensor]):
        return tuple((tuple(t.shape), t.dtype, t.device) for t in batch)

    def __call__(self, batch: Sequence[Tensor]) -> Dict[str, Tensor]:
        if self.error is not None:
            return self.step_fn(batch, self.optimizer)
        sig = self._signature(batch)
        if sig != self.shapes:
            self.shapes, self.graph, self.calls = sig, None, 0
        if self.graph is None and self.calls < self.warmup:
            self.calls += 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                out = self.step_fn(batch, self.optimizer)
            torch.cuda.current_stream().wait_stream(side)
            return out
        if self.graph is None:
            try:
                self._capture(batch)
            except Exception as err:  # noqa: BLE001 - any capture failure: fall back, say why
                self.error = f"{type(err).__name__}: {err}"
                warnings.warn(f"CUDA graph capture failed ({self.error}); continuing without graphs", stacklevel=2)
                torch.cuda.synchronize()
                return self.step_fn(batch, self.optimizer)
        for dst, src in zip(self._static_in, batch):
            dst.copy_(src, non_blocking=True)
        self.graph.replay()
        for param, grad in self._static_grads:  # a zero_grad(set_to_none) outside the graph dropped them
            param.grad = grad
        self.optimizer.step()
        self.report()
        return {k: v.clone() for k, v in self._static_out.items()}

    def keep_checks(self, checks: FiniteChecks, device: torch.device) -> None:
        """Keep the captured step's finiteness flags (device tensors the replays overwrite): all checks, and
        the batch's inputs' alone (the input contract's, named ``"... inputs"``)."""
        ok = checks.all_finite()
        self._static_ok = ok if ok is not None else torch.ones((), dtype=torch.bool, device=device)
        self._static_inputs_ok = checks.inputs_finite()

    def report(self) -> None:
        """The last replay's checks, told apart. Inside :func:`metalib.functional.deferred_finite_checks`
        (the training loop) they are handed on as NaN markers, the inputs' under a name ending in
        ``" inputs"`` (:meth:`metalib.functional.FiniteChecks.inputs_finite`: bad data, not a divergence);
        elsewhere one host sync and a :class:`metalib.NonFiniteLossError` that says which it was."""
        inputs_ok, ok = self._static_inputs_ok, self._static_ok
        if deferring_finite_checks():
            if inputs_ok is not None:
                check_finite(torch.where(inputs_ok, 0.0, float("nan")), "the captured meta-iteration's inputs")
            check_finite(torch.where(ok, 0.0, float("nan")), "the captured meta-iteration")
            return
        if inputs_ok is not None and not bool(inputs_ok):
            raise NonFiniteLossError("the batch's inputs contain NaN or inf values (found by the captured "
                                     "meta-iteration): bad data, not a divergence; clean or drop those examples")
        if not bool(ok):
            raise NonFiniteLossError("the captured meta-iteration's loss or gradients are not finite although its "
                                     "inputs are: a divergence (an inner or outer learning rate that is too large)")

    def _capture(self, batch: Sequence[Tensor]) -> None:
        self._static_in = tuple(t.clone() for t in batch)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        proxy = _NoStep(self.optimizer)
        self.optimizer.zero_grad(set_to_none=True)  # .grad is allocated inside the graph's pool
        with torch.cuda.graph(graph):
            with deferred_finite_checks() as checks:
                out = self.step_fn(self._static_in, proxy)
            self.keep_checks(checks, batch[0].device)
            self._static_out = {k: v.detach() for k, v in out.items()}
        self._static_grads = [(q, q.grad) for g in self.optimizer.param_groups for q in g["params"]
                              if q.grad is not None]
        self.graph = graph
        self.captures += 1


# ============================================================================ the LSTM meta-learner's cell
def _tanh_(x: Tensor) -> Tensor:
    """``tanh`` in place as :math:`2\\sigma(2x) - 1` (the same function; torch's CPU ``tanh`` is several times
    slower than its ``sigmoid``, and this cell evaluates ``2 P H`` of them per step)."""
    return x.mul_(2.0).sigmoid_().mul_(2.0).sub_(1.0)


_sigmoid_backward = torch.ops.aten.sigmoid_backward   # g, σ(x) -> g σ(x) (1 - σ(x)), one pass
_tanh_backward = torch.ops.aten.tanh_backward         # g, tanh(x) -> g (1 - tanh(x)²)


class FusedMetaLSTMCell(torch.autograd.Function):
    r"""One step of :meth:`metalib.algorithms.lstm_meta.LSTMMetaLearner.cell` (both layers and the update :math:`c_t`) with a hand-written
    backward, for speed on the CPU: coordinates along the *last* axis (the first layer's gates ``[4H, P]``,
    so each gate is a contiguous block); one matrix product per layer and direction (the loss's share of the
    first layer folded into its bias, a row of ones for the bias); no recurrent product at the first step;
    activations in place; one-pass ``sigmoid_backward`` / ``tanh_backward``; and only the activations
    ``[4H, P]``, ``tanh(cell)`` ``[H, P]`` and the first layer's input ``[3 + H, P]`` saved beyond the inputs
    and outputs. The same function as the plain cell (tested against it and by ``gradcheck`` in float64,
    ``tests/test_lstm_meta.py``); ∇ and its preprocessing are inputs without a gradient (the paper's
    first-order treatment).

    Inputs: ``gpre [P, 2]`` (preprocessed ∇, constant), ``bias [4H]`` (``b_ih + b_hh + W_ih[:, :2] pre(L)``),
    ``w_g [4H, 2]`` (``W_ih[:, 2:]``), ``w_hh [4H, H]``, the previous state ``h, cell [H, P]``, ``f, i [P]``
    (``None`` at the first step: zeros), ``c_prev [P]``, ``grad [P]`` (constant), ``w_f, w_i [H + 2]``,
    ``b_f, b_i`` (0-dim). Outputs ``c [P], h [H, P], cell [H, P], f [P], i [P]``.
    """

    @staticmethod
    def forward(ctx, gpre, bias, w_g, w_hh, h_prev, cell_prev, f_prev, i_prev, c_prev, grad, w_f, w_i, b_f, b_i):
        H = w_hh.shape[1]
        # one product [4H, 1 + 2 (+ H)] @ [1; pre(∇); h_prev] for the gates i, f, g, o (torch's order): [4H, P]
        x = torch.cat([gpre.new_ones(1, gpre.shape[0]), gpre.t()] + ([] if h_prev is None else [h_prev]))
        z = torch.cat([bias.unsqueeze(1), w_g] + ([] if h_prev is None else [w_hh]), 1) @ x
        z[:2 * H].sigmoid_()
        z[3 * H:].sigmoid_()
        _tanh_(z[2 * H:3 * H])
        i1, f1, g1, o1 = z.split(H, 0)
        cell = i1 * g1
        if cell_prev is not None:
            cell.addcmul_(f1, cell_prev)
        tc = _tanh_(cell.clone())
        h = o1 * tc
        s = torch.stack([w_f[:H], w_i[:H]]) @ h                   # [2, P]
        f = s[0].add_(c_prev * w_f[H]).add_(b_f)                   # pre-activations, then σ in place
        i = s[1].add_(c_prev * w_i[H]).add_(b_i)
        if f_prev is not None:
            f.addcmul_(f_prev, w_f[H + 1])
            i.addcmul_(i_prev, w_i[H + 1])
        f.sigmoid_()
        i.sigmoid_()
        c = torch.addcmul(f * c_prev, i, grad, value=-1.0)
        ctx.save_for_backward(x, w_hh, h_prev, cell_prev, f_prev, i_prev, c_prev, grad, w_f, w_i, z, tc, h, f, i)
        return c, h, cell, f, i

    @staticmethod
    def backward(ctx, dc, dh, dcell, df, di):
        x, w_hh, h_prev, cell_prev, f_prev, i_prev, c_prev, grad, w_f, w_i, z, tc, h, f, i = ctx.saved_tensors
        H = w_hh.shape[1]
        first = h_prev is None
        # layer 2: c = f c_prev - i ∇, f = σ(a_f), i = σ(a_i)
        A = f.new_empty(2, f.shape[0])                             # [dL/da_f; dL/da_i]
        af, ai = A[0], A[1]
        _sigmoid_backward.grad_input(torch.addcmul(df, dc, c_prev), f, grad_input=af)
        _sigmoid_backward.grad_input(torch.addcmul(di, dc, grad, value=-1.0), i, grad_input=ai)
        dc_prev = (dc * f).add_(af * w_f[H]).add_(ai * w_i[H])
        w2 = A @ h.t()                                             # [2, H]
        zero = af.new_zeros(1)
        dw_f = torch.cat([w2[0], torch.dot(c_prev, af).reshape(1), zero if first else torch.dot(f_prev, af).reshape(1)])
        dw_i = torch.cat([w2[1], torch.dot(c_prev, ai).reshape(1), zero if first else torch.dot(i_prev, ai).reshape(1)])
        db_f, db_i = af.sum(), ai.sum()
        df_prev = None if first else af * w_f[H + 1]
        di_prev = None if first else ai * w_i[H + 1]
        dh = torch.addmm(dh, torch.stack([w_f[:H], w_i[:H]], 1), A)  # [H, P]
        # layer 1: h = o tanh(cell), cell = f1 cell_prev + i1 g1
        i1, f1, g1, o1 = z.split(H, 0)
        dcell = dcell + _tanh_backward(dh * o1, tc)
        dz = torch.empty_like(z)
        di1, df1, dg1, do1 = dz.split(H, 0)
        _sigmoid_backward.grad_input(dcell * g1, i1, grad_input=di1)
        if first:
            df1.zero_()
        else:
            _sigmoid_backward.grad_input(dcell * cell_prev, f1, grad_input=df1)
        _tanh_backward.grad_input(dcell * i1, g1, grad_input=dg1)
        _sigmoid_backward.grad_input(dh * tc, o1, grad_input=do1)
        dcell_prev = None if first else dcell * f1
        dw = x @ dz.t()                                            # [1 + 2 (+ H), 4H]: bias, w_g (, w_hh)
        dbias, dw_g = dw[0], dw[1:3].t()
        dw_hh = torch.zeros_like(w_hh) if first else dw[3:].t()   # zeros, as autograd's for a zero state
        dh_prev = None if first else w_hh.t() @ dz
        return (None, dbias, dw_g, dw_hh, dh_prev, dcell_prev, df_prev, di_prev, dc_prev, None, dw_f, dw_i, db_f,
                db_i)
