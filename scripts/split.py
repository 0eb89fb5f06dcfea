"""Snakemake script of rule `split`: shards -> train/test stores and normalisation statistics."""

from lenspipe.jobs import job

with job(snakemake):  # noqa: F821 - stderr and logging to the job's log, errors as one line
    from lenspipe.split import SplitSettings, split_shards

    split_shards(
        snakemake.input.shards,  # noqa: F821
        snakemake.output.train,  # noqa: F821
        snakemake.output.test,  # noqa: F821
        snakemake.output.normalisation,  # noqa: F821
        SplitSettings.from_params(snakemake.params.split, snakemake.params.seed),  # noqa: F821
    )
