# Ensembles: an `estimators:` entry with `flow: ensemble` bundles other entries' trained estimators into one
# mixture estimator (lenspipe.ensemble), written where a training job writes; nothing is trained. Its {estimator}
# values are the config's ensembles, rule train's the others (wildcard constraints from rules/common.smk).


rule ensemble:
    input:
        unpack(ensemble_members),
    output:
        estimator=ESTIMATOR_FILE,
        epochs=EPOCHS,
        summary=SUMMARY,
        provenance=TRAIN_PROVENANCE,
    log:
        log_path("ensemble", "{estimator}"),
    benchmark:
        bench_path("ensemble", "{estimator}")
    wildcard_constraints:
        estimator=ensemble_estimators(),
    params:
        settings=ensemble_params,
    threads: 1
    priority: 10
    conda:
        "../envs/lenspipe.yaml"
    script:
        "../scripts/ensemble.py"
