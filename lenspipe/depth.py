"""Image depth: the 10-sigma point-source depth each image's noise gives, and a check of that noise on the pixels.

The noise formula (lenstronomy's, per image and band: sky and read noise of the total exposure, plus the
Poisson noise of the light) is what the metadata promises; `noise_ratio` measures the noise the pixels really
carry, from second differences along rows in a frame at the image border (which cancel a smooth light profile
and keep the noise), against the variance the formula predicts there. A ratio away from 1 means the images do
not match their metadata (wrong units, noise added twice or not at all) and the shard is refused.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lenspipe.errors import DataError

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
# Border frame (pixels) where the noise is measured, and the tolerated |median ratio - 1| of a shard's band.
FRAME = 8
NOISE_RTOL = 0.05
# Reference depths (10-sigma point sources) for the README: single-epoch DECam (DES DR1, Abbott et al. 2018:
# g 23.57, r 23.34, i 22.78), and DELVE's coadds (DR2, Drlica-Wagner et al. 2022: 5-sigma g 24.3, r 23.9, i 23.5,
# i.e. 0.75 mag brighter at 10 sigma), the images DELVE's lens searches used (Zaborowski et al. 2023, DR1).
DECAM_SINGLE_EPOCH_10SIGMA = {"g": 23.57, "r": 23.34, "i": 22.78}
DELVE_DR2_COADD_5SIGMA = {"g": 24.3, "r": 23.9, "i": 23.5}
FIVE_TO_TEN_SIGMA = 2.5 * np.log10(2.0)


def point_source_depth(
    sky_sigma: np.ndarray,
    seeing: np.ndarray,
    pixel_scale: np.ndarray,
    zero_point: np.ndarray,
    snr: float = 10.0,
) -> np.ndarray:
    """Magnitude of a point source detected at `snr` by a PSF-matched filter on background-limited noise.

    A Gaussian PSF of FWHM `seeing` (arcsec) has noise-equivalent area 4 pi sigma_psf^2; sky_sigma is the per-pixel
    background sigma in e-/s and zero_point the magnitude of 1 e-/s.
    """
    sigma_pix = np.asarray(seeing, dtype=float) / FWHM_PER_SIGMA / np.asarray(pixel_scale, dtype=float)
    flux = snr * np.asarray(sky_sigma, dtype=float) * np.sqrt(4.0 * np.pi * sigma_pix**2)
    return np.asarray(zero_point, dtype=float) - 2.5 * np.log10(flux)


def image_depths(meta: pd.DataFrame, bands: tuple[str, ...] | list[str]) -> pd.DataFrame:
    """Per-image 10-sigma point-source depth of every band, from the shard metadata's noise and PSF."""
    out = {}
    for band in bands:
        out[f"depth_10sigma-{band}"] = point_source_depth(
            meta[f"sky_sigma-{band}"].to_numpy(float),
            meta[f"seeing-{band}"].to_numpy(float),
            meta[f"pixel_scale-{band}"].to_numpy(float),
            meta[f"magnitude_zero_point-{band}"].to_numpy(float),
        )
    return pd.DataFrame(out, index=meta.index)


def noise_ratio(
    images: np.ndarray, sky_sigma: np.ndarray, exposure_time: np.ndarray, frame: int = FRAME
) -> np.ndarray:
    """Per image: measured / predicted noise sigma in the border frame of one band's images (n, H, W).

    The prediction per pixel is sky_sigma^2 + max(pixel, 0) / exposure_time (Poisson noise of the light, e-/s);
    a second difference x[j-1] - 2 x[j] + x[j+1] of independent pixels has variance v[j-1] + 4 v[j] + v[j+1].
    """
    images = np.asarray(images, dtype=np.float64)
    n, h, w = images.shape
    if h <= 2 * frame or w < 3:
        raise DataError("images", f"at least {2 * frame + 1} x 3 pixels to measure the noise", f"{h} x {w}")
    mask = np.zeros((h, w - 2), dtype=bool)
    mask[:frame] = mask[-frame:] = True
    second = images[:, :, :-2] - 2.0 * images[:, :, 1:-1] + images[:, :, 2:]
    var = (
        np.asarray(sky_sigma, dtype=float)[:, None, None] ** 2
        + np.clip(images, 0.0, None) / np.asarray(exposure_time, dtype=float)[:, None, None]
    )
    predicted = var[:, :, :-2] + 4.0 * var[:, :, 1:-1] + var[:, :, 2:]
    measured = (second**2)[:, mask].sum(axis=1)
    return np.sqrt(measured / predicted[:, mask].sum(axis=1))


def check_noise(
    images: np.ndarray,
    meta: pd.DataFrame,
    bands: tuple[str, ...] | list[str],
    name: str,
    rtol: float = NOISE_RTOL,
) -> dict[str, float]:
    """The median measured/predicted noise ratio per band; a DataError naming `name` if one is off by > rtol."""
    ratios = {}
    for b, band in enumerate(bands):
        ratio = noise_ratio(
            images[:, b],
            meta[f"sky_sigma-{band}"].to_numpy(float),
            meta[f"exposure_time-{band}"].to_numpy(float),
        )
        ratios[band] = float(np.median(ratio))
        if not abs(ratios[band] - 1.0) <= rtol:
            raise DataError(
                name,
                f"band {band}: image noise {ratios[band]:.3f} x what its metadata's noise gives "
                f"(expected 1 +- {rtol}): the images do not match their depth",
            )
    return ratios
