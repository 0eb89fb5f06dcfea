# Training: one job per estimator of the config (sbi NPE, CNN embedding, a flow per estimator).
# A killed or timed-out job re-run continues from its checkpoint (train/<estimator>/checkpoint.pt).


rule train:
    input:
        store=TRAIN_STORE,
        normalisation=NORMALISATION,
    output:
        estimator=ESTIMATOR_FILE,
        epochs=EPOCHS,
        summary=SUMMARY,
        provenance=TRAIN_PROVENANCE,
    log:
        log_path("train", "{estimator}"),
    benchmark:
        bench_path("train", "{estimator}")
    wildcard_constraints:
        # ensembles are bundled by rule ensemble, not trained
        estimator=trained_estimators(),
    params:
        # The config slice the estimator depends on, and where it runs (device, gpu_fallback).
        settings=train_params,
        execution=execution_params(),
    threads: train_threads()
    resources:
        mem_mb=by_attempt(train_mem_mb()),
        runtime=by_attempt(720),
    conda:
        "../envs/lenspipe.yaml"
    script:
        "../scripts/train.py"
