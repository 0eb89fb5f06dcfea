"""Ensembles (flow: ensemble): the mixture's density and samples, determinism, the bundle, the config's refusals."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lenspipe import posterior
from lenspipe.config import check_config
from lenspipe.embedding import EmbeddingSettings
from lenspipe.ensemble import ensemble, ensemble_summary
from lenspipe.errors import ConfigError, DataError
from lenspipe.estimators import EstimatorSettings, reference_theta
from lenspipe.priors import PriorBox
from lenspipe.rule_params import ensemble_params, trained_names, training_params

BOX = PriorBox(("sigma_v", "e1"), (150.0, -0.4), (400.0, 0.4))
SHAPE = (3, 8, 8)
FLOWS = {
    "maf": {"flow": "maf", "num_transforms": 2, "hidden_features": 16},
    "nsf": {"flow": "nsf", "num_transforms": 2, "hidden_features": 16},
    "coupling_resnet": {"flow": "coupling_resnet", "num_blocks": 2, "hidden_features": 16},
}


def member_record(name: str, seed: int, box: PriorBox = BOX, shift: float = 0.0) -> dict:
    """An untrained member's estimator record (random weights); `shift` moves its posterior in z-space."""
    torch.manual_seed(seed)
    settings = EstimatorSettings.from_config(name, FLOWS[name])
    embedding = EmbeddingSettings((4,), 8, 4)
    theta = reference_theta(box)
    est = posterior.build_estimator(
        settings, embedding, box, SHAPE, [0.0] * 3, [1.0] * 3, theta, torch.randn(len(theta), *SHAPE)
    )
    if shift:
        with torch.no_grad():  # the flow's z-scoring of theta: its shift moves every sample
            first = est.inner.net._transform._transforms[0]
            first._shift += shift
    norm = {"bands": ["g", "r", "i"], "mean": [0.0] * 3, "std": [1.0] * 3}
    training = {"epochs": 3, "best_epoch": 2, "best_val_loss": 1.0, "stopped": False, "seed": seed}
    return posterior.estimator_record(est, settings, embedding, box.names, box, norm, SHAPE, training)


def summary(name: str, epochs: int, wall: float, best_val_loss: float = 1.0) -> dict:
    return {
        "estimator": name,
        "epochs": epochs,
        "best_epoch": epochs - 1,
        "best_val_loss": best_val_loss,
        "wall_time_s": wall,
        "fit_time_s": wall - 1,
        "cpu_time_s": 2 * wall,
        "device": "cpu",
        "train_pairs_per_s": 100.0,
        "n_train": 40,
        "n_validation": 8,
        "n_weights": 1000,
    }


def write_member(
    root: Path, name: str, record: dict, epochs: int = 3, wall: float = 10.0, best_val_loss: float = 1.0
) -> dict[str, Path]:
    folder = root / name
    folder.mkdir(parents=True)
    posterior.save(folder / "estimator.pt", record)
    (folder / "summary.json").write_text(json.dumps(summary(name, epochs, wall, best_val_loss)))
    rows = "\n".join(f"{e},{2.0 - e / 10},{2.1 - e / 10},0.5" for e in range(1, epochs + 1))
    (folder / "epochs.csv").write_text("epoch,train_loss,val_loss,seconds\n" + rows + "\n")
    return {
        "estimator": folder / "estimator.pt",
        "summary": folder / "summary.json",
        "epochs": folder / "epochs.csv",
    }


def bundle(
    root: Path,
    members: dict[str, dict],
    weights: list[float] | None = None,
    name: str = "ens",
    losses: dict[str, float] | None = None,
    combine: str | None = None,
) -> Path:
    """The ensemble stage run on these member records (best validation losses `losses`, default 1.0 each); the
    ensemble's estimator.pt."""
    files = [write_member(root, n, r, best_val_loss=(losses or {}).get(n, 1.0)) for n, r in members.items()]
    out = root / name
    settings = {
        "members": list(members),
        **({"weights": weights} if weights else {}),
        **({"combine": combine} if combine else {}),
    }
    return run_stage(files, out, settings, name)


