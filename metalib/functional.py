"""The functional core every algorithm stands on.

A model's state is split into two dicts of tensors — ``params`` (what the inner loop adapts) and
``buffers`` (everything else, e.g. BatchNorm running statistics) — and the model is evaluated with
:func:`torch.func.functional_call`. The inner loop is then a pure function of ``params``, so the same
code runs per task in a Python loop or batched over tasks with :func:`torch.func.vmap`.
"""
from __future__ import annotations

import contextlib
import math
import threading
from typing import Callable, Dict, Iterator, List, Literal, Optional, Tuple, Union

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value

Params = Dict[str, Tensor]
LearningRate = Union[float, Dict[str, Tensor]]  # one rate, or one per parameter entry (Meta-SGD)
LossFn = Callable[[Tensor, Tensor], Tensor]


class NonFiniteLossError(ValueError):
    """A loss became NaN or infinite (a learning rate too large, bad data, ...)."""


def params_of(model: nn.Module) -> Params:
    """The model's trainable parameters as ``{name: tensor}`` (the tensors themselves, not copies)."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def buffers_of(model: nn.Module) -> Params:
    """The model's buffers (and frozen parameters) as ``{name: tensor}``."""
    out = dict(model.named_buffers())
    out.update({n: p for n, p in model.named_parameters() if not p.requires_grad})
    return out


def forward(model: nn.Module, params: Params, buffers: Params, x: Tensor) -> Tensor:
    """``model(x)`` evaluated with the given parameters instead of the module's own."""
    return functional_call(model, (params, buffers), (x,))


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())


@contextlib.contextmanager
def transductive_batchnorm(model: nn.Module) -> Iterator[None]:
    """Make every BatchNorm layer normalise with the statistics of the batch it is given.

    This is the mode of the original MAML code (and of Reptile's "transductive" numbers): support
    and query batches are normalised by their own mean and variance, at meta-training *and* at
    meta-test time, whatever ``model.train()``/``model.eval()`` says. Running statistics are neither
    read nor updated, so evaluating never changes the model. (Switching an adapted model to
    ``eval()`` with never-trained running statistics is the classic way MAML drops to chance.)
    """
    saved = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            saved.append((m, m.training, m.track_running_stats))
            # training=True + track_running_stats=False: F.batch_norm gets running stats = None,
            # so it uses batch statistics and updates nothing.
            m.training, m.track_running_stats = True, False
    try:
        yield
    finally:
        for m, training, track in saved:
            m.training, m.track_running_stats = training, track


def batchnorm_context(model: nn.Module, bn_mode: str):
    """The context in which an algorithm runs ``model``: see :func:`transductive_batchnorm`.

    ``bn_mode="transductive"`` forces batch statistics; ``"module"`` leaves BatchNorm as configured.
    (The batched path's plain-tensor BatchNorm is :func:`metalib.engine.bn_context`.)
    """
    if bn_mode == "transductive":
        return transductive_batchnorm(model)
    if bn_mode == "module":
        return contextlib.nullcontext()
    raise ValueError(f"bn_mode must be 'transductive' or 'module', got {bn_mode!r}")


class FiniteChecks:
    """Finiteness flags collected on the device instead of one host sync per check.

    Inside ``with deferred_finite_checks() as checks:`` every :func:`check_finite` appends
    ``isfinite(x).all()`` (a device tensor) here and returns at once; the caller reads
    :meth:`all_finite` when it chooses (metalib's training loop: once per ``check_every``
    iterations on the GPU, where a ``bool()`` per check would stall the queue of kernels).
    """

    def __init__(self) -> None:
        self.flags: List[Tensor] = []
        self.whats: List[str] = []

    def add(self, t: Tensor, what: str) -> None:
        self.flags.append(torch.isfinite(t.detach()).all())
        self.whats.append(what)

    def all_finite(self) -> Optional[Tensor]:
        """A 0-dim bool tensor (on the checked tensors' device), or None if nothing was checked."""
        if not self.flags:
            return None
        return torch.stack([f.to(self.flags[0].device) for f in self.flags]).all()

    def inputs_finite(self) -> Optional[Tensor]:
        """:meth:`all_finite` of the checks of inputs only (``what`` ending in " inputs": bad data, not a
        divergence), or None if no input was checked."""
        flags = [f for f, w in zip(self.flags, self.whats) if w.endswith(" inputs")]
        return torch.stack([f.to(flags[0].device) for f in flags]).all() if flags else None


