"""Snakemake script of rule `infer`: posteriors for the config's observed images with one trained estimator."""

from lenspipe.jobs import job

with job(snakemake):  # noqa: F821 - stderr and logging to the job's log, errors as one line
    from lenspipe.infer import infer_from_params

    infer_from_params(
        estimator=snakemake.input.estimator,  # noqa: F821
        out=snakemake.output.folder,  # noqa: F821
        params=snakemake.params.settings,  # noqa: F821
        threads=snakemake.threads,  # noqa: F821
    )
