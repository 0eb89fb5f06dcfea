"""Flow names an `estimators:` entry may use, known without importing sbi or torch.

The config is checked on every Snakemake invocation, before any job: importing sbi there would cost
seconds each time. tests/test_estimators.py keeps this list equal to sbi's own registry.
"""

from __future__ import annotations

# sbi 0.27's density estimators for NPE (sbi.neural_nets.factory.model_builders) that suit images.
SBI_FLOWS = (
    "made",
    "maf",
    "maf_rqs",
    "mdn",
    "nsf",
    "zuko_bpf",
    "zuko_gf",
    "zuko_maf",
    "zuko_naf",
    "zuko_ncsf",
    "zuko_nice",
    "zuko_nsf",
    "zuko_sospf",
    "zuko_unaf",
)
# sbi names that do not fit this problem, and why.
NOT_FOR_IMAGES = {
    "mnle": "mixed discrete/continuous data",
    "mnpe": "mixed discrete/continuous data",
    "tabpfn": "a tabular foundation model without an image embedding net",
}
# Flows built by lenspipe itself (lenspipe.estimators.CUSTOM_FLOWS).
LENSPIPE_FLOWS = ("coupling_resnet",)
# Not a flow: `flow: ensemble` mixes other entries' trained estimators (lenspipe.ensemble; its config checks:
# lenspipe.rule_params.check_ensembles).


def known_flows() -> list[str]:
    """Every flow name a config may use."""
    return sorted(SBI_FLOWS + LENSPIPE_FLOWS)
