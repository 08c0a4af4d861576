"""metalib.data: few-shot datasets as uint8 tensors grouped by class, and an episode sampler.

Quick start::

    from metalib.data import Omniglot, MiniImageNet, EpisodeSampler

    train = Omniglot("train")                     # Vinyals split, 28x28, rotations: 4112 classes
    sampler = EpisodeSampler(train, n_way=5, k_shot=1, q_query=15, device="cuda")
    g = torch.Generator().manual_seed(0)
    x_s, y_s, x_q, y_q = sampler.sample(n_tasks=32, generator=g)

Data root: ``root=`` > ``$METALIB_DATA`` > ``<project>/data``; cache: ``cache_dir=`` >
``$METALIB_CACHE`` > ``<root>/cache`` (if the user's own and writable) > the per-user cache folder.
See docs/data.md for formats, splits, the pixel convention and the pickle warning.
"""

from .base import ClassImageSet
from .cache import DamagedCacheWarning
from .download import ChecksumError, DownloadError
from .episodes import Episode, EpisodeSampler
from .fetch import fetch_if_missing
from .miniimagenet import MiniImageNet, ravi_classes, verify_miniimagenet
from .omniglot import Omniglot, download_omniglot, split_classes, verify_omniglot
from .paths import CorruptDataError, DataNotFoundError, cache_dir, data_root
from .pickles import PickleNotAllowedError
from .report import info, verify

__all__ = [
    "ClassImageSet",
    "Omniglot",
    "MiniImageNet",
    "EpisodeSampler",
    "Episode",
    "split_classes",
    "ravi_classes",
    "data_root",
    "cache_dir",
    "download_omniglot",
    "fetch_if_missing",
    "verify_omniglot",
    "verify_miniimagenet",
    "info",
    "verify",
    "DataNotFoundError",
    "CorruptDataError",
    "DownloadError",
    "ChecksumError",
    "PickleNotAllowedError",
    "DamagedCacheWarning",
]