_DEFERRED = threading.local()


@contextlib.contextmanager
def deferred_finite_checks() -> Iterator[FiniteChecks]:
    """Collect :func:`check_finite`'s checks in a :class:`FiniteChecks` instead of raising (no host
    sync); nested uses collect into the innermost."""
    stack = getattr(_DEFERRED, "stack", None)
    if stack is None:
        stack = _DEFERRED.stack = []
    checks = FiniteChecks()
    stack.append(checks)
    try:
        yield checks
    finally:
        stack.pop()


def deferring_finite_checks() -> bool:
    """Whether :func:`check_finite` records its checks now (inside :func:`deferred_finite_checks`)."""
    return bool(getattr(_DEFERRED, "stack", None))


def check_finite(loss: Tensor, what: str) -> None:
    """Raise :class:`NonFiniteLossError` if any element of ``loss`` is NaN or infinite.

    Inside :func:`deferred_finite_checks` the check is recorded on the device instead (no sync).
    """
    stack = getattr(_DEFERRED, "stack", None)
    if stack:
        stack[-1].add(loss, what)
        return
    if not bool(torch.isfinite(loss).all()):
        raise NonFiniteLossError(
            f"{what} is not finite ({loss.detach().flatten()[:5].tolist()}). Usual causes: an inner "
            "or outer learning rate that is too large, or NaN/inf values in the data."
        )


def _under_functorch() -> bool:
    """Whether we are inside a ``torch.func`` transform (``vmap``, ``grad``) or being compiled, where
    :func:`torch.autograd.grad` cannot be used."""
    if torch.compiler.is_compiling():  # first: dynamo traces this check as a constant
        return True
    level = getattr(torch._C._functorch, "maybe_current_level", None)
    return level is None or level() is not None


def _check_engine(engine: str) -> None:
    if engine not in ("auto", "autograd", "func"):
        raise ValueError(f"engine must be 'auto', 'autograd' or 'func', got {engine!r}")


def inner_loop(
    model: nn.Module,
    params: Params,
    buffers: Params,
    x_s: Tensor,
    y_s: Tensor,
    loss_fn: LossFn,
    lr: LearningRate,
    steps: int,
    first_order: bool = False,
    engine: Literal["auto", "autograd", "func"] = "auto",
) -> Tuple[Params, Tensor]:
    r"""MAML's inner loop for one task (Finn et al. 2017, eq. 1), repeated ``steps`` times:

    .. math:: \phi \leftarrow \phi - \alpha \nabla_\phi \mathcal{L}_{\text{support}}(f_\phi),
              \qquad \phi_0 = \theta

    ``params`` may carry an autograd history (e.g. the model's leaf parameters); the result stays
    differentiable with respect to them, including the second-order terms, unless ``first_order``,
    in which case each inner gradient is treated as a constant (FOMAML: d phi / d theta = I).
    Under ``torch.no_grad()`` the steps are still taken (gradients of the support loss are always
    computed) but the result carries no history.

    Args:
        x_s: support inputs of one task ``[n_support, ...]``; y_s: its targets.
        lr: :math:`\alpha`, a number or per-entry rates ``{name: tensor}`` (see :func:`sgd_step`).
        engine: how the inner gradient is taken. ``"func"``: :func:`torch.func.grad_and_value`, the
            only choice inside ``vmap``; ``"autograd"``: :func:`torch.autograd.grad` (with
            ``create_graph`` for second order), the same meta-gradient for less per-step overhead
            on Conv-4 on CPU (measured in ``benchmarks/README.md``); ``"auto"`` (default):
            ``"func"`` inside a ``torch.func`` transform or ``torch.compile``, else ``"autograd"``.
    Returns:
        the adapted params and the support loss *before* each step, ``[steps]``.
    """
    _check_engine(engine)
    losses = []
    for _ in range(steps):
        grads, loss = support_grad(model, params, buffers, x_s, y_s, loss_fn, not first_order, engine)
        params = sgd_step(params, grads, lr)
        losses.append(loss)
    if not losses:
        return params, x_s.new_zeros(0)
    return params, torch.stack(losses)


