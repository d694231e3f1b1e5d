"""Rule pretrain_events: ECDDP self-supervised pre-training of the event backbone (evseg.pretrain).

Writes ``ecddp.pth`` (the released checkpoint layout: ``model`` with ``student.*`` and ``teacher.*``), which
``model.pretrained`` of the segmentation rules loads; ``metrics.csv`` (the losses every ``log_every`` steps),
``config.yaml`` and ``similarity.png`` (the learned patch similarities). The resumable state lives in
``state/`` beside them: rerunning a killed job continues from its last checkpoint.
"""

import copy
import logging
import shutil
from pathlib import Path

import numpy as np
import torch
import yaml

from evseg import distributed
from evseg.adapt.data import InputSpec
from evseg.adapt.trainer import METRICS
from evseg.pretrain.checkpoint import save_pretrained
from evseg.pretrain.data import EventRecordings, PretrainBatches, find_event_files
from evseg.pretrain.model import ECDDPNet
from evseg.pretrain.similarity import similarity_panel
from evseg.pretrain.trainer import pretrain
from evseg.recon.methods import pick_device
from evseg.stage import as_list, run_stage
from evseg.viz import save_rgb

PICTURE_WINDOWS = 4


def main(input, output, params, threads):
    torch.set_num_threads(threads)
    cfg, dsec, model_cfg = params.pretrain, params.dsec, params.model
    # as the segmentation rules build it: a 1-channel input is repeated to 3 for networks with an RGB source
    spec = InputSpec.from_config(params.input, params.grayscale_source)
    files = find_event_files(as_list(input.recordings))
    recordings = EventRecordings(files, dsec["sensor_size"], dsec["label_height"], dsec["ess"], spec,
                                 cfg["data"]["rectify"])
    torch.manual_seed(cfg["seed"])  # the initial weights
    network = dict(backbone=model_cfg["backbone"], in_chans=spec.channels, level=cfg["token_level"],
                   prototypes=cfg["heads"]["prototypes"], hidden_dim=cfg["heads"]["hidden_dim"],
                   bottleneck_dim=cfg["heads"]["bottleneck_dim"], drop_path_rate=model_cfg["drop_path_rate"])
    student = ECDDPNet(**network)
    initial = copy.deepcopy(student)
    check_crop_sizes(student, spec.channels, cfg["crops"])
    batches = PretrainBatches(recordings, cfg["seed"], cfg["batch_size"], cfg["crops"], cfg["masks"], student.stride)
    device = pick_device(cfg["device"])
    logging.info("pre-training %s (tokens of level %d, stride %d, %d channels) on %s: %d recordings, %d events",
                 model_cfg["backbone"], student.level, student.stride, student.dim, device, len(files),
                 int(recordings.counts.sum()))
    state_dir = Path(output.checkpoint).parent / "state"
    step = pretrain(student, batches, cfg, state_dir, device)
    if not distributed.world().is_main:
        return

    input_cfg = {"event_channels": list(spec.event_channels), "sum_event_channels": spec.sum_event_channels,
                 "ess": dict(dsec["ess"])}
    save_pretrained(output.checkpoint, step.student, step.teacher, network, input_cfg, cfg["max_iters"])
    frames = picture_windows(batches, recordings, cfg["seed"])
    networks = {"teacher": step.teacher.cpu(), "student": step.student.cpu(), "random init": initial}
    picture = similarity_panel(networks, frames, cfg["context"]["clusters"], cfg["context"]["iterations"],
                               cfg["seed"])
    save_rgb(output.similarity, picture)
    shutil.copyfile(state_dir / METRICS, output.metrics)
    resolved = {"model": model_cfg, "pretrain": cfg, "input": params.input, "dsec": dsec,
                "recordings": [str(f) for f in files]}
    Path(output.config).write_text(yaml.safe_dump(resolved, sort_keys=False))
    shutil.rmtree(state_dir)


def check_crop_sizes(net: ECDDPNet, channels: int, crops: dict) -> None:
    """Every crop size through the network once (masked, as the student's global crops are), so that a crop too
    small for the backbone fails here with the config key to change, not as a convolution error mid-run."""
    for name, size in (("full", tuple(crops["full"])), ("global.size", (crops["global"]["size"],) * 2),
                       ("local.size", (crops["local"]["size"],) * 2)):
        try:
            with torch.no_grad():
                _, grid = net.tokens(torch.zeros(1, channels, *size))
                net.tokens(torch.zeros(1, channels, *size), torch.zeros(1, *grid, dtype=torch.bool))
        except RuntimeError as err:
            raise ValueError(f"pretrain.crops.{name} {list(size)} is too small for the backbone ({err}); "
                             "use larger crops") from err


def picture_windows(batches: PretrainBatches, recordings: EventRecordings, seed: int) -> list[torch.Tensor]:
    """Whole crops (centred) of a few windows drawn from a stream of their own."""
    rng = np.random.default_rng([seed, 2**40])
    full = tuple(batches.crops["full"])
    frames = []
    for _ in range(PICTURE_WINDOWS):
        frame = torch.from_numpy(recordings.input(*recordings.draw(rng)))
        top, left = (frame.shape[1] - full[0]) // 2, (frame.shape[2] - full[1]) // 2
        frames.append(frame[:, top: top + full[0], left: left + full[1]])
    return frames


run_stage(main, globals(), data_parallel=True)
