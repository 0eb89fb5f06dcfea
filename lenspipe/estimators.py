"""Density estimators from the config's `estimators:` section, as sbi custom estimator builders.

A registry maps a flow name to a builder with sbi's `build_*` signature, like sbi's `posterior_nn`:
every sbi flow name (maf, nsf, maf_rqs, mdn, zuko_nsf, ...) passes its settings straight to sbi, and
`coupling_resnet` is seed 2's flow built here from nflows parts. So a new estimator is a config entry.

Every estimator is wrapped in `BoundedEstimator`: the flow models theta mapped to an unconstrained space
by the prior box's logit bijection (sbi's `biject_to` transform), so every sample lies inside the box by
construction (no rejection, no leakage) and log_prob carries the Jacobian back to physical units.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from nflows import flows
from nflows import transforms as nflows_tf
from nflows.distributions import StandardNormal
from nflows.nn.nets import ResidualNet
from sbi.neural_nets.estimators import ConditionalDensityEstimator, NFlowsFlow, ZukoFlow
from sbi.neural_nets.factory import model_builders, posterior_nn
from sbi.neural_nets.net_builders.estimator_configs import ConditionalFlowConfig
from sbi.utils.nn_utils import get_numel
from sbi.utils.sbiutils import standardizing_net, standardizing_transform, z_score_parser
from sbi.utils.torchutils import create_alternating_binary_mask
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

from lenspipe import made_inverse
from lenspipe.errors import ConfigError
from lenspipe.flows import NOT_FOR_IMAGES
from lenspipe.priors import PriorBox

Builder = Callable[[Tensor, Tensor], ConditionalDensityEstimator]

Z_SCORE_CHOICES = ("none", "independent", "structured")
# Settings lenspipe sets itself: the embedding net and the unconstrained space.
RESERVED = ("embedding_net", "x_dist", "z_score_y")


# --------------------------------------------------------------------------------------------------
# The prior box <-> unconstrained space bijection.


class BoxTransform(nn.Module):
    """theta in [low, high] <-> z in R^d: z = logit((theta - low) / (high - low)), as torch's biject_to(interval).inv.

    Computed in float64 (the boundaries are the delicate part); samples are clamped into the float32 box,
    so they pass sbi's and PriorBox's support checks.
    """

    def __init__(self, low: Sequence[float], high: Sequence[float]) -> None:
        super().__init__()
        low64 = torch.as_tensor(low, dtype=torch.float64)
        low32 = low64.float()
        high32 = torch.as_tensor(high, dtype=torch.float64).float()
        if not bool(torch.all(high32 > low32)):
            raise ValueError(f"prior box needs low < high, got {list(low)} and {list(high)}")
        # Not persistent: rebuilt from the saved prior box, so weights and box can never disagree.
        self.register_buffer("low", low32.double(), persistent=False)
        self.register_buffer("width", (high32 - low32).double(), persistent=False)
        # Float32 sample range inside both the float64 box (PriorBox.contains) and sbi's float32 BoxUniform,
        # whose log_prob needs theta < high.
        inside_low = torch.where(
            low32.double() < low64, torch.nextafter(low32, torch.full_like(low32, math.inf)), low32
        )
        self.register_buffer("low_inside", inside_low, persistent=False)
        self.register_buffer(
            "high_inside", torch.nextafter(high32, torch.full_like(high32, -math.inf)), persistent=False
        )

    def to_unconstrained(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """z and log|dz/dtheta| (summed over parameters) for theta (..., d) in the box."""
        u = ((theta.double() - self.low) / self.width).clamp(1e-12, 1.0 - 1e-12)
        z = torch.log(u) - torch.log1p(-u)
        log_det = -(torch.log(self.width) + torch.log(u) + torch.log1p(-u)).sum(-1)
        return z.to(theta.dtype), log_det.to(theta.dtype)

    def to_box(self, z: Tensor) -> Tensor:
        """theta in the box for z (..., d) in R^d."""
        theta = (self.low + self.width * torch.sigmoid(z.double())).to(z.dtype)
        return torch.maximum(torch.minimum(theta, self.high_inside), self.low_inside)

    def log_det_inverse(self, z: Tensor) -> Tensor:
        """log|dtheta/dz| for z (..., d), summed over parameters."""
        z = z.double()
        return (torch.log(self.width) + F.logsigmoid(z) + F.logsigmoid(-z)).sum(-1)


class BoundedEstimator(ConditionalDensityEstimator):
    """An sbi density estimator for theta in a box: the wrapped flow models z = logit-box(theta)."""

    def __init__(self, inner: ConditionalDensityEstimator, box: PriorBox) -> None:
        super().__init__(inner, input_shape=inner.input_shape, condition_shape=inner.condition_shape)
        self.box = BoxTransform(box.low, box.high)

    @property
    def inner(self) -> ConditionalDensityEstimator:
        """The flow in the unconstrained space."""
        return self.net

    @property
    def embedding_net(self) -> nn.Module | None:
        return self.net.embedding_net

    def log_prob(self, input: Tensor, condition: Tensor, **kwargs: Any) -> Tensor:  # noqa: A002 - sbi's name
        z, log_det = self.box.to_unconstrained(input)
        return self.net.log_prob(z, condition, **kwargs) + log_det

    def loss(self, input: Tensor, condition: Tensor, **kwargs: Any) -> Tensor:  # noqa: A002
        """Negative log posterior density in physical units: NPE's first-round loss."""
        return -self.log_prob(input.unsqueeze(0), condition)[0]

    def sample(self, sample_shape: torch.Size, condition: Tensor, **kwargs: Any) -> Tensor:
        return self.box.to_box(self.net.sample(sample_shape, condition, **kwargs))

    def sample_and_log_prob(
        self, sample_shape: torch.Size, condition: Tensor, **kwargs: Any
    ) -> tuple[Tensor, Tensor]:
        z, log_prob_z = self.net.sample_and_log_prob(sample_shape, condition, **kwargs)
        return self.box.to_box(z), log_prob_z - self.box.log_det_inverse(z).to(log_prob_z.dtype)

    # Fast paths for many samples per image: embed each image once, push base noise through the flow.

    def embed(self, condition: Tensor) -> Tensor:
        """The flow's context (embedding) of a batch of images."""
        net = self.net.embedding_net
        return condition if net is None else net(condition)

    def supports_noise(self) -> bool:
        """Whether the flow has a standard-normal base, so samples can be drawn from given noise."""
        inner = self.net
        if isinstance(inner, NFlowsFlow):
            return isinstance(inner.net._distribution, StandardNormal)
        if isinstance(inner, ZukoFlow):
            with torch.no_grad():
                context = self.embed(torch.zeros(1, *self.condition_shape, device=self._device()))
                normal = getattr(inner.net(context).base, "base_dist", None)
            return (
                isinstance(normal, torch.distributions.Normal)
                and bool(torch.all(normal.loc == 0))
                and bool(torch.all(normal.scale == 1))
            )
        return False

    def sample_from_noise(self, noise: Tensor, context: Tensor, index: Tensor | None = None) -> Tensor:
        """theta (in the box) for base noise (rows, d); context (m, c), `index` (rows,) the context row of each row.

        Without `index`, context has a row per noise row. nflows flows are inverted by lenspipe.made_inverse
        (MADE layers degree by degree, the rest by nflows), which equals nflows' inverse up to float rounding.
        """
        inner = self.net
        if isinstance(inner, NFlowsFlow):
            z = made_inverse.inverse(inner.net._transform, noise, context, index)
        elif isinstance(inner, ZukoFlow):
            z = inner.net(context if index is None else context[index]).transform.inv(noise)
        else:
            raise TypeError(f"{type(inner).__name__} cannot sample from given noise")
        return self.box.to_box(z)

    def log_prob_from_context(self, theta: Tensor, context: Tensor) -> Tensor:
        """log p(theta | image) for theta rows (rows, d) in the box and context rows (rows, c)."""
        inner = self.net
        z, log_det = self.box.to_unconstrained(theta)
        if isinstance(inner, NFlowsFlow):
            noise, log_abs_det = inner.net._transform(z, context=context)
            log_prob = inner.net._distribution.log_prob(noise, context=context) + log_abs_det
        elif isinstance(inner, ZukoFlow):
            log_prob = inner.net(context).log_prob(z)
        else:
            raise TypeError(f"{type(inner).__name__} has no context-based log_prob")
        return log_prob + log_det

    def _device(self) -> torch.device:
        return self.box.low.device


