"""What the images allow at best: R^2 of each parameter predicted from the true Einstein radius alone, and (with
the physical lens light) from the true lens light and theta_E together.

With lens light that does not depend on redshift, the images carry sigma_v, z_l and z_s only through theta_E
(a deterministic function of the three), so no estimator can beat a regression of each on the true theta_E.
A k-nearest-neighbour regression fitted on the training labels and scored on the test labels gives that limit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NEIGHBOURS = 50
LIMIT_ROW = "theta_E alone (limit)"


def theta_e_limits(
    train_theta: np.ndarray, test_theta: np.ndarray, names: Sequence[str], neighbours: int = NEIGHBOURS
) -> dict[str, float | None]:
    """R^2 on the test set of a k-NN regression of each parameter on the true theta_E (None for theta_E itself).

    Empty when theta_E is not among the inferred parameters.
    """
    from sklearn.metrics import r2_score
    from sklearn.neighbors import KNeighborsRegressor

    names = list(names)
    if "theta_E" not in names:
        return {}
    col = names.index("theta_E")
    k = max(1, min(neighbours, len(train_theta)))
    model = KNeighborsRegressor(n_neighbors=k).fit(
        np.asarray(train_theta, float)[:, [col]], np.asarray(train_theta, float)
    )
    predicted = model.predict(np.asarray(test_theta, float)[:, [col]])
    return {
        n: None if n == "theta_E" else float(r2_score(np.asarray(test_theta, float)[:, i], predicted[:, i]))
        for i, n in enumerate(names)
    }


ORACLE_ROW = "lens light + theta_E (oracle)"
ORACLE_NEIGHBOURS = 25


def lens_light_columns(n_bands: int) -> dict[str, slice]:
    """Where lens_light_features puts each quantity, for `n_bands` bands: magnitudes, colours of neighbouring bands,
    log10 size, theta_E (one layout for the oracle and the benchmarks that perturb or split its features)."""
    return {
        "magnitudes": slice(0, n_bands),
        "colours": slice(n_bands, 2 * n_bands - 1),
        "log_size": slice(2 * n_bands - 1, 2 * n_bands),
        "theta_E": slice(2 * n_bands, 2 * n_bands + 1),
    }


def perturbed_features(features: np.ndarray, offsets: np.ndarray, where: Sequence[int]) -> np.ndarray:
    """A copy of the oracle's `features` (lens_light_columns' layout) with `offsets` (n, len(where)) added to the
    columns `where`, the colours then recomputed from the magnitudes: how every benchmark gives the oracle errors."""
    n_bands = (features.shape[1] - 1) // 2  # magnitudes, colours, log size, theta_E
    columns = lens_light_columns(n_bands)
    out = np.array(features, float)
    out[:, list(where)] += offsets
    mags = out[:, columns["magnitudes"]]
    out[:, columns["colours"]] = mags[:, :-1] - mags[:, 1:]
    return out


def lens_light_features(metadata, theta: np.ndarray, names: Sequence[str]) -> np.ndarray | None:  # noqa: ANN001
    """Per image: the true lens magnitudes, colours (neighbouring bands), log10 size and theta_E of the physical
    lens light (lenspipe.lenslight's `lens_light-` metadata columns), laid out as lens_light_columns says; None
    without them or without theta_E."""
    from lenspipe.lenslight import PREFIX

    names = list(names)
    bands = [
        c[len(PREFIX) + len("magnitude-") :] for c in metadata.columns if c.startswith(f"{PREFIX}magnitude-")
    ]
    if not bands or "theta_E" not in names:
        return None
    mags = np.column_stack([metadata[f"{PREFIX}magnitude-{b}"].to_numpy(float) for b in bands])
    columns = lens_light_columns(len(bands))
    features = np.empty((len(mags), columns["theta_E"].stop))
    features[:, columns["magnitudes"]] = mags
    features[:, columns["colours"]] = mags[:, :-1] - mags[:, 1:]
    features[:, columns["log_size"]] = np.log10(metadata[f"{PREFIX}R_sersic"].to_numpy(float))[:, None]
    features[:, columns["theta_E"]] = np.asarray(theta, float)[:, [names.index("theta_E")]]
    return features


def lens_light_limits(
    train_features: np.ndarray,
    test_features: np.ndarray,
    train_theta: np.ndarray,
    test_theta: np.ndarray,
    names: Sequence[str],
    neighbours: int = ORACLE_NEIGHBOURS,
) -> dict[str, float | None]:
    """R^2 on the test set of a regression of each parameter on the true lens light and theta_E (an oracle: what
    the images could give at best); None for theta_E, which is one of the features.

    The regression is a k-NN on features standardised with the training set's mean and standard deviation.
    """
    from sklearn.metrics import r2_score
    from sklearn.neighbors import KNeighborsRegressor

    train_x, test_x = np.asarray(train_features, float), np.asarray(test_features, float)
    mean, std = train_x.mean(axis=0), train_x.std(axis=0)
    std[std == 0] = 1.0
    k = max(1, min(neighbours, len(train_x)))
    model = KNeighborsRegressor(n_neighbors=k).fit((train_x - mean) / std, np.asarray(train_theta, float))
    predicted = model.predict((test_x - mean) / std)
    test_theta = np.asarray(test_theta, float)
    return {
        n: None if n == "theta_E" else float(r2_score(test_theta[:, i], predicted[:, i]))
        for i, n in enumerate(names)
    }


def magnitude_bins(
    magnitude: np.ndarray, edges: Sequence[float] | None = None
) -> tuple[list[float], list[np.ndarray]]:
    """Bin edges (default: the fifths of `magnitude`) and each bin's mask, [edges[k], edges[k+1]) with the last bin
    closed: the lens-brightness bins in which the benchmarks set an estimator's error beside the bound's."""
    magnitude = np.asarray(magnitude, float)
    edges = list(edges) if edges else [float(e) for e in np.quantile(magnitude, np.linspace(0.0, 1.0, 6))]
    last = len(edges) - 2
    masks = [
        (magnitude >= lo) & ((magnitude < hi) if k < last else (magnitude <= hi))
        for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True))
    ]
    return edges, masks
