"""How much of z_l do a physical-light study's images hold, and how much of it did a trained estimator encode?

Issue 17's oracle (lenspipe.limits: k-NN of each parameter on the true lens magnitudes, colours, size and theta_E)
uses noise-free values. This script measures, on one study's split stores:

  oracle             the compare rule's oracle row
  oracle + noise     the same with each image's photometric error added to the true magnitudes: a matched filter
                     on the image's own background noise (metadata), for a Gaussian of the lens's half-light radius
                     convolved with the seeing (a lower bound on the error of a real measurement)
  apertures          regressions on the images' fluxes in circular apertures (1", 2", 4") per band and their
                     colours: no light model, so the arcs' light inside the apertures counts (k-NN as the oracle,
                     and gradient boosting)
  probe              with --estimator: linear (ridge) and k-NN regressions on the trained estimator's embedding
                     features: what the net encoded, whatever its flow made of it
  regression CNN     with --regress-epochs N: the study's CNN (or --channels/--hidden/--features) and a linear layer
                     trained N epochs by mean-squared error on the six standardised parameters (Adam 5e-4, batch
                     50, seeded; images standardised per band, or --asinh: arcsinh(pixel / band's background
                     noise) first): what the CNN can read when asked for point estimates, not posteriors

and prints R^2 per parameter on the test set, one row each (the k-NN rows are lenspipe.limits' regression, which
leaves theta_E out: the oracle has it among its features). Two rows add Gaussian errors of 0.05 and 0.1 mag
to every band's magnitude (how precise a photometric redshift must be), two more split the oracle: the true colours alone,
and the true magnitudes, size and theta_E without the colours (which of the lens light's features carry z_l).
--train-images N trains the regression CNN on the first N training images only, for `--regress-epochs` x (all / N)
epochs, so that every N takes the same number of gradient steps (a learning curve: is the CNN short of images?).

A second table says how much of each band's light is the lens's: per band, the median ratio of the image's total
flux to the lens's (from its magnitude and the band's zero point: the images are in counts per second), the
fraction of images whose lensed arcs (all light but the lens's) outshine the lens, the arcs' flux over the
source's before lensing (the magnification, where the metadata has the source's magnitude), and the correlation
of the central 4x4-pixel colour with the lens's true colour (what a photometric redshift of the lens measures,
blended).

Usage: .venv/bin/python benchmarks/lens_light_information.py --split results/physical/split \
       [--estimator results/physical/train/nsf/estimator.pt] [--regress-epochs 40 [--asinh] [--train-images N]]
       [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lenspipe.depth import FWHM_PER_SIGMA, image_depths
from lenspipe.embedding import EmbeddingSettings, LensCNN
from lenspipe.lenslight import PREFIX
from lenspipe.limits import lens_light_columns, lens_light_features, lens_light_limits, perturbed_features
from lenspipe.store import Store, open_store

APERTURES_ARCSEC = (1.0, 2.0, 4.0)
GAUSSIAN_HALF_LIGHT = 1.1774  # half-light radius of a circular Gaussian, in units of its sigma
MAG_PER_LN = 2.5 / np.log(10.0)
MAGNITUDE_ERRORS = (0.05, 0.1)  # Gaussian errors per band for the oracle's error budget [mag]


def photometric_errors(features: np.ndarray, meta: pd.DataFrame, bands: list[str]) -> np.ndarray:
    """Each image's photometric error per band [mag]: a matched filter on the image's background noise (metadata)
    for a Gaussian of the lens's half-light radius convolved with the seeing."""
    depths = image_depths(meta, bands)
    sigma_gal = meta[f"{PREFIX}R_sersic"].to_numpy(float) / GAUSSIAN_HALF_LIGHT
    errors = np.empty((len(features), len(bands)))
    for k, band in enumerate(bands):
        sigma_psf = meta[f"seeing-{band}"].to_numpy(float) / FWHM_PER_SIGMA
        # 10 sigma at the point-source depth; an extended lens spreads over a larger noise-equivalent area
        snr = 10.0 * 10 ** (-0.4 * (features[:, k] - depths[f"depth_10sigma-{band}"].to_numpy()))
        snr *= np.sqrt(sigma_psf**2 / (sigma_psf**2 + sigma_gal**2))
        errors[:, k] = MAG_PER_LN / snr
    return errors