# --------------------------------------------------------------------------------------------------
# Seed 2's coupling flow.


def build_coupling_resnet(
    batch_x: Tensor,
    batch_y: Tensor,
    z_score_x: str | None = "independent",
    z_score_y: str | None = "none",
    embedding_net: nn.Module | None = None,
    num_blocks: int = 5,
    hidden_features: int = 128,
    num_bins: int = 10,
    tail_bound: float = 3.0,
    resnet_blocks: int = 2,
    dropout_probability: float = 0.0,
    use_batch_norm: bool = False,
) -> NFlowsFlow:
    """Seed 2's flow p(x|y) in sbi's builder convention (x = theta, y = image).

    `num_blocks` blocks of [random permutation, LU linear, rational-quadratic spline coupling whose bin
    parameters come from a residual net fed with the other half of x and the embedding], then one final
    [permutation, LU linear, coupling].
    """
    embedding_net = nn.Identity() if embedding_net is None else embedding_net
    features = get_numel(batch_x)
    if features < 2:
        raise ValueError("coupling_resnet needs at least 2 parameters (a coupling splits them in two halves)")
    context_features = get_numel(batch_y, embedding_net=embedding_net)

    def conditioner(in_features: int, out_features: int) -> nn.Module:
        return ResidualNet(
            in_features,
            out_features,
            hidden_features=hidden_features,
            context_features=context_features,
            num_blocks=resnet_blocks,
            activation=F.relu,
            dropout_probability=dropout_probability,
            use_batch_norm=use_batch_norm,
        )

    layers: list[nflows_tf.Transform] = []
    z_x, structured_x = z_score_parser(z_score_x)
    if z_x:
        layers.append(standardizing_transform(batch_x, structured_x))
    for i in range(int(num_blocks) + 1):  # the blocks, then the final [permutation, LU, coupling]
        layers += [
            nflows_tf.RandomPermutation(features),
            nflows_tf.LULinear(features, identity_init=True),
            nflows_tf.PiecewiseRationalQuadraticCouplingTransform(
                mask=create_alternating_binary_mask(features, even=(i % 2 == 0)),
                transform_net_create_fn=conditioner,
                num_bins=num_bins,
                tails="linear",
                tail_bound=tail_bound,
            ),
        ]
    z_y, structured_y = z_score_parser(z_score_y)
    if z_y:
        embedding_net = nn.Sequential(standardizing_net(batch_y, structured_y), embedding_net)
    flow = flows.Flow(nflows_tf.CompositeTransform(layers), StandardNormal((features,)), embedding_net)
    return NFlowsFlow(flow, input_shape=batch_x[0].shape, condition_shape=batch_y[0].shape)


