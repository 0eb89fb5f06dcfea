"""Rule simulate: one shard of lens images -> its Zarr store and its deeplenstronomy YAML."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821, SIM115 - snakemake injects `snakemake`
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")

from lenspipe.simulate import run_shard  # noqa: E402

run_shard(snakemake.params.settings, store=snakemake.output.store, yaml_path=snakemake.output.yaml)  # noqa: F821
