"""Snakemake script of rule `simulate`: one shard of lens images -> its Zarr store and its deeplenstronomy YAML."""

from lenspipe.jobs import job

with job(snakemake):  # stderr and logging to the job's log, errors as one line
    from lenspipe.simulate import simulate

    simulate(
        params=snakemake.params.settings,
        store=snakemake.output.store,
        yaml_path=snakemake.output.yaml,
    )
