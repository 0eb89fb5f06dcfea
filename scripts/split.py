"""Snakemake script of rule `split`: shards -> train/test stores and normalisation statistics."""

from lenspipe.jobs import job

with job(snakemake):  # stderr and logging to the job's log, errors as one line
    from lenspipe.split import split

    split(
        shards=snakemake.input.shards,
        train=snakemake.output.train,
        test=snakemake.output.test,
        normalisation=snakemake.output.normalisation,
        split=snakemake.params.split,
        seed=snakemake.params.seed,
    )
