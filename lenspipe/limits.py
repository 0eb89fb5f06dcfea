"""What the images allow at best: R^2 of each parameter predicted from the true Einstein radius alone.

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
