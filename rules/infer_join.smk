# Every estimator's summary of the observed images (rule infer's folders) joined into one table, CSV and Markdown.
# Patterns and input functions: rules/common.smk.


rule infer_join:
    input:
        folders=infer_folders,
    output:
        csv=INFER_SUMMARY_CSV,
        md=INFER_SUMMARY_MD,
        provenance=INFER_PROVENANCE,
    log:
        log_path("infer_join"),
    benchmark:
        bench_path("infer_join")
    params:
        estimators=estimator_names(),
    conda:
        "../envs/lenspipe.yaml"
    script:
        "../scripts/infer_join.py"
