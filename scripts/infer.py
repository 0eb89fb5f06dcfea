"""Snakemake script of rule `infer`: posteriors for the config's observed images with one trained estimator."""

from lenspipe.jobs import job

with job(snakemake):  # stderr and logging to the job's log, errors as one line
    from lenspipe.infer import infer

    infer(
        estimator=snakemake.input.estimator,
        out=snakemake.output.folder,
        settings=snakemake.params.settings,
        threads=snakemake.threads,
    )
