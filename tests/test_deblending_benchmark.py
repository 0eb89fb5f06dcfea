"""benchmarks/deblending_limit.py: the Cramer-Rao covariance of the lens's magnitudes, and its noise model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lenspipe.limits import lens_light_columns

from .conftest import REPO, load_benchmark

BANDS = ["g", "r", "i"]


def blobs(n: int = 1, shift: float = 0.0, size: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """A round 'lens' at the centre and a ring-like 'source' `shift` pixels out, in 3 bands (n copies)."""
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    lens = np.exp(-(xx**2 + yy**2) / (2 * 2.0**2))
    source = np.exp(-((np.hypot(xx, yy) - shift) ** 2) / (2 * 1.5**2))
    flux = np.array([1.0, 2.0, 3.0])[:, None, None]
    colours = np.array([3.0, 2.0, 1.5])[:, None, None]
    return np.repeat((40 * flux * lens)[None], n, 0), np.repeat((20 * colours * source)[None], n, 0)


def test_an_isolated_lens_has_the_matched_filter_error() -> None:
    bench = load_benchmark("deblending_limit")
    lens, source = blobs()
    variance = np.full(lens.shape, 4.0)
    cov = bench.magnitude_covariance(lens, source, variance, "isolated")
    expected = bench.MAG_PER_LN * 2.0 / np.sqrt((lens[0] ** 2).sum(axis=(1, 2)))
    np.testing.assert_allclose(np.sqrt(np.diag(cov[0])), expected, rtol=1e-12)
    np.testing.assert_allclose(cov[0] - np.diag(np.diag(cov[0])), 0.0, atol=1e-15)


def test_blending_costs_precision_only_where_the_lights_overlap() -> None:
    bench = load_benchmark("deblending_limit")
    far, far_source = blobs(shift=40.0)  # the source's light outside the stamp: no overlap
    variance = np.full(far.shape, 4.0)
    alone = bench.magnitude_covariance(far, far_source, variance, "isolated")
    np.testing.assert_allclose(
        bench.magnitude_covariance(far, far_source, variance, "source free"), alone, rtol=1e-6
    )
    lens, source = blobs(shift=3.0)
    var = [np.diagonal(bench.magnitude_covariance(lens, source, variance, m)[0]) for m in bench.MODES]
    assert np.all(var[0] < var[1]) and np.all(var[1] < var[2])  # isolated < source known < source free
    # a shared source colour ties the bands' errors together
    known = bench.magnitude_covariance(lens, source, variance, "source known")[0]
    assert known[0, 1] > 0


def test_the_covariance_is_what_a_least_squares_fit_scatters_by() -> None:
    """Fit the amplitudes of noisy images by weighted least squares (efficient for this linear Gaussian model):
    the fitted lens magnitudes scatter by the Cramer-Rao covariance."""
    bench = load_benchmark("deblending_limit")
    lens, source = blobs(shift=2.5)
    sky = np.array([1.0, 1.5, 2.0])[:, None, None]
    variance = sky**2 + (lens[0] + source[0]) / 90.0
    rng = np.random.default_rng(3)
    for mode in bench.MODES:
        t = bench.templates(lens, source, mode)[0]  # (k, bands, H, W)
        a = t.reshape(len(t), -1).T / np.sqrt(variance.reshape(-1))[:, None]
        noise = rng.standard_normal((4000, variance.size)) * np.sqrt(variance.reshape(-1))
        truth = (lens[0] + (0 if mode == "isolated" else source[0])).reshape(-1)  # what the fit models
        fits = np.linalg.lstsq(a, ((truth + noise) / np.sqrt(variance.reshape(-1))).T, rcond=None)[0]
        mags = -2.5 * np.log10(fits[:3].T)
        cov = bench.magnitude_covariance(lens, source, variance[None], mode)[0]
        scale = np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
        np.testing.assert_allclose(np.cov(mags.T) / scale, cov / scale, atol=0.08)  # 4,000 fits: sd ~0.02


def test_features_get_correlated_magnitude_errors_and_colours_follow() -> None:
    bench = load_benchmark("deblending_limit")
    n = 20000
    columns = lens_light_columns(3)
    features = np.tile(np.array([21.0, 19.5, 19.0, 1.5, 0.5, 0.1, 1.2]), (n, 1))
    cov = np.array([[0.04, 0.01, 0.0], [0.01, 0.01, 0.002], [0.0, 0.002, 0.005]])
    out = bench.with_correlated_errors(features, np.repeat(cov[None], n, 0), np.random.default_rng(0))
    mags = out[:, columns["magnitudes"]]
    np.testing.assert_allclose(np.cov(mags.T), cov, atol=2e-3)
    np.testing.assert_array_equal(out[:, columns["colours"]], mags[:, :-1] - mags[:, 1:])
    np.testing.assert_array_equal(out[:, 5:], features[:, 5:])  # size and theta_E exact
    np.testing.assert_array_equal(features[:, :3], np.tile([21.0, 19.5, 19.0], (n, 1)))  # input untouched


def test_errors_on_size_and_theta_e_follow_a_wider_covariance() -> None:
    bench = load_benchmark("deblending_limit")
    n = 20000
    features = np.tile(np.array([21.0, 19.5, 19.0, 1.5, 0.5, 0.1, 1.2]), (n, 1))
    cov = np.diag([0.01, 0.004, 0.004, 0.0004, 0.0001])
    cov[0, 3] = cov[3, 0] = 0.0015  # g magnitude and size errors correlated (a Sersic index error moves both)
    out = bench.with_correlated_errors(features, np.repeat(cov[None], n, 0), np.random.default_rng(1))
    np.testing.assert_allclose(np.cov(out[:, [0, 1, 2, 5, 6]].T), cov, atol=5e-4)
    with pytest.raises(ValueError, match="covariance"):
        bench.with_correlated_errors(features, np.repeat(np.eye(4)[None], n, 0), np.random.default_rng(1))


def test_shapes_the_config_draws_are_free_with_their_prior_precision() -> None:
    bench = load_benchmark("deblending_limit")
    from lenspipe.config import load_config

    config = load_config(REPO / "config" / "physical.yaml")
    free = {(part, name): precision for part, name, precision in bench.free_shapes(config)}
    assert free[("lens", "R_sersic")] == 0.0 and free[("mass", "theta_E")] == 0.0  # the oracle's own features
    assert free[("source", "center_x")] == pytest.approx(12.0 / 0.6**2)  # uniform on [-0.3, 0.3]
    assert free[("mass", "e1")] == pytest.approx(12.0 / 0.8**2)  # the prior's [-0.4, 0.4]
    config["simulation"]["source"]["light"]["n_sersic"] = 1.0  # a fixed value is known: not fitted
    assert ("source", "n_sersic") not in {(p, n) for p, n, _ in bench.free_shapes(config)}


def test_an_unknown_mode_is_refused() -> None:
    bench = load_benchmark("deblending_limit")
    lens, source = blobs()
    with pytest.raises(ValueError, match="mode"):
        bench.templates(lens, source, "source maybe")


@pytest.mark.slow
def test_the_noise_model_matches_the_simulated_images() -> None:
    """Images of the physical study minus their noise-free planes, over the variance map: chi^2 ~1 per pixel."""
    bench = load_benchmark("deblending_limit")
    from lenspipe.config import load_config

    config = load_config(REPO / "config" / "physical.yaml")
    # shapes: lenstronomy's renderings must equal deeplenstronomy's planes (bench.amplitude refuses otherwise)
    meta, theta, covs, chi2 = bench.simulate(config, 6, 6, shapes=True)
    assert len(meta) == len(theta) == 6 and isinstance(meta, pd.DataFrame)
    np.testing.assert_allclose(chi2[0], 1.0, atol=0.06)  # 6 x 4096 pixels per band: sd ~0.01
    for mode in bench.MODES:
        assert covs[mode].shape == (6, 3, 3)
        assert np.all(np.linalg.eigvalsh(covs[mode]) > 0)
    for mode in ("source known", "source free"):
        full = covs[f"shapes free, {mode}"]
        assert full.shape == (6, 5, 5) and np.all(np.linalg.eigvalsh(full) > 0)
        # freeing parameters never makes the magnitudes more precise
        assert np.all(np.diagonal(full, axis1=1, axis2=2)[:, :3] >= np.diagonal(covs[mode], axis1=1, axis2=2))
    assert np.all(
        np.diagonal(covs["isolated"], axis1=1, axis2=2) <= np.diagonal(covs["source free"], axis1=1, axis2=2)
    )


def test_a_rendering_that_differs_from_the_plane_is_refused() -> None:
    bench = load_benchmark("deblending_limit")
    lens, _ = blobs()
    assert bench.amplitude(lens[0, 0], 3.5 * lens[0, 0], "same shape") == pytest.approx(3.5)
    wider = np.roll(lens[0, 0], 1, axis=0)
    with pytest.raises(RuntimeError, match="differs from deeplenstronomy"):
        bench.amplitude(lens[0, 0], wider, "shifted by a pixel")


def test_the_seeing_prior_is_the_images_spread_and_must_vary() -> None:
    bench = load_benchmark("deblending_limit")
    meta = pd.DataFrame({"seeing-g": [1.0, 1.2, 1.4], "seeing-r": [0.9, 0.9, 1.5]})
    priors = bench.seeing_priors(meta, ["g", "r"])
    assert [(p, b) for p, b, _ in priors] == [("psf", "g"), ("psf", "r")]
    np.testing.assert_allclose([w for *_, w in priors], [1 / np.var([1.0, 1.2, 1.4]), 1 / 0.08])
    with pytest.raises(ValueError, match="seeing-g"):
        bench.seeing_priors(pd.DataFrame({"seeing-g": [1.1, 1.1]}), ["g"])


@pytest.mark.slow
def test_freeing_the_seeing_moves_one_band_and_keeps_the_flux() -> None:
    """The seeing's derivative of an image: zero outside its band, and flux-conserving (a PSF moves light, it
    does not make any): the derivative's sum is tiny against its absolute sum (the stamp's edge loses a little)."""
    bench = load_benchmark("deblending_limit")
    from lenspipe.config import load_config

    config = load_config(REPO / "config" / "physical.yaml")
    meta, _, covs, _ = bench.simulate(config, 4, 4, shapes=True, seeing=True)
    for mode in ("source known", "source free"):
        known, free = covs[f"shapes free, {mode}"], covs[f"shapes free, {mode}, seeing free"]
        # one more unknown never makes anything more precise, and the seeing does cost something
        assert np.all(np.diagonal(free - known, axis1=1, axis2=2) >= -1e-12)
        assert np.all(np.diagonal(free - known, axis1=1, axis2=2)[:, -2] > 0)  # the lens's size
    renderer = bench.Renderer(meta, 0, "g", 64)
    for d in renderer.seeing_derivatives():
        assert abs(d.sum()) < 0.01 * np.abs(d).sum()


def test_the_boosted_reader_finds_a_clean_signal_and_nothing_in_noise() -> None:
    """z_l read from features: the true features give it back (a smooth function of one column); features buried
    in noise (huge covariance) give nothing (R^2 ~0)."""
    bench = load_benchmark("deblending_limit")
    rng = np.random.default_rng(5)
    n = 3000
    features = np.column_stack(
        [rng.normal(20, 1, (n, 3)), rng.normal(1, 0.3, (n, 2)), rng.normal(0, 1, (n, 2))]
    )
    features[:, 3] = features[:, 0] - features[:, 1]  # colours are magnitude differences
    features[:, 4] = features[:, 1] - features[:, 2]
    target = 0.1 * features[:, 3] + 0.3
    train, test = slice(0, 2500), slice(2500, None)

    def r2(cov: np.ndarray | None) -> float:
        p = bench.boosted_predictions(features, cov, target, train, test, 2, np.random.default_rng(1))
        return 1 - np.mean((p - target[test]) ** 2) / target[test].var()

    assert r2(None) > 0.99
    buried = np.repeat(np.diag([1e4] * 5)[None], n, 0)
    assert r2(buried) < 0.05  # it over-fits pure noise a little (R^2 ~ -0.1): nothing found
