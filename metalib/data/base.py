"""The common shape of every few-shot dataset in metalib: images grouped by class."""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["ClassImageSet", "check_image_size", "check_choice"]


class ClassImageSet:
    """Images grouped by class, ready for :class:`~metalib.data.EpisodeSampler`.

    Attributes:
        images: uint8 tensor ``[n_classes, n_per_class, channels, H, W]`` (0..255; divide by 255
            for float pixels in [0, 1]).
        class_names: ``n_classes`` strings, ``class_names[c]`` names ``images[c]``.
        name: dataset name (``"omniglot"``, ``"mini-imagenet"``).
        split: the split this object holds.
        cache_path: the cache file the images came from or were written to (None if not cached).
        from_cache: True when this load read the cache, False when it decoded the sources.
        source: a short description of the files the images were decoded from.

    ``len(ds)`` is the number of classes, ``ds.images.shape[0]``.
    """

    def __init__(
        self,
        images: torch.Tensor,
        class_names: list[str],
        *,
        name: str = "",
        split: str = "",
        cache_path: Path | None = None,
        from_cache: bool = False,
        source: str = "",
    ) -> None:
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 5:
            raise TypeError("images must be a uint8 tensor [n_classes, n_per_class, ch, H, W]")
        if len(class_names) != images.shape[0]:
            raise ValueError(f"{len(class_names)} class names for {images.shape[0]} classes")
        self.images = images
        self.class_names = list(class_names)
        self.name = name
        self.split = split
        self.cache_path = cache_path
        self.from_cache = from_cache
        self.source = source

    @property
    def n_classes(self) -> int:
        """Number of classes ``C`` (``images.shape[0]``)."""
        return int(self.images.shape[0])

    @property
    def n_per_class(self) -> int:
        """Images per class ``P`` (``images.shape[1]``)."""
        return int(self.images.shape[1])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(channels, H, W)`` of one image."""
        c, h, w = self.images.shape[2:]
        return int(c), int(h), int(w)

    def __len__(self) -> int:
        return self.n_classes

    def __repr__(self) -> str:
        c, h, w = self.image_shape
        paths = getattr(self, "cache_paths", None) or [self.cache_path]
        return (
            f"{type(self).__name__}(split={self.split!r}, n_classes={self.n_classes}, "
            f"n_per_class={self.n_per_class}, image=({c}, {h}, {w}), "
            f"{'from cache' if self.from_cache else 'decoded, cached in'}: "
            f"{', '.join(str(p) for p in paths)})"
        )


def check_image_size(image_size: object, largest: int) -> int:
    """Validate an ``image_size`` argument: an int in ``1..largest`` (no upsampling)."""
    if isinstance(image_size, bool) or not isinstance(image_size, int):
        raise TypeError(f"image_size must be an int, got {type(image_size).__name__}")
    if not 1 <= image_size <= largest:
        raise ValueError(
            f"image_size must be between 1 and {largest} (the stored images are "
            f"{largest}x{largest}; metalib does not upsample), got {image_size}"
        )
    return image_size


def check_choice(what: str, value: object, choices: tuple[str, ...] | list[str]) -> str:
    """Validate a string option against its allowed values with a message that lists them."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(map(repr, choices))}")
    return value
