"""N-way K-shot episodes sampled with a few batched tensor ops (no DataLoader, no per-image Python).

The dataset's uint8 images ``[C, P, ch, H, W]`` are moved to ``device`` once. Every call draws
random numbers on the CPU from the caller's ``torch.Generator`` (so a seed gives the same episodes
on CPU and GPU and for every algorithm), turns them into class and image indices with ``topk``
(a random subset in random order), moves the indices to the device and gathers the images of all
tasks with one indexing operation for the support sets and one for the query sets.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import torch

__all__ = ["Episode", "EpisodeSampler"]


class Episode(NamedTuple):
    """A batch of ``T`` tasks, class-major inside each task.

    Attributes:
        x_s: support images, float32 in [0, 1], ``[T, N*K, ch, H, W]``.
        y_s: support labels, int64 ``[T, N*K]`` = ``[0]*K + [1]*K + ... + [N-1]*K``.
        x_q: query images, float32 in [0, 1], ``[T, N*Q, ch, H, W]``.
        y_q: query labels, int64 ``[T, N*Q]`` = ``[0]*Q + ... + [N-1]*Q``.
    """

    x_s: torch.Tensor
    y_s: torch.Tensor
    x_q: torch.Tensor
    y_q: torch.Tensor


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return value


class EpisodeSampler:
    """Sample N-way K-shot Q-query tasks from images grouped by class.

    Args:
        dataset: anything with an ``images`` attribute (e.g. :class:`Omniglot`,
            :class:`MiniImageNet`) or the tensor itself: uint8 ``[C, P, ch, H, W]`` (C classes,
            P images per class; 0..255).
        n_way: N, classes per task (``1 <= N <= C``).
        k_shot: K, support images per class (``>= 1``).
        q_query: Q, query images per class (``>= 0``; ``K + Q <= P``).
        device: where the images live and episodes are produced (e.g. ``"cuda"``); the images
            are copied there once, here.

    In each task the N classes are distinct, the K + Q images of a class are distinct (so
    support and query never share an image), and the labels 0..N-1 go to the classes in a random
    order (class ``j`` of the task gets label ``j`` and the classes were drawn in random order).
    """

    def __init__(
        self,
        dataset: Any,
        n_way: int,
        k_shot: int,
        q_query: int,
        device: torch.device | str | None = None,
    ) -> None:
        images = dataset if isinstance(dataset, torch.Tensor) else getattr(dataset, "images", None)
        if not isinstance(images, torch.Tensor):
            raise TypeError(
                f"dataset must be a uint8 tensor [C, P, ch, H, W] or have one as .images; got "
                f"{type(dataset).__name__}"
            )
        if images.dtype != torch.uint8:
            raise TypeError(f"dataset images must be uint8 (0..255), got {images.dtype}")
        if images.ndim != 5:
            raise ValueError(
                f"dataset images must have 5 dims [classes, per_class, channels, H, W], got shape "
                f"{tuple(images.shape)}"
            )
        if min(images.shape[2:]) < 1:
            raise ValueError(f"empty images: shape {tuple(images.shape)}")
        self.n_way = _check_int("n_way", n_way, 1)
        self.k_shot = _check_int("k_shot", k_shot, 1)
        self.q_query = _check_int("q_query", q_query, 0)
        n_classes, per_class = int(images.shape[0]), int(images.shape[1])
        if self.n_way > n_classes:
            raise ValueError(f"n_way={n_way} but the dataset has only {n_classes} classes")
        if self.k_shot + self.q_query > per_class:
            raise ValueError(
                f"k_shot + q_query = {self.k_shot + self.q_query} but each class has only "
                f"{per_class} images"
            )
        self.device = torch.device(device) if device is not None else images.device
        self.images = images.to(self.device)  # once; every episode then indexes on the device
        self.n_classes, self.per_class = n_classes, per_class
        n, k, q = self.n_way, self.k_shot, self.q_query
        self._y_s = torch.arange(n, device=self.device).repeat_interleave(k)
        self._y_q = torch.arange(n, device=self.device).repeat_interleave(q)

    def sample_indices(
        self, n_tasks: int = 1, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw the indices of ``n_tasks`` episodes, on the CPU.

        Returns:
            ``(classes, images)``: int64 ``[T, N]`` class indices (class ``classes[t, j]`` gets
            label ``j``) and int64 ``[T, N, K+Q]`` image indices within each class (the first K
            are the support set).
        """
        t = _check_int("n_tasks", n_tasks, 1)
        if generator is not None:
            if not isinstance(generator, torch.Generator):
                raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
            if generator.device.type != "cpu":
                raise ValueError(
                    "generator must be a CPU torch.Generator, so that a seed gives the same "
                    "episodes on every device"
                )
        # The indices of the m largest of n i.i.d. uniforms, in descending order of value, are a
        # uniformly random ordered m-subset (the first m of a random permutation); topk finds
        # them without the O(n log n) of a full argsort. float64 because with float32 ties among
        # 4112 values are likely and would bias towards some indices (float64: ~1e-9).
        classes = torch.rand(t, self.n_classes, generator=generator, dtype=torch.float64)
        classes = classes.topk(self.n_way, dim=-1).indices
        picks = torch.rand(t, self.n_way, self.per_class, generator=generator, dtype=torch.float64)
        picks = picks.topk(self.k_shot + self.q_query, dim=-1).indices
        return classes, picks

    def gather(self, classes: torch.Tensor, picks: torch.Tensor) -> Episode:
        """Build the episode tensors for indices from :meth:`sample_indices` (one gather)."""
        t = classes.shape[0]
        n, k, q = self.n_way, self.k_shot, self.q_query
        c = classes.to(self.device)[:, :, None]
        p = picks.to(self.device)
        shape = self.images.shape[2:]
        # Two gathers straight into contiguous [T, N, K|Q, ch, H, W] uint8, so the reshape to
        # [T, N*K, ...] is free and the float conversion touches each pixel once.
        x_s = self.images[c, p[..., :k]].reshape(t, n * k, *shape).to(torch.float32).div_(255.0)
        x_q = self.images[c, p[..., k:]].reshape(t, n * q, *shape).to(torch.float32).div_(255.0)
        return Episode(x_s, self._y_s.expand(t, -1).clone(), x_q, self._y_q.expand(t, -1).clone())

    def sample(self, n_tasks: int = 1, generator: torch.Generator | None = None) -> Episode:
        """Sample ``n_tasks`` episodes: ``(x_s [T, N*K, ch, H, W], y_s [T, N*K],
        x_q [T, N*Q, ch, H, W], y_q [T, N*Q])`` on ``self.device`` (images float32 in [0, 1],
        labels int64). ``generator``: a seeded CPU ``torch.Generator`` for reproducible episodes
        (default: torch's global RNG)."""
        return self.gather(*self.sample_indices(n_tasks, generator))

    def episodes(self, n: int, seed: int, n_tasks: int = 1) -> Iterator[Episode]:
        """Yield ``n`` batches of ``n_tasks`` episodes from a generator seeded with ``seed``: the
        same list every time (e.g. a fixed set of test episodes shared by all algorithms)."""
        _check_int("n", n, 0)
        _check_int("n_tasks", n_tasks, 1)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        return self._episodes(n, torch.Generator().manual_seed(seed), n_tasks)

    def _episodes(self, n: int, g: torch.Generator, n_tasks: int) -> Iterator[Episode]:
        for _ in range(n):
            yield self.sample(n_tasks, g)

    def __repr__(self) -> str:
        return (
            f"EpisodeSampler({self.n_way}-way {self.k_shot}-shot {self.q_query}-query, "
            f"{self.n_classes} classes x {self.per_class}, device={self.device})"
        )
