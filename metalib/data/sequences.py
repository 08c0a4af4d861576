r"""Episodes as sequences: the task format of the model-based learners (MANN, SNAIL).

**Santoro et al. (2016).** An episode holds ``N`` classes × ``instances`` images each, shown one at a
time in a random order; at step :math:`t` a learner sees the image :math:`x_t` with the *previous*
label :math:`y_{t-1}` (one-hot, zeros at :math:`t = 0`: :func:`offset_labels`) and must predict
:math:`y_t`. The labels 0..N−1 go to the classes in a random order drawn per episode. Accuracy is
reported by *instance*: the 1st, 2nd, … presentation of a class (:func:`instance_numbers`;
the evaluation, :func:`metalib.evaluation.accuracy_by_instance`) — at the 1st nothing about the class has been seen, from the 2nd on
a learner that remembers can be right.

**SNAIL (Mishra et al. 2018).** An N-way K-shot episode becomes, for each query, the support set with
its labels followed by the query with a *null* (all-zero) label; the prediction at the last step is
the query's class (:func:`snail_form`).

The images come from :class:`metalib.data.EpisodeSampler`: a :class:`SequenceSampler` with ``n_way``
classes and ``instances`` images per class draws exactly the classes, images and labels of an
``EpisodeSampler(data, n_way, k_shot=instances, q_query=0)`` episode; :meth:`SequenceSampler.episodes`
draws them one task at a time from a generator seeded with ``seed``, as
:func:`metalib.evaluation.seeded_episodes` does, so the seeded test sequences hold the same images as
the seeded standard episodes of that shape (the classes every family is tested on). Only the order
of presentation is new: it comes from a second generator, seeded with ``seed + ORDER_SEED_OFFSET``.

>>> from metalib.data import Omniglot
>>> from metalib.data.sequences import SequenceSampler
>>> from metalib.evaluation import accuracy_by_instance
>>> seqs = SequenceSampler(Omniglot("test"), n_way=5, instances=10)
>>> ep = next(seqs.episodes(1, seed=1000))       # ep.x [1, 50, 1, 28, 28], ep.y [1, 50], ep.instance [1, 50]
>>> accuracy_by_instance(learner, Omniglot("test"), episodes=600)   # learner.predict_sequence(x, y)
"""
from __future__ import annotations

from typing import Any, Iterator, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .episodes import EpisodeSampler

__all__ = ["SequenceEpisode", "SequenceSampler", "SnailSequences", "offset_labels", "instance_numbers",
           "snail_form", "ORDER_SEED_OFFSET"]

ORDER_SEED_OFFSET = 104_729      # the order generator's seed is seed + this (a prime, far from other seeds)


class SequenceEpisode(NamedTuple):
    """A batch of ``T`` episodes as sequences of length ``L = N * instances``.

    Attributes:
        x: images, float32 in [0, 1], ``[T, L, ch, H, W]``.
        y: labels, int64 ``[T, L]`` (what step ``t`` must predict).
        instance: int64 ``[T, L]``, 1 at a class's first presentation, 2 at its second, …
    """

    x: Tensor
    y: Tensor
    instance: Tensor


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return value


def offset_labels(y: Tensor, n_way: int) -> Tensor:
    """The label input of Santoro et al.'s task: step ``t`` is fed ``onehot(y[t-1])``, step 0 zeros.

    ``y``: int ``[..., L]`` -> float ``[..., L, n_way]``."""
    if y.is_floating_point() or y.dtype == torch.bool or y.dim() < 1:
        raise TypeError(f"y must be an integer tensor [..., L], got {y.dtype} {tuple(y.shape)}")
    onehot = F.one_hot(y, _check_int("n_way", n_way, 1)).float()
    return torch.cat([torch.zeros_like(onehot[..., :1, :]), onehot[..., :-1, :]], dim=-2)


def instance_numbers(y: Tensor) -> Tensor:
    """``[..., L]`` int: how many times the label of step ``t`` has appeared up to and including ``t``
    (1 = the class's first presentation)."""
    if y.is_floating_point() or y.dtype == torch.bool or y.dim() < 1:
        raise TypeError(f"y must be an integer tensor [..., L], got {y.dtype} {tuple(y.shape)}")
    same = y.unsqueeze(-1) == y.unsqueeze(-2)                       # [..., L, L]: label of s == label of t
    return torch.tril(same).sum(-1)                                  # count s <= t


