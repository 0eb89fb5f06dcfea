# Sampling: posterior samples of every test image with one trained estimator.
# It outranks training (priority), so an estimator whose training has finished is sampled and evaluated
# before the next training starts where cores are scarce: each estimator's results come as early as they can.


rule sample:
    input:
        estimator=ESTIMATOR_FILE,
        test=TEST_STORE,
    output:
        samples=directory(SAMPLES),
        timing=SAMPLE_TIMING,
        provenance=SAMPLE_PROVENANCE,
    log:
        log_path("sample", "{estimator}"),
    benchmark:
        bench_path("sample", "{estimator}")
    params:
        num_samples=config["evaluation"]["num_samples"],
        seed=config["seed"],
    threads: 4
    priority: 10
    conda:
        "../envs/lenspipe.yaml"
    script:
        "../scripts/sample.py"
