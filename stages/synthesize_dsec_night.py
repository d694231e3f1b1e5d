"""Rule synthesize_dsec_night: one night drive with RGB frames aligned with its events, in the DSEC Night-Semantic
layout; frames 2, 2 + label_stride, ... before N - 12 get labels (the test part), the rest is the training part."""

import json
import logging
from pathlib import Path

from evseg.data.dsec_night import FIRST_FRAME, TRAIN_START_OFFSET
from evseg.stage import run_stage
from evseg.synth.dsec import DriveConfig, write_dsec_sequence
from evseg.synth.esim import EsimConfig
from evseg.synth.night_camera import NightCamera


def main(input, output, params, threads):
    cfg = dict(params.cfg)
    labelled = tuple(range(FIRST_FRAME, params.train_start - TRAIN_START_OFFSET, cfg["label_stride"]))
    drive = DriveConfig(sensor_size=tuple(params.sensor_size), label_height=params.sensor_size[0],
                        duration_s=cfg["duration_s"], render_fps=cfg["render_fps"],
                        speed_mps=tuple(cfg["speed_mps"]), style="night", esim=EsimConfig(**cfg["esim"]),
                        layout="night_semantic", labelled_frames=labelled, night_camera=NightCamera(**cfg["camera"]))
    counts = write_dsec_sequence(Path(output[0]), seed=params.seed, cfg=drive)
    logging.info("wrote %s; %d labelled frames", json.dumps(counts), len(labelled))


run_stage(main, globals())
