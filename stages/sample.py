"""Rule sample: the offline hybrid subset (HPL-ESS, 1/16 of the target training samples) as a list of ids."""

import logging
from pathlib import Path

from evseg.adapt.data import hybrid_subset
from evseg.data import DsecSemantic
from evseg.stage import as_list, run_stage


def main(input, output, params, threads):
    dsec, cfg = params.dsec, params.sample
    sequences = [Path(p) for p in as_list(input.sequences)]
    data = DsecSemantic(sequences[0].parents[1], "train", [p.name for p in sequences],
                        num_classes=dsec["num_classes"], layout=dsec["label_layout"],
                        sensor_size=tuple(dsec["sensor_size"]), label_height=dsec["label_height"],
                        skip_first=dsec["ess"]["skip_first"], stride=dsec["ess"]["stride"])
    chosen = hybrid_subset(data.ids, cfg["fraction"], cfg["seed"])
    Path(output.hybrid).write_text("".join(f"{sample_id}\n" for sample_id in chosen))
    logging.info("hybrid subset: %d of %d training samples", len(chosen), len(data))


run_stage(main, globals())
