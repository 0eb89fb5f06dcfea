"""Sampling-direction inverse of nflows flows, with a fast exact inverse for MADE affine autoregressive layers.

nflows inverts a masked affine autoregressive transform (sbi's `maf`) by running the whole MADE D times
(D = number of parameters), although pass p only needs the hidden units whose degree is below p, and those
of lower degree were already final in the pass before. `made_affine_inverse` computes each hidden unit
once, degree by degree (units sorted by degree so each step is a dense slice): the same function, about a
pass of MADE instead of D. The context's share of the first layer is computed once per image, not per row.
Every other transform (permutations, z-scoring, splines, couplings) uses nflows' own inverse.
"""

from __future__ import annotations

import torch
from nflows.transforms.autoregressive import MaskedAffineAutoregressiveTransform
from nflows.transforms.base import CompositeTransform, Transform
from nflows.transforms.made import MADE, MaskedFeedforwardBlock
from torch import Tensor
from torch.nn import functional as F  # noqa: N812


def inverse(transform: Transform, z: Tensor, context: Tensor | None, index: Tensor | None = None) -> Tensor:
    """transform^-1(z) for rows z (rows, d); context (m, c) with `index` (rows,) naming each row's context row.

    Without `index`, context has one row per row of z. Equal to nflows' `transform.inverse(z, context[index])[0]`
    up to float rounding.
    """
    per_row = context if context is None or index is None else context[index]
    return _inverse(transform, z, context, index, per_row)


def supports_fast_inverse(transform: Transform) -> bool:
    """Whether `transform` is a MADE affine autoregressive layer that made_affine_inverse handles exactly."""
    if type(transform) is not MaskedAffineAutoregressiveTransform:
        return False
    made = transform.autoregressive_net
    if type(made) is not MADE or made.use_residual_blocks:
        return False
    for block in made.blocks:
        if type(block) is not MaskedFeedforwardBlock or block.batch_norm is not None:
            return False
        if block.training and block.dropout.p > 0:  # random in training mode
            return False
    return True


def made_affine_inverse(
    transform: MaskedAffineAutoregressiveTransform,
    y: Tensor,
    context: Tensor | None,
    index: Tensor | None = None,
) -> Tensor:
    """x with transform(x) = y, for y (rows, d): the MADE's hidden units computed once each, in degree order."""
    made: MADE = transform.autoregressive_net
    act = made.activation
    layers = [made.initial_layer] + [block.linear for block in made.blocks]
    # Hidden units sorted by degree (stable): units of degree <= k are a prefix, those of degree k a slice.
    orders = [torch.argsort(layer.degrees, stable=True) for layer in layers]
    ends = [
        torch.searchsorted(
            layer.degrees[order], torch.arange(transform.features, device=order.device), right=True
        ).tolist()
        for layer, order in zip(layers, orders, strict=True)
    ]
    weights, biases = [], []
    for i, (layer, order) in enumerate(zip(layers, orders, strict=True)):
        w = (layer.weight * layer.mask)[order]
        weights.append(w if i == 0 else w[:, orders[i - 1]])
        biases.append(layer.bias[order])
    final = made.final_layer
    w_out = (final.weight * final.mask)[:, orders[-1]]

    # The first layer's input-free part: bias + activation(context layer), per context row, then per row.
    rows = y.shape[0]
    first = biases[0].expand(1, -1)
    if context is not None and hasattr(made, "context_layer"):
        first = first + act(made.context_layer(context))[:, orders[0]]
        if index is not None:
            first = first.index_select(0, index)
    first = first.expand(rows, -1)

    hidden = [y.new_empty(rows, w.shape[0]) for w in weights]
    x = torch.empty_like(y)
    starts = [0] * len(layers)
    for p in range(transform.features):
        # Units of degree p depend on inputs 1..p (x[:, :p], final now) and on units of degree <= p below.
        for i, w in enumerate(weights):
            start, end = starts[i], ends[i][p]
            if end > start:
                if i == 0:
                    pre = (
                        first[:, start:end]
                        if p == 0
                        else torch.addmm(first[:, start:end], x[:, :p], w[start:end, :p].T)
                    )
                else:
                    below = ends[i - 1][p]
                    pre = torch.addmm(biases[i][start:end], hidden[i - 1][:, :below], w[start:end, :below].T)
                hidden[i][:, start:end] = act(pre)
            starts[i] = end
        # Output p (degree p + 1) reads last-layer units of degree <= p: its (scale, shift) pair.
        below = ends[-1][p]
        params = torch.addmm(
            final.bias[2 * p : 2 * p + 2], hidden[-1][:, :below], w_out[2 * p : 2 * p + 2, :below].T
        )
        x[:, p] = (y[:, p] - params[:, 1]) / (F.softplus(params[:, 0]) + transform._epsilon)
    return x


def _inverse(
    transform: Transform, z: Tensor, context: Tensor | None, index: Tensor | None, per_row: Tensor | None
) -> Tensor:
    if isinstance(transform, CompositeTransform):
        for part in reversed(transform._transforms):
            z = _inverse(part, z, context, index, per_row)
        return z
    if supports_fast_inverse(transform) and z.ndim == 2:
        return made_affine_inverse(transform, z, context, index)
    return transform.inverse(z, context=per_row)[0]
