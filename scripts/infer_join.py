"""Snakemake script of rule `infer_join`: every estimator's summary of the observed images in one table."""

from lenspipe.jobs import job

with job(snakemake):  # stderr and logging to the job's log, errors as one line
    from lenspipe.infer_join import infer_join

    infer_join(
        folders=snakemake.input.folders,
        csv=snakemake.output.csv,
        md=snakemake.output.md,
    )