def with_magnitude_errors(
    features: np.ndarray, errors: np.ndarray | float, bands: list[str], rng: np.random.Generator
) -> np.ndarray:
    """The oracle's `features` with each band's magnitude perturbed by a Gaussian of `errors` (n x bands, or one
    value for all), and the colours recomputed from the perturbed magnitudes."""
    offsets = rng.normal(size=(len(features), len(bands))) * errors
    return perturbed_features(features, offsets, range(len(bands)))


def noisy_features(
    features: np.ndarray, meta: pd.DataFrame, bands: list[str], rng: np.random.Generator
) -> np.ndarray:
    """The oracle's `features` (lenspipe.limits.lens_light_features of `meta`) with each band's magnitude perturbed
    by its photometric error on that image, and the colours recomputed from the perturbed magnitudes."""
    return with_magnitude_errors(features, photometric_errors(features, meta, bands), bands, rng)


def aperture_features(store: Store, pixel_scale: float) -> np.ndarray:
    """-2.5 log10 of each band's flux in each aperture (centred on the grid), and neighbouring-band colours."""
    height, width = store.images.shape[2:]
    yy, xx = np.mgrid[:height, :width]
    radius = np.hypot(yy - (height - 1) / 2, xx - (width - 1) / 2) * pixel_scale
    blocks = []
    for images in store.iter_images():
        images = np.asarray(images, float)
        blocks.append(
            np.concatenate([images[:, :, radius < r].sum(axis=2) for r in APERTURES_ARCSEC], axis=1)
        )
    mags = -2.5 * np.log10(np.clip(np.concatenate(blocks), 1e-3, None))
    n = len(store.bands)
    colours = [
        mags[:, a * n : a * n + n - 1] - mags[:, a * n + 1 : a * n + n] for a in range(len(APERTURES_ARCSEC))
    ]
    return np.column_stack([mags, *colours])


def embedding_features(net: torch.nn.Module, store: Store) -> np.ndarray:
    """A trained estimator's embedding-net outputs for every image of the store."""
    with torch.no_grad():
        return np.concatenate(
            [net(torch.from_numpy(np.asarray(b, np.float32))).numpy() for b in store.iter_images()]
        )


def regression_cnn_r2(
    train: Store,
    test: Store,
    settings: EmbeddingSettings,
    epochs: int,
    asinh: bool,
    seed: int,
    train_images: int | None = None,
) -> dict[str, float]:
    """R^2 per parameter of a CNN + linear layer trained by mean-squared error on standardised parameters (on the
    first `train_images` training images, all by default)."""
    from sklearn.metrics import r2_score
    from tqdm import tqdm

    def prepare(images: np.ndarray) -> np.ndarray:
        return np.arcsinh(images / noise[None, :, None, None]) if asinh else images

    x_train, x_test = train.load_images()[:train_images], test.load_images()
    theta_train = train.theta[:train_images]
    border = np.ones(x_train.shape[2:], bool)
    border[2:-2, 2:-2] = False
    edge = x_train[:, :, border]  # (n, bands, border pixels): the background's robust sigma per band
    noise = 1.4826 * np.median(np.abs(edge - np.median(edge, axis=(0, 2), keepdims=True)), axis=(0, 2))
    x_train, x_test = prepare(x_train), prepare(x_test)
    mean, std = x_train.mean(axis=(0, 2, 3), keepdims=True), x_train.std(axis=(0, 2, 3), keepdims=True)
    x_train = torch.from_numpy(((x_train - mean) / std).astype(np.float32))
    x_test = torch.from_numpy(((x_test - mean) / std).astype(np.float32))
    t_mean, t_std = theta_train.mean(axis=0), theta_train.std(axis=0)
    y_train = torch.from_numpy(((theta_train - t_mean) / t_std).astype(np.float32))
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        LensCNN(settings, x_train.shape[1:]), torch.nn.Linear(settings.features, y_train.shape[1])
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=5e-4)
    generator = torch.Generator().manual_seed(seed)
    for _ in tqdm(range(epochs), desc="regression CNN"):
        net.train()
        for index in torch.randperm(len(x_train), generator=generator).split(50):
            optimizer.zero_grad()
            ((net(x_train[index]) - y_train[index]) ** 2).mean().backward()
            optimizer.step()
    net.eval()
    with torch.no_grad():
        predicted = np.concatenate([net(b).numpy() for b in x_test.split(256)]) * t_std + t_mean
    r2 = r2_score(test.theta, predicted, multioutput="raw_values")
    return {n: float(r2[j]) for j, n in enumerate(test.parameter_names)}


