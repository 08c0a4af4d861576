r"""SNAIL: a simple neural attentive meta-learner (Mishra, Rohaninejad, Chen & Abbeel, ICLR 2018).

**The task is a sequence.** An N-way K-shot episode is shown to the network as the ``N·K`` support
images, each with its label, followed by the query with a *null* (all-zero) label; the output at the
last step is the query's class. Step :math:`t` is the vector :math:`v_t = [e(x_t),\ \ell_t]`
``[E + N]``: the embedding of its image (:class:`ConvEmbedding`, ``[E]``) and its label input
:math:`\ell_t` (one-hot for a support image, zeros for the query). Nothing is learned by gradient
at test time: what the network knows about the episode is in its activations.

**The sequence model** interleaves two causal blocks, each of which *appends* features to every step
(so a step's features only ever grow), over a sequence :math:`V` ``[L, C]``:

* a **dense block** with dilation :math:`d` and :math:`F` filters — a causal convolution of kernel
  2 and a gated activation:
  :math:`a_t = \tanh(W_f [v_{t-d}, v_t] + b_f) \odot \sigma(W_g [v_{t-d}, v_t] + b_g)` ``[F]``
  (:math:`v_{t-d} = 0` for :math:`t < d`), output :math:`[v_t, a_t]` ``[C + F]``;
* a **TC block** for sequences of length :math:`L`: :math:`\lceil\log_2 L\rceil` dense blocks with
  dilations 1, 2, 4, … — so the last step sees the whole sequence;
* an **attention block** with key size :math:`K` and value size :math:`V`: queries
  :math:`q_t = W_q v_t`, keys :math:`k_s = W_k v_s`, values :math:`u_s = W_u v_s`;
  :math:`p_{ts} = \mathrm{softmax}_{s \le t}(q_t \cdot k_s / \sqrt{K})` (causal: step :math:`t`
  attends to steps :math:`s \le t` only), output :math:`[v_t, \sum_{s \le t} p_{ts} u_s]` ``[C + V]``.

The Omniglot architecture of the paper (appendix; the reimplementation ``eambutu/snail-pytorch`` is
the same): Attention(64, 32), TC(L, 128), Attention(256, 128), TC(L, 128), Attention(512, 256), then
a linear map of the last step's features to ``N`` logits; :math:`L = N K + 1`.

**As a few-shot learner** (:meth:`SNAIL.predict`): every image is embedded once; the support set is
presented in the fixed pseudo-random order of :func:`metalib.algorithms.mann.support_order` (the same
permutation for every task of that size), and each query is appended to it as its own last step —
the queries are classified independently. Training (:meth:`SNAIL.meta_backward`) presents each
episode's support set in a random order (torch's global generator) and minimises the mean
cross-entropy of the queries' last-step predictions.

Where metalib departs from the paper: the embedding (4 × [3×3 conv, 64 filters, normalisation,
leaky ReLU, 2×2 max-pool]) normalises each image on its own (GroupNorm) instead of BatchNorm over the
batch, so that a step's embedding depends on its own image only — the sequence model is then causal
bit for bit; several queries of an episode share its support set (each is still its own sequence).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..functional import check_finite
from .base import Learner, as_task_batch, check_network, no_loss_fn, register
from .mann import encoder_width, support_order
from .settings import FewShotConfig, setting


# ============================================================================ the embedding
class ConvEmbedding(nn.Module):
    """4 × [conv 3×3 (``hidden`` filters, padding 1), GroupNorm, leaky ReLU (0.1), max-pool 2] ->
    flattened: ``[n, C, H, W] -> [n, embedding_dim]`` (64 for 28×28 images and 64 filters).

    GroupNorm normalises each image on its own (``gcd(8, hidden)`` groups): the embedding of one
    image never depends on the other images of the batch."""

    def __init__(self, in_channels: int = 1, hidden: int = 64, image_size: int = 28) -> None:
        super().__init__()
        if image_size < 16:
            raise ValueError(f"ConvEmbedding needs images of at least 16x16 (four 2x poolings), got {image_size}")
        self.in_channels, self.hidden, self.image_size = int(in_channels), int(hidden), int(image_size)
        groups = math.gcd(8, self.hidden)
        layers: List[nn.Module] = []
        for i in range(4):
            layers += [nn.Conv2d(self.in_channels if i == 0 else self.hidden, self.hidden, 3, padding=1),
                       nn.GroupNorm(groups, self.hidden), nn.LeakyReLU(0.1), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        side = self.image_size
        for _ in range(4):
            side //= 2
        self.embedding_dim = self.hidden * side * side

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"ConvEmbedding expects [n, {self.in_channels}, H, W] images, got shape {tuple(x.shape)}")
        return self.features(x).flatten(1)

    def builder_spec(self):
        """``("metalib.algorithms.snail:ConvEmbedding", kwargs)``: how :mod:`metalib.pretrained` rebuilds it."""
        return "metalib.algorithms.snail:ConvEmbedding", dict(in_channels=self.in_channels, hidden=self.hidden,
                                                                image_size=self.image_size)


# ============================================================================ the blocks
def shift(v: Tensor, d: int) -> Tensor:
    """``v [B, L, C]`` delayed by ``d`` steps: row ``t`` holds ``v[t - d]`` (zeros for ``t < d``)."""
    if d >= v.shape[1]:
        return torch.zeros_like(v)
    return torch.cat([v.new_zeros(v.shape[0], d, v.shape[2]), v[:, :-d]], dim=1)


class DenseBlock(nn.Module):
    r"""A causal convolution of kernel 2 and dilation ``d`` with a gated activation; appends ``filters``
    features: ``[B, L, C] -> [B, L, C + filters]`` (see the module docstring)."""

    def __init__(self, in_channels: int, dilation: int, filters: int) -> None:
        super().__init__()
        self.dilation, self.filters = int(dilation), int(filters)
        self.conv = nn.Linear(2 * in_channels, 2 * filters)   # [v_{t-d}, v_t] -> [f, g]

    def forward(self, v: Tensor) -> Tensor:
        f, g = self.conv(torch.cat([shift(v, self.dilation), v], dim=-1)).split(self.filters, dim=-1)
        return torch.cat([v, torch.tanh(f) * torch.sigmoid(g)], dim=-1)


class TCBlock(nn.Module):
    """``ceil(log2 L)`` dense blocks with dilations 1, 2, 4, …: ``[B, L, C] -> [B, L, C + n*filters]``."""

    def __init__(self, in_channels: int, seq_len: int, filters: int) -> None:
        super().__init__()
        n = max(1, math.ceil(math.log2(seq_len)))
        self.blocks = nn.ModuleList(DenseBlock(in_channels + i * filters, 2 ** i, filters) for i in range(n))
        self.out_channels = in_channels + n * filters

    def forward(self, v: Tensor) -> Tensor:
        for block in self.blocks:
            v = block(v)
        return v


def causal_attention(q: Tensor, k: Tensor, u: Tensor) -> Tuple[Tensor, Tensor]:
    r""":math:`p_{ts} = \mathrm{softmax}_{s \le t}(q_t \cdot k_s / \sqrt{K})`, read :math:`\sum_s p_{ts} u_s`.
    ``q, k [B, L, K]``, ``u [B, L, V]`` -> ``(read [B, L, V], p [B, L, L])``; ``p`` is exactly 0 above
    the diagonal."""
    logits = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    future = torch.ones(q.shape[1], k.shape[1], dtype=torch.bool, device=q.device).triu(1)
    p = torch.softmax(logits.masked_fill(future, float("-inf")), dim=-1)
    return p @ u, p


class AttentionBlock(nn.Module):
    """Causal soft attention; appends ``value_size`` features: ``[B, L, C] -> [B, L, C + value_size]``."""

    def __init__(self, in_channels: int, key_size: int, value_size: int) -> None:
        super().__init__()
        self.query = nn.Linear(in_channels, key_size)
        self.key = nn.Linear(in_channels, key_size)
        self.value = nn.Linear(in_channels, value_size)
        self.out_channels = in_channels + value_size

    def forward(self, v: Tensor) -> Tuple[Tensor, Tensor]:
        read, p = causal_attention(self.query(v), self.key(v), self.value(v))
        return torch.cat([v, read], dim=-1), p


# ============================================================================ the learner
@dataclass(kw_only=True)
class SNAILConfig(FewShotConfig):
    """A SNAIL run: its blocks (the TC blocks' filters and the three attention blocks' sizes)."""

    filters: int = setting(128, "filters of the TC blocks", low=1)
    attention: Any = setting(((64, 32), (256, 128), (512, 256)),
                             "the three attention blocks' [key, value] sizes, e.g. [[64,32],[256,128],[512,256]]")


class SNAIL(Learner):
    r"""SNAIL for N-way K-shot classification (see the module docstring for the task and blocks).

    Args:
        model: the image embedding, ``[n, C, H, W] -> [n, E]`` with ``embedding_dim`` (or
            ``out_features``) ``= E`` (default network: :class:`ConvEmbedding`).
        n_way, k_shot: N (the output units; fixed) and K — the sequences are ``N·K + 1`` steps long,
            which sets the TC blocks' depth (other K still run: the blocks are causal at any length).
        filters: F of the TC blocks; attention: ``((key, value), ...)`` of the three attention blocks.
    """

    name = "snail"
    family = "model-based"
    config_keys = ("n_way", "k_shot")
    config_class = SNAILConfig
    # Mishra et al. 2018 (appendix, Omniglot): Attention(64, 32), TC(128), Attention(256, 128), TC(128),
    # Attention(512, 256) over a 4-block conv embedding with 64 filters; one query per sequence. The
    # optimiser settings are not taken from the paper; metalib's: Adam 1e-3 (the reimplementation
    # eambutu/snail-pytorch: 1e-4), 32 episodes per batch as that reimplementation, with one query per
    # class (N sequences sharing each episode's support set), and the iteration bound (20,000).
    paper_settings = {
        ("omniglot", n, k): SNAILConfig(train_query=1, meta_batch=32, meta_lr=1e-3, iterations=20_000, hidden=64)
        for n in (5, 20) for k in (1, 5)
    }
    # issue #29: a schedule for ~30 CPU-minutes on one thread, chosen on the validation split
    # (benchmarks/README.md "Time to accuracy"; every grid point was still at chance after 1 CPU-minute):
    # Adam 0.004, cosine to x0.02 over 4,700 iterations, one 5-way 1-shot episode (15 queries/class) per update
    budget_settings = {
        ("omniglot", 5, 1): dataclasses.replace(paper_settings[("omniglot", 5, 1)], train_way=5, train_shot=1, train_query=15, meta_batch=1, meta_lr=0.004,
                                        lr_schedule="cosine", lr_decay_every=4700, lr_decay=0.02, iterations=4700),
    }

    def __init__(self, model: nn.Module, n_way: int = 5, k_shot: int = 1, filters: int = 128,
                 attention: Sequence[Tuple[int, int]] = ((64, 32), (256, 128), (512, 256)), loss_fn=None) -> None:
        check_network(model, "model (the image embedding)")
        no_loss_fn(loss_fn, "SNAIL's loss is the cross-entropy of the last step")
        super().__init__()
        for name, v in (("n_way", n_way), ("k_shot", k_shot), ("filters", filters)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        attention = [tuple(int(a) for a in kv) for kv in attention]
        if len(attention) != 3 or any(len(kv) != 2 or min(kv) < 1 for kv in attention):
            raise ValueError(f"attention must be three (key_size, value_size) pairs, got {attention!r}")
        self.model = model
        self.n_way, self.k_shot, self.filters = n_way, k_shot, filters
        self.attention_sizes = attention
        self.seq_len = n_way * k_shot + 1
        c = encoder_width(model) + n_way
        self.att1 = AttentionBlock(c, *attention[0])
        self.tc1 = TCBlock(self.att1.out_channels, self.seq_len, filters)
        self.att2 = AttentionBlock(self.tc1.out_channels, *attention[1])
        self.tc2 = TCBlock(self.att2.out_channels, self.seq_len, filters)
        self.att3 = AttentionBlock(self.tc2.out_channels, *attention[2])
        self.out = nn.Linear(self.att3.out_channels, n_way)

    @classmethod
    def default_model(cls, in_channels: int, image_size: int, hidden: int, n_way: int) -> nn.Module:
        return ConvEmbedding(in_channels, hidden, image_size)

    def describe(self) -> str:
        return "SNAIL"

    # ------------------------------------------------------------------ the sequence model
    def embed(self, x: Tensor, params=None) -> Tensor:
        """Image embeddings ``[n, E]`` (each image on its own). SNAIL does not adapt: ``params`` must be None."""
        if params is not None:
            raise ValueError("SNAIL does not adapt: params must be None")
        return self.model(x).flatten(1)

    def run(self, v: Tensor, trace: bool = False):
        """The blocks over step vectors ``v [B, L, E + N]`` -> logits at every step ``[B, L, N]``;
        with ``trace``, also ``{"attention": [p1, p2, p3]}`` (each ``[B, L, L]``)."""
        v, p1 = self.att1(v)
        v, p2 = self.att2(self.tc1(v))
        v, p3 = self.att3(self.tc2(v))
        logits = self.out(v)
        return (logits, {"attention": [p1.detach(), p2.detach(), p3.detach()]}) if trace else logits

    def forward_sequence(self, x: Tensor, label_in: Tensor, trace: bool = False):
        """Logits ``[B, L, N]`` at every step of image sequences ``x [B, L, C, H, W]`` fed ``label_in
        [B, L, N]`` (e.g. :func:`metalib.data.sequences.snail_form`'s); see :meth:`run` for ``trace``."""
        if x.dim() < 3 or label_in.dim() != 3 or x.shape[:2] != label_in.shape[:2] or label_in.shape[2] != self.n_way:
            raise ValueError(f"expected x [B, L, ...] and label_in [B, L, {self.n_way}]; got {tuple(x.shape)}, "
                             f"{tuple(label_in.shape)}")
        b, n = x.shape[:2]
        z = self.embed(x.reshape(b * n, *x.shape[2:])).view(b, n, -1)
        return self.run(torch.cat([z, label_in.to(z.dtype)], dim=-1), trace)

    def query_logits(self, x_s: Tensor, y_s: Tensor, x_q: Tensor, order: Tensor, trace: bool = False):
        """Each task's support set (permuted by ``order [T, N*K]``, one row per task) then each query as
        the last step: logits ``[T, Q, N]`` (and, with ``trace``, the attention of every block
        ``[T, Q, N*K + 1, N*K + 1]``). Every image is embedded once."""
        t, k = y_s.shape
        q = x_q.shape[1]
        z = self.embed(torch.cat([x_s.flatten(0, 1), x_q.flatten(0, 1)]))
        z_s, z_q = z[: t * k].view(t, k, -1), z[t * k:].view(t, q, -1)
        z_s, y_s = z_s.gather(1, order.unsqueeze(-1).expand_as(z_s)), y_s.gather(1, order)
        support = torch.cat([z_s, F.one_hot(y_s, self.n_way).to(z.dtype)], dim=-1)           # [T, NK, E+N]
        query = torch.cat([z_q, z_q.new_zeros(t, q, self.n_way)], dim=-1)                     # null label
        v = torch.cat([support.unsqueeze(1).expand(t, q, k, support.shape[-1]), query.unsqueeze(2)], dim=2)
        out = self.run(v.flatten(0, 1), trace)
        if not trace:
            return out[:, -1].view(t, q, self.n_way)
        logits, tr = out
        return logits[:, -1].view(t, q, self.n_way), {"attention": [p.view(t, q, k + 1, k + 1) for p in tr["attention"]]}

    def _check(self, x_s: Tensor, y_s: Tensor, x_q: Tensor) -> None:
        if y_s.dim() != 2 or x_s.shape[:2] != y_s.shape or x_q.shape[0] != x_s.shape[0] or x_q.shape[2:] != x_s.shape[2:]:
            raise ValueError(f"expected x_s [T, N*K, ...], y_s [T, N*K], x_q [T, Q, ...] with the same image shape; "
                             f"got {tuple(x_s.shape)}, {tuple(y_s.shape)}, {tuple(x_q.shape)}")
        if y_s.is_floating_point() or int(y_s.min()) < 0 or int(y_s.max()) >= self.n_way:
            raise ValueError(f"support labels must be integers in [0, {self.n_way}) for this {self.n_way}-way SNAIL")

    # ------------------------------------------------------------------ the Learner interface
    def meta_gradient(self, batch: Sequence[Tensor], loss_fn=None):
        """Mean cross-entropy of every query's last-step logits, each episode's support set in a random
        order; back-propagated. Returns the loss (and the logits ``[T, Q, N]``), detached."""
        no_loss_fn(loss_fn, "SNAIL's loss is the cross-entropy of the last step")
        x_s, y_s, x_q, y_q = batch
        self._check(x_s, y_s, x_q)
        order = torch.rand(y_s.shape, device="cpu").argsort(dim=1).to(y_s.device)
        logits = self.query_logits(x_s, y_s, x_q, order)
        loss = F.cross_entropy(logits.flatten(0, 1), y_q.flatten())
        check_finite(loss.detach(), "the query loss")
        loss.backward()
        return loss.detach(), logits.detach()

    def predict(self, x_s: Tensor, y_s: Tensor, x_q: Tensor, n_way: Optional[int] = None,
                steps: Optional[int] = None) -> Tensor:
        """Each query after the support set (in :func:`~metalib.algorithms.mann.support_order`), with a
        null label: ``[Q, N]`` for one task, ``[T, Q, N]`` for a batch."""
        if steps not in (None, 0):
            raise ValueError(f"SNAIL has no inner loop: steps must be None, got {steps!r}")
        x_s, y_s, x_q, batched = as_task_batch(x_s, y_s, x_q)
        self.check_task(self.n_way if n_way is None else n_way)
        self._check(x_s, y_s, x_q)
        order = support_order(y_s.shape[1]).to(y_s.device).expand_as(y_s)
        out = self.query_logits(x_s, y_s, x_q, order)
        return out if batched else out[0]

    def explain_query(self, x_s: Tensor, y_s: Tensor, x_q: Tensor) -> Dict[str, Any]:
        """One task, as :meth:`predict` sees it: ``order`` (the support permutation), ``logits [Q, N]``
        and ``attention`` — for each attention block, the weights ``[Q, N*K + 1]`` of the query step
        over the sequence (support steps in ``order``, then the query itself)."""
        if y_s.dim() != 1:
            raise ValueError("explain_query takes one task: x_s [N*K, ...], y_s [N*K], x_q [Q, ...]")
        order = support_order(y_s.shape[0]).to(y_s.device)
        logits, tr = self.query_logits(x_s[None], y_s[None], x_q[None], order[None], trace=True)
        return {"order": order, "logits": logits[0], "attention": [p[0, :, -1] for p in tr["attention"]]}

    def __repr__(self) -> str:
        return f"SNAIL({self.n_way}-way {self.k_shot}-shot, sequences of {self.seq_len}, embedding {type(self.model).__name__})"


register("snail", SNAIL)
