"""The degree-ordered MADE inverse against nflows' own inverse, on flows with random weights."""

from __future__ import annotations

import pytest
import torch
from nflows.transforms import CompositeTransform, RandomPermutation
from nflows.transforms.autoregressive import (
    MaskedAffineAutoregressiveTransform,
    MaskedPiecewiseRationalQuadraticAutoregressiveTransform,
)
from torch.nn import functional as F  # noqa: N812

from lenspipe import made_inverse


def maf(
    features: int, hidden: int, context: int | None, layers: int = 3, **made: object
) -> CompositeTransform:
    """A MAF like sbi's (MADE affine layers and permutations) with random, non-trivial weights."""
    torch.manual_seed(features * 100 + hidden)
    parts = []
    for _ in range(layers):
        parts += [
            MaskedAffineAutoregressiveTransform(
                features=features,
                hidden_features=hidden,
                context_features=context,
                **{"use_residual_blocks": False, "activation": torch.tanh, **made},
            ),
            RandomPermutation(features),
        ]
    flow = CompositeTransform(parts).eval()
    with torch.no_grad():
        for p in flow.parameters():
            p.normal_(0.0, 0.2)
    return flow


CASES = [
    pytest.param(6, 128, 16, {}, id="sbi-maf-6d"),
    pytest.param(6, 50, 16, {"num_blocks": 1}, id="one-block"),
    pytest.param(6, 37, 5, {"num_blocks": 3, "activation": F.relu}, id="relu-3-blocks-odd-width"),
    pytest.param(4, 20, 3, {"random_mask": True}, id="random-masks"),
    pytest.param(2, 9, None, {}, id="no-context"),
    pytest.param(1, 8, 3, {}, id="one-parameter"),
]


@pytest.mark.parametrize(("features", "hidden", "context", "made"), CASES)
def test_equals_nflows_inverse(features: int, hidden: int, context: int | None, made: dict) -> None:
    flow = maf(features, hidden, context, **made)
    assert all(made_inverse.supports_fast_inverse(t) for t in flow._transforms[::2])
    y = torch.randn(500, features, generator=torch.Generator().manual_seed(1))
    ctx = None if context is None else torch.randn(5, context, generator=torch.Generator().manual_seed(2))
    index = None if context is None else torch.arange(500) // 100  # 100 rows per context, as per image
    rows = None if ctx is None else ctx[index]
    with torch.no_grad():
        expected, _ = flow.inverse(y, context=rows)
        got = made_inverse.inverse(flow, y, ctx, index)
        again, _ = flow(got, context=rows)
    assert got.shape == y.shape
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(again, y, rtol=1e-4, atol=1e-4)  # it is the inverse
    if ctx is not None:  # one context row per row gives the same as (context, index)
        torch.testing.assert_close(made_inverse.inverse(flow, y, rows).detach(), got.detach())


def test_context_changes_every_output() -> None:
    """Each image's context reaches the samples: not only a shared bias (guards the context term)."""
    flow = maf(6, 32, 4)
    y = torch.randn(1, 6).expand(2, -1)
    ctx = torch.randn(2, 4)
    with torch.no_grad():
        got = made_inverse.inverse(flow, y, ctx, torch.tensor([0, 1]))
    assert (got[0] != got[1]).all()


def test_other_layers_use_nflows_inverse() -> None:
    """Residual MADEs, batch norm and spline autoregressive layers are not handled fast, but still inverted."""
    torch.manual_seed(3)
    residual = MaskedAffineAutoregressiveTransform(features=3, hidden_features=12, context_features=2)
    batch_norm = MaskedAffineAutoregressiveTransform(
        features=3, hidden_features=12, context_features=2, use_residual_blocks=False, use_batch_norm=True
    )
    spline = MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
        features=3, hidden_features=12, context_features=2, num_bins=4, tails="linear", tail_bound=3.0
    )
    for transform in (residual, batch_norm, spline):
        assert not made_inverse.supports_fast_inverse(transform)
    training = maf(3, 12, 2, dropout_probability=0.5).train()._transforms[0]
    assert not made_inverse.supports_fast_inverse(training)  # dropout draws at random while training
    assert made_inverse.supports_fast_inverse(training.eval())
    flow = CompositeTransform([residual, RandomPermutation(3), spline, batch_norm]).eval()
    y, ctx = torch.randn(40, 3), torch.randn(4, 2)
    index = torch.arange(40) % 4
    with torch.no_grad():
        expected, _ = flow.inverse(y, context=ctx[index])
        torch.testing.assert_close(made_inverse.inverse(flow, y, ctx, index), expected)