def oracle_feature_sets(features: np.ndarray, bands: list[str]) -> dict[str, np.ndarray]:
    """The oracle's features (lenspipe.limits.lens_light_features: magnitudes, colours, log size, theta_E) split
    into the true colours alone, and everything but the colours."""
    colours = lens_light_columns(len(bands))["colours"]
    return {
        "oracle: true colours only": features[:, colours],
        "oracle: magnitudes, size, theta_E (no colours)": np.delete(features, colours, axis=1),
    }


CENTRAL_PIXELS = 4
SOURCE_MAGNITUDE = "PLANE_2-OBJECT_1-LIGHT_PROFILE_1-magnitude"  # deeplenstronomy's source column


def blending(store: Store, meta: pd.DataFrame) -> pd.DataFrame:
    """Per band: the median of (image flux / lens flux), the fraction of images whose lensed light (all but the
    lens's) outshines the lens, and the correlation of the central pixels' colour with the lens's true colour.

    The lens flux is 10^(-0.4 (m - zero point)) counts per second (the images' unit); its light beyond the stamp
    counts as the arcs' (a few per cent for the largest de Vaucouleurs lenses).
    """
    totals, centres = [], []
    for images in store.iter_images():
        images = np.asarray(images, float)
        h, w = images.shape[2:]
        lo_y, lo_x = (h - CENTRAL_PIXELS) // 2, (w - CENTRAL_PIXELS) // 2
        totals.append(images.sum(axis=(2, 3)))
        centres.append(
            images[:, :, lo_y : lo_y + CENTRAL_PIXELS, lo_x : lo_x + CENTRAL_PIXELS].sum(axis=(2, 3))
        )
    total, centre = np.concatenate(totals), np.concatenate(centres)
    mags = np.column_stack([meta[f"{PREFIX}magnitude-{b}"].to_numpy(float) for b in store.bands])
    zero = np.column_stack([meta[f"magnitude_zero_point-{b}"].to_numpy(float) for b in store.bands])
    lens = 10 ** (-0.4 * (mags - zero))
    central_mag = -2.5 * np.log10(np.clip(centre, 1e-3, None))
    rows = []
    for k, band in enumerate(store.bands):
        row = {
            "band": band,
            "image / lens flux (median)": float(np.median(total[:, k] / lens[:, k])),
            "arcs outshine the lens": float(np.mean(total[:, k] - lens[:, k] > lens[:, k])),
        }
        source_column = f"{SOURCE_MAGNITUDE}-{band}"
        if source_column in meta:  # the arcs' light against the source's before lensing: the magnification
            source = 10 ** (-0.4 * (meta[source_column].to_numpy(float) - zero[:, k]))
            row["arcs / unlensed source (median)"] = float(np.median((total[:, k] - lens[:, k]) / source))
        if k + 1 < len(store.bands):
            true_colour = mags[:, k] - mags[:, k + 1]
            central_colour = central_mag[:, k] - central_mag[:, k + 1]
            row["corr(central colour, true colour)"] = float(np.corrcoef(central_colour, true_colour)[0, 1])
        rows.append(row)
    return pd.DataFrame(rows)


