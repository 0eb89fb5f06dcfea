# Inference on observed images (the optional `observed` config section): every estimator of the study infers the
# same FITS cutouts into its own folder (rule infer_join joins their summaries). Patterns, input and param
# functions: rules/common.smk (they refuse a config without `observed`).


rule infer:
    input:
        estimator=ESTIMATOR_FILE,
        images=infer_images,
    output:
        folder=directory(INFER_DIR),
    log:
        log_path("infer", "{estimator}"),
    benchmark:
        bench_path("infer", "{estimator}")
    params:
        settings=infer_params,
    threads: 2
    conda:
        "../envs/lenspipe.yaml"
    script:
        "../scripts/infer.py"
