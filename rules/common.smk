# Config validation and every input/param function of the workflow (the rule files stay declarative).


from snakemake.utils import validate

validate(config, schema="../configs/schema.yaml")

RUN = config["run"]
RESULTS = f"results/{RUN}"
DSEC_ROOT = config["dsec"]["root"]
CITYSCAPES_ROOT = config["cityscapes"]["root"]
SPLITS = ("train", "test")


wildcard_constraints:
    split="train|test",
    seq="[A-Za-z0-9_]+",


def dsec_sequences():
    """(split, sequence) pairs of the target dataset."""
    return [(split, seq) for split in SPLITS for seq in config["dsec"]["sequences"][split]]


def synthetic_seed(name):
    """A seed per synthetic item that does not change when other items are added or removed."""
    return (
        config["synthetic"]["seed"] * 1_000_003 + sum(ord(c) * 131**i for i, c in enumerate(name))
    ) % 2**32


def resources_of(rule_name):
    return config["resources"][rule_name]


def inspect_outputs():
    pictures = [f"{RESULTS}/inspect/{split}/{seq}.png" for split, seq in dsec_sequences()]
    return pictures + [f"{RESULTS}/inspect/cityscapes.png", f"{RESULTS}/inspect/summary.csv"]