class SequenceSampler:
    """Santoro et al.'s episodes: ``n_way`` classes × ``instances`` images, in a random order.

    Args:
        dataset: uint8 images ``[C, P, ch, H, W]`` (or a dataset with ``.images``), as for
            :class:`metalib.data.EpisodeSampler`, which draws the classes and images.
        n_way: N classes per episode; instances: images per class (``N * instances`` steps).
        device: where the images live and the sequences are produced.
    """

    def __init__(self, dataset: Any, n_way: int = 5, instances: int = 10, device=None) -> None:
        self.n_way = _check_int("n_way", n_way, 1)
        self.instances = _check_int("instances", instances, 1)
        self.episode_sampler = EpisodeSampler(dataset, n_way, instances, 0, device=device)
        self.length = self.n_way * self.instances

    @property
    def device(self) -> torch.device:
        return self.episode_sampler.device

    def from_indices(self, classes: Tensor, picks: Tensor, order_generator: Optional[torch.Generator]) -> SequenceEpisode:
        """The sequences of the episodes ``(classes, picks)`` (:meth:`EpisodeSampler.sample_indices`),
        each shown in an order drawn from ``order_generator`` (a CPU generator; None: torch's global one)."""
        ep = self.episode_sampler.gather(classes, picks)
        t = ep.x_s.shape[0]
        order = torch.rand(t, self.length, generator=order_generator, dtype=torch.float64).argsort(dim=1)
        order = order.to(self.device)
        x = ep.x_s.gather(1, order.view(t, self.length, 1, 1, 1).expand_as(ep.x_s))
        y = ep.y_s.gather(1, order)
        return SequenceEpisode(x, y, instance_numbers(y))

    def sample(self, n_tasks: int = 1, generator: Optional[torch.Generator] = None) -> SequenceEpisode:
        """``n_tasks`` random sequences (classes, images and order from ``generator``)."""
        classes, picks = self.episode_sampler.sample_indices(n_tasks, generator)
        return self.from_indices(classes, picks, generator)

    def episodes(self, n: int, seed: int, chunk: int = 25) -> Iterator[SequenceEpisode]:
        """The ``n`` seeded sequences of ``seed``, in batches of up to ``chunk``: the images of the
        ``n`` seeded ``EpisodeSampler(data, n_way, instances, 0)`` episodes of ``seed`` (drawn one task
        at a time, as :func:`metalib.evaluation.seeded_episodes`), in an order drawn from a generator
        seeded with ``seed + ORDER_SEED_OFFSET``. The same every time, for every learner."""
        _check_int("n", n, 0)
        _check_int("chunk", chunk, 1)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        g = torch.Generator().manual_seed(seed)
        g_order = torch.Generator().manual_seed(seed + ORDER_SEED_OFFSET)
        done = 0
        while done < n:
            m = min(chunk, n - done)
            idx = [self.episode_sampler.sample_indices(1, g) for _ in range(m)]
            yield self.from_indices(torch.cat([c for c, _ in idx]), torch.cat([p for _, p in idx]), g_order)
            done += m

    def __repr__(self) -> str:
        return f"SequenceSampler({self.n_way} classes x {self.instances} instances = {self.length} steps)"


# ============================================================================ SNAIL's form
class SnailSequences(NamedTuple):
    """Each query of an N-way K-shot episode as its own sequence: the ``N*K`` support steps then the query.

    Attributes:
        x: images ``[T, Q, N*K + 1, ch, H, W]``; label_in: what each step is fed ``[T, Q, N*K + 1, N]``
        — the support image's own label (one-hot), and zeros (the null label) at the query step;
        y: the query labels ``[T, Q]`` (the target of the last step), or None if not given.
    """

    x: Tensor
    label_in: Tensor
    y: Optional[Tensor]


def snail_form(x_s: Tensor, y_s: Tensor, x_q: Tensor, n_way: int, y_q: Optional[Tensor] = None,
               order: Optional[Tensor] = None) -> SnailSequences:
    """SNAIL's sequences of a batch of episodes (``x_s [T, N*K, ...]``, ``y_s [T, N*K]``,
    ``x_q [T, Q, ...]``): the support set in ``order`` (a permutation of ``N*K``; default as given)
    with its labels, then each query with a null label. See :class:`SnailSequences`."""
    if y_s.dim() != 2 or x_s.shape[:2] != y_s.shape or x_q.dim() != x_s.dim() or x_q.shape[0] != x_s.shape[0]:
        raise ValueError(f"expected x_s [T, N*K, ...], y_s [T, N*K], x_q [T, Q, ...]; got {tuple(x_s.shape)}, "
                         f"{tuple(y_s.shape)}, {tuple(x_q.shape)}")
    if order is not None:
        x_s, y_s = x_s[:, order], y_s[:, order]
    t, q = x_q.shape[:2]
    labels = F.one_hot(y_s, _check_int("n_way", n_way, 1)).float()                       # [T, NK, N]
    x = torch.cat([x_s.unsqueeze(1).expand(t, q, *x_s.shape[1:]), x_q.unsqueeze(2)], dim=2)
    label_in = torch.cat([labels.unsqueeze(1).expand(t, q, *labels.shape[1:]),
                          labels.new_zeros(t, q, 1, labels.shape[-1])], dim=2)
    return SnailSequences(x, label_in, y_q)
