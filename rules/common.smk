# Shared pieces: config validation, output path patterns, input/param functions (wildcard constraints: Snakefile).
import sys

from snakemake.utils import validate

from lenspipe.config import check_config, check_targets
from lenspipe.errors import ConfigError
from lenspipe.seeds import shard_seed

# One clear line and no traceback for a bad config, before any job starts.
try:
    check_config(config, schema=workflow.source_path("../config/schema.yaml"))
    check_targets(sys.argv[1:], f"results/{config['run']}", config["estimators"])
except ConfigError as exc:
    sys.stderr.write(f"lenspipe: {exc}\n")
    sys.exit(1)
# Snakemake's own validation (the catalog's convention); passes once check_config has.
validate(config, schema="../config/schema.yaml")

RUN = config["run"]
OUT = f"results/{RUN}"

# Output path patterns, written once.
SHARD = f"{OUT}/simulate/shard_{{shard}}.zarr"
SHARD_YAML = f"{OUT}/simulate/shard_{{shard}}.deeplenstronomy.yaml"
SHARD_PROVENANCE = f"{OUT}/simulate/shard_{{shard}}.provenance.json"
SPLIT_PROVENANCE = f"{OUT}/split/provenance.json"
TRAIN_STORE = f"{OUT}/split/train.zarr"
TEST_STORE = f"{OUT}/split/test.zarr"
NORMALISATION = f"{OUT}/split/normalisation.json"
LOG = f"{OUT}/logs/{{rule}}/{{name}}.log"
BENCH = f"{OUT}/benchmarks/{{rule}}/{{name}}.tsv"


def log_path(rule, name="all"):
    """Log file of one job."""
    return LOG.format(rule=rule, name=name)


def bench_path(rule, name="all"):
    """Benchmark file of one job."""
    return BENCH.format(rule=rule, name=name)


def shard_ids():
    """Zero-padded shard indices of the config."""
    return [f"{i:04d}" for i in range(config["simulation"]["n_shards"])]


def shard_size(shard):
    """Images in shard `shard`: n_images / n_shards, the remainder to the first shards."""
    n, k = config["simulation"]["n_images"], config["simulation"]["n_shards"]
    return n // k + (1 if int(shard) < n % k else 0)


def simulate_params(wildcards):
    """The slice of config a shard depends on (not the shard count: adding shards keeps old ones)."""
    return {
        "simulation": {k: v for k, v in config["simulation"].items() if k not in ("n_images", "n_shards")},
        "priors": config["priors"],
        "parameters": config["parameters"],
        "shard": int(wildcards.shard),
        "size": shard_size(wildcards.shard),
        "seed": shard_seed(config["seed"], int(wildcards.shard)),
    }


def estimator_names():
    """Estimators of the config, in config order."""
    return list(config["estimators"])


def get_final_output():
    """Every final output of the study (the inputs of the default target)."""
    outputs = [TRAIN_STORE, TEST_STORE, NORMALISATION]
    outputs += final_training_outputs() + final_evaluation_outputs()
    return outputs


def by_attempt(base):
    """A resource that grows with each retry: `base` on the first attempt, twice it on the second, so a job
    killed at its memory or time limit gets more (rule resources; the slurm profile scales its own alike)."""

    def scaled(wildcards, attempt):
        return base * attempt

    return scaled


def estimate_split_mem_mb():
    """Memory of the split job: all images twice in float32, plus headroom."""
    sim = config["simulation"]
    image_bytes = 4 * len(sim["bands"]) * sim["num_pix"] ** 2
    return int(2 * sim["n_images"] * image_bytes / 2**20) + 1024
