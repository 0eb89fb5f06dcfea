"""Observed images from FITS: one file per band or one cube (bands, H, W), checked against what an estimator expects.

Checks, each a DataError naming the file: not FITS or no image HDU; no celestial WCS, or a pixel scale more than 1%
from the study's; smaller than the study's num_pix (a larger cutout is centre-cropped, and the crop logged); a band
missing or extra; NaN/inf pixels (refused with their count, or filled with the band's local background on request).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lenspipe.errors import ConfigError, DataError
from lenspipe.flux import NANOMAGGY_ZERO_POINT, BandCalibration

log = logging.getLogger(__name__)

BAND_PLACEHOLDER = "{band}"
# Header keyword that may list a cube's bands in order ("g,r,i"); checked when present.
CUBE_BANDS_KEY = "BANDS"
# Width (pixels) of the border whose finite pixels give the local background that fills NaN/inf pixels.
BORDER = 4


@dataclass(frozen=True)
class ImageSpec:
    """One observed lens: a cube file, or one file per band."""

    name: str
    cube: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)

    def paths(self) -> list[Path]:
        """Every file this image is read from."""
        return [self.cube] if self.cube is not None else list(self.files.values())


def parse_image(entry: str | Mapping[str, str], bands: Sequence[str]) -> ImageSpec:
    """An image from the command line or the config.

    A path with `{band}` in it is one file per band; `g=a.fits,r=b.fits` (or a mapping band -> file) names each
    band's file; any other path is a cube (bands, H, W) in the study's band order.
    """
    if isinstance(entry, Mapping):
        files = {str(b): Path(str(f)) for b, f in entry.items()}
        return ImageSpec(_name_from_files(files), files=files)
    text = str(entry)
    if BAND_PLACEHOLDER in text:
        files = {b: Path(text.replace(BAND_PLACEHOLDER, b)) for b in bands}
        name = Path(text.replace(BAND_PLACEHOLDER, "")).name
        return ImageSpec(_clean_name(name), files=files)
    if "=" in text:
        files = {}
        for part in text.split(","):
            band, sep, path = part.partition("=")
            if not sep or not band.strip() or not path.strip():
                raise ConfigError(
                    "images", "band=file pairs separated by commas (g=a.fits,r=b.fits,...)", text
                )
            files[band.strip()] = Path(path.strip())
        return ImageSpec(_name_from_files(files), files=files)
    return ImageSpec(_clean_name(Path(text).name), cube=Path(text))


def _clean_name(filename: str) -> str:
    stem = re.sub(r"\.fits?(\.gz|\.fz)?$", "", filename, flags=re.IGNORECASE)
    return stem.strip("_-. ") or "image"


def _name_from_files(files: Mapping[str, Path]) -> str:
    """The longest common prefix of the files' names (lens1_g.fits, lens1_r.fits -> lens1)."""
    names = [_clean_name(p.name) for p in files.values()]
    prefix = os.path.commonprefix(names).strip("_-. ")
    return prefix or names[0]


def unique_names(specs: Sequence[ImageSpec]) -> None:
    """Two images of one run must not share a name (outputs are named after them)."""
    seen: dict[str, ImageSpec] = {}
    for spec in specs:
        if spec.name in seen:
            raise DataError(
                spec.paths()[0],
                f"image name {spec.name!r} is also that of {seen[spec.name].paths()[0]}: rename one file",
            )
        seen[spec.name] = spec


