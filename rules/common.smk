# Shared pieces: config validation, every output path pattern, every input/param/resource function.
# Rule files hold rules only; the config slices themselves come from lenspipe.rule_params (torch-free).
# Wildcard constraints: Snakefile.
import re
import sys

from lenspipe import rule_params
from lenspipe.compare import TABLE_FORMATS, TABLES
from lenspipe.config import check_config, check_targets
from lenspipe.errors import ConfigError
from lenspipe.plots import FIGURES, FORMATS

# Validated once (the schema, filling its defaults, then the cross-field rules): one clear line and no
# traceback for a bad config, before any job starts.
try:
    check_config(config, schema=workflow.source_path("../config/schema.yaml"))
    check_targets(
        sys.argv[1:], f"results/{config['run']}", config["estimators"], observed=rule_params.has_observed(config)
    )
except ConfigError as exc:
    sys.stderr.write(f"lenspipe: {exc}\n")
    sys.exit(1)

RUN = config["run"]
OUT = f"results/{RUN}"

# Output path patterns, written once.
LOG = f"{OUT}/logs/{{rule}}/{{name}}.log"
BENCH = f"{OUT}/benchmarks/{{rule}}/{{name}}.tsv"
# simulate
SHARD = f"{OUT}/simulate/shard_{{shard}}.zarr"
SHARD_YAML = f"{OUT}/simulate/shard_{{shard}}.deeplenstronomy.yaml"
SHARD_PROVENANCE = f"{OUT}/simulate/shard_{{shard}}.provenance.json"
# split
TRAIN_STORE = f"{OUT}/split/train.zarr"
TEST_STORE = f"{OUT}/split/test.zarr"
NORMALISATION = f"{OUT}/split/normalisation.json"
SPLIT_PROVENANCE = f"{OUT}/split/provenance.json"
# train
ESTIMATOR_FILE = f"{OUT}/train/{{estimator}}/estimator.pt"
EPOCHS = f"{OUT}/train/{{estimator}}/epochs.csv"
SUMMARY = f"{OUT}/train/{{estimator}}/summary.json"
TRAIN_PROVENANCE = f"{OUT}/train/{{estimator}}/provenance.json"
TRAINING_FILES = [ESTIMATOR_FILE, EPOCHS, SUMMARY, TRAIN_PROVENANCE]
# sample
SAMPLES = f"{OUT}/sample/{{estimator}}/samples.zarr"
SAMPLE_TIMING = f"{OUT}/sample/{{estimator}}/timing.json"
SAMPLE_PROVENANCE = f"{OUT}/sample/{{estimator}}/provenance.json"
# evaluate
METRICS_CSV = f"{OUT}/evaluate/{{estimator}}/metrics.csv"
METRICS_JSON = f"{OUT}/evaluate/{{estimator}}/metrics.json"
FIGURE = f"{OUT}/evaluate/{{estimator}}/figures/{{figure}}.{{ext}}"
EVALUATE_PROVENANCE = f"{OUT}/evaluate/{{estimator}}/provenance.json"
# compare
COMPARE_TABLE = f"{OUT}/compare/{{table}}.{{ext}}"
COMPARE_FIGURE = f"{OUT}/compare/comparison.{{ext}}"
COMPARE_PROVENANCE = f"{OUT}/compare/provenance.json"
# infer (one folder per estimator), infer_join
INFER_DIR = f"{OUT}/infer/{{estimator}}"
INFER_SUMMARY_CSV = f"{OUT}/infer/summary.csv"
INFER_SUMMARY_MD = f"{OUT}/infer/summary.md"
INFER_PROVENANCE = f"{OUT}/infer/provenance.json"


# --------------------------------------------------------------------------------------------------
# Every rule: log and benchmark files.


def log_path(rule, name="all"):
    """Log file of one job (`name`: the job's wildcard, e.g. "{estimator}", or "all")."""
    return LOG.format(rule=rule, name=name)


def bench_path(rule, name="all"):
    """Benchmark file of one job (`name` as for log_path)."""
    return BENCH.format(rule=rule, name=name)


# --------------------------------------------------------------------------------------------------
# The default target.


def estimator_names():
    """Estimators of the config, in config order."""
    return list(config["estimators"])


def get_final_output():
    """Every final output of the study (the inputs of the default target)."""
    outputs = [TRAIN_STORE, TEST_STORE, NORMALISATION]
    outputs += final_training_outputs() + final_evaluation_outputs() + final_infer_outputs()
    return outputs


def final_training_outputs():
    """Every estimator's training outputs."""
    return expand(TRAINING_FILES, estimator=estimator_names())


def final_evaluation_outputs():
    """Everything evaluation builds: per-estimator samples, metrics and figures, and the comparison."""
    estimators = estimator_names()
    outputs = expand([SAMPLE_TIMING, METRICS_CSV, METRICS_JSON], estimator=estimators)
    outputs += expand(FIGURE, estimator=estimators, figure=figure_names(), ext=FORMATS)
    outputs += expand(COMPARE_TABLE, table=TABLES, ext=TABLE_FORMATS)
    return outputs + expand(COMPARE_FIGURE, ext=FORMATS)


def final_infer_outputs():
    """The joined tables of the observed images when the config has an `observed` section, else nothing."""
    return [INFER_SUMMARY_CSV, INFER_SUMMARY_MD] if rule_params.has_observed(config) else []


