# lenspipe: simulation-based inference of strong gravitational lenses.
# A table of contents: the rules live in rules/, the logic in the lenspipe package.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/simulate.smk"
include: "rules/split.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/compare.smk"


rule all:
    input:
        get_final_output(),
    default_target: True
