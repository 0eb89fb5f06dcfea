"""Snakemake script of rule `split`: shards -> train/test stores and normalisation statistics."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821, SIM115
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

from lenspipe.split import SplitSettings, split_shards  # noqa: E402

split_shards(
    snakemake.input.shards,  # noqa: F821
    snakemake.output.train,  # noqa: F821
    snakemake.output.test,  # noqa: F821
    snakemake.output.normalisation,  # noqa: F821
    SplitSettings.from_params(snakemake.params.split, snakemake.params.seed),  # noqa: F821
)
