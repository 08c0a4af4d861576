r"""Memory-augmented neural network with least-recently-used access (Santoro et al., ICML 2016),
and the LSTM-only baseline of the same paper.

**The task is a sequence** (section 3 of the paper). An episode of ``N`` classes, a few images of
each, shuffled, is shown one image at a time; at step :math:`t` the network sees the image
:math:`x_t` together with the *previous* step's label :math:`y_{t-1}` (one-hot; zeros at
:math:`t = 0`) and must output :math:`y_t`. The class-to-label assignment is drawn anew for every
episode, so no weight can store it: whatever the network knows about *this* episode's classes it
must carry in its activations — here an LSTM's state and an external memory — which are cleared at
the start of every episode. Nothing is learned by gradient at test time.

**The controller** (an LSTM, :math:`C` units) reads at step :math:`t` the input
:math:`u_t = [e(x_t),\ \mathrm{onehot}(y_{t-1}),\ r_{t-1}]` — the encoded image ``[D]``, the
offset label ``[N]`` and the ``H`` read vectors of the previous step ``[H*M]`` — and produces its
state :math:`h_t` ``[C]``. From :math:`h_t` each head ``h`` emits a key :math:`k^h_t = \tanh(W_k h_t)`
``[M]`` and a gate :math:`\alpha^h_t` (a scalar).

**The memory** :math:`M_t` ``[S, M]`` (``S`` slots of size ``M``), usage weights :math:`w^u_t` ``[S]``
and, per head, read weights :math:`w^r_t` and write weights :math:`w^w_t` ``[H, S]``:

* least-used weights (eq. 6): :math:`w^{lu}_{t-1}` marks the ``H`` slots of smallest usage
  :math:`w^u_{t-1}`; head ``h`` gets the ``h``-th least used slot (one-hot), so the heads write to
  distinct slots; ties go to the lower slot index;
* write weights (eq. 7): :math:`w^w_t = \sigma(\alpha_t)\, w^r_{t-1} + (1 - \sigma(\alpha_t))\, w^{lu}_{t-1}`
  — write where the head read at the previous step (update a memory: e.g. bind the label that has
  just arrived to the image read at :math:`t-1`) or in a fresh slot;
* write (eq. 8): first the least-used slot (:math:`\arg\min_i w^u_{t-1}(i)`) is set to zero, then
  each head writes its key: :math:`M_t(i) = M_{t-1}(i) + \sum_h w^{w,h}_t(i)\, k^h_t`;
* content-based read (eq. 2-4): :math:`K(k, M_t(i)) = \frac{k \cdot M_t(i)}{\lVert k\rVert \lVert M_t(i)\rVert}`
  (cosine), :math:`w^r_t(i) = \mathrm{softmax}_i K(k_t, M_t(i))`,
  :math:`r_t = \sum_i w^r_t(i) M_t(i)` ``[M]`` per head;
* usage (eq. 5): :math:`w^u_t = \gamma\, w^u_{t-1} + \sum_h w^{r,h}_t + \sum_h w^{w,h}_t`.

The output is :math:`\mathrm{logits}_t = W_o [h_t, r_t] + b_o` ``[N]``; the loss is the
cross-entropy of every step of the sequence. The memory starts each episode at
:math:`M_0 = 10^{-6}` everywhere, :math:`w^u_0 = w^r_0 = 0`, :math:`r_0 = h_0 = c_0 = 0`.

Within a step the write comes first and the read uses :math:`M_t` (eq. 2-8 as written). Because
the key is written, the read of step :math:`t` finds the slot its own key was just written to: the
cleared least-used slot then holds a multiple of :math:`k_t`, whose cosine with :math:`k_t` is 1, so
with one head no other slot can get a larger read weight (tested); at :math:`t + 1` a high gate writes
into that slot again, with the label of :math:`x_t`, which has just arrived. (The widely used
reimplementation ``tristandeleu/ntm-one-shot`` writes a separate add vector instead, so that a slot
does not match the key that wrote it; in metalib's short runs on synthetic sequences neither variant
learned to bind labels — see ``RESULTS.md``.) Where metalib departs from the paper: its eq. 6 gives
every head the same ``H`` least-used slots; here head ``h`` takes the ``h``-th of them (the
reimplementation's reading), so the heads write to distinct slots. Optionally (``key_strength``; a
CPU-budget choice of the shipped run) the read is sharpened by a key strength :math:`\beta_t \ge 1`,
the Neural Turing Machine's content addressing. The image encoder :math:`e` is the flattened image
(the paper's raw pixels, :class:`PixelInput`) unless the learner is built around another network.

**The LSTM baseline** (:class:`LSTMBaseline`, ``"lstm-baseline"``) is the same controller with no
memory (``H = 0``): :math:`u_t = [e(x_t), \mathrm{onehot}(y_{t-1})]`, :math:`\mathrm{logits}_t = W_o h_t + b_o`.

**As a few-shot learner** (:meth:`MANN.predict`, used by :func:`metalib.evaluation.evaluate`): the
support set is presented as a sequence in a fixed pseudo-random order (the same permutation for
every task of that size, :func:`support_order`), each image with the previous image's label; then
every query is presented as the next step — after the whole support sequence, with the label of the
last support image — from the same state: the queries are classified independently, none of them
writes to the memory another query reads. Training (:meth:`MANN.meta_backward`) turns each
episode of the batch — support and query images together, ``N (K + Q)`` of them — into one sequence
in a random order (torch's global random generator, saved and restored by metalib's checkpoints)
and minimises the mean cross-entropy over all its steps, as in the paper.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..functional import check_finite
from .base import Learner, as_task_batch, check_network, no_loss_fn, register
from .settings import FewShotConfig, setting

MEMORY_INIT = 1e-6  # the value of every memory cell at the start of an episode (as the reimplementation)


# ============================================================================ the encoder
class PixelInput(nn.Module):
    """The paper's image encoder: the raw pixels, flattened. ``[n, C, H, W] -> [n, C*H*W]``."""

    def __init__(self, in_channels: int = 1, image_size: int = 28) -> None:
        super().__init__()
        self.in_channels, self.image_size = int(in_channels), int(image_size)
        self.out_features = self.in_channels * self.image_size ** 2

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.in_channels, self.image_size, self.image_size):
            raise ValueError(f"PixelInput expects [n, {self.in_channels}, {self.image_size}, {self.image_size}] "
                             f"images, got shape {tuple(x.shape)}")
        return x.flatten(1)

    def builder_spec(self):
        """``("metalib.algorithms.mann:PixelInput", kwargs)``: how :mod:`metalib.pretrained` rebuilds it."""
        return "metalib.algorithms.mann:PixelInput", dict(in_channels=self.in_channels, image_size=self.image_size)


