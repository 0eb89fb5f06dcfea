"""Snakemake script of rule `sample`: posterior samples for every test image with one trained estimator."""

from lenspipe.jobs import job

with job(snakemake):  # noqa: F821 - stderr and logging to the job's log, errors as one line
    from lenspipe.sample import SampleSettings, sample_test_set

    sample_test_set(
        snakemake.input.estimator,  # noqa: F821
        snakemake.input.test,  # noqa: F821
        snakemake.output.samples,  # noqa: F821
        snakemake.output.timing,  # noqa: F821
        SampleSettings.from_params(
            snakemake.params.num_samples,  # noqa: F821
            snakemake.params.seed,  # noqa: F821
            snakemake.wildcards.estimator,  # noqa: F821
            threads=snakemake.threads,  # noqa: F821
        ),
        estimator=snakemake.wildcards.estimator,  # noqa: F821
    )