@dataclass(frozen=True)
class Calibration:
    """Where each band's zero point (1 unit/s) and exposure time come from: given values or header keywords."""

    zero_points: Mapping[str, float] | None = None
    exposure_times: Mapping[str, float] | None = None
    zero_point_key: str = "MAGZERO"
    exposure_time_key: str | None = "EXPTIME"
    nanomaggies: bool = False

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> Calibration:
        """From the config's `observed` section (a number applies to every band)."""

        def per_band(value: Any) -> dict[str, float] | None:
            if value is None:
                return None
            return (
                {str(b): float(v) for b, v in value.items()}
                if isinstance(value, Mapping)
                else {"*": float(value)}
            )

        return cls(
            zero_points=per_band(section.get("zero_points")),
            exposure_times=per_band(section.get("exposure_times")),
            zero_point_key=str(section.get("zero_point_key", "MAGZERO")),
            exposure_time_key=section.get("exposure_time_key", "EXPTIME"),
            nanomaggies=bool(section.get("nanomaggies", False)),
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain types, for provenance."""
        return {
            "zero_points": dict(self.zero_points) if self.zero_points else None,
            "exposure_times": dict(self.exposure_times) if self.exposure_times else None,
            "zero_point_key": self.zero_point_key,
            "exposure_time_key": self.exposure_time_key,
            "nanomaggies": self.nanomaggies,
        }

    def band(self, band: str, header: Any, path: Path, cube: bool) -> BandCalibration:
        """The calibration of one band of `path` (header keys `KEY_<band>` then `KEY` in a cube)."""
        if self.nanomaggies:
            return BandCalibration(NANOMAGGY_ZERO_POINT, 1.0, "nanomaggies")
        source = "given"
        if self.zero_points is not None:
            zp = _given(self.zero_points, band, "zero point", path)
        else:
            zp = _header_value(header, self.zero_point_key, band, path, cube, "--zero-point")
            source = "header"
        if self.exposure_times is not None:
            t = _given(self.exposure_times, band, "exposure time", path)
        elif self.exposure_time_key is None:
            t = 1.0
        else:
            t = _header_value(header, self.exposure_time_key, band, path, cube, "--exptime")
            source = "header"
        if not np.isfinite(zp):
            raise DataError(path, f"band {band}: zero point {zp} is not a finite number")
        if not (np.isfinite(t) and t > 0):
            raise DataError(path, f"band {band}: exposure time {t} s, expected a positive number of seconds")
        return BandCalibration(float(zp), float(t), source)


def _given(values: Mapping[str, float], band: str, what: str, path: Path) -> float:
    """The value given for `band`, or the one given for every band ('*')."""
    value = values.get(band, values.get("*"))
    if value is None:
        raise DataError(path, f"no {what} given for band {band} (given for {', '.join(values)})")
    return float(value)


def _header_value(header: Any, key: str, band: str, path: Path, cube: bool, option: str) -> float:
    keys = [f"{key}_{band}", key] if cube else [key]
    for k in keys:
        if k in header:
            try:
                return float(header[k])
            except (TypeError, ValueError) as exc:
                raise DataError(path, f"header keyword {k} = {header[k]!r}, expected a number") from exc
    raise DataError(
        path,
        f"no {' or '.join(keys)} header keyword (band {band}): give the value with {option}, "
        "or name the keyword to read",
    )


@dataclass
class ObservedImage:
    """One image in the study's units (bands, num_pix, num_pix), and how it was read."""

    name: str
    pixels: np.ndarray
    info: dict[str, Any]


def read_image_hdu(path: Path) -> tuple[np.ndarray, Any]:
    """The first HDU holding an image (2-D or more) and its header, merged over the primary header."""
    from astropy.io import fits

    if not path.is_file():
        raise DataError(path, "no such file (expected a FITS image)")
    try:
        with fits.open(path, memmap=False) as hdus:
            primary = hdus[0].header.copy()
            for hdu in hdus:
                if hdu.is_image and hdu.data is not None and hdu.data.ndim >= 2:
                    header = primary.copy()
                    header.update(hdu.header)
                    return np.asarray(hdu.data, dtype=np.float64), header
    except (OSError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(path, f"not a readable FITS file ({first})") from exc
    raise DataError(path, "no image HDU (expected a 2-D image, or a (bands, H, W) cube)")


def pixel_scale(header: Any, path: Path) -> float:
    """The pixel scale (arcsec/pixel) of the header's celestial WCS; non-square pixels are refused."""
    import warnings

    from astropy.wcs import WCS, FITSFixedWarning
    from astropy.wcs.utils import proj_plane_pixel_scales

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            wcs = WCS(header).celestial
        except Exception as exc:  # astropy raises several kinds for a broken WCS
            raise DataError(path, f"unreadable WCS ({type(exc).__name__}: {exc})") from exc
    if wcs.naxis != 2:
        raise DataError(path, "no celestial WCS (expected RA/Dec axes, to check the pixel scale)")
    # in the axes' units (CUNIT, degrees by the FITS standard)
    scales = np.abs(np.asarray(proj_plane_pixel_scales(wcs), dtype=np.float64)) * 3600.0
    if not np.all(np.isfinite(scales)) or np.any(scales <= 0):
        raise DataError(path, f"WCS pixel scales {scales.tolist()} arcsec are not positive numbers")
    if abs(scales[0] / scales[1] - 1.0) > 0.01:
        raise DataError(path, f"pixels are not square in the WCS ({scales[0]:.4f} x {scales[1]:.4f} arcsec)")
    return float(scales.mean())


def centre_crop(pixels: np.ndarray, num_pix: int, path: Path) -> tuple[np.ndarray, list[int] | None]:
    """The central num_pix x num_pix of (..., H, W); smaller is a DataError. Returns the crop's [y0, x0] or None."""
    h, w = pixels.shape[-2:]
    if h < num_pix or w < num_pix:
        raise DataError(path, f"image is {h}x{w} pixels, expected at least the study's {num_pix}x{num_pix}")
    if h == num_pix and w == num_pix:
        return pixels, None
    y0, x0 = (h - num_pix) // 2, (w - num_pix) // 2
    log.info(
        "%s: %dx%d cutout centre-cropped to %dx%d (from pixel y=%d, x=%d)",
        path,
        h,
        w,
        num_pix,
        num_pix,
        y0,
        x0,
    )
    return pixels[..., y0 : y0 + num_pix, x0 : x0 + num_pix], [y0, x0]


def fill_nonfinite(band: np.ndarray, path: Path, label: str) -> tuple[np.ndarray, int]:
    """NaN/inf pixels of one band replaced by the median of the finite pixels in its border (local background)."""
    bad = ~np.isfinite(band)
    n_bad = int(bad.sum())
    if not n_bad:
        return band, 0
    border = np.ones_like(bad)
    border[BORDER:-BORDER, BORDER:-BORDER] = False
    values = band[border & ~bad]
    if values.size == 0:
        raise DataError(
            path, f"{label}: no finite pixel in the {BORDER}-pixel border to fill {n_bad} NaN/inf pixels"
        )
    out = band.copy()
    out[bad] = np.median(values)
    return out, n_bad


def read_observed(
    spec: ImageSpec,
    bands: Sequence[str],
    num_pix: int,
    study_pixel_scale: float,
    zero_points: Mapping[str, float],
    calibration: Calibration,
    fill: bool = False,
    pixel_scale_rtol: float = 0.01,
) -> ObservedImage:
    """Read, check, crop and convert one image to the study's units (bands, num_pix, num_pix) float32."""
    bands = list(bands)
    if spec.cube is not None:
        data, header = read_image_hdu(spec.cube)
        path = spec.cube
        if data.ndim != 3:
            raise DataError(
                path,
                f"a cube must be (bands, H, W), got an image of shape {data.shape}: "
                f"give one file per band as a pattern with {BAND_PLACEHOLDER} or band=file pairs",
            )
        named = _cube_bands(header)
        if named is not None and named != bands:
            _band_mismatch(path, named, bands, f"header {CUBE_BANDS_KEY}")
        if data.shape[0] != len(bands):
            raise DataError(
                path,
                f"cube has {data.shape[0]} bands, the estimator expects {len(bands)} "
                f"({', '.join(bands)}, in this order)",
            )
        planes = {b: (data[i], header, path) for i, b in enumerate(bands)}
    else:
        if set(spec.files) != set(bands):
            _band_mismatch(spec.paths()[0], list(spec.files), bands, "files for bands")
        planes = {}
        for b in bands:
            path = spec.files[b]
            data, header = read_image_hdu(path)
            if data.ndim != 2:
                data = np.squeeze(data)
                if data.ndim != 2:
                    raise DataError(path, f"expected a 2-D image for band {b}, got shape {data.shape}")
            planes[b] = (data, header, path)

    out = np.empty((len(bands), num_pix, num_pix), dtype=np.float32)
    info: dict[str, Any] = {
        "name": spec.name,
        "files": {b: str(p) for b, (_, _, p) in planes.items()},
        "bands": {},
    }
    for i, b in enumerate(bands):
        data, header, path = planes[b]
        scale = pixel_scale(header, path)
        if abs(scale / study_pixel_scale - 1.0) > pixel_scale_rtol:
            raise DataError(
                path,
                f"pixel scale {scale:.4f} arcsec (WCS) differs from the study's "
                f"{study_pixel_scale:.4f} by {100 * abs(scale / study_pixel_scale - 1):.1f}% "
                f"(at most {100 * pixel_scale_rtol:g}% allowed)",
            )
        cropped, crop = centre_crop(data, num_pix, path)
        n_bad = int((~np.isfinite(cropped)).sum())
        if n_bad and not fill:
            raise DataError(
                path,
                f"band {b}: {n_bad} NaN/inf pixels in the {num_pix}x{num_pix} cutout "
                "(refused; --fill-nonfinite fills them with the local background)",
            )
        cropped, filled = fill_nonfinite(cropped, path, f"band {b}")
        cal = calibration.band(b, header, path, cube=spec.cube is not None)
        factor = cal.scale(zero_points[b])
        out[i] = (cropped * factor).astype(np.float32)
        info["bands"][b] = {
            "file": str(path),
            "pixel_scale": scale,
            "crop_y0_x0": crop,
            "filled_pixels": filled,
            "zero_point": cal.zero_point,
            "exposure_time": cal.exposure_time,
            "calibration": cal.source,
            "study_zero_point": zero_points[b],
            "flux_scale": factor,
        }
    return ObservedImage(spec.name, out, info)


def _cube_bands(header: Any) -> list[str] | None:
    if CUBE_BANDS_KEY not in header:
        return None
    return [b.strip() for b in str(header[CUBE_BANDS_KEY]).split(",") if b.strip()]


def _band_mismatch(path: Path, got: Sequence[str], expected: Sequence[str], what: str) -> None:
    missing = [b for b in expected if b not in got]
    extra = [b for b in got if b not in expected]
    parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
        [f"extra {', '.join(extra)}"] if extra else []
    )
    detail = "; ".join(parts) or f"order {', '.join(got)}"
    raise DataError(path, f"{what}: {detail}; the estimator expects bands {', '.join(expected)}")
