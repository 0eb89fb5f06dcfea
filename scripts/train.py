"""Snakemake script of rule `train`: one estimator from the training store and normalisation."""

from lenspipe.jobs import job

with job(snakemake):  # noqa: F821 - stderr and logging to the job's log, errors as one line
    from lenspipe.train import ExecutionSettings, TrainJob, TrainOutputs, train

    train(
        TrainJob.from_params(snakemake.params.settings, snakemake.wildcards.estimator),  # noqa: F821
        snakemake.input.store,  # noqa: F821
        snakemake.input.normalisation,  # noqa: F821
        TrainOutputs.from_mapping(dict(snakemake.output.items())),  # noqa: F821
        ExecutionSettings.from_config(snakemake.params.execution, snakemake.threads),  # noqa: F821
    )
