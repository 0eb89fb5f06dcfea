"""Snakemake script of rule `compare`: the comparison tables and figure across all estimators."""

from lenspipe.jobs import job

with job(snakemake):  # noqa: F821 - stderr and logging to the job's log, errors as one line
    from lenspipe.compare import compare

    compare(
        snakemake.params.estimators,  # noqa: F821
        snakemake.input.metrics,  # noqa: F821
        snakemake.input.training,  # noqa: F821
        snakemake.input.sampling,  # noqa: F821
        snakemake.output.tables,  # noqa: F821
        snakemake.output.figure,  # noqa: F821
        train_store=snakemake.input.train,  # noqa: F821
        test_store=snakemake.input.test,  # noqa: F821
    )
