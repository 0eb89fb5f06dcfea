# Evaluation per estimator: posterior samples for every test image, then metrics and figures from them.
# Both rules outrank training (priority), so an estimator whose training has finished is sampled and evaluated
# before the next training starts where cores are scarce: each estimator's results come as early as they can.


include: "evaluate_paths.smk"


rule sample:
    input:
        estimator=ESTIMATOR_FILE,
        test=TEST_STORE,
    output:
        samples=directory(SAMPLES),
        timing=SAMPLE_TIMING,
        provenance=SAMPLE_PROVENANCE,
    log:
        LOG.format(rule="sample", name="{estimator}"),
    benchmark:
        BENCH.format(rule="sample", name="{estimator}")
    params:
        num_samples=config["evaluation"]["num_samples"],
        seed=config["seed"],
    threads: 4
    priority: 10
    conda:
        "../envs/lenspipe.yaml"
    script:
        "../scripts/sample.py"


rule evaluate:
    input:
        samples=SAMPLES,
        test=TEST_STORE,
        epochs=EPOCHS,
    output:
        csv=metrics_table(),
        json=METRICS_JSON,
        provenance=EVALUATE_PROVENANCE,
        **evaluation_figures(),
    log:
        LOG.format(rule="evaluate", name="{estimator}"),
    benchmark:
        BENCH.format(rule="evaluate", name="{estimator}")
    params:
        sbc_samples=config["evaluation"]["sbc_samples"],
        corner_images=config["evaluation"]["corner_images"],
        seed=config["seed"],
    threads: 1
    priority: 10
    conda:
        "../envs/lenspipe.yaml"
    script:
        "../scripts/evaluate.py"