def scalar_loss(loss: Tensor) -> Tensor:
    """``loss`` if it is a scalar; one clear line if ``loss_fn`` returned something else."""
    if not isinstance(loss, Tensor) or loss.dim() != 0:
        shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
        raise ValueError(f"loss_fn must return a scalar (e.g. the mean over the examples), got {shape}: "
                         "reduction='none' losses need a .mean()")
    return loss


def support_grad(
    model: nn.Module,
    params: Params,
    buffers: Params,
    x: Tensor,
    y: Tensor,
    loss_fn: LossFn,
    create_graph: bool,
    engine: Literal["auto", "autograd", "func"] = "auto",
) -> Tuple[Params, Tensor]:
    """The gradient of ``loss_fn(model(x; params), y)`` with respect to every entry of ``params``.

    ``create_graph``: keep the gradient differentiable with respect to ``params``' history (MAML's
    second order); otherwise it is a constant. Under ``torch.no_grad()`` the gradient is still
    computed, without history. Entries the loss does not use get zeros. ``engine``: see
    :func:`inner_loop`.

    Returns:
        ``({name: gradient}, loss detached)``.
    """
    _check_engine(engine)
    if engine == "func" or (engine == "auto" and _under_functorch()):
        grads, loss = grad_and_value(lambda p: scalar_loss(loss_fn(forward(model, p, buffers, x), y)))(params)
        if not create_graph:
            grads = {k: g.detach() for k, g in grads.items()}
        return grads, loss.detach()
    # torch.autograd.grad, as the textbook loop takes it. Without a graph to keep, differentiate a
    # detached copy, so that no graph of the inner gradient is built at all.
    create = create_graph and torch.is_grad_enabled()
    with torch.enable_grad():
        src = {k: p if create and p.requires_grad else p.detach().requires_grad_() for k, p in params.items()}
        loss = scalar_loss(loss_fn(forward(model, src, buffers, x), y))
        grads = torch.autograd.grad(loss, list(src.values()), create_graph=create, allow_unused=True,
                                    materialize_grads=True)
    return dict(zip(src, grads)), loss.detach()


def sgd_step(params: Params, grads: Params, lr: LearningRate) -> Params:
    """One plain SGD step ``p - lr * g`` on every entry of ``params``.

    ``lr``: a number (one rate for every entry), or a dict ``{name: tensor}`` of per-entry rates
    with each parameter's shape (Meta-SGD's :math:`\\alpha`: the step is then ``p - alpha * g``,
    element-wise, differentiable with respect to ``alpha``).
    """
    if isinstance(lr, dict):
        return {k: p - lr[k] * grads[k] for k, p in params.items()}
    return {k: p - lr * grads[k] for k, p in params.items()}


def adam_step(
    params: Params, grads: Params, state: dict, lr: float,
    betas: Tuple[float, float] = (0.0, 0.999), eps: float = 1e-8,
) -> Params:
    """One Adam step (Kingma & Ba), functional. ``state`` holds ``t``, ``m`` and ``v`` and is updated.

    The default ``beta1 = 0`` is the setting of Reptile's official code (no momentum across the
    few inner steps of one task).
    """
    b1, b2 = betas
    t = state.get("t", 0) + 1
    m = state.setdefault("m", {k: torch.zeros_like(p) for k, p in params.items()})
    v = state.setdefault("v", {k: torch.zeros_like(p) for k, p in params.items()})
    out = {}
    for k, p in params.items():
        m[k] = b1 * m[k] + (1 - b1) * grads[k]
        v[k] = b2 * v[k] + (1 - b2) * grads[k] ** 2
        m_hat = m[k] / (1 - b1**t)
        v_hat = v[k] / (1 - b2**t)
        out[k] = p - lr * m_hat / (v_hat.sqrt() + eps)
    state["t"] = t
    return out


def check_positive(name: str, value: float, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'} and finite, got {value}")
    return float(value)


def check_steps(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value
