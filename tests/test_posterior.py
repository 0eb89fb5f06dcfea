"""Loading a trained estimator: sbi's posterior, the fast batched sampler, and clear errors."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lenspipe import posterior as lp_posterior
from lenspipe.errors import DataError

from .test_train import Study, make_study, run_training

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Study, Path]:
    """A maf trained for 2 epochs on a tiny synthetic store."""
    root = tmp_path_factory.mktemp("posterior")
    config = copy.deepcopy(yaml.safe_load((REPO / "config" / "test.yaml").read_text()))
    study = make_study(root, config, n=48)
    run_training(study, "maf", root / "train" / "maf")
    return study, root / "train" / "maf" / "estimator.pt"


@pytest.mark.slow
def test_sbi_posterior_in_physical_units(trained: tuple[Study, Path]) -> None:
    study, path = trained
    est = lp_posterior.load(path, parameter_names=study.config["parameters"])
    assert est.parameter_names == tuple(study.config["parameters"]) and est.prior_box == study.box
    assert est.bands == ("g", "r", "i") and est.image_shape == (3, 32, 32)
    x = torch.from_numpy(study.images[:1])  # raw images: the net standardises the bands itself
    samples = est.posterior.sample((200,), x=x, show_progress_bars=False)
    assert samples.shape == (200, 6) and study.box.contains(samples.numpy()).all()
    log_prob = est.posterior.log_prob(samples[:20], x=x)
    assert torch.isfinite(log_prob).all()
    batched = est.posterior.sample_batched(
        (50,), x=torch.from_numpy(study.images[:4]), show_progress_bars=False
    )
    assert batched.shape == (50, 4, 6) and study.box.contains(batched.numpy()).all()
    # No leakage: sbi's rejection step accepts everything, so its normalising correction is 1.
    assert float(est.posterior.leakage_correction(x, show_progress_bars=False)) == 1.0
    raw = est.posterior.sample((500,), x=x, reject_outside_prior=False, show_progress_bars=False)
    assert study.box.contains(raw.detach().numpy()).all()


@pytest.mark.slow
def test_sample_images_fast_path(trained: tuple[Study, Path]) -> None:
    study, path = trained
    est = lp_posterior.load(path)
    images = study.images[:5]
    a = est.sample_images(images, 300, seed=7, batch_size=2)
    assert a.shape == (5, 300, 6) and a.dtype == np.float32 and np.isfinite(a).all()
    assert study.box.contains(a).all()
    b = est.sample_images(images, 300, seed=7, batch_size=5)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)  # batch size does not change the draws
    rows = est.sample_images(images, 300, seed=7, batch_size=5, max_rows=7)  # nor do the rows per flow call
    np.testing.assert_allclose(a, rows, rtol=1e-5, atol=1e-4)
    c = est.sample_images(images[2:], 300, seed=7, batch_size=3, offset=2)
    np.testing.assert_allclose(a[2:], c, rtol=1e-5, atol=1e-4)  # pieces of a set with offsets
    assert not np.allclose(a, est.sample_images(images, 300, seed=8))
    # Distinct images give distinct posteriors; the same image twice gives independent draws.
    twice = est.sample_images(np.stack([images[0], images[0]]), 300, seed=7)
    assert not np.allclose(twice[0], twice[1])


@pytest.mark.slow
def test_sample_images_is_the_flow_of_sbi(trained: tuple[Study, Path]) -> None:
    """The fast path (lenspipe.made_inverse) maps each image's noise as sbi's flow (nflows' inverse) does."""
    study, path = trained
    est = lp_posterior.load(path)
    samples = est.sample_images(study.images[:3], 400, seed=5, offset=10)
    flow = est.estimator.inner.net
    with torch.no_grad():
        for i in range(3):
            noise = torch.randn(400, 6, generator=est._generator(5, 10 + i))
            context = flow._embedding_net(torch.from_numpy(study.images[i : i + 1])).expand(400, -1)
            z, _ = flow._transform.inverse(noise, context=context)
            np.testing.assert_allclose(samples[i], est.estimator.box.to_box(z).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_log_prob_images_matches_sbi(trained: tuple[Study, Path]) -> None:
    study, path = trained
    est = lp_posterior.load(path)
    theta = est.sample_images(study.images[:2], 20, seed=1)
    ours = est.log_prob_images(study.images[:2], theta)
    assert ours.shape == (2, 20)
    for i in range(2):
        sbi_lp = est.posterior.log_prob(
            torch.from_numpy(theta[i]), x=torch.from_numpy(study.images[i : i + 1])
        )
        np.testing.assert_allclose(ours[i], sbi_lp.numpy(), rtol=1e-4, atol=1e-3)
    outside = theta[:, :3].copy()
    outside[:, 0, 0] = study.box.high[0] + 1.0
    lp = est.log_prob_images(study.images[:2], outside)
    assert np.isneginf(lp[:, 0]).all() and np.isfinite(lp[:, 1:]).all()
    assert est.log_prob_images(study.images[:2], theta[:, 0]).shape == (2,)


@pytest.mark.slow
def test_estimator_file_is_plain_data(trained: tuple[Study, Path]) -> None:
    study, path = trained
    record = torch.load(path, weights_only=True)
    for key in (
        "estimator_settings",
        "embedding",
        "parameter_names",
        "prior_box",
        "normalisation",
        "bands",
        "image_shape",
        "state_dict",
        "training",
    ):
        assert key in record
    assert record["embedding"] == {"channels": [8, 16, 32], "hidden_features": 32, "features": 16}
    assert record["normalisation"]["bands"] == ["g", "r", "i"] and len(record["normalisation"]["mean"]) == 3
    state = torch.get_rng_state()
    lp_posterior.load(path)
    assert torch.equal(state, torch.get_rng_state())  # loading leaves the caller's random stream alone


@pytest.mark.slow
def test_errors_name_the_file_and_what_was_expected(trained: tuple[Study, Path], tmp_path: Path) -> None:
    study, path = trained
    names = list(study.config["parameters"])
    with pytest.raises(DataError) as info:
        lp_posterior.load(path, parameter_names=names[::-1])
    assert str(path) in str(info.value) and "trained for parameters" in str(info.value)
    est = lp_posterior.load(path)
    with pytest.raises(DataError) as info:
        est.sample_images(np.zeros((2, 3, 64, 64), dtype=np.float32), 10, seed=0)
    message = str(info.value)
    assert str(path) in message and "(N, 3, 32, 32)" in message and "\n" not in message
    with pytest.raises(DataError, match="expects"):
        est.sample_images(np.zeros((3, 32, 32), dtype=np.float32), 10, seed=0)
    with pytest.raises(DataError, match="no trained estimator"):
        lp_posterior.load(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="not a readable estimator"):
        lp_posterior.load(garbage)


def test_rows_per_flow_call_by_device() -> None:
    # CPU: cache-sized chunks; GPU: a whole sample_images batch (2^17 rows) in one flow call.
    assert lp_posterior.rows_per_flow_call(torch.device("cpu")) == lp_posterior.MAX_ROWS == 2**13
    assert lp_posterior.rows_per_flow_call(torch.device("cuda")) >= 2**17