def run_stage(files: list[dict[str, Path]], out: Path, settings: dict, name: str) -> Path:
    """The ensemble stage on the members' files (write_member's), its outputs in `out`; the estimator.pt."""
    ensemble(
        members=[f["estimator"] for f in files],
        summaries=[f["summary"] for f in files],
        epochs=[f["epochs"] for f in files],
        outputs={
            "estimator": out / "estimator.pt",
            "epochs": out / "epochs.csv",
            "summary": out / "summary.json",
            "provenance": out / "provenance.json",
        },
        settings=settings,
        estimator=name,
    )
    return out / "estimator.pt"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two members far apart (nsf shifted), bundled with weights 3:1."""
    root = tmp_path_factory.mktemp("ensemble")
    path = bundle(
        root, {"maf": member_record("maf", 0), "nsf": member_record("nsf", 1, shift=3.0)}, [3.0, 1.0]
    )
    return root, path


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *SHAPE)).astype(np.float32)


def test_log_prob_is_the_weighted_logsumexp_of_the_members(pair: tuple[Path, Path]) -> None:
    root, path = pair
    est = posterior.load(path, parameter_names=BOX.names)
    assert isinstance(est, posterior.EnsembleEstimator) and est.member_names == ("maf", "nsf")
    np.testing.assert_allclose(est.weights, [0.75, 0.25])
    x = images(3)
    theta = est.sample_images(x, 50, seed=1)
    a, b = (posterior.load(root / n / "estimator.pt").log_prob_images(x, theta) for n in ("maf", "nsf"))
    expected = np.logaddexp(np.log(0.75) + a.astype(np.float64), np.log(0.25) + b.astype(np.float64))
    np.testing.assert_allclose(est.log_prob_images(x, theta), expected, rtol=1e-5, atol=1e-5)
    assert est.log_prob_images(x, theta[:, 0]).shape == (3,)
    outside = theta.copy()
    outside[:, :, 0] = 500.0
    assert np.isneginf(est.log_prob_images(x, outside)).all()


def integral_over_box(path: Path) -> float:
    """An estimator's density in physical units for one image, integrated over BOX in its unconstrained
    coordinates (a 300 x 300 grid over +-14)."""
    from lenspipe.estimators import BoxTransform

    est = posterior.load(path)
    n, lim = 300, 14.0
    z1 = torch.linspace(-lim, lim, n, dtype=torch.float64)
    z = torch.stack(torch.meshgrid(z1, z1, indexing="ij"), -1).reshape(-1, 2)
    box = BoxTransform(BOX.low, BOX.high)
    theta = box.to_box(z).float().numpy()
    jacobian = box.log_det_inverse(z).numpy()
    log_q = est.log_prob_images(images(1), theta[None])[0].astype(np.float64)
    return float(np.exp(log_q + jacobian).sum()) * (2 * lim / (n - 1)) ** 2


def test_mixture_density_integrates_to_one(pair: tuple[Path, Path]) -> None:
    """The density in physical units, integrated over the box in its unconstrained coordinates, is 1."""
    assert integral_over_box(pair[1]) == pytest.approx(1.0, abs=0.02)


def test_samples_follow_the_mixture(pair: tuple[Path, Path]) -> None:
    """Each sample comes from its drawn member (exactly that member's draws); members in the weights' shares."""
    root, path = pair
    est = posterior.load(path)
    x = images(2)
    samples = est.sample_images(x, 4000, seed=3, offset=5)
    assert samples.shape == (2, 4000, 2) and BOX.contains(samples).all()
    for i in range(2):
        choice = est.choices(4000, 3, 5 + i)
        assert abs((choice == 0).mean() - 0.75) < 0.03
        for k, member in enumerate(est.members):
            seed = posterior.derive_seed(3, "member", member.name)
            own = member.sample_counts(x[i : i + 1], [(choice == k).sum()], seed, offset=5 + i)[0]
            np.testing.assert_allclose(samples[i, choice == k], own, rtol=1e-5, atol=1e-5)
    # the two members' posteriors lie apart: the mixture's mean is the weighted mean of theirs
    maf, nsf = (
        posterior.load(root / n / "estimator.pt").sample_images(x, 4000, seed=9) for n in ("maf", "nsf")
    )
    assert abs(maf[..., 0].mean() - nsf[..., 0].mean()) > 50
    expected = 0.75 * maf[..., 0].mean(axis=1) + 0.25 * nsf[..., 0].mean(axis=1)
    np.testing.assert_allclose(samples[..., 0].mean(axis=1), expected, atol=4.0)


@pytest.mark.parametrize("bundled", ["pair", "symmetrised"])
def test_sampling_is_deterministic_and_independent_of_batching(
    bundled: str, request: pytest.FixtureRequest
) -> None:
    """The same seed gives the same samples whatever the batching, for a mixture and a symmetrised flow."""
    _, path = request.getfixturevalue(bundled)
    est = posterior.load(path)
    x = images(5, seed=1)
    a = est.sample_images(x, 300, seed=7, batch_size=2)
    np.testing.assert_array_equal(a, posterior.load(path).sample_images(x, 300, seed=7, batch_size=2))
    np.testing.assert_allclose(a, est.sample_images(x, 300, seed=7, batch_size=5), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(
        a[2:], est.sample_images(x[2:], 300, seed=7, batch_size=3, offset=2), atol=1e-4
    )
    rows = est.sample_images(x, 300, seed=7, batch_size=5, max_rows=7)  # nor the rows per flow call
    np.testing.assert_allclose(a, rows, rtol=1e-5, atol=1e-4)
    assert not np.allclose(a, est.sample_images(x, 300, seed=8))


def test_sample_counts_start_as_sample_images(pair: tuple[Path, Path]) -> None:
    """A member's draws for given counts are its sample_images draws (same noise), so a single flow's samples are
    unchanged by the counts path."""
    root, _ = pair
    est = posterior.load(root / "maf" / "estimator.pt")
    x = images(3, seed=2)
    full = est.sample_images(x, 64, seed=4, offset=1)
    pieces = est.sample_counts(x, [64, 64, 64], seed=4, offset=1)
    np.testing.assert_allclose(np.stack(pieces), full, rtol=1e-6, atol=1e-6)
    assert [len(p) for p in est.sample_counts(x, [0, 5, 2], seed=4)] == [0, 5, 2]


# --------------------------------------------------------------------------------------------------
# symmetrise: d4 -- the mixture also over the square's 8 rotations/reflections (BOX's e1 flips under transposes).


@pytest.fixture(scope="module")
def symmetrised(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One member whose posterior sits at positive e1 (shifted in z-space), symmetrised alone."""
    root = tmp_path_factory.mktemp("symmetrised")
    files = [write_member(root, "nsf", member_record("nsf", 4, shift=1.5))]
    return root, run_stage(files, root / "nsf_d4", {"members": ["nsf"], "symmetrise": "d4"}, "nsf_d4")


def test_the_symmetrised_density_is_equivariant_and_the_member_is_not(symmetrised: tuple[Path, Path]) -> None:
    """q(g theta | g x) = q(theta | x) for every element g, to float precision; the member alone breaks it."""
    from lenspipe.augment import N_ELEMENTS, parameter_signs, transform_array

    root, path = symmetrised
    est, member = posterior.load(path), posterior.load(root / "nsf" / "estimator.pt")
    assert isinstance(est, posterior.EnsembleEstimator) and len(est.components) == N_ELEMENTS
    x = images(3, seed=3)
    theta = posterior.load(path).sample_images(x, 40, seed=2)
    reference, plain = est.log_prob_images(x, theta), member.log_prob_images(x, theta)
    worst = 0.0
    for g in range(1, N_ELEMENTS):
        signs = np.asarray(parameter_signs(BOX.names, g), dtype=np.float32)
        moved = est.log_prob_images(transform_array(x, g), theta * signs)
        np.testing.assert_allclose(moved, reference, rtol=1e-4, atol=1e-4)
        worst = max(
            worst, float(np.abs(member.log_prob_images(transform_array(x, g), theta * signs) - plain).max())
        )
    assert worst > 0.1  # the test can fail: an unsymmetrised flow is not equivariant


def test_the_symmetrised_density_integrates_to_one(symmetrised: tuple[Path, Path]) -> None:
    assert integral_over_box(symmetrised[1]) == pytest.approx(1.0, abs=0.02)


def test_symmetrised_samples_come_from_their_element(symmetrised: tuple[Path, Path]) -> None:
    """Each sample is its element's draw of the member on the transformed image, mapped back (e1's sign flipped
    under transposes); the 8 elements in equal shares; e1's samples symmetric where the member's are not."""
    from lenspipe.augment import TRANSPOSE, transform_array

    root, path = symmetrised
    est, member = posterior.load(path), posterior.load(root / "nsf" / "estimator.pt")
    x = images(2, seed=4)
    samples = est.sample_images(x, 4000, seed=3, offset=5)
    assert samples.shape == (2, 4000, 2) and BOX.contains(samples).all()
    for i in range(2):
        choice = est.choices(4000, 3, 5 + i)
        assert np.abs(np.bincount(choice, minlength=8) / 4000 - 1 / 8).max() < 0.03
        for c, (_, g) in enumerate(est.components):
            seed = est.component_seed(3, c)
            own = member.sample_counts(transform_array(x[i : i + 1], g), [(choice == c).sum()], seed, 5 + i)[
                0
            ]
            sign = -1.0 if g & TRANSPOSE else 1.0
            np.testing.assert_allclose(samples[i, choice == c, 1], sign * own[:, 1], rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(samples[i, choice == c, 0], own[:, 0], rtol=1e-5)
    plain = member.sample_images(x, 4000, seed=3)
    assert np.abs(plain[..., 1].mean(axis=1)).min() > 0.1  # the member leans to one sign of e1
    np.testing.assert_allclose(samples[..., 1].mean(axis=1), 0.0, atol=0.03)  # its symmetrisation does not


def test_a_plain_ensemble_mixes_parameters_without_symmetry_rules(tmp_path: Path) -> None:
    """Only symmetrisation needs each parameter's D4 rule: a plain mixture of flows for `gamma` loads and samples."""
    box = PriorBox(("sigma_v", "gamma"), (150.0, 1.5), (400.0, 2.5))
    records = {"maf": member_record("maf", 0, box=box), "nsf": member_record("nsf", 1, box=box)}
    est = posterior.load(bundle(tmp_path, records))
    assert est.components == [(0, 0), (1, 0)]
    assert box.contains(est.sample_images(images(2), 50, seed=1)).all()


def test_a_symmetrised_mixture_records_it(symmetrised: tuple[Path, Path]) -> None:
    root, path = symmetrised
    record = torch.load(path, weights_only=True)
    assert record["symmetrise"] == "d4" and record["estimator_settings"]["symmetrise"] == "d4"
    assert json.loads((root / "nsf_d4" / "summary.json").read_text())["symmetrise"] == "d4"
    plain = run_stage(
        [
            {
                k: root / "nsf" / f"{k}{ext}"
                for k, ext in (("estimator", ".pt"), ("summary", ".json"), ("epochs", ".csv"))
            }
        ],
        root / "plain",
        {"members": ["nsf"]},
        "plain",
    )
    assert "symmetrise" not in torch.load(plain, weights_only=True)
    assert posterior.load(plain).components == [(0, 0)]


def test_bundle_outputs(pair: tuple[Path, Path]) -> None:
    """summary.json: training cost as the members' sums, their summaries; epochs.csv: each member's rows."""
    import pandas as pd

    root, path = pair
    summary = json.loads((root / "ens" / "summary.json").read_text())
    assert (
        summary["flow"] == "ensemble"
        and summary["members"] == ["maf", "nsf"]
        and summary["weights"] == [0.75, 0.25]
    )
    assert summary["epochs"] == 6 and summary["wall_time_s"] == 20.0 and summary["best_epoch"] is None
    assert summary["cpu_time_s"] == 40.0
    assert set(summary["member_summaries"]) == {"maf", "nsf"} and summary["train_pairs_per_s"] == 100.0
    epochs = pd.read_csv(root / "ens" / "epochs.csv")
    assert list(epochs.columns) == ["member", "epoch", "train_loss", "val_loss", "seconds"]
    assert list(epochs["member"]) == ["maf"] * 3 + ["nsf"] * 3
    record = json.loads((root / "ens" / "provenance.json").read_text())
    assert record["rule"] == "ensemble" and set(record["config"]["members"]) == {"maf", "nsf"}
    from lenspipe.plots import loss_curve

    loss_curve(root / "ens" / "epochs.csv", "ens", [root / "loss.png"])
    assert (root / "loss.png").stat().st_size > 1000


def test_members_of_another_study_or_ensembles_are_refused(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    other = PriorBox(("sigma_v", "e1"), (150.0, -0.5), (400.0, 0.5))
    with pytest.raises(DataError, match="prior_box differs from member maf"):
        bundle(tmp_path / "a", {"maf": member_record("maf", 0), "nsf": member_record("nsf", 1, box=other)})
    _, path = pair
    nested = torch.load(path, weights_only=True)
    with pytest.raises(DataError, match="cannot be a member of an ensemble"):
        bundle(tmp_path / "b", {"maf": member_record("maf", 0), "inner": nested})


def test_combine_best_keeps_the_member_of_lowest_validation_loss(tmp_path: Path) -> None:
    """combine: best: the selected member's flow, whole, under the ensemble's name (its samples are that flow's,
    with the ensemble's seed stream); the summary says what was selected, and the cost counts every member."""
    import pandas as pd

    records = {"maf": member_record("maf", 0), "maf_b": member_record("maf", 2, shift=3.0)}
    losses = {"maf": -7.0, "maf_b": -13.4}
    path = bundle(tmp_path, records, losses=losses, combine="best", name="best")
    est = posterior.load(path, parameter_names=BOX.names)
    assert isinstance(est, posterior.TrainedEstimator) and est.name == "best"
    assert est.record["selection"] == {
        "combine": "best",
        "members": ["maf", "maf_b"],
        "selected": "maf_b",
        "best_val_loss": losses,
    }
    x = images(3)
    own = posterior.load(tmp_path / "maf_b" / "estimator.pt")
    theta = own.sample_images(x, 40, seed=1)
    np.testing.assert_allclose(est.log_prob_images(x, theta), own.log_prob_images(x, theta), rtol=1e-6)
    np.testing.assert_array_equal(est.sample_images(x, 40, seed=1), theta)
    summary = json.loads((tmp_path / "best" / "summary.json").read_text())
    assert summary["selected"] == "maf_b" and summary["combine"] == "best"
    assert (
        summary["best_val_loss"] == -13.4 and summary["best_epoch"] == 2 and summary["weights"] == [0.0, 1.0]
    )
    assert summary["epochs"] == 6 and summary["cpu_time_s"] == 40.0  # both restarts were trained
    assert list(pd.read_csv(tmp_path / "best" / "epochs.csv")["member"]) == ["maf"] * 3 + ["maf_b"] * 3
    # the other order of losses selects the other member; equal losses: the first listed
    again = bundle(
        tmp_path / "b", records, losses={"maf": -13.5, "maf_b": -13.4}, combine="best", name="best"
    )
    assert posterior.load(again).record["selection"]["selected"] == "maf"
    tie = bundle(tmp_path / "c", records, combine="best", name="best")
    assert posterior.load(tie).record["selection"]["selected"] == "maf"


def test_combine_best_refuses_losses_that_do_not_compare(tmp_path: Path) -> None:
    records = {"maf": member_record("maf", 0), "nsf": member_record("nsf", 1)}
    with pytest.raises(DataError, match="member nsf has no finite best_val_loss"):
        bundle(tmp_path / "a", records, losses={"nsf": float("nan")}, combine="best")
    files = [write_member(tmp_path / "b", n, r) for n, r in records.items()]
    data = json.loads(files[1]["summary"].read_text())
    files[1]["summary"].write_text(json.dumps({**data, "n_validation": 9}))
    with pytest.raises(DataError, match="validated on 9 pairs, maf on 8"):
        run_stage(files, tmp_path / "out", {"members": list(records), "combine": "best"}, "ens")
    other = PriorBox(("sigma_v", "e1"), (150.0, -0.5), (400.0, 0.5))
    with pytest.raises(DataError, match="prior_box differs from member maf"):
        bundle(tmp_path / "c", {**records, "nsf": member_record("nsf", 1, box=other)}, combine="best")


def test_infer_reads_an_ensemble(tmp_path: Path) -> None:
    """lenspipe infer with an ensemble: its samples, and an OOD score that flags an image any member flags (each
    member's score over its own threshold, the largest of them, threshold 1)."""
    from lenspipe.infer import InferSettings, infer_images
    from lenspipe.ood import OODReference, embeddings

    from .test_infer import write_per_band

    records = {"maf": member_record("maf", 0), "nsf": member_record("nsf", 1)}
    pixels = images(3, seed=5)
    references = {}
    for k, (name, record) in enumerate(records.items()):
        net = posterior.from_record(record)
        # each member its own reference: the second one's from far fewer images (a tighter threshold)
        references[name] = OODReference.fit(
            embeddings(net, images(40, seed=6 + k)), embeddings(net, images(20 - 15 * k, seed=8 + k))
        )
        record["observing"] = {
            "survey": "delve",
            "bands": ["g", "r", "i"],
            "pixel_scale": 0.263,
            "num_pix": 8,
        }
        record["ood"] = references[name].as_dict()
    path = bundle(tmp_path, records)
    specs = [write_per_band(tmp_path, f"lens{i}", pixels[i], zero_point=26.6, exptime=90.0) for i in range(3)]
    table = infer_images(
        path, specs, tmp_path / "out", settings=InferSettings(num_samples=50, seed=2, corner=False)
    )
    assert set(table["estimator"]) == {"ens"} and len(table) == 3 * 2
    est = posterior.load(path)
    observed = est.check_images(pixels)
    ratios = [
        references[m.name].score(embeddings(m.estimator, observed)) / references[m.name].threshold
        for m in est.members
    ]
    assert not np.allclose(ratios[0], ratios[1])
    per_image = table.groupby("image", sort=False).first()
    np.testing.assert_allclose(per_image["ood_score"], np.max(ratios, axis=0), rtol=1e-3)
    assert (per_image["ood_threshold"] == 1.0).all()
    assert list(per_image["ood_flag"]) == list(np.max(ratios, axis=0) > 1.0)


# --------------------------------------------------------------------------------------------------
# The config: an ensemble entry, its refusals (one line naming the key), and the rules' params.


def with_ensemble(config: dict, **entry: object) -> dict:
    config["estimators"]["ens"] = {"flow": "ensemble", **entry}
    return config


def test_an_ensemble_passes_and_leaves_the_training_params_alone(tiny_config: dict) -> None:
    before = {n: training_params(tiny_config, n) for n in tiny_config["estimators"]}
    check_config(with_ensemble(tiny_config, members=["maf", "nsf"], weights=[2, 1]))
    assert trained_names(tiny_config) == list(before)
    assert {n: training_params(tiny_config, n) for n in before} == before
    assert ensemble_params(tiny_config, "ens") == {"members": ["maf", "nsf"], "weights": [2, 1]}
    check_config(with_ensemble(tiny_config, members=["maf", "nsf"], combine="best"))
    assert ensemble_params(tiny_config, "ens") == {"members": ["maf", "nsf"], "combine": "best"}
    with pytest.raises(ConfigError, match="estimators.maf"):
        ensemble_params(tiny_config, "maf")
    check_config(with_ensemble(tiny_config, members=["nsf"], symmetrise="d4"))
    assert ensemble_params(tiny_config, "ens") == {"members": ["nsf"], "symmetrise": "d4"}
    check_config(with_ensemble(tiny_config, members=["maf", "nsf"], symmetrise="none"))
    assert ensemble_params(tiny_config, "ens") == {"members": ["maf", "nsf"]}  # none: as if absent, no re-run


BAD = [
    ({"members": ["maf"]}, "estimators.ens.members: expected a list of at least 2 estimators"),
    ({}, "estimators.ens.members: expected a list of at least 2 estimators"),
    ({"members": ["maf", "realnvp"]}, "estimators.ens.members: expected estimators of the config (maf, nsf"),
    ({"members": ["maf", "maf"]}, "estimators.ens.members: expected each member once"),
    ({"members": ["maf", "ens"]}, "an ensemble cannot be a member) (got 'ens')"),
    ({"members": ["maf", "nsf"], "weights": [1]}, "estimators.ens.weights: expected 2 positive numbers"),
    (
        {"members": ["maf", "nsf"], "weights": [1, 0]},
        "estimators.ens.weights.1: expected a value > 0 (got 0)",
    ),
    (
        {"members": ["maf", "nsf"], "num_transforms": 3},
        "estimators.ens.num_transforms: expected a setting of",
    ),
    ({"members": "maf"}, "estimators.ens.members: expected a list"),
    ({"members": ["maf", "nsf"], "combine": "median"}, "estimators.ens.combine"),
    (
        {"members": ["maf", "nsf"], "combine": "best", "weights": [1, 2]},
        "estimators.ens.weights: expected no weights with combine: best",
    ),
    (
        {"members": ["nsf"], "symmetrise": "c4"},
        "estimators.ens.symmetrise: expected one of none, d4 (got 'c4')",
    ),
    (
        {"members": ["nsf"], "symmetrise": "none"},
        "expected a list of at least 2 estimators of the config (or 1",
    ),
    ({"members": [], "symmetrise": "d4"}, "estimators.ens.members: expected a list of at least 1 estimator"),
    (
        {"members": ["maf", "nsf"], "combine": "best", "symmetrise": "d4"},
        "estimators.ens.symmetrise: expected none with combine: best",
    ),
]


ASYMMETRIC = [
    (("priors", "e1"), {"min": -0.4, "max": 0.3}, "priors.e1: expected a range symmetric about 0 with"),
    (
        ("simulation", "source", "light", "center_y"),
        {"min": -0.2, "max": 0.2},
        "simulation.source.light.center_y: expected the same value or range as center_x with",
    ),
]


@pytest.mark.parametrize(("where", "value", "message"), ASYMMETRIC, ids=["e1 prior", "source position"])
def test_symmetrise_is_refused_where_the_simulation_is_not_symmetric(
    tiny_config: dict, where: tuple[str, ...], value: object, message: str
) -> None:
    """The symmetrised posterior is exact only for a D4-symmetric simulation (lenspipe.augment.check_config): the
    refusal names the asymmetric key and the ensemble setting that needs the symmetry."""
    target = tiny_config
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value
    check_config(copy.deepcopy(tiny_config))  # fine without symmetrise
    with pytest.raises(ConfigError) as info:
        check_config(with_ensemble(tiny_config, members=["nsf"], symmetrise="d4"))
    assert message in str(info.value) and "estimators.ens.symmetrise: d4" in str(info.value)


@pytest.mark.parametrize(("entry", "message"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_ensembles_name_their_key(tiny_config: dict, entry: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_config(with_ensemble(tiny_config, **entry))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_an_ensemble_of_an_ensemble_is_refused(tiny_config: dict) -> None:
    tiny_config["estimators"]["inner"] = {"flow": "ensemble", "members": ["maf", "nsf"]}
    with pytest.raises(ConfigError, match="an ensemble cannot be a member"):
        check_config(with_ensemble(tiny_config, members=["inner", "nsf"]))


# --------------------------------------------------------------------------------------------------
# The workflow: the tiny study plus an ensemble of two of its estimators.


@pytest.mark.slow
def test_an_ensemble_is_sampled_evaluated_and_compared(
    finished_run: tuple[Path, Path], tmp_path: Path
) -> None:
    """Added to a finished study, an ensemble bundles the trained members (nothing retrained), then is sampled,
    evaluated and compared like any estimator; a member's new settings retrain it and re-bundle the ensemble."""
    import shutil

    import pandas as pd
    import yaml

    from lenspipe.sample import open_samples

    from .conftest import dry_run_jobs, snakemake, write_config

    work, cfg = finished_run
    other = tmp_path / "work"
    shutil.copytree(
        work, other, symlinks=True, ignore=shutil.ignore_patterns("report.html", "locks", "incomplete")
    )
    config = yaml.safe_load(cfg.read_text())
    config["estimators"]["ensemble"] = {"flow": "ensemble", "members": ["maf", "nsf"]}
    config["estimators"]["best"] = {"flow": "ensemble", "members": ["maf", "nsf"], "combine": "best"}
    config["estimators"]["nsf_d4"] = {"flow": "ensemble", "members": ["nsf"], "symmetrise": "d4"}
    path = write_config(other / "config" / "ensemble.yaml", config)
    jobs = dry_run_jobs(other, path)
    both = ["estimator=best", "estimator=ensemble", "estimator=nsf_d4"]
    assert jobs == {"ensemble": both, "sample": both, "evaluate": both, "compare": [""]}, jobs
    snakemake(["--cores", "2", "--configfile", str(path)], cwd=other)
    out = other / "results" / "test"
    est = posterior.load(out / "train/ensemble/estimator.pt", parameter_names=config["parameters"])
    assert isinstance(est, posterior.EnsembleEstimator) and est.member_names == ("maf", "nsf")
    assert open_samples(out / "sample/ensemble/samples.zarr").samples.shape == (12, 200, 6)
    sym = posterior.load(out / "train/nsf_d4/estimator.pt")
    assert (
        isinstance(sym, posterior.EnsembleEstimator) and sym.symmetrise == "d4" and len(sym.components) == 8
    )
    assert open_samples(out / "sample/nsf_d4/samples.zarr").samples.shape == (12, 200, 6)
    summary = json.loads((out / "train/ensemble/summary.json").read_text())
    members = [json.loads((out / f"train/{m}/summary.json").read_text()) for m in ("maf", "nsf")]
    assert summary["epochs"] == 4 and summary["wall_time_s"] == pytest.approx(
        sum(m["wall_time_s"] for m in members)
    )
    assert summary["cpu_time_s"] == pytest.approx(sum(m["cpu_time_s"] for m in members))
    assert (out / "evaluate/ensemble/figures/loss.png").stat().st_size > 1000
    for table in ("r2", "calibration", "cost"):
        frame = pd.read_csv(out / f"compare/{table}.csv")
        assert {"ensemble", "best", "nsf_d4"} <= set(frame["estimator"]), table
    cost = pd.read_csv(out / "compare/cost.csv").set_index("estimator")
    assert cost.loc["ensemble", "epochs"] == 4 and np.isnan(cost.loc["ensemble", "best_epoch"])
    # combine: best: the member of lowest validation loss, sampled as that single flow
    chosen = min(("maf", "nsf"), key=lambda m: members[("maf", "nsf").index(m)]["best_val_loss"])
    best = posterior.load(out / "train/best/estimator.pt")
    assert isinstance(best, posterior.TrainedEstimator) and best.record["selection"]["selected"] == chosen
    assert best.settings["flow"] == chosen and cost.loc["best", "epochs"] == 4
    assert cost.loc["best", "best_val_loss"] == pytest.approx(
        min(m["best_val_loss"] for m in members), abs=1e-3
    )
    # a member's new settings: that member retrains, the ensemble follows (input dependency); nsf stays
    config["estimators"]["maf"]["hidden_features"] = 64
    jobs = dry_run_jobs(other, write_config(path, config))
    with_maf = ["estimator=best", "estimator=ensemble"]  # nsf_d4 has no maf: it stays
    assert jobs["train"] == ["estimator=maf"] and jobs["ensemble"] == with_maf
    assert jobs["sample"] == [*with_maf, "estimator=maf"]


def test_ensemble_cpu_time_is_unknown_when_a_member_did_not_record_it() -> None:
    parts = {"maf": summary("maf", 3, 10.0), "nsf": summary("nsf", 3, 10.0)}
    assert ensemble_summary("ens", ["maf", "nsf"], [0.5, 0.5], parts)["cpu_time_s"] == 40.0
    del parts["nsf"]["cpu_time_s"]  # a summary written before training recorded CPU time
    assert ensemble_summary("ens", ["maf", "nsf"], [0.5, 0.5], parts)["cpu_time_s"] is None
