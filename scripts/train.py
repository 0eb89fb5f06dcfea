"""Snakemake script of rule `train`: one estimator from the training store and normalisation."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821, SIM115
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

from lenspipe.train import ExecutionSettings, TrainJob, TrainOutputs, train  # noqa: E402

train(
    TrainJob.from_params(snakemake.params.settings, snakemake.wildcards.estimator),  # noqa: F821
    snakemake.input.store,  # noqa: F821
    snakemake.input.normalisation,  # noqa: F821
    TrainOutputs.from_mapping(dict(snakemake.output.items())),  # noqa: F821
    ExecutionSettings.from_config(snakemake.params.execution, snakemake.threads),  # noqa: F821
)
