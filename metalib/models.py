"""Backbones: the sinusoid MLP and Conv-4 of the MAML and ProtoNet papers."""
from __future__ import annotations

from typing import Optional, Sequence

from torch import Tensor, nn


class MLP(nn.Sequential):
    """Fully connected net ``in -> hidden... -> out`` with ReLU between layers.

    ``MLP()`` is the sinusoid network of Finn et al. (2017): 1-40-40-1 with ReLU.
    Input ``[n, in_features]`` -> output ``[n, out_features]``.
    """

    def __init__(
        self,
        in_features: int = 1,
        hidden: Sequence[int] = (40, 40),
        out_features: int = 1,
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        sizes = [in_features, *hidden, out_features]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(activation())
        super().__init__(*layers)
        self._spec = dict(in_features=in_features, hidden=list(hidden), out_features=out_features)
        self._relu = activation is nn.ReLU

    def builder_spec(self):
        """``("metalib.models:MLP", kwargs)``: how :mod:`metalib.pretrained` rebuilds this network."""
        if not self._relu:
            raise ValueError("only a ReLU MLP can be rebuilt from a manifest")
        return "metalib.models:MLP", dict(self._spec)


def sinusoid_mlp() -> MLP:
    """The paper's regressor: 1-40-40-1, ReLU."""
    return MLP(1, (40, 40), 1)


def conv_block(in_channels: int, out_channels: int, track_running_stats: bool = False) -> nn.Sequential:
    """conv 3x3 (padding 1) -> BatchNorm -> ReLU -> max-pool 2."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.BatchNorm2d(out_channels, track_running_stats=track_running_stats),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


class Conv4(nn.Module):
    """The standard few-shot backbone: 4 x [conv 3x3, ``hidden`` filters, BatchNorm, ReLU, max-pool 2].

    Input ``[n, in_channels, H, W]``. Without ``n_classes`` (ProtoNet) it returns the flattened
    embedding ``[n, hidden * (H // 16) * (W // 16)]`` — 64 features for 28x28 Omniglot, 1600 for
    84x84 miniImageNet with 64 filters. With ``n_classes`` (MAML/Reptile) a linear head maps it to
    ``[n, n_classes]`` logits.

    BatchNorm does not track running statistics by default: it always normalises with the statistics
    of the batch it sees ("transductive", the setting of the original MAML code), so ``eval()`` cannot
    silently switch to never-trained running statistics.
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: Optional[int] = None,
        hidden: int = 64,
        image_size: int = 28,
        track_running_stats: bool = False,
    ) -> None:
        super().__init__()
        if image_size < 16:
            raise ValueError(f"Conv4 needs images of at least 16x16 (four 2x poolings), got {image_size}")
        self.in_channels, self.image_size = in_channels, image_size
        self._spec = dict(in_channels=in_channels, n_classes=n_classes, hidden=hidden, image_size=image_size,
                          track_running_stats=track_running_stats)
        self.features = nn.Sequential(
            conv_block(in_channels, hidden, track_running_stats),
            *(conv_block(hidden, hidden, track_running_stats) for _ in range(3)),
        )
        side = image_size
        for _ in range(4):
            side //= 2
        self.embedding_dim = hidden * side * side
        self.head = nn.Linear(self.embedding_dim, n_classes) if n_classes else None

    def builder_spec(self):
        """``("metalib.models:Conv4", kwargs)``: how :mod:`metalib.pretrained` rebuilds this network."""
        kw = dict(self._spec)
        if not kw["track_running_stats"]:
            del kw["track_running_stats"]
        return "metalib.models:Conv4", kw

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"Conv4 expects [n, {self.in_channels}, H, W] images, got shape {tuple(x.shape)}"
            )
        z = self.features(x).flatten(1)
        return self.head(z) if self.head is not None else z
