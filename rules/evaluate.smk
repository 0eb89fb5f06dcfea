# Evaluation per estimator: metrics and figures from its posterior samples (outranks training, as sample does).


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
        log_path("evaluate", "{estimator}"),
    benchmark:
        bench_path("evaluate", "{estimator}")
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
