# lenspipe: simulation-based inference of strong gravitational lenses.
# A table of contents: the rules live in rules/, the logic in the lenspipe package.
from snakemake.utils import min_version

min_version("9.0")


# The paper run, unless --configfile names another (which then replaces it rather than being merged in).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"


wildcard_constraints:
    shard=r"\d{4}",
    estimator=r"[A-Za-z0-9_]+",


include: "rules/simulate.smk"
include: "rules/split.smk"
include: "rules/train.smk"
include: "rules/ensemble.smk"
include: "rules/sample.smk"
include: "rules/evaluate.smk"
include: "rules/compare.smk"
include: "rules/infer.smk"
include: "rules/infer_join.smk"


rule all:
    input:
        get_final_output(),
    default_target: True