# --------------------------------------------------------------------------------------------------
# simulate, split


def shard_ids():
    """Zero-padded shard indices of the config."""
    return rule_params.shard_ids(config)


def simulate_params(wildcards):
    """The slice of config a shard depends on (lenspipe.rule_params.simulate_params)."""
    return rule_params.simulate_params(config, wildcards.shard)


def by_attempt(base):
    """A resource that grows with each retry: `base` on the first attempt, twice it on the second, so a job
    killed at its memory or time limit gets more (rule resources; the slurm profile scales its own alike)."""

    def scaled(wildcards, attempt):
        return base * attempt

    return scaled


def split_mem_mb():
    """Memory of the split job (lenspipe.rule_params.split_mem_mb)."""
    return rule_params.split_mem_mb(config)


# --------------------------------------------------------------------------------------------------
# train


def train_params(wildcards):
    """The config slice one estimator's training depends on (lenspipe.rule_params.training_params)."""
    return rule_params.training_params(config, wildcards.estimator)


def execution_params():
    """Where the training runs (device, GPU fallback); changing it retrains nothing."""
    return rule_params.execution_params(config)


def train_threads():
    """Threads of a training job."""
    return rule_params.train_threads(config)


def train_mem_mb():
    """Memory of a training job (lenspipe.rule_params.train_mem_mb)."""
    return rule_params.train_mem_mb(config)


def trained_estimators():
    """A regex of the {estimator} values train jobs make, every estimator of the config but the ensembles."""
    return names_pattern(rule_params.trained_names(config))


# --------------------------------------------------------------------------------------------------
# ensemble (an `estimators:` entry with flow: ensemble bundles other entries' trained estimators)


def ensemble_estimators():
    """A regex of the {estimator} values ensemble jobs make, the config's ensembles (none: it matches nothing)."""
    return names_pattern(rule_params.ensemble_names(config))


def names_pattern(names):
    """A regex matching exactly these names (none: a regex that matches nothing)."""
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


def ensemble_members(wildcards):
    """The members' training outputs an ensemble bundles: a member retrained is a new ensemble."""
    members = rule_params.ensemble_params(config, wildcards.estimator)["members"]
    return {
        "members": expand(ESTIMATOR_FILE, estimator=members),
        "summaries": expand(SUMMARY, estimator=members),
        "epochs": expand(EPOCHS, estimator=members),
    }


def ensemble_params(wildcards):
    """An ensemble's members, weights and combine (lenspipe.rule_params.ensemble_params)."""
    return rule_params.ensemble_params(config, wildcards.estimator)


# --------------------------------------------------------------------------------------------------
# evaluate: figures and tables, shown in the report


def figure_files(figure, caption):
    """A figure's PDF (for the paper) and PNG (shown in the report), estimator left as a wildcard."""
    pdf, png = expand(FIGURE, figure=figure, ext=FORMATS, allow_missing=True)
    shown = report(
        png,
        caption=f"../report/{caption}.rst",
        category="Estimators",
        subcategory="{estimator}",
        labels={"estimator": "{estimator}", "figure": figure},
    )
    return [pdf, shown]


def figure_names():
    """Every per-estimator figure: those of FIGURES and one corner plot per configured test image."""
    return list(FIGURES) + [f"corner_{image}" for image in config["evaluation"]["corner_images"]]


def evaluation_figures():
    """Named figure outputs of the evaluate job, one per figure (corner plots share one caption)."""
    return {name: figure_files(name, "corner" if name.startswith("corner_") else name) for name in figure_names()}


def metrics_table():
    """The per-estimator metrics CSV, shown in the report."""
    return report(
        METRICS_CSV,
        caption="../report/metrics.rst",
        category="Estimators",
        subcategory="{estimator}",
        labels={"estimator": "{estimator}", "figure": "metrics table"},
    )


# --------------------------------------------------------------------------------------------------
# compare


def comparison_tables():
    """Every comparison table in every format; the CSVs are shown in the report, each with its caption."""
    files = []
    for table in TABLES:
        for ext in TABLE_FORMATS:
            path = COMPARE_TABLE.format(table=table, ext=ext)
            if ext == "csv":
                path = report(
                    path,
                    caption=f"../report/compare_{table}.rst",
                    category="Comparison",
                    subcategory="Tables",
                    labels={"table": table},
                )
            files.append(path)
    return files


def comparison_figure():
    """The comparison figure as PDF (paper) and PNG (report)."""
    shown = report(
        COMPARE_FIGURE.format(ext="png"),
        caption="../report/comparison.rst",
        category="Comparison",
        subcategory="Figure",
        labels={"figure": "comparison"},
    )
    return [COMPARE_FIGURE.format(ext="pdf"), shown]


# --------------------------------------------------------------------------------------------------
# infer, infer_join (the optional `observed` section: each function refuses a config without it)


def infer_images(wildcards):
    """Every FITS file of the observed images (lenspipe.rule_params.observed_files)."""
    return rule_params.observed_files(config)


def infer_params(wildcards):
    """The infer rule's params: images, calibration, samples per image, seed (lenspipe.rule_params.infer_params)."""
    return rule_params.infer_params(config)


def infer_folders(wildcards):
    """Every estimator's infer folder, in config order."""
    rule_params.observed(config)
    return expand(INFER_DIR, estimator=estimator_names())
