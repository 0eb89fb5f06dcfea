"""The `lenspipe` command (console script; also `python -m lenspipe`): `lenspipe infer` for observed images."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from lenspipe.errors import ConfigError, LenspipeError

ALL_BANDS = "*"


def band_values(text: str) -> dict[str, float]:
    """'26.5' (every band) or 'g=26.58,r=26.78,i=26.75' as {band: value} ('*' for every band)."""
    try:
        if "=" not in text:
            return {ALL_BANDS: float(text)}
        pairs = (part.split("=", 1) for part in text.split(","))
        return {band.strip(): float(value) for band, value in pairs}
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected a number or band=number pairs (g=26.58,r=26.78), got {text!r}"
        ) from exc


def parser() -> argparse.ArgumentParser:
    """The command line of `lenspipe`."""
    top = argparse.ArgumentParser(
        prog="lenspipe", description="lenspipe: simulation-based inference of strong lenses"
    )
    sub = top.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "infer",
        help="posteriors for observed FITS images with a trained estimator",
        description="Posterior samples, a summary table and corner plots for observed FITS images.",
    )
    p.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="a cube (bands, H, W); a pattern with {band} (one file per band); or g=a.fits,r=b.fits,...",
    )
    p.add_argument(
        "--estimator", required=True, help="a trained estimator: results/<run>/train/<est>/estimator.pt"
    )
    p.add_argument(
        "--out", required=True, help="output folder (refused if it exists and is not empty, unless --force)"
    )
    p.add_argument("--num-samples", type=int, default=5000, help="posterior samples per image (default 5000)")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the sampling (the infer rule uses the config's seed)"
    )
    p.add_argument(
        "--zero-point",
        type=band_values,
        default=None,
        metavar="ZP",
        help="zero point (magnitude of 1 pixel unit per second): one value or g=..,r=..; "
        "default: the --zero-point-key header keyword",
    )
    p.add_argument(
        "--exptime",
        type=band_values,
        default=None,
        metavar="T",
        help="exposure time in s: one value or g=..,r=..; default: the --exptime-key header keyword",
    )
    p.add_argument(
        "--zero-point-key", default="MAGZERO", help="header keyword of the zero point (default MAGZERO)"
    )
    p.add_argument(
        "--exptime-key",
        default="EXPTIME",
        help="header keyword of the exposure time (default EXPTIME); 'none': pixel values are per second",
    )
    p.add_argument(
        "--nanomaggies", action="store_true", help="pixel values are nanomaggies (zero point 22.5)"
    )
    p.add_argument(
        "--fill-nonfinite",
        action="store_true",
        help="fill NaN/inf pixels with the band's local background instead of refusing the image",
    )
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--no-corner", action="store_true", help="skip the corner plots")
    p.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    return top


def run_infer(args: argparse.Namespace) -> None:
    """`lenspipe infer`: the arguments as lenspipe.infer settings."""
    from lenspipe.fits_io import Calibration
    from lenspipe.infer import InferSettings, infer_images

    if args.nanomaggies and (args.zero_point or args.exptime):
        raise ConfigError("--nanomaggies", "no --zero-point or --exptime with it (nanomaggies fix both)")
    exptime_key = None if str(args.exptime_key).lower() == "none" else args.exptime_key
    calibration = Calibration(
        zero_points=args.zero_point,
        exposure_times=args.exptime,
        zero_point_key=args.zero_point_key,
        exposure_time_key=exptime_key,
        nanomaggies=args.nanomaggies,
    )
    settings = InferSettings(
        num_samples=args.num_samples,
        seed=args.seed,
        fill_nonfinite=args.fill_nonfinite,
        device=args.device,
        corner=not args.no_corner,
    )
    infer_images(
        args.estimator, args.images, args.out, calibration=calibration, settings=settings, force=args.force
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 on success, 1 with one line on stderr for a lenspipe error."""
    args = parser().parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s: %(message)s")
    logging.getLogger("fontTools").setLevel(logging.WARNING)
    try:
        if args.command == "infer":
            run_infer(args)
    except LenspipeError as exc:
        sys.stderr.write(f"lenspipe: {exc}\n")
        return 1
    return 0
