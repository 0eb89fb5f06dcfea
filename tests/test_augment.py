"""D4 symmetry augmentation: exact on the project's own simulator, the same in training, refused where not exact."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import yaml

from lenspipe import augment, deeplens
from lenspipe.augment import D4Augmentation, parameter_signs, transform_images
from lenspipe.config import check_config
from lenspipe.errors import ConfigError

from .conftest import REPO

CONFIG = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
# A lens whose every parameter is fixed (plain numbers): mass ellipticity, light ellipticities, an off-centre source.
MASS = {"sigma_v": 260.0, "e1": 0.17, "e2": -0.11, "z_l": 0.3, "z_s": 0.7}
LENS_LIGHT = {"magnitude": 19.0, "R_sersic": 1.0, "n_sersic": 4.0, "e1": 0.08, "e2": 0.05}
SOURCE_LIGHT = {
    "magnitude": 20.0,
    "R_sersic": 0.3,
    "n_sersic": 1.0,
    "e1": 0.2,
    "e2": -0.14,
    "center_x": 0.21,
    "center_y": -0.09,
}


def transformed(params: dict[str, float], element: int) -> dict[str, float]:
    """A light or mass parameter set under group element `element`, in lenstronomy's coordinates.

    deeplenstronomy's pixel grid (lenstronomy's data_configure_simple, inverse=False) has x along columns and y
    along rows, both increasing with the index: a transpose swaps x and y, a row flip negates y, a column flip x.
    The ellipticities follow lenspipe.augment's rule (the thing under test), applied to light and mass alike.
    """
    out = dict(params)
    if "center_x" in out:
        x, y = out["center_x"], out["center_y"]
        if element & augment.TRANSPOSE:
            x, y = y, x
        if element & augment.FLIP_ROWS:
            y = -y
        if element & augment.FLIP_COLUMNS:
            x = -x
        out["center_x"], out["center_y"] = x, y
    signs = parameter_signs(["e1", "e2"], element)
    out["e1"], out["e2"] = signs[0] * out["e1"], signs[1] * out["e2"]
    return out


def noise_free_image(mass: dict, lens_light: dict, source_light: dict) -> tuple[np.ndarray, object]:
    """Lens light + lensed source of one fixed system, PSF-convolved and noise-free (deeplenstronomy's planes)."""
    sim = copy.deepcopy(CONFIG["simulation"])
    sim.update(bands=["g", "i"], num_pix=32, sky_noise="legacy")
    sim["lens"]["light"] = {"profile": "SERSIC_ELLIPSE", **lens_light}
    sim["source"]["light"] = {"profile": "SERSIC_ELLIPSE", **source_light}
    priors = {k: {"min": v, "max": v} for k, v in mass.items()}  # a fixed value: min == max
    spec = deeplens.SimulatorSpec.from_config(sim, priors)
    batch = deeplens.simulate(spec, 2, seed=5, planes=True)
    assert len(batch) >= 1
    planes = batch.planes[0]  # (lens light, source, point sources, noise) x bands x H x W
    return planes[0] + planes[1], batch.metadata.iloc[0]


@pytest.fixture(scope="module")
def base() -> tuple[np.ndarray, object]:
    return noise_free_image(MASS, LENS_LIGHT, SOURCE_LIGHT)


@pytest.mark.parametrize("element", range(augment.N_ELEMENTS))
def test_each_transform_of_an_image_is_the_image_of_the_transformed_lens(base, element: int) -> None:
    image, meta = base
    names = ["sigma_v", "theta_E", "e1", "e2", "z_l", "z_s"]
    signs = dict(zip(names, parameter_signs(names, element), strict=True))
    mass = {k: v * signs[k] for k, v in MASS.items()}
    assert {k: v for k, v in mass.items() if k in ("e1", "e2")} == {
        k: v for k, v in transformed(MASS, element).items() if k in ("e1", "e2")
    }
    expected, meta_t = noise_free_image(
        mass, transformed(LENS_LIGHT, element), transformed(SOURCE_LIGHT, element)
    )
    for band in ("g", "i"):  # the same observing conditions were drawn
        assert meta[f"seeing-{band}"] == meta_t[f"seeing-{band}"]
    got = transform_images(torch.from_numpy(image), element).numpy()
    assert np.abs(expected).max() > 0 and not (element and np.allclose(got, image, rtol=1e-3))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9 * np.abs(expected).max())


