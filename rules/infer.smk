# Inference on observed images (the optional `observed` config section): every estimator of the study infers the
# same FITS cutouts, then one table joins their summaries. Helpers live in lenspipe.infer_config (no torch at parse
# time); no functions here (snakemake --lint).
from functools import partial

from lenspipe.infer_config import has_observed, infer_params, observed_files

# Output path patterns, written once.
INFER_DIR = f"{OUT}/infer/{{estimator}}"
INFER_SUMMARY_CSV = f"{OUT}/infer/summary.csv"
INFER_SUMMARY_MD = f"{OUT}/infer/summary.md"
INFER_PROVENANCE = f"{OUT}/infer/provenance.json"

# The joined tables when the config has observed images, else nothing (common.smk's get_final_output calls it).
final_infer_outputs = partial(list, [INFER_SUMMARY_CSV, INFER_SUMMARY_MD] if has_observed(config) else [])


if has_observed(config):

    rule infer:
        input:
            estimator=ESTIMATOR_FILE,
            images=observed_files(config),
        output:
            folder=directory(INFER_DIR),
        log:
            LOG.format(rule="infer", name="{estimator}"),
        benchmark:
            BENCH.format(rule="infer", name="{estimator}")
        params:
            settings=infer_params(config),
        threads: 2
        conda:
            "../envs/lenspipe.yaml"
        script:
            "../scripts/infer.py"

    rule infer_join:
        input:
            folders=expand(INFER_DIR, estimator=estimator_names()),
        output:
            csv=INFER_SUMMARY_CSV,
            md=INFER_SUMMARY_MD,
            provenance=INFER_PROVENANCE,
        log:
            LOG.format(rule="infer_join", name="all"),
        benchmark:
            BENCH.format(rule="infer_join", name="all")
        params:
            estimators=estimator_names(),
        conda:
            "../envs/lenspipe.yaml"
        script:
            "../scripts/infer_join.py"
