"""The embedding CNN: the seed's architecture and parameter count, config-driven shapes, band standardisation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lenspipe.embedding import (
    BandStandardise,
    EmbeddingSettings,
    LensCNN,
    build_embedding_net,
    count_parameters,
)
from lenspipe.errors import ConfigError


def test_default_parameter_count_is_the_seeds() -> None:
    settings = EmbeddingSettings.from_config({"channels": [8, 16, 32], "hidden_features": 32, "features": 16})
    assert count_parameters(LensCNN(settings, (3, 64, 64))) == 72128
    # The band standardisation adds buffers only.
    assert count_parameters(build_embedding_net(settings, (3, 64, 64), [0.0] * 3, [1.0] * 3)) == 72128


def test_layers_follow_the_seed() -> None:
    cnn = LensCNN(EmbeddingSettings(), (3, 64, 64))
    kinds = [type(m) for m in cnn.features]
    assert kinds == [nn.Conv2d, nn.ReLU, nn.MaxPool2d] * 3
    convs = [m for m in cnn.features if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (3, 8, (3, 3), (1, 1)),
        (8, 16, (3, 3), (1, 1)),
        (16, 32, (3, 3), (1, 1)),
    ]
    linears = [m for m in cnn.head if isinstance(m, nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(2048, 32), (32, 16)]
    assert isinstance(cnn.head[-1], nn.ReLU)
    assert cnn(torch.zeros(5, 3, 64, 64)).shape == (5, 16)


def test_shapes_come_from_config_and_images() -> None:
    settings = EmbeddingSettings.from_config({"channels": [4, 8], "hidden_features": 10, "features": 5})
    net = build_embedding_net(settings, (2, 32, 32), [0.0, 1.0], [1.0, 2.0])
    assert net(torch.zeros(7, 2, 32, 32)).shape == (7, 5)
    conv = (2 * 4 * 9 + 4) + (4 * 8 * 9 + 8)
    dense = (8 * 8 * 8) * 10 + 10 + 10 * 5 + 5
    assert count_parameters(net) == conv + dense


def test_band_standardise_uses_split_statistics() -> None:
    x = torch.randn(4, 3, 8, 8)
    mean, std = [1.0, -2.0, 0.5], [2.0, 0.5, 4.0]
    out = BandStandardise(mean, std)(x)
    expected = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(out, expected)
    assert not list(BandStandardise(mean, std).parameters())  # fixed, not trained


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="embedding.channels"):
        LensCNN(EmbeddingSettings(channels=(4, 4, 4, 4, 4, 4, 4)), (3, 64, 64))
    with pytest.raises(ConfigError, match="embedding.features"):
        EmbeddingSettings.from_config({"channels": [8], "hidden_features": 32, "features": 0})
    with pytest.raises(ConfigError, match="embedding.channels"):
        EmbeddingSettings.from_config({"channels": [], "hidden_features": 32, "features": 16})