# --------------------------------------------------------------------------------------------------
# Registry and settings.

CUSTOM_FLOWS: dict[str, Callable[..., ConditionalDensityEstimator]] = {
    "coupling_resnet": build_coupling_resnet
}


def register_flow(name: str, builder: Callable[..., ConditionalDensityEstimator]) -> None:
    """Add a flow built here (sbi's builder signature: batch_x=theta, batch_y=x, z_score_*, embedding_net, ...)."""
    CUSTOM_FLOWS[name] = builder


def allowed_flows() -> list[str]:
    """Flow names a config entry may use: sbi's density estimators for NPE, and those registered here."""
    return sorted((set(model_builders) - set(NOT_FOR_IMAGES)) | set(CUSTOM_FLOWS))


def _flow_options(flow: str) -> set[str] | None:
    """Settings a flow accepts (None: any, checked by the flow itself, e.g. zuko's own keyword arguments)."""
    if flow in CUSTOM_FLOWS:
        params = inspect.signature(CUSTOM_FLOWS[flow]).parameters
        return {
            p for p in params if p not in ("batch_x", "batch_y", "z_score_x", "z_score_y", "embedding_net")
        }
    if flow.startswith("zuko_"):
        return None
    return {f for f in ConditionalFlowConfig.__dataclass_fields__ if f not in ("extra_kwargs", "z_score_x")}


