"""The data side of the evaluation protocol (:mod:`metalib.evaluation`): the seeds every algorithm's
test and validation episodes are drawn from, the image tensor of a dataset, and the 95% confidence
interval of per-episode accuracies. Here, below the evaluation layer, so that the run configuration
(:mod:`metalib.algorithms.settings`: the seeds) reads them without importing the evaluation.
"""
from __future__ import annotations

import math
from typing import Any, Tuple

from torch import Tensor

TEST_SEED = 1000   # the seed of the test episodes, shared by every algorithm
VAL_SEED = 2000    # the seed of the validation episodes


def images_of(data: Any) -> Tensor:
    """The uint8 image tensor ``[C, P, ch, H, W]`` of ``data`` (a dataset with ``.images``, or the tensor)."""
    images = data if isinstance(data, Tensor) else getattr(data, "images", None)
    if not isinstance(images, Tensor):
        raise TypeError(f"expected a dataset with .images or a uint8 tensor [C, P, ch, H, W], got {type(data).__name__}")
    return images


def mean_ci(accuracies: Tensor) -> Tuple[float, float, float]:
    """``(mean, 95% CI half-width, std)`` of per-episode accuracies: CI = 1.96·σ/√n, σ with ``ddof=0``
    (as in Finn et al.'s code)."""
    acc = accuracies.double()
    n = acc.numel()
    if n == 0:
        raise ValueError("no episodes to average")
    std = float(acc.std(unbiased=False))
    return float(acc.mean()), 1.96 * std / math.sqrt(n), std
