"""The image embedding net: the seed's CNN (conv+ReLU+max-pool stages, two dense layers), from config.

With the default settings (channels [8, 16, 32], hidden 32, features 16) and 3x64x64 images it has
the seed's 72,128 parameters. A fixed first layer standardises each band with the split's statistics,
so the net (and every posterior built on it) takes raw images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lenspipe.errors import ConfigError


@dataclass(frozen=True)
class EmbeddingSettings:
    """Shape of the CNN: conv channels per stage, hidden dense units, output features."""

    channels: tuple[int, ...] = (8, 16, 32)
    hidden_features: int = 32
    features: int = 16

    @classmethod
    def from_config(cls, embedding: Mapping) -> EmbeddingSettings:
        """Build from the config's `embedding` section."""
        channels = tuple(int(c) for c in embedding["channels"])
        if not channels or min(channels) < 1:
            raise ConfigError(
                "embedding.channels", "a non-empty list of positive integers", embedding["channels"]
            )
        for key in ("hidden_features", "features"):
            if int(embedding[key]) < 1:
                raise ConfigError(f"embedding.{key}", "a positive integer", embedding[key])
        return cls(channels, int(embedding["hidden_features"]), int(embedding["features"]))

    def as_dict(self) -> dict:
        """Plain-JSON form (saved with a trained estimator)."""
        return {
            "channels": list(self.channels),
            "hidden_features": self.hidden_features,
            "features": self.features,
        }


class BandStandardise(nn.Module):
    """(x - mean[band]) / std[band] with fixed statistics (buffers: saved with the weights, never trained)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1)
        std_t = torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1)
        if not bool(torch.all(std_t > 0)):
            raise ValueError(f"band standard deviations must be > 0, got {list(std)}")
        self.register_buffer("mean", mean_t)
        self.register_buffer("inv_std", 1.0 / std_t)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) * self.inv_std


class LensCNN(nn.Module):
    """The seed's CNN: [Conv2d(3x3, pad 1) + ReLU + MaxPool2] per channel count, Linear+ReLU, Linear+ReLU.

    Runs in channels-last memory layout (same results; oneDNN's convolutions are markedly faster so on CPUs).
    """

    def __init__(
        self, settings: EmbeddingSettings, image_shape: Sequence[int], channels_last: bool = True
    ) -> None:
        super().__init__()
        self.channels_last = channels_last
        bands, height, width = (int(s) for s in image_shape)
        layers: list[nn.Module] = []
        in_ch = bands
        for out_ch in settings.channels:
            layers += [nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        h, w = height, width
        for _ in settings.channels:
            h, w = h // 2, w // 2
        if h < 1 or w < 1:
            raise ConfigError(
                "embedding.channels",
                f"at most {min(height, width).bit_length() - 1} pooling stages for {height}x{width} images",
                list(settings.channels),
            )
        self.flat_features = in_ch * h * w
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(self.flat_features, settings.hidden_features),
            nn.ReLU(),
            nn.Linear(settings.hidden_features, settings.features),
            nn.ReLU(),
        )
        if channels_last:
            self.features.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor) -> Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.head(self.features(x))


def build_embedding_net(
    settings: EmbeddingSettings,
    image_shape: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
) -> nn.Sequential:
    """Band standardisation followed by the CNN; input (batch, bands, H, W) raw images."""
    if len(mean) != image_shape[0] or len(std) != image_shape[0]:
        raise ValueError(f"normalisation has {len(mean)} bands, images have {image_shape[0]}")
    return nn.Sequential(BandStandardise(mean, std), LensCNN(settings, image_shape))


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
