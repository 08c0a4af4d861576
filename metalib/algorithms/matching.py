r"""Matching Networks (Vinyals, Blundell, Lillicrap, Kavukcuoglu & Wierstra, NeurIPS 2016).

A query is labelled by attention over the *whole* support set (eq. 1-2 of the paper):

.. math::

    \hat y = \sum_{i=1}^{n} a(\hat x, x_i)\, y_i, \qquad
    a(\hat x, x_i) = \frac{\exp c\big(f(\hat x), g(x_i)\big)}{\sum_{j=1}^{n} \exp c\big(f(\hat x), g(x_j)\big)},

with :math:`y_i` one-hot labels and ``n = N*K`` support images, and :math:`c` the similarity. The
paper calls :math:`c` the cosine similarity; the authors' original implementation (and the public
re-implementations that follow it, e.g. easyfsl) normalises the *support* features only:
:math:`c(\hat z, z_i) = \hat z \cdot z_i / \|z_i\|` — the query keeps its norm, so the logits are
not bounded in :math:`[-1, 1]` and the softmax can be sharp (``normalize_query=False``, the
default). The literal both-sides cosine (``normalize_query=True``) bounds every logit in
:math:`[-1, 1]`: with one support image per class the best attainable query loss is then
:math:`-\log(e/(e + N - 1))` (0.90 for N = 5), which caps training (docs/references.md, issue #29).
Weights trained before this option (shipped before issue #29) record ``normalize_query=True``.
:math:`\hat y` is a probability distribution over the N classes — the attention mass that falls on
each class's support images. Training minimises the cross-entropy of that distribution,
:math:`-\log \hat y_{\text{true}}`, over the queries of training episodes.

Without full-context embeddings (the default), :math:`f = g` is the CNN :math:`f'` (Conv-4).
With them (``fce=True``, the paper's appendix A.2):

* the support embeddings see the whole support set through a bidirectional LSTM over the support
  sequence: :math:`g(x_i, S) = \vec h_i + \overleftarrow h_i + g'(x_i)`;
* each query is refined by an attention LSTM that reads the support ``fce_steps`` times
  (K "read" steps in the paper), starting from :math:`h_0 = 0, c_0 = 0`:

  .. math::

      \hat h_k, c_k = \mathrm{LSTM}\big([f'(\hat x), r_{k-1}],\ h_{k-1},\ c_{k-1}\big),\quad
      h_k = \hat h_k + f'(\hat x),\quad
      r_{k-1} = \sum_i \mathrm{softmax}_i\big(h_{k-1}^\top g(x_i)\big)\, g(x_i),

  and :math:`f(\hat x, S) = h_K`. The paper writes the LSTM's state as the concatenation
  :math:`[h_{k-1}, r_{k-1}]`; an ``nn.LSTMCell`` of size ``d`` cannot hold a ``2d`` state, so the
  read vector enters with the input (the usual way to fit it; metalib's choice). Each query is
  refined on its own: queries never see each other.

Shapes: support images ``[N*K, *x_shape]`` → embeddings ``[N*K, d]``; queries ``[Q, *x_shape]`` →
``[Q, d]``; similarities and attention ``[Q, N*K]``; :math:`\log \hat y` ``[Q, N]``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..batch import check_labels, class_counts
from ..functional import Params, buffers_of, check_steps, forward, params_of
from .base import EpisodeClassifier, check_network, no_loss_fn, register
from .settings import FewShotConfig, setting


# ============================================================================ the equations
def cosine_similarities(z_q: Tensor, z_s: Tensor, eps: float = 1e-8) -> Tensor:
    r""":math:`c(z_q, z_s) = \frac{z_q \cdot z_s}{\|z_q\| \|z_s\|}` for every (query, support) pair:
    ``[Q, d] x [S, d] -> [Q, S]``. Norms are clamped at ``eps`` (a zero embedding has similarity 0)."""
    q = z_q / z_q.norm(dim=-1, keepdim=True).clamp_min(eps)
    s = z_s / z_s.norm(dim=-1, keepdim=True).clamp_min(eps)
    return q @ s.transpose(-1, -2)


def support_normalised_similarities(z_q: Tensor, z_s: Tensor, eps: float = 1e-8) -> Tensor:
    r""":math:`c(z_q, z_s) = \frac{z_q \cdot z_s}{\|z_s\|}` for every (query, support) pair: the
    support features normalised, the query's not (the original implementation's attention; the
    query's norm acts as an inverse softmax temperature). ``[Q, d] x [S, d] -> [Q, S]``; support
    norms clamped at ``eps``."""
    s = z_s / z_s.norm(dim=-1, keepdim=True).clamp_min(eps)
    return z_q @ s.transpose(-1, -2)


def label_mixture_log_probs(similarities: Tensor, y_s: Tensor, n_way: int) -> Tensor:
    r""":math:`\log \hat y_k = \log \sum_{i: y_i = k} a_i` with :math:`a = \mathrm{softmax}` of
    ``similarities`` over the support axis (eq. 1-2): ``[Q, S]``, labels ``[S]`` -> ``[Q, N]``.

    Computed as ``logsumexp`` of the log-attention over each class's support images, which is exact
    and stays finite where the attention underflows. ``exp`` of the result sums to 1 over classes.
    """
    class_counts(y_s, n_way)                                                   # every class present
    log_a = similarities.log_softmax(-1)                                       # [Q, S]
    member = F.one_hot(y_s, n_way).to(torch.bool)                              # [S, N]
    masked = log_a.unsqueeze(-1).masked_fill(~member, float("-inf"))           # [Q, S, N]
    return masked.logsumexp(-2)


# ============================================================================ the learner
@dataclass(kw_only=True)
class MatchingConfig(FewShotConfig):
    """A Matching Networks run: the full context embeddings and the attention's cosine."""

    fce: bool = setting(False, "full context embeddings (a BiLSTM over the support, an attention LSTM for queries)")
    fce_steps: int = setting(5, "the attention LSTM's read steps (with fce)", low=1)
    embedding_dim: Optional[int] = setting(None, "the embedding width the FCE LSTMs take (default: inferred)")
    normalize_query: bool = setting(False, "normalise the query embedding too (the literal cosine)")