def encoder_width(encoder: nn.Module) -> int:
    """The number of features an encoder returns per image (``out_features`` or ``embedding_dim``)."""
    for attr in ("out_features", "embedding_dim"):
        v = getattr(encoder, attr, None)
        if isinstance(v, int) and v > 0:
            return v
    raise ValueError(f"cannot tell how many features {type(encoder).__name__} returns per image: give it an "
                     "`out_features` (or `embedding_dim`) attribute")


# ============================================================================ the sequence, as the algorithms feed it
def offset_label_inputs(y: Tensor, n_way: int) -> Tensor:
    """The label input of the sequence task: step ``t`` gets ``onehot(y[t-1])``, step 0 zeros.
    ``y [B, L]`` (int) -> ``[B, L, n_way]`` (float)."""
    onehot = F.one_hot(y, n_way).to(torch.get_default_dtype())
    return torch.cat([torch.zeros_like(onehot[:, :1]), onehot[:, :-1]], dim=1)


def support_order(n: int) -> Tensor:
    """The order in which :meth:`MANN.predict` (and SNAIL's) present an ``n``-image support set: a
    fixed pseudo-random permutation (``torch.Generator`` seeded with 0), the same for every task of
    that size, so that evaluation is deterministic and a class-sorted support set is not shown
    class after class."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(0))


def check_sequence(x: Tensor, y: Tensor, n_way: int) -> None:
    """``x [B, L, ...]`` images and ``y [B, L]`` integer labels in ``[0, n_way)``, or a ``ValueError``."""
    if y.dim() != 2 or x.dim() < 3 or tuple(x.shape[:2]) != tuple(y.shape):
        raise ValueError(f"a sequence batch is x [B, L, ...] with labels y [B, L]; got x {tuple(x.shape)}, "
                         f"y {tuple(y.shape)}")
    if y.is_floating_point() or y.dtype == torch.bool:
        raise TypeError(f"sequence labels must be integers, got {y.dtype}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_way):
        raise ValueError(f"labels must lie in [0, {n_way}) for this {n_way}-way learner; found "
                         f"{int(y.min())}..{int(y.max())}")


# ============================================================================ LRUA addressing (eq. 2-8)
def least_used(usage: Tensor, n: int) -> Tensor:
    """The indices ``[B, n]`` of the ``n`` slots of smallest usage ``[B, S]``, smallest first; ties go
    to the lower slot index (a stable sort)."""
    return torch.sort(usage, dim=-1, stable=True).indices[..., :n]


def lrua_write_weights(read_prev: Tensor, usage_prev: Tensor, gate: Tensor) -> Tensor:
    r"""Eq. 6-7: :math:`w^w_t = \sigma\, w^r_{t-1} + (1-\sigma)\, w^{lu}_{t-1}` per head.

    Args:
        read_prev: :math:`w^r_{t-1}` ``[B, H, S]``; usage_prev: :math:`w^u_{t-1}` ``[B, S]``;
        gate: :math:`\sigma(\alpha_t)` ``[B, H]`` (already through the sigmoid).
    Returns:
        ``[B, H, S]``; head ``h`` interpolates towards the ``h``-th least-used slot.
    """
    heads, slots = read_prev.shape[-2], read_prev.shape[-1]
    lu = F.one_hot(least_used(usage_prev, heads), slots).to(read_prev.dtype)        # [B, H, S]
    g = gate.unsqueeze(-1)
    return g * read_prev + (1 - g) * lu


def cosine_read_weights(memory: Tensor, keys: Tensor, strength: Optional[Tensor] = None, eps: float = 1e-8) -> Tensor:
    r"""Eq. 2-3: :math:`\mathrm{softmax}_i \cos(k^h, M(i))`. ``memory [B, S, M]``, ``keys [B, H, M]`` ->
    ``[B, H, S]``. A norm below ``eps`` counts as ``eps`` (a zeroed slot has cosine 0). ``strength``
    ``[B, H]``: the NTM's key strength :math:`\beta`, :math:`\mathrm{softmax}_i \beta \cos(\cdot)` (None: 1)."""
    k = keys / keys.norm(dim=-1, keepdim=True).clamp_min(eps)
    m = memory / memory.norm(dim=-1, keepdim=True).clamp_min(eps)
    similarity = k @ m.transpose(-1, -2)
    if strength is not None:
        similarity = strength.unsqueeze(-1) * similarity
    return torch.softmax(similarity, dim=-1)


