"""Estimators: the registry and its errors, seed 2's coupling flow, and the prior-box bijection."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from nflows import transforms as nflows_tf
from nflows.nn.nets import ResidualNet
from torch import nn

from lenspipe.embedding import EmbeddingSettings, build_embedding_net
from lenspipe.errors import ConfigError
from lenspipe.estimators import (
    BoundedEstimator,
    BoxTransform,
    EstimatorSettings,
    allowed_flows,
    density_estimator_builder,
)
from lenspipe.priors import PriorBox

BOX = PriorBox(("sigma_v", "e1", "z_l"), (150.0, -0.4, 0.2), (400.0, 0.4, 0.4))


def small_embedding(features: int = 4) -> nn.Module:
    return build_embedding_net(EmbeddingSettings((4,), 8, features), (3, 8, 8), [0.0] * 3, [1.0] * 3)


def box_theta(n: int, box: PriorBox = BOX, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    low, high = np.array(box.low), np.array(box.high)
    return torch.tensor(low + rng.random((n, len(low))) * (high - low), dtype=torch.float32)


def test_every_sbi_flow_and_coupling_resnet_are_allowed() -> None:
    names = allowed_flows()
    for name in ("maf", "nsf", "maf_rqs", "mdn", "made", "zuko_nsf", "zuko_maf", "coupling_resnet"):
        assert name in names
    assert "mnle" not in names and "mnpe" not in names


def test_light_flow_list_matches_sbi_and_the_registry() -> None:
    """lenspipe.flows (checked at config time, without sbi) must list exactly what the registry accepts."""
    from sbi.neural_nets.factory import model_builders

    from lenspipe.estimators import CUSTOM_FLOWS
    from lenspipe.flows import LENSPIPE_FLOWS, NOT_FOR_IMAGES, SBI_FLOWS, known_flows

    assert set(SBI_FLOWS) | set(NOT_FOR_IMAGES) == set(model_builders)
    assert set(LENSPIPE_FLOWS) == set(CUSTOM_FLOWS)
    assert known_flows() == allowed_flows()


def test_unknown_flow_names_the_key_and_the_choices() -> None:
    with pytest.raises(ConfigError) as info:
        EstimatorSettings.from_config("fancy", {"flow": "realnvp", "num_transforms": 4})
    message = str(info.value)
    assert "estimators.fancy.flow" in message and "'realnvp'" in message
    assert "maf" in message and "coupling_resnet" in message and "zuko_nsf" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ({"flow": "maf", "num_transforms": 4, "hiden_features": 128}, "estimators.e.hiden_features"),
        ({"flow": "coupling_resnet", "num_transforms": 4}, "estimators.e.num_transforms"),
        ({"flow": "nsf", "embedding_net": "x"}, "estimators.e.embedding_net"),
        ({"flow": "nsf", "z_score_theta": "transform_to_unconstrained"}, "estimators.e.z_score_theta"),
        ({"num_transforms": 4}, "estimators.e.flow"),
    ],
)
def test_bad_entries_name_their_key(entry: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        EstimatorSettings.from_config("e", entry)


@pytest.mark.parametrize("num_blocks", [5, 10])
def test_coupling_resnet_is_seed_twos_flow(num_blocks: int) -> None:
    settings = EstimatorSettings.from_config(
        "c", {"flow": "coupling_resnet", "num_blocks": num_blocks, "hidden_features": 32}
    )
    est = density_estimator_builder(settings, small_embedding(4), BOX)(
        box_theta(50), torch.randn(50, 3, 8, 8)
    )
    assert isinstance(est, BoundedEstimator)
    layers = list(est.inner.net._transform._transforms)
    assert isinstance(layers[0], nflows_tf.PointwiseAffineTransform)  # z-scoring of the unconstrained theta
    blocks = layers[1:]
    assert len(blocks) == 3 * (num_blocks + 1)  # the blocks, then the final [permutation, LU, coupling]
    expected = [
        nflows_tf.RandomPermutation,
        nflows_tf.LULinear,
        nflows_tf.PiecewiseRationalQuadraticCouplingTransform,
    ]
    assert [type(t) for t in blocks] == expected * (num_blocks + 1)
    for coupling in blocks[2::3]:
        net = coupling.transform_net
        assert (
            isinstance(net, ResidualNet) and net.context_features == 4
        )  # the image embedding is the context
        assert net.hidden_features == 32
        assert coupling.tails == "linear" and coupling.num_bins == 10


def test_box_transform_is_sbis_biject_to() -> None:
    from sbi.utils import mcmc_transform

    theta = box_theta(200)
    ours = BoxTransform(BOX.low, BOX.high)
    sbi_tf = mcmc_transform(BOX.sbi_prior())  # constrained -> unconstrained, biject_to(support).inv
    z, log_det = ours.to_unconstrained(theta)
    torch.testing.assert_close(z, sbi_tf(theta), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(
        log_det, sbi_tf.log_abs_det_jacobian(theta, sbi_tf(theta)), atol=1e-4, rtol=1e-4
    )
    torch.testing.assert_close(ours.to_box(z), theta, atol=1e-4, rtol=1e-5)


def test_samples_are_inside_the_box_for_any_z() -> None:
    tf = BoxTransform(BOX.low, BOX.high)
    z = torch.tensor([[-1e4, 0.0, 1e4], [math.inf, -math.inf, 50.0], [-50.0, 30.0, -30.0]])
    theta = tf.to_box(z)
    assert BOX.contains(theta.numpy()).all()
    assert bool(BOX.sbi_prior().support.check(theta).all())
    assert torch.isfinite(
        BOX.sbi_prior().log_prob(theta)
    ).all()  # strictly below high, as torch's Uniform needs


@pytest.mark.parametrize("flow", ["maf", "coupling_resnet", "zuko_nsf"])
def test_density_integrates_to_one_in_physical_units(flow: str) -> None:
    box = PriorBox(("sigma_v", "e1"), (150.0, -0.4), (400.0, 0.4))
    torch.manual_seed(1)
    settings = EstimatorSettings.from_config(
        "f",
        {"flow": flow, "num_transforms": 2, "hidden_features": 16}
        if flow != "coupling_resnet"
        else {"flow": flow, "num_blocks": 2, "hidden_features": 16},
    )
    est = density_estimator_builder(settings, small_embedding(), box)(
        box_theta(64, box), torch.randn(64, 3, 8, 8)
    )
    # Midpoint rule over the inner part of the box (u in [0.05, 0.95] per axis, where the density is smooth),
    # against the flow's own mass there, counted from samples of the unconstrained flow.
    n, lo, hi = 160, 0.05, 0.95
    u = lo + (hi - lo) * (torch.arange(n, dtype=torch.float64) + 0.5) / n
    grid = (
        torch.stack(torch.meshgrid(150 + 250 * u, -0.4 + 0.8 * u, indexing="ij"), -1).reshape(-1, 2).float()
    )
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        density = est.log_prob(grid[:, None, :], x)[:, 0].exp().double()
        z = est.inner.sample(torch.Size([40000]), x)[:, 0].double()
    integral = float(density.sum()) * (250 * (hi - lo) / n) * (0.8 * (hi - lo) / n)
    mass = float(((torch.sigmoid(z) > lo) & (torch.sigmoid(z) < hi)).all(-1).double().mean())
    assert integral == pytest.approx(mass, abs=0.015)
    assert mass > 0.1  # a real share of the mass is tested
    with torch.no_grad():
        samples, log_prob = est.sample_and_log_prob(torch.Size([300]), torch.randn(2, 3, 8, 8))
        assert box.contains(samples.numpy()).all()
        again = est.log_prob(samples, torch.randn(2, 3, 8, 8))
    assert samples.shape == (300, 2, 2) and log_prob.shape == again.shape == (300, 2)


def test_builder_works_with_plain_sbi_npe(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The builder is an sbi custom density estimator: NPE trains it, and its loss is NPE's first-round loss."""
    from sbi.inference import NPE

    from lenspipe.train import NullTracker

    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    settings = EstimatorSettings.from_config(
        "c", {"flow": "coupling_resnet", "num_blocks": 2, "hidden_features": 16}
    )
    theta, x = box_theta(60), torch.randn(60, 3, 8, 8)
    npe = NPE(
        prior=BOX.sbi_prior(),
        density_estimator=density_estimator_builder(settings, small_embedding(), BOX),
        tracker=NullTracker(),
        show_progress_bars=False,
    )
    est = npe.append_simulations(theta, x).train(training_batch_size=20, max_num_epochs=1)
    assert isinstance(est, BoundedEstimator)
    masks = torch.ones(20, dtype=torch.bool)
    sbi_loss = npe._loss(
        theta[:20],
        x[:20],
        masks,
        proposal=None,
        calibration_kernel=lambda v: torch.ones(len(v)),
        force_first_round_loss=True,
    )
    torch.testing.assert_close(sbi_loss, est.loss(theta[:20], x[:20]))
    posterior = npe.build_posterior()
    samples = posterior.sample((200,), x=x[:1], show_progress_bars=False)
    assert BOX.contains(samples.numpy()).all()
    assert not (tmp_path / "sbi-logs").exists()
