"""Rule synthesize_dsec: one night drive seen by an event camera, in the DSEC layout."""

import json
import logging
from pathlib import Path

from evseg.stage import run_stage
from evseg.synth.dsec import DriveConfig, write_dsec_sequence
from evseg.synth.esim import EsimConfig


def main(input, output, params, threads):
    cfg = dict(params.cfg)
    drive = DriveConfig(sensor_size=tuple(params.sensor_size), label_height=params.label_height,
                        duration_s=cfg["duration_s"], render_fps=cfg["render_fps"],
                        speed_mps=tuple(cfg["speed_mps"]), style=cfg["style"], esim=EsimConfig(**cfg["esim"]))
    counts = write_dsec_sequence(Path(output[0]), seed=params.seed, cfg=drive)
    logging.info("wrote %s", json.dumps(counts))


run_stage(main, globals())