class MemoryStep(NamedTuple):
    """One LRUA step: the new ``memory [B, S, M]``, ``usage [B, S]``, ``read_weights`` and
    ``write_weights [B, H, S]``, ``reads [B, H, M]``, and ``zeroed [B]`` (the slot cleared before writing)."""

    memory: Tensor
    usage: Tensor
    read_weights: Tensor
    write_weights: Tensor
    reads: Tensor
    zeroed: Tensor


def lrua_step(memory: Tensor, usage: Tensor, read_prev: Tensor, keys: Tensor, gate: Tensor, gamma: float,
              strength: Optional[Tensor] = None) -> MemoryStep:
    r"""One step of the memory (eq. 2-8), for a batch of ``B`` episodes and ``H`` heads.

    Args:
        memory: :math:`M_{t-1}` ``[B, S, M]``; usage: :math:`w^u_{t-1}` ``[B, S]``;
        read_prev: :math:`w^r_{t-1}` ``[B, H, S]``; keys: :math:`k_t` ``[B, H, M]`` (written, then read with);
        gate: :math:`\sigma(\alpha_t)` ``[B, H]``; gamma: the usage decay :math:`\gamma`;
        strength: the key strength :math:`\beta_t` ``[B, H]`` (None: 1, the paper's eq. 3).
    """
    write = lrua_write_weights(read_prev, usage, gate)                                   # eq. 7
    zeroed = least_used(usage, 1)[..., 0]                                                # [B]
    keep = 1 - F.one_hot(zeroed, memory.shape[-2]).to(memory.dtype)                     # [B, S]
    memory = memory * keep.unsqueeze(-1) + write.transpose(-1, -2) @ keys                # eq. 8
    read = cosine_read_weights(memory, keys, strength)                                   # eq. 2-3
    reads = read @ memory                                                                # eq. 4
    usage = gamma * usage + read.sum(-2) + write.sum(-2)                                 # eq. 5
    return MemoryStep(memory, usage, read, write, reads, zeroed)


