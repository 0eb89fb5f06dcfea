"""Snakemake script of rule `train`: one estimator from the training store and normalisation."""

from lenspipe.jobs import job

with job(snakemake):  # stderr and logging to the job's log, errors as one line
    from lenspipe.train import train

    train(
        store=snakemake.input.store,
        normalisation=snakemake.input.normalisation,
        outputs=dict(snakemake.output.items()),
        settings=snakemake.params.settings,
        execution=snakemake.params.execution,
        estimator=snakemake.wildcards.estimator,
        threads=snakemake.threads,
    )
