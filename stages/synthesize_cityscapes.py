"""Rule synthesize_cityscapes: the labelled daylight source domain in the Cityscapes layout."""

import logging
import shutil
from pathlib import Path

from evseg.stage import run_stage
from evseg.synth.cityscapes import write_cityscapes_split


def main(input, output, params, threads):
    root = Path(output[0])
    tmp = root.with_name(root.name + ".partial")  # renamed when complete: no half-written dataset
    shutil.rmtree(tmp, ignore_errors=True)
    width, height = params.cfg["size"]
    for split, count in params.cfg["images"].items():
        logging.info("rendering %d %s images of %dx%d", count, split, width, height)
        write_cityscapes_split(tmp, split, count, (width, height), seed=params.seeds[split],
                               previous_frames=params.cfg["previous_frames"])
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)


run_stage(main, globals())
