"""Snakemake script of rule `sample`: posterior samples for every test image with one trained estimator."""

from lenspipe.jobs import job

with job(snakemake):  # stderr and logging to the job's log, errors as one line
    from lenspipe.sample import sample

    sample(
        estimator_path=snakemake.input.estimator,
        test=snakemake.input.test,
        samples=snakemake.output.samples,
        timing=snakemake.output.timing,
        num_samples=snakemake.params.num_samples,
        seed=snakemake.params.seed,
        estimator=snakemake.wildcards.estimator,
        threads=snakemake.threads,
    )
