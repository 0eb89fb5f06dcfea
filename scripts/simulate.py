"""Snakemake script of rule `simulate`: one shard of lens images -> its Zarr store and its deeplenstronomy YAML."""

from lenspipe.jobs import job

with job(snakemake):  # noqa: F821 - stderr and logging to the job's log, errors as one line
    from lenspipe.simulate import run_shard

    run_shard(snakemake.params.settings, store=snakemake.output.store, yaml_path=snakemake.output.yaml)  # noqa: F821