# ============================================================================ the learner
class State(NamedTuple):
    """What the network carries from one step to the next (per episode of the batch)."""

    h: Tensor          # [B, C]
    c: Tensor          # [B, C]
    reads: Tensor      # [B, H*M]
    memory: Tensor     # [B, S, M]
    usage: Tensor      # [B, S]
    read_w: Tensor     # [B, H, S]

    def repeat(self, n: int) -> "State":
        """Each episode's state repeated ``n`` times (``[B*n, ...]``): one branch per query."""
        return State(*(t.repeat_interleave(n, dim=0) for t in self))


TRACE_KEYS = ("read_weights", "write_weights", "usage", "gate", "zeroed")


MAX_MEMORY = 2 ** 22
"""The most memory entries (slots x width) a MANN may ask for: 4,194,304 floats (16 MiB) per sequence,
800 times the paper's; the memory is allocated for every sequence of every call, where no weight cap sees it."""


@dataclass(kw_only=True)
class MANNConfig(FewShotConfig):
    """A MANN run: the controller and the memory (slots, their size, read heads) and its LRU usage."""

    controller_size: int = setting(200, "the LSTM controller's hidden units", low=1)
    memory_slots: int = setting(128, "memory rows", low=1)
    memory_size: int = setting(40, "memory row width", low=1)
    read_heads: int = setting(4, "read heads", low=1)
    gamma: float = setting(0.95, "usage decay of the least-recently-used access", low=0)
    key_strength: bool = setting(False, "learn a key strength per head")
    max_grad_norm: Optional[float] = setting(None, "clip the gradient's norm to this (default: no clipping)")
    unused = ("hidden",)  # the input is the raw pixels (PixelInput): no Conv-4 width


@dataclass(kw_only=True)
class LSTMBaselineConfig(FewShotConfig):
    """The memory-less LSTM baseline of MANN's paper: the controller alone."""

    unused = ("hidden",)

    controller_size: int = setting(200, "the LSTM's hidden units", low=1)
    max_grad_norm: Optional[float] = setting(None, "clip the gradient's norm to this (default: no clipping)")


