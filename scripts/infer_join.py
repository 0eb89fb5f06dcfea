"""Snakemake script of rule `infer_join`: every estimator's summary of the observed images in one table."""

from lenspipe.jobs import job

with job(snakemake):  # noqa: F821 - stderr and logging to the job's log, errors as one line
    from lenspipe.infer import join_summaries

    join_summaries(
        folders=snakemake.input.folders,  # noqa: F821
        csv_path=snakemake.output.csv,  # noqa: F821
        md_path=snakemake.output.md,  # noqa: F821
    )
