# Training: one job per estimator of the config (sbi NPE, CNN embedding, a flow per estimator).
# A killed or timed-out job re-run continues from its checkpoint (train/<estimator>/checkpoint.pt).
# Its helpers live in lenspipe.train_config (light: no torch at parse time); no functions here (snakemake --lint).
from functools import partial

from lenspipe.train_config import execution_params, train_mem_mb, train_params

# Output path patterns, written once (the evaluation stage reads ESTIMATOR_FILE, EPOCHS, SUMMARY).
ESTIMATOR_FILE = f"{OUT}/train/{{estimator}}/estimator.pt"
EPOCHS = f"{OUT}/train/{{estimator}}/epochs.csv"
SUMMARY = f"{OUT}/train/{{estimator}}/summary.json"
LOSS_PDF = f"{OUT}/train/{{estimator}}/loss.pdf"
LOSS_PNG = f"{OUT}/train/{{estimator}}/loss.png"
TRAIN_PROVENANCE = f"{OUT}/train/{{estimator}}/provenance.json"
TRAINING_FILES = [ESTIMATOR_FILE, EPOCHS, SUMMARY, LOSS_PDF, LOSS_PNG, TRAIN_PROVENANCE]

# Every estimator's training outputs (common.smk's get_final_output calls it).
final_training_outputs = partial(expand, TRAINING_FILES, estimator=estimator_names())


rule train:
    input:
        store=TRAIN_STORE,
        normalisation=NORMALISATION,
    output:
        estimator=ESTIMATOR_FILE,
        epochs=EPOCHS,
        summary=SUMMARY,
        loss_pdf=LOSS_PDF,
        loss_png=LOSS_PNG,
        provenance=TRAIN_PROVENANCE,
    log:
        LOG.format(rule="train", name="{estimator}"),
    benchmark:
        BENCH.format(rule="train", name="{estimator}")
    params:
        # The config slice the estimator depends on, and where it runs (device, gpu_fallback).
        settings=train_params(config),
        execution=execution_params(config),
    threads: config["training"].get("threads", 1)
    resources:
        mem_mb=by_attempt(train_mem_mb(config)),
        runtime=by_attempt(720),
    conda:
        "../envs/lenspipe.yaml"
    script:
        "../scripts/train.py"