def test_training_augmentation_is_one_element_per_pair() -> None:
    """D4Augmentation draws an element per pair from its generator and applies transform_images and the signs."""
    names = ["sigma_v", "theta_E", "e1", "e2", "z_l", "z_s"]
    theta = torch.rand(64, 6) - 0.5
    x = torch.rand(64, 3, 8, 8)
    aug = D4Augmentation(names, (3, 8, 8))
    theta_a, x_a = aug(theta, x, torch.Generator().manual_seed(4))
    elements = torch.randint(0, 8, (64,), generator=torch.Generator().manual_seed(4))
    assert len(set(elements.tolist())) == 8
    for i, k in enumerate(elements.tolist()):
        assert torch.equal(x_a[i], transform_images(x[i], k))
        assert torch.equal(theta_a[i], theta[i] * torch.tensor(parameter_signs(names, k)))
    again = aug(theta, x, torch.Generator().manual_seed(4))  # seeded
    assert torch.equal(again[0], theta_a) and torch.equal(again[1], x_a)
    # sigma_v, theta_E, z_l, z_s are invariant; |e1|, |e2| too.
    assert torch.equal(theta_a[:, [0, 1, 4, 5]], theta[:, [0, 1, 4, 5]])
    assert torch.equal(theta_a.abs(), theta.abs())


def test_sign_changes_commute_with_the_box_bijection() -> None:
    """theta is augmented in physical units; on a box symmetric about 0 the estimator's logit map is odd, so
    augmenting before or after it is the same (the flow's own z-scoring comes after, inside the estimator)."""
    from lenspipe.estimators import BoxTransform

    box = BoxTransform([-0.4, 150.0], [0.4, 400.0])
    theta = torch.tensor([[0.13, 200.0], [-0.31, 390.0]])
    z, _ = box.to_unconstrained(theta)
    z_flipped, _ = box.to_unconstrained(theta * torch.tensor([-1.0, 1.0]))
    torch.testing.assert_close(z_flipped, z * torch.tensor([-1.0, 1.0]), rtol=1e-6, atol=1e-6)


def test_refused_for_unknown_parameters_and_non_square_images() -> None:
    with pytest.raises(ConfigError) as info:
        D4Augmentation(["sigma_v", "gamma_ext"], (3, 8, 8))
    assert "gamma_ext" in str(info.value) and "parameters:" in str(info.value)
    with pytest.raises(ConfigError) as info:
        D4Augmentation(["sigma_v", "e1"], (3, 8, 10))
    assert "training.augment: expected square images" in str(info.value) and "3x8x10" in str(info.value)
    with pytest.raises(ConfigError, match="gamma_ext"):
        parameter_signs(["e1", "gamma_ext"], 1)


def _d4(config: dict) -> dict:
    config = copy.deepcopy(config)
    config["training"]["augment"] = "d4"
    return config


def test_shipped_symmetric_studies_accept_d4(tiny_config: dict) -> None:
    check_config(_d4(tiny_config))
    check_config(_d4(yaml.safe_load((REPO / "config" / "realistic.yaml").read_text())))


@pytest.mark.parametrize(
    ("edits", "message"),
    [
        ({"priors.e1": {"min": -0.3, "max": 0.4}}, "priors.e1: expected a range symmetric about 0"),
        ({"simulation.source.light.e1": 0.1}, "simulation.source.light.e1: expected 0 or a range symmetric"),
        (
            {"simulation.lens.light.e2": {"min": 0.0, "max": 0.2}},
            "simulation.lens.light.e2: expected 0 or a range symmetric",
        ),
        (
            {"simulation.source.light.center_x": 0.1},
            "simulation.source.light.center_x: expected 0 or a range",
        ),
        (
            {"simulation.source.light.center_y": {"min": -0.2, "max": 0.2}},
            "simulation.source.light.center_y: expected the same value or range as center_x",
        ),
    ],
)
def test_refused_where_the_simulation_is_not_symmetric(tiny_config: dict, edits: dict, message: str) -> None:
    config = _d4(tiny_config)
    for dotted, value in edits.items():
        *head, last = dotted.split(".")
        section = config
        for key in head:
            section = section[key]
        section[last] = value
    with pytest.raises(ConfigError) as info:
        check_config(config)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_the_paper_study_cannot_use_d4() -> None:
    """The seeds' design fixes the source ellipticity at e1 = 0.1: its reflections are not in the simulation."""
    paper = _d4(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    with pytest.raises(ConfigError, match=r"simulation\.source\.light\.e1: .* \(got 0\.1\)$"):
        check_config(paper)