def boosting_r2(train_x: np.ndarray, test_x: np.ndarray, train: Store, test: Store) -> dict[str, float]:
    """Gradient-boosting R^2 per parameter (theta_E included)."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.metrics import r2_score

    return {
        name: float(
            r2_score(
                test.theta[:, j],
                HistGradientBoostingRegressor(max_iter=300, random_state=0)
                .fit(train_x, train.theta[:, j])
                .predict(test_x),
            )
        )
        for j, name in enumerate(test.parameter_names)
    }


def ridge_r2(train_x: np.ndarray, test_x: np.ndarray, train: Store, test: Store) -> dict[str, float]:
    """Ridge-regression R^2 per parameter on standardised features (the penalty by cross-validation)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score

    mean, std = train_x.mean(axis=0), train_x.std(axis=0) + 1e-12
    model = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit((train_x - mean) / std, train.theta)
    predicted = model.predict((test_x - mean) / std)
    return {n: float(r2_score(test.theta[:, j], predicted[:, j])) for j, n in enumerate(test.parameter_names)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", required=True, help="the study's split folder (train.zarr, test.zarr)")
    parser.add_argument("--estimator", help="a trained estimator.pt to probe")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the photometric noise and the regression CNN"
    )
    parser.add_argument(
        "--regress-epochs", type=int, default=0, help="train the regression CNN this many epochs"
    )
    parser.add_argument("--asinh", action="store_true", help="regression CNN on arcsinh-stretched pixels")
    parser.add_argument(
        "--train-images", type=int, help="regression CNN on the first N training images (same gradient steps)"
    )
    parser.add_argument(
        "--channels", type=int, nargs="+", default=[8, 16, 32], help="regression CNN (seeds')"
    )
    parser.add_argument("--hidden", type=int, default=32, help="regression CNN's hidden dense units")
    parser.add_argument("--features", type=int, default=16, help="regression CNN's output features")
    args = parser.parse_args()
    train, test = (open_store(Path(args.split) / f"{p}.zarr", verify=False) for p in ("train", "test"))
    names = test.parameter_names
    metas = [train.metadata(), test.metadata()]
    true_train = lens_light_features(metas[0], train.theta, names)
    true_test = lens_light_features(metas[1], test.theta, names)
    if true_train is None or true_test is None:
        raise SystemExit(
            f"{args.split}: no physical lens light in the metadata (simulation.lens.light.model)"
        )
    rows: dict[str, dict[str, float | None]] = {}
    rows["oracle (true light + theta_E, k-NN)"] = lens_light_limits(
        true_train, true_test, train.theta, test.theta, names
    )
    rng = np.random.default_rng(args.seed)
    noisy_train = noisy_features(true_train, metas[0], train.bands, rng)
    noisy_test = noisy_features(true_test, metas[1], test.bands, rng)
    rows["oracle + photometric noise (k-NN)"] = lens_light_limits(
        noisy_train, noisy_test, train.theta, test.theta, names
    )
    for error in MAGNITUDE_ERRORS:
        rows[f"oracle + {error} mag per band (k-NN)"] = lens_light_limits(
            with_magnitude_errors(true_train, error, train.bands, rng),
            with_magnitude_errors(true_test, error, test.bands, rng),
            train.theta,
            test.theta,
            names,
        )
    for (label, part_train), part_test in zip(
        oracle_feature_sets(true_train, train.bands).items(),
        oracle_feature_sets(true_test, test.bands).values(),
        strict=True,
    ):
        rows[f"{label} (k-NN)"] = lens_light_limits(part_train, part_test, train.theta, test.theta, names)
    pixel_scale = float(metas[0][f"pixel_scale-{train.bands[0]}"].iloc[0])
    ap_train, ap_test = aperture_features(train, pixel_scale), aperture_features(test, pixel_scale)
    rows["apertures (k-NN)"] = lens_light_limits(ap_train, ap_test, train.theta, test.theta, names)
    rows["apertures (gradient boosting)"] = boosting_r2(ap_train, ap_test, train, test)
    if args.estimator:
        from lenspipe.posterior import load

        net = load(args.estimator).estimator.embedding_net
        emb_train, emb_test = embedding_features(net, train), embedding_features(net, test)
        rows["estimator's embedding (ridge)"] = ridge_r2(emb_train, emb_test, train, test)
        rows["estimator's embedding (k-NN)"] = lens_light_limits(
            emb_train, emb_test, train.theta, test.theta, names
        )
    if args.regress_epochs > 0:
        settings = EmbeddingSettings(tuple(args.channels), args.hidden, args.features)
        n_train = min(args.train_images or len(train), len(train))
        epochs = round(
            args.regress_epochs * len(train) / n_train
        )  # the same gradient steps for every n_train
        label = f"regression CNN ({n_train} images, {epochs} epochs{', asinh' if args.asinh else ''})"
        rows[label] = regression_cnn_r2(train, test, settings, epochs, args.asinh, args.seed, n_train)
    print(f"R^2 on {len(test)} test images ({args.split})")
    print("| features | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for label, r2 in rows.items():
        cells = ["--" if r2.get(n) is None else f"{r2[n]:.3f}" for n in names]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print(f"\nHow much of each band's light is the lens's ({len(test)} test images)")
    table = blending(test, metas[1])
    print("| " + " | ".join(table.columns) + " |")
    print("|---|" + "---:|" * (len(table.columns) - 1))
    for _, row in table.iterrows():
        cells = [row["band"]] + ["--" if pd.isna(v) else f"{v:.2f}" for v in row.iloc[1:]]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