@dataclass(frozen=True)
class EstimatorSettings:
    """One `estimators:` entry: the flow name, its settings, and how theta and x are z-scored."""

    name: str
    flow: str
    options: Mapping[str, Any] = field(default_factory=dict)
    z_score_theta: str = "independent"  # in the unconstrained space
    z_score_x: str = "none"  # images are standardised per band by the embedding net

    @classmethod
    def from_config(cls, name: str, entry: Mapping[str, Any]) -> EstimatorSettings:
        """Validate one config entry; errors name `estimators.<name>.<key>`."""
        key = f"estimators.{name}"
        if not isinstance(entry, Mapping) or "flow" not in entry:
            raise ConfigError(f"{key}.flow", "a flow name (the key is missing)")
        flow = entry["flow"]
        allowed = allowed_flows()
        if flow not in allowed:
            raise ConfigError(f"{key}.flow", "one of " + ", ".join(allowed), flow)
        options = {k: v for k, v in entry.items() if k not in ("flow", "z_score_theta", "z_score_x")}
        for reserved in RESERVED:
            if reserved in options:
                raise ConfigError(
                    f"{key}.{reserved}", "no value: lenspipe sets it (embedding net, prior box)"
                )
        known = _flow_options(flow)
        if known is not None:
            for option in options:
                if option not in known:
                    raise ConfigError(
                        f"{key}.{option}",
                        f"a setting of flow {flow} ({', '.join(sorted(known))})",
                        "unknown key",
                    )
        z_theta = entry.get("z_score_theta", "independent")
        z_x = entry.get("z_score_x", "none")
        for option, value in (("z_score_theta", z_theta), ("z_score_x", z_x)):
            if value not in Z_SCORE_CHOICES:
                raise ConfigError(
                    f"{key}.{option}",
                    "one of "
                    + ", ".join(Z_SCORE_CHOICES)
                    + " (theta is always trained in the prior box's unconstrained space)",
                    value,
                )
        return cls(name, flow, dict(options), z_theta, z_x)

    def as_dict(self) -> dict[str, Any]:
        """The config entry form (saved with a trained estimator, read back by from_config)."""
        return {
            "flow": self.flow,
            **dict(self.options),
            "z_score_theta": self.z_score_theta,
            "z_score_x": self.z_score_x,
        }


def flow_builder(settings: EstimatorSettings, embedding_net: nn.Module) -> Builder:
    """The unconstrained-space flow's builder (theta, x) -> estimator, sbi's custom-builder protocol."""
    if settings.flow in CUSTOM_FLOWS:
        custom = CUSTOM_FLOWS[settings.flow]

        def build(batch_theta: Tensor, batch_x: Tensor) -> ConditionalDensityEstimator:
            return custom(
                batch_x=batch_theta,
                batch_y=batch_x,
                z_score_x=settings.z_score_theta,
                z_score_y=settings.z_score_x,
                embedding_net=embedding_net,
                **settings.options,
            )

        return build
    return posterior_nn(
        model=settings.flow,
        z_score_theta=settings.z_score_theta,
        z_score_x=settings.z_score_x,
        embedding_net=embedding_net,
        **settings.options,
    )


def density_estimator_builder(
    settings: EstimatorSettings, embedding_net: nn.Module, box: PriorBox
) -> Builder:
    """sbi's custom density-estimator builder: (theta, x) -> BoundedEstimator (for `NPE(density_estimator=...)`)."""
    inner_builder = flow_builder(settings, embedding_net)
    transform = BoxTransform(box.low, box.high)

    def build(batch_theta: Tensor, batch_x: Tensor) -> BoundedEstimator:
        z, _ = transform.to(batch_theta.device).to_unconstrained(batch_theta)
        try:
            inner = inner_builder(z, batch_x)
        except TypeError as exc:  # e.g. an option zuko does not know
            raise ConfigError(
                f"estimators.{settings.name}", f"settings that flow {settings.flow} accepts", str(exc)
            ) from exc
        return BoundedEstimator(inner, box)

    return build


def reference_theta(box: PriorBox, n: int = 16) -> Tensor:
    """Deterministic points spread inside the box, to rebuild an estimator's shapes without training data."""
    low = torch.tensor(box.low, dtype=torch.float64)
    width = torch.tensor(box.high, dtype=torch.float64) - low
    frac = torch.linspace(0.05, 0.95, n, dtype=torch.float64)[:, None]
    # Different orderings per column so no two columns are identical.
    cols = [frac[torch.roll(torch.arange(n), shifts=3 * j)] for j in range(len(box.low))]
    return (low + width * torch.cat(cols, dim=1)).float()