class MANN(Learner):
    r"""A memory-augmented neural network with LRUA (Santoro et al. 2016): see the module docstring
    for the task, the equations and where metalib departs from the paper.

    Args:
        model: the image encoder, ``[n, C, H, W] -> [n, D]`` with ``out_features`` (or
            ``embedding_dim``) ``= D`` (default network: :class:`PixelInput`, the raw pixels).
        n_way: N, the number of output units (labels of an episode); fixed.
        controller_size: C, the LSTM's units.
        memory_slots, memory_size: S and M.
        read_heads: H (``0``: no memory — the LSTM baseline).
        gamma: the usage decay :math:`\gamma` (eq. 5).
        key_strength: sharpen the content-based read with a key strength :math:`\beta^h_t = 1 +
            \mathrm{softplus}(W_\beta h_t)` per head, :math:`w^r_t = \mathrm{softmax}_i \beta \cos(k_t, M_t(i))`
            — the Neural Turing Machine's addressing (Graves et al. 2014, eq. 5); ``False`` (the paper's eq. 3):
            :math:`\beta = 1`, so with ``S`` slots no read weight can exceed :math:`e^2` times another.
        max_grad_norm: clip the meta-gradient's norm to this before the update (``None``: no clipping).
    """

    name = "mann"
    needs_query = False  # trained on sequences made of the support set alone (train_query=0)
    family = "model-based"
    config_keys = ("n_way",)
    config_class = MANNConfig
    # Santoro et al. 2016, Omniglot, 5 classes: episodes of 10 instances per class shown as one
    # 50-step sequence (section 4.1; Table 1 reports the 1st-10th instance), 100,000 training episodes
    # (docs/references.md, Model-based; P). The network sizes are taken from the widely used
    # reimplementation (tristandeleu/ntm-one-shot), not from the paper: LSTM controller 200 units,
    # memory 128 x 40, 4 read heads, usage decay 0.95, 16 episodes per batch. metalib's own: the key
    # strength (NTM addressing, beta >= 1; the paper: beta = 1), Adam 3e-3 with the meta-gradient
    # clipped to norm 10 (the paper trains with RMSProp), the Vinyals split at 28x28 with rotations as
    # classes (the paper: its own split of the characters, 20x20), and the iteration count: 100,000
    # episodes = 6,250 batches of 16. (No short run learned to bind labels with these or other
    # settings tried: RESULTS.md.)
    paper_settings = {
        ("omniglot", 5, k): MANNConfig(train_shot=10, train_query=0, meta_batch=16, meta_lr=3e-3, iterations=6_250,
                                       controller_size=200, memory_slots=128, memory_size=40, read_heads=4,
                                       gamma=0.95, key_strength=True, max_grad_norm=10.0)
        for k in (1, 5)
    }

    def __init__(self, model: nn.Module, n_way: int = 5, controller_size: int = 200, memory_slots: int = 128,
                 memory_size: int = 40, read_heads: int = 4, gamma: float = 0.95, key_strength: bool = False,
                 max_grad_norm: Optional[float] = None, loss_fn=None) -> None:
        check_network(model, "model (the image encoder)")
        no_loss_fn(loss_fn, f"{type(self).__name__}'s loss is the cross-entropy of every step")
        super().__init__()
        for name, v, low in (("n_way", n_way, 1), ("controller_size", controller_size, 1),
                             ("memory_slots", memory_slots, 1), ("memory_size", memory_size, 1),
                             ("read_heads", read_heads, 0)):
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name} must be an int >= {low}, got {v!r}")
        if read_heads > memory_slots:
            raise ValueError(f"read_heads={read_heads} > memory_slots={memory_slots}: every head needs its own "
                             "least-used slot to write to")
        if memory_slots * memory_size > MAX_MEMORY:  # allocated per sequence at every call, not counted in weights
            raise ValueError(f"memory_slots x memory_size = {memory_slots * memory_size:,} entries per sequence: more "
                             f"than metalib's cap of {MAX_MEMORY:,} (the paper's memory: 128 x 40 = 5,120)")
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0 <= gamma <= 1:
            raise ValueError(f"gamma (the usage decay) must be a number in [0, 1], got {gamma!r}")
        if max_grad_norm is not None and (isinstance(max_grad_norm, bool) or not isinstance(max_grad_norm, (int, float))
                                          or not max_grad_norm > 0):
            raise ValueError(f"max_grad_norm must be None or a number > 0, got {max_grad_norm!r}")
        self.model = model
        self.n_way, self.controller_size = n_way, controller_size
        self.memory_slots, self.memory_size, self.read_heads = memory_slots, memory_size, read_heads
        self.gamma = float(gamma)
        if not isinstance(key_strength, bool):
            raise TypeError(f"key_strength must be True or False, got {key_strength!r}")
        self.key_strength = key_strength
        self.max_grad_norm = None if max_grad_norm is None else float(max_grad_norm)
        d, c, h, m = encoder_width(model), controller_size, read_heads, memory_size
        # the LSTM controller, its input split by source (image + offset label: all steps in one
        # product; the previous reads and state: step by step)
        self.lstm_x = nn.Linear(d + n_way, 4 * c)
        self.lstm_h = nn.Linear(c, 4 * c, bias=False)
        self.lstm_r = nn.Linear(h * m, 4 * c, bias=False) if h else None
        self.heads = nn.Linear(c, h * (m + 1 + int(key_strength))) if h else None   # per head: key, gate, (beta)
        self.out = nn.Linear(c + h * m, n_way)
        with torch.no_grad():  # forget-gate bias 1 (a common LSTM initialisation; metalib's choice)
            self.lstm_x.bias[c:2 * c].fill_(1.0)

    # ------------------------------------------------------------------ the interface's small parts
    @classmethod
    def default_model(cls, in_channels: int, image_size: int, hidden: int, n_way: int) -> nn.Module:
        """The paper's input: raw pixels (``hidden``, the Conv-4 width, is not used)."""
        return PixelInput(in_channels, image_size)

    def describe(self) -> str:
        if not self.read_heads:
            return "LSTM (no memory)"
        return f"MANN (LRUA, {self.memory_slots}x{self.memory_size} memory, {self.read_heads} heads)"

    @property
    def short_name(self) -> str:
        return "MANN" if self.read_heads else "LSTM"

    # ------------------------------------------------------------------ the recurrence
    def initial_state(self, batch: int, dtype: Optional[torch.dtype] = None, device=None) -> State:
        """The state at the start of an episode: the memory cleared (:data:`MEMORY_INIT`), usage,
        read weights, reads, LSTM state zero."""
        dtype = dtype or self.out.weight.dtype
        device = device or self.out.weight.device
        z = lambda *s: torch.zeros(*s, dtype=dtype, device=device)  # noqa: E731
        h, s, m = self.read_heads, self.memory_slots, self.memory_size
        return State(z(batch, self.controller_size), z(batch, self.controller_size), z(batch, h * m),
                     torch.full((batch, s, m), MEMORY_INIT, dtype=dtype, device=device), z(batch, s), z(batch, h, s))

    def encode(self, x: Tensor) -> Tensor:
        """Encode images ``[B, L, C, H, W]`` -> ``[B, L, D]`` (each image on its own)."""
        b, n = x.shape[:2]
        return self.model(x.reshape(b * n, *x.shape[2:])).reshape(b, n, -1)

    def step(self, xin: Tensor, state: State) -> Tuple[Tensor, State, Dict[str, Tensor]]:
        """One time step: ``xin = lstm_x([e(x_t), onehot(y_{t-1})])`` ``[B, 4C]`` (precomputed for
        all steps), the state before -> ``(logits [B, N], state after, trace)``."""
        c = self.controller_size
        gates = xin + self.lstm_h(state.h)
        if self.lstm_r is not None:
            gates = gates + self.lstm_r(state.reads)
        i, f, g, o = gates.split(c, dim=-1)
        cell = torch.sigmoid(f) * state.c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(cell)
        if self.heads is None:
            return self.out(h), State(h, cell, state.reads, state.memory, state.usage, state.read_w), {}
        H, M = self.read_heads, self.memory_size
        p = self.heads(h)
        keys = torch.tanh(p[:, : H * M]).view(-1, H, M)
        gate = torch.sigmoid(p[:, H * M: H * M + H])                                      # [B, H]
        strength = 1 + F.softplus(p[:, H * M + H:]) if self.key_strength else None        # beta >= 1
        mem = lrua_step(state.memory, state.usage, state.read_w, keys, gate, self.gamma, strength)
        reads = mem.reads.flatten(1)
        logits = self.out(torch.cat([h, reads], dim=-1))
        trace = {"read_weights": mem.read_weights, "write_weights": mem.write_weights, "usage": mem.usage,
                 "gate": gate, "zeroed": mem.zeroed}
        return logits, State(h, cell, reads, mem.memory, mem.usage, mem.read_weights), trace

    def run(self, x: Tensor, label_in: Tensor, state: Optional[State] = None, trace: bool = False):
        """Run the network over sequences: images ``x [B, L, C, H, W]``, label inputs ``label_in
        [B, L, N]`` (what step ``t`` is fed: the offset labels). Starts from ``state`` (default: a
        cleared memory). Returns ``(logits [B, L, N], final state, trace)``; ``trace`` (with
        ``trace=True``, else ``{}``): ``{"read_weights", "write_weights": [B, L, H, S], "usage":
        [B, L, S], "gate": [B, L, H], "zeroed": [B, L]}`` (MANN only)."""
        b, n = label_in.shape[:2]
        if state is None:
            state = self.initial_state(b, dtype=self.out.weight.dtype, device=label_in.device)
        xin = self.lstm_x(torch.cat([self.encode(x), label_in.to(self.out.weight.dtype)], dim=-1))
        logits: List[Tensor] = []
        steps: List[Dict[str, Tensor]] = []
        for t in range(n):
            out, state, tr = self.step(xin[:, t], state)
            logits.append(out)
            if trace:
                steps.append({k: v.detach() for k, v in tr.items()})
        traced = {k: torch.stack([s[k] for s in steps], dim=1) for k in TRACE_KEYS} if trace and steps and steps[0] else {}
        return torch.stack(logits, dim=1), state, traced

    def predict_sequence(self, x: Tensor, y: Tensor, trace: bool = False):
        """The sequence task: logits ``[B, L, N]`` for every step of ``x [B, L, C, H, W]`` with labels
        ``y [B, L]`` (step ``t`` is fed ``onehot(y[t-1])``, never ``y[t]``). With ``trace``, returns
        ``(logits, trace)`` (see :meth:`run`)."""
        check_sequence(x, y, self.n_way)
        logits, _, tr = self.run(x, offset_label_inputs(y, self.n_way), trace=trace)
        return (logits, tr) if trace else logits

    # ------------------------------------------------------------------ the Learner interface
    def sequence_loss(self, batch: Sequence[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
        """Each episode's support and query images in one random order (torch's global generator) ->
        ``(mean cross-entropy over all steps, logits [T, L, N], labels [T, L])``."""
        return self._sequence_loss(batch)[:3]

    def _sequence_loss(self, batch: Sequence[Tensor]) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """:meth:`sequence_loss` and the order ``[T, L]`` the steps were shown in (indices into support
        then queries)."""
        x_s, y_s, x_q, y_q = batch
        x, y = torch.cat([x_s, x_q], dim=1), torch.cat([y_s, y_q], dim=1)
        check_sequence(x, y, self.n_way)
        order = torch.rand(y.shape, device="cpu").argsort(dim=1).to(y.device)           # one order per episode
        x = x.gather(1, order.view(*order.shape, *([1] * (x.dim() - 2))).expand_as(x))
        y = y.gather(1, order)
        logits = self.predict_sequence(x, y)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        return loss, logits, y, order

    def meta_gradient(self, batch: Sequence[Tensor], loss_fn=None):
        """Back-propagate the mean cross-entropy of all steps of each episode's sequence (see the
        module docstring); returns the loss and the logits of the query steps ``[T, Q, N]`` in
        ``batch``'s query order, so that they score against ``batch[3]`` (the data-parallel step does)."""
        no_loss_fn(loss_fn, f"{type(self).__name__}'s loss is the cross-entropy of every step")
        loss, logits, y, order = self._sequence_loss(batch)
        check_finite(loss.detach(), "the sequence loss")
        loss.backward()
        back = order.argsort(dim=1)                         # sequence step -> support-then-query position
        logits = logits.detach().gather(1, back.unsqueeze(-1).expand_as(logits))
        return loss.detach(), logits[:, batch[1].shape[1]:]

    def train_step(self, batch: Sequence[Tensor], optimizer: torch.optim.Optimizer) -> Dict[str, Tensor]:
        """One update on a batch of episodes shown as sequences; ``accuracy``: % of all steps right."""
        optimizer.zero_grad(set_to_none=True)
        loss, logits, y = self.sequence_loss(batch)
        check_finite(loss.detach(), "the sequence loss")
        loss.backward()
        self.clip_gradients()
        optimizer.step()
        return {"loss": loss.detach(), "accuracy": (logits.detach().argmax(-1) == y).float().mean() * 100}

    def clip_gradients(self) -> None:
        """The gradient's norm clipped to ``max_grad_norm`` (``None``: not clipped); a hook, so the
        data-parallel step clips too."""
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.parameters(), self.max_grad_norm)

    def predict(self, x_s: Tensor, y_s: Tensor, x_q: Tensor, n_way: Optional[int] = None,
                steps: Optional[int] = None) -> Tensor:
        """The support set as a sequence (in the order of :func:`support_order`), then each query as the
        next step from the state the support left, fed the last support image's label: ``[Q, N]`` for
        one task, ``[T, Q, N]`` for a batch. Queries never write to another query's memory."""
        if steps not in (None, 0):
            raise ValueError(f"{type(self).__name__} has no inner loop: steps must be None, got {steps!r}")
        x_s, y_s, x_q, batched = as_task_batch(x_s, y_s, x_q)
        self.check_task(self.n_way if n_way is None else n_way)
        if x_s.shape[0] != x_q.shape[0] or x_s.shape[2:] != x_q.shape[2:]:
            raise ValueError(f"support {tuple(x_s.shape)} and queries {tuple(x_q.shape)} must have the same tasks "
                             "and image shape")
        order = support_order(y_s.shape[1]).to(y_s.device)
        x_s, y_s = x_s[:, order], y_s[:, order]
        check_sequence(x_s, y_s, self.n_way)
        _, state, _ = self.run(x_s, offset_label_inputs(y_s, self.n_way))
        t, q = x_q.shape[:2]
        last = F.one_hot(y_s[:, -1], self.n_way).to(self.out.weight.dtype)               # y_{t-1} for the query step
        label_in = last.repeat_interleave(q, dim=0).unsqueeze(1)                          # [T*Q, 1, N]
        logits, _, _ = self.run(x_q.reshape(t * q, 1, *x_q.shape[2:]), label_in, state=state.repeat(q))
        out = logits.view(t, q, self.n_way)
        return out if batched else out[0]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.describe()}, controller {self.controller_size}, {self.n_way}-way, "
                f"encoder {type(self.model).__name__})")


class LSTMBaseline(MANN):
    """The LSTM baseline of Santoro et al. (2016): the MANN's controller with no external memory
    (``read_heads = 0``), trained and evaluated on the same sequences."""

    name = "lstm-baseline"
    config_class = LSTMBaselineConfig
    # Santoro et al. 2016 compare against an LSTM on the same episodes (Table 1); its size here is
    # the MANN controller's (200 units, as the reimplementation); trained exactly as MANN (see MANN).
    paper_settings = {
        ("omniglot", 5, k): LSTMBaselineConfig(train_shot=10, train_query=0, meta_batch=16, meta_lr=3e-3,
                                               iterations=6_250, controller_size=200, max_grad_norm=10.0)
        for k in (1, 5)
    }

    def __init__(self, model: nn.Module, n_way: int = 5, controller_size: int = 200,
                 max_grad_norm: Optional[float] = None, loss_fn=None) -> None:
        super().__init__(model, n_way=n_way, controller_size=controller_size, memory_slots=1, memory_size=1,
                         read_heads=0, max_grad_norm=max_grad_norm, loss_fn=loss_fn)


register("mann", MANN)
register("lstm-baseline", LSTMBaseline)
