# Comparison across the config's estimators: the paper's tables and one figure (a new estimator adds a row).
# Patterns and output functions: rules/common.smk.


rule compare:
    input:
        metrics=expand(METRICS_JSON, estimator=estimator_names()),
        training=expand(SUMMARY, estimator=estimator_names()),
        sampling=expand(SAMPLE_TIMING, estimator=estimator_names()),
        train=TRAIN_STORE,
        test=TEST_STORE,
    output:
        tables=comparison_tables(),
        figure=comparison_figure(),
        provenance=COMPARE_PROVENANCE,
    log:
        log_path("compare"),
    benchmark:
        bench_path("compare")
    params:
        estimators=estimator_names(),
    threads: 1
    conda:
        "../envs/lenspipe.yaml"
    script:
        "../scripts/compare.py"
