"""Rule train_reconstruction: an E2VID network trained on simulated drives with ground-truth frames.

Writes the network in the official checkpoint layout (``e2vid.pth.tar``), which the reconstruct rule
loads like ``E2VID_lightweight.pth.tar``, and ``losses.csv`` (the L1 loss of every step). It takes a few
minutes on a CPU, so it has no intermediate checkpoints: a killed run starts again.
"""

import logging

import pandas as pd
import torch

from evseg.recon.checkpoint import save_reconstruction_model
from evseg.recon.e2vid import E2VID_LIGHTWEIGHT_CONFIG
from evseg.recon.stream import window_size
from evseg.recon.training import TrainingConfig, load_drive, train_reconstruction
from evseg.stage import as_list, run_stage


def main(input, output, params, threads):
    torch.set_num_threads(threads)
    cfg = dict(params.train)
    model_cfg = {**E2VID_LIGHTWEIGHT_CONFIG, **cfg["model"]}
    height, width = params.sensor_size
    events_per_window = window_size(params.events_per_pixel, height, width)
    drives = [load_drive(d, model_cfg["num_bins"], (height, width), events_per_window) for d in as_list(input.drives)]
    logging.info("%d drives, %d windows of %d events, model %s", len(drives), sum(len(d.voxels) for d in drives),
                 events_per_window, model_cfg)
    training = TrainingConfig(iterations=cfg["iterations"], batch_size=cfg["batch_size"],
                              clip_windows=cfg["clip_windows"], warmup_windows=cfg["warmup_windows"], lr=cfg["lr"],
                              crop_size=tuple(cfg["crop_size"]), seed=cfg["seed"])
    model, losses = train_reconstruction(drives, model_cfg, training)
    save_reconstruction_model(output.checkpoint, model, "E2VIDRecurrent", model_cfg)
    pd.DataFrame({"step": range(len(losses)), "l1": losses}).to_csv(output.losses, index=False)


run_stage(main, globals())
