"""Snakemake script of rule `evaluate`: metrics (CSV, JSON) and figures of one estimator from its samples."""

from lenspipe.jobs import job

with job(snakemake):  # noqa: F821 - stderr and logging to the job's log, errors as one line
    from lenspipe.metrics import EvaluationOutputs, EvaluationSettings, evaluate

    evaluate(
        snakemake.input.samples,  # noqa: F821
        snakemake.input.test,  # noqa: F821
        snakemake.input.epochs,  # noqa: F821
        EvaluationOutputs.from_named(snakemake.output),  # noqa: F821
        EvaluationSettings.from_params(
            snakemake.params.sbc_samples,  # noqa: F821
            snakemake.params.corner_images,  # noqa: F821
            snakemake.params.seed,  # noqa: F821
        ),
        estimator=snakemake.wildcards.estimator,  # noqa: F821
    )
