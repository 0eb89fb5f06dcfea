"""Snakemake script of rule `compare`: the comparison tables and figure across all estimators."""

from lenspipe.jobs import job

with job(snakemake):  # stderr and logging to the job's log, errors as one line
    from lenspipe.compare import compare

    compare(
        metrics=snakemake.input.metrics,
        training=snakemake.input.training,
        sampling=snakemake.input.sampling,
        tables=snakemake.output.tables,
        figure=snakemake.output.figure,
        estimators=snakemake.params.estimators,
        train=snakemake.input.train,
        test=snakemake.input.test,
    )
