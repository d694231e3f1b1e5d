# evseg: semantic segmentation for event cameras without event labels.
# `snakemake --cores all --configfile configs/default.yaml` runs the demo; see README.md.
# There is deliberately no `configfile:` here: a run's config file is layered on the schema defaults
# (configs/schema.yaml, which describe the real datasets) and never on the demo's settings.

from snakemake.utils import min_version

min_version("9.0")


include: "rules/common.smk"
include: "rules/synthesize.smk"
include: "rules/download.smk"
include: "rules/inspect.smk"
include: "rules/reconstruct.smk"
include: "rules/train.smk"
include: "rules/refine.smk"
include: "rules/semi.smk"
include: "rules/report.smk"
include: "rules/cmda.smk"
include: "rules/pretrain.smk"


rule all:
    input:
        all_outputs(),