class MatchingNetworks(EpisodeClassifier):
    r"""Matching Networks: attention over the support set, cosine similarity, label mixture (see the
    module docstring for the equations).

    ``encoder`` (the paper's :math:`f' = g'`) maps ``[n, *x_shape]`` to embeddings; anything after the
    batch dimension is flattened. :meth:`predict` returns :math:`\log \hat y` ``[Q, N]`` (valid logits:
    their softmax is :math:`\hat y` itself); the loss is the cross-entropy :math:`-\log \hat y_{y}`.

    Args:
        encoder: the embedding network (Conv-4 without a head: 64-d on 28x28 Omniglot).
        fce: full-context embeddings (bidirectional LSTM over the support, attention LSTM for the
            queries; appendix A.2). Off by default.
        fce_steps: the attention LSTM's read steps (K in the paper, which does not give its value:
            5 is metalib's choice).
        embedding_dim: ``d``, needed with ``fce`` when the encoder has no ``embedding_dim`` attribute.
        normalize_query: ``False`` (default): the original implementation's attention, support
            features normalised and query features not (:func:`support_normalised_similarities`);
            ``True``: the literal cosine of the paper's text, both sides normalised
            (:func:`cosine_similarities`; every logit in [-1, 1]). Weights shipped before issue #29
            were trained with ``True`` and record it in their manifest config.

    BatchNorm: support and query images of a task are embedded in one forward pass (as ProtoNet
    does), so an encoder whose BatchNorm uses batch statistics is transductive over the episode.
    """

    name = "matching"
    config_class = MatchingConfig
    family = "metric-based"
    # Vinyals et al. 2016: episodes are shaped like the test tasks (N-way K-shot, section 2.2), the
    # embedding is the 4-block 64-filter CNN (section 4.1.1). The optimiser, learning rate, queries
    # per training episode and the number of episodes are not given in the paper: Adam 1e-3, one
    # episode per update, 15 queries per class and a 20,000-episode bound are metalib's choices.
    paper_settings = {
        **{("omniglot", n, k): MatchingConfig(train_query=15, meta_batch=1, meta_lr=1e-3, iterations=20_000)
           for n in (5, 20) for k in (1, 5)},
        **{("miniimagenet", 5, k): MatchingConfig(train_query=15, meta_batch=1, meta_lr=1e-3, iterations=20_000)
           for k in (1, 5)},
    }
    # issue #29: a schedule for ~30 CPU-minutes on one thread, chosen on the validation split
    # (benchmarks/README.md "Time to accuracy"; grid and results in benchmarks/results/budget_search.json:
    # peak lr {1e-3, 2e-3, 4e-3} x {step, cosine}, 1 CPU-minute each, all within 94.1-94.9% ± 0.7)
    budget_settings = {
        ("omniglot", 5, 1): dataclasses.replace(paper_settings[("omniglot", 5, 1)], train_way=5, train_shot=1, train_query=15, meta_batch=1, meta_lr=0.004,
                                 lr_schedule="step", lr_decay_every=7425, lr_decay=0.5, iterations=29700),
    }

    def __init__(self, encoder: nn.Module, fce: bool = False, fce_steps: int = 5,
                 embedding_dim: Optional[int] = None, loss_fn=None, normalize_query: bool = False) -> None:
        check_network(encoder, "encoder")
        no_loss_fn(loss_fn, "Matching Networks' loss is the cross-entropy of the attention mixture")
        if not isinstance(fce, bool):
            raise TypeError(f"fce must be True or False, got {fce!r}")
        if not isinstance(normalize_query, bool):
            raise TypeError(f"normalize_query must be True or False, got {normalize_query!r}")
        super().__init__(None)
        self.normalize_query = normalize_query
        self.encoder = encoder
        self.fce = fce
        self.fce_steps = check_steps("fce_steps", fce_steps)
        if fce:
            if self.fce_steps < 1:
                raise ValueError("fce_steps must be >= 1 with fce=True (the attention LSTM reads the support at least once)")
            d = embedding_dim if embedding_dim is not None else getattr(encoder, "embedding_dim", None)
            if isinstance(d, bool) or not isinstance(d, int) or d < 1:
                raise ValueError("fce=True needs the embedding size: pass embedding_dim=d (the encoder has no "
                                 f"integer .embedding_dim; got {d!r})")
            self.embedding_dim = d
            # g: bidirectional LSTM over the support sequence, hidden size d per direction
            self.support_lstm = nn.LSTM(d, d, batch_first=True, bidirectional=True)
            # f: the attention LSTM; input [f'(x), r] (2d), state h (d)
            self.query_cell = nn.LSTMCell(2 * d, d)
        else:
            self.embedding_dim = embedding_dim

    @property
    def model(self) -> nn.Module:
        """The embedding network (the CNN :math:`f' = g'`), under the name every learner uses."""
        return self.encoder

    # ------------------------------------------------------------------ embeddings
    def embed(self, x: Tensor, params: Optional[Params] = None) -> Tensor:
        """The CNN embedding :math:`f'(x)`: ``[n, *x_shape] -> [n, d]`` (one batch). ``params``: the
        encoder's parameters to use (default its own; Matching Networks do not adapt them)."""
        params = params_of(self.encoder) if params is None else params
        return forward(self.encoder, params, buffers_of(self.encoder), x).flatten(1)

    def support_context(self, z_s: Tensor) -> Tensor:
        r""":math:`g(x_i, S)`: without FCE the embeddings themselves; with FCE
        :math:`\vec h_i + \overleftarrow h_i + g'(x_i)` from the bidirectional LSTM over the support
        sequence (in the order given). ``[S, d] -> [S, d]``."""
        if not self.fce:
            return z_s
        out, _ = self.support_lstm(z_s.unsqueeze(0))                   # [1, S, 2d]
        d = z_s.shape[-1]
        return out[0, :, :d] + out[0, :, d:] + z_s

    def query_context(self, z_q: Tensor, g_s: Tensor) -> Tensor:
        r""":math:`f(\hat x, S)`: without FCE the embeddings themselves; with FCE ``fce_steps`` steps of
        the attention LSTM reading ``g_s`` (each query on its own). ``[Q, d], [S, d] -> [Q, d]``."""
        if not self.fce:
            return z_q
        h = torch.zeros_like(z_q)
        c = torch.zeros_like(z_q)
        for _ in range(self.fce_steps):
            read = (h @ g_s.T).softmax(-1) @ g_s                          # r_{k-1}: [Q, d]
            h_hat, c = self.query_cell(torch.cat([z_q, read], -1), (h, c))
            h = h_hat + z_q                                                # the skip connection
        return h

    def similarities(self, f_q: Tensor, g_s: Tensor) -> Tensor:
        """The attention logits ``[Q, S]``: the cosine (``normalize_query=True``) or the query against
        the normalised support features (default; see the class docstring)."""
        if self.normalize_query:
            return cosine_similarities(f_q, g_s)
        return support_normalised_similarities(f_q, g_s)

    # ------------------------------------------------------------------ one task
    def _task(self, x_s: Tensor, y_s: Tensor, x_q: Tensor, n_way: int) -> Dict[str, Tensor]:
        z = self.embed(torch.cat([x_s, x_q]))
        z_s, z_q = z[: x_s.shape[0]], z[x_s.shape[0]:]
        g_s = self.support_context(z_s)
        f_q = self.query_context(z_q, g_s)
        sims = self.similarities(f_q, g_s)
        return {"z_s": z_s, "z_q": z_q, "g_s": g_s, "f_q": f_q, "similarities": sims,
                "log_probs": label_mixture_log_probs(sims, y_s, n_way)}

    def task_logits(self, x_s: Tensor, y_s: Tensor, x_q: Tensor, n_way: int) -> Tensor:
        r""":math:`\log \hat y` ``[Q, N]`` of one task (``x_s [N*K, ...]``, ``y_s [N*K]``, ``x_q [Q, ...]``);
        :meth:`logits` (from :class:`EpisodeClassifier`) batches it."""
        return self._task(x_s, y_s, x_q, n_way)["log_probs"]

    def attention(self, x_s: Tensor, y_s: Tensor, x_q: Tensor) -> Tensor:
        """The attention :math:`a(\\hat x, x_i)` of each query over each support image, one task:
        ``[Q, N*K]`` (rows sum to 1)."""
        return self._task(x_s, y_s, x_q, check_labels(y_s, None, "support"))["similarities"].softmax(-1)

    def explain(self, x_s: Tensor, y_s: Tensor, x_q: Tensor, params=None) -> Dict[str, Any]:
        r"""One task (see :meth:`metalib.algorithms.Learner.explain`): ``z_s`` = :math:`g(x_i, S)`
        ``[N*K, d]`` (the CNN embeddings without FCE), ``z_q`` = the CNN embeddings :math:`f'(\hat x)`
        ``[Q, d]``, ``logits`` = :math:`\log \hat y` ``[Q, N]``, ``attention`` ``[Q, N*K]``,
        ``similarities`` (the attention logits) ``[Q, N*K]``; ``rule(z)`` = :math:`\log \hat y` of feature vectors
        ``z [m, d]`` against this support set (through the attention LSTM with FCE)."""
        if params is not None:
            raise ValueError("Matching Networks do not adapt: params must be None")
        n_way = check_labels(y_s, None, "support")
        t = self._task(x_s, y_s, x_q, n_way)
        g_s = t["g_s"].detach()

        def rule(z: Tensor) -> Tensor:
            return label_mixture_log_probs(self.similarities(self.query_context(z, g_s), g_s), y_s, n_way)

        return {"z_s": g_s, "z_q": t["z_q"].detach(), "logits": t["log_probs"].detach(),
                "attention": t["similarities"].detach().softmax(-1), "similarities": t["similarities"].detach(),
                "rule": rule}

    # ------------------------------------------------------------------ training
    def query_losses(self, log_probs: Tensor, y_q: Tensor) -> Tensor:
        r"""Per-task query cross-entropy :math:`-\log \hat y_{y}` ``[T]``: the logits are already the
        log of a distribution (the label mixture), so no further softmax."""
        return F.nll_loss(log_probs.flatten(0, 1), y_q.flatten(), reduction="none").view(y_q.shape).mean(1)

    def describe(self) -> str:
        return f"Matching Networks ({'FCE' if self.fce else 'no FCE'})"

    @property
    def short_name(self) -> str:
        return "MatchingNet+FCE" if self.fce else "MatchingNet"

    def __repr__(self) -> str:
        fce = f", fce=True, fce_steps={self.fce_steps}" if self.fce else ""
        nq = ", normalize_query=True" if self.normalize_query else ""
        return f"MatchingNetworks(encoder={self.encoder.__class__.__name__}{fce}{nq})"


register("matching", MatchingNetworks)
