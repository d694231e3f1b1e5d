# evseg: semantic segmentation for event cameras without event labels.
# `snakemake --cores all --configfile configs/default.yaml` runs the demo; see README.md.

from snakemake.utils import min_version

min_version("9.0")


configfile: "configs/default.yaml"


include: "rules/common.smk"
include: "rules/synthesize.smk"
include: "rules/inspect.smk"


rule all:
    input:
        inspect_outputs(),
