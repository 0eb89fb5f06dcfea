"""Snakemake script of rule `ensemble`: one estimator (their mixture, or the best) from its members' trained ones."""

from lenspipe.jobs import job

with job(snakemake):  # stderr and logging to the job's log, errors as one line
    from lenspipe.ensemble import ensemble

    ensemble(
        members=list(snakemake.input.members),
        summaries=list(snakemake.input.summaries),
        epochs=list(snakemake.input.epochs),
        outputs=dict(snakemake.output.items()),
        settings=snakemake.params.settings,
        estimator=snakemake.wildcards.estimator,
    )
