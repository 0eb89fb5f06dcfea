"""Snakemake script of rule `evaluate`: metrics (CSV, JSON) and figures of one estimator from its samples."""

from lenspipe.jobs import job

with job(snakemake):  # stderr and logging to the job's log, errors as one line
    from lenspipe.evaluate import evaluate

    evaluate(
        samples=snakemake.input.samples,
        test=snakemake.input.test,
        epochs=snakemake.input.epochs,
        outputs=dict(snakemake.output.items()),
        sbc_samples=snakemake.params.sbc_samples,
        corner_images=snakemake.params.corner_images,
        seed=snakemake.params.seed,
        estimator=snakemake.wildcards.estimator,
    )
