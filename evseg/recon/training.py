"""Training an E2VID network on simulated drives that have ground-truth frames.

The official E2VID weights were trained on ESIM simulations of MS-COCO images; they cannot be downloaded
where the offline demo runs, so the demo trains its own E2VID on separate simulated drives (never the
drives it later segments) and saves it in the official checkpoint format. The ``reconstruct`` rule then
loads it exactly as it would load ``E2VID_lightweight.pth.tar``.

Training sees the windows that inference will see: the sequence is cut by :func:`stream_items` into
fixed-count event windows, cut again at every frame time, each turned into a normalised voxel grid. A clip
is ``clip_windows`` consecutive windows run from a zero state (truncated back-propagation through time,
as E2VID trains on sequences of windows); the loss is the L1 distance to every ground-truth frame that
falls inside the clip after ``warmup_windows``. E2VID's own loss is LPIPS plus a temporal-consistency
term; LPIPS needs downloaded VGG/AlexNet weights, so the demo uses L1 (README, fidelity).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from evseg.data.dsec import read_timestamps
from evseg.errors import DataError
from evseg.events import EventSlicer, e2vid_normalize, voxel_grid
from evseg.events.rectify import load_rectify_map
from evseg.recon.e2vid import E2VIDRecurrent
from evseg.recon.stream import stream_items


@dataclass
class TrainingConfig:
    iterations: int = 400
    batch_size: int = 4
    clip_windows: int = 8
    warmup_windows: int = 2
    lr: float = 1e-3
    crop_size: tuple[int, int] | None = (64, 80)  # (height, width) of random clip crops; None: whole frames
    events_per_window: int = 26_000
    seed: int = 0


@dataclass
class Drive:
    """One simulated drive, ready for training: every window's voxel grid (float16, (n, bins, H, W)) and,
    per window, the index of the ground-truth frame read after it (-1 for none); ``frames`` (m, H, W)."""

    name: str
    voxels: torch.Tensor
    frame_after: np.ndarray
    frames: torch.Tensor


def load_drive(sequence_dir: str | Path, num_bins: int, sensor_size: tuple[int, int],
               events_per_window: int) -> Drive:
    """Cut a drive in the DSEC layout (events, rectify map, ``images/left/ev_inf`` frames with
    ``images/timestamps.txt``) into training windows."""
    sequence_dir = Path(sequence_dir)
    height, width = sensor_size
    frame_paths = sorted((sequence_dir / "images/left/ev_inf").glob("*.png"))
    if not frame_paths:
        raise DataError(sequence_dir / "images/left/ev_inf", "holds no ground-truth frames",
                        "training a reconstruction needs simulated drives with frames: run the synthesize rules")
    times = read_timestamps(sequence_dir / "images/timestamps.txt")[: len(frame_paths)]
    frames = []
    for path in frame_paths:
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if image is None or image.shape != (height, width):
            raise DataError(path, f"is not a {height}x{width} grayscale PNG",
                            "the frames must have the events' sensor size; re-run the synthesize rule")
        frames.append(image)
    rectify_map = load_rectify_map(sequence_dir / "events/left/rectify_map.h5", sensor_size)
    voxels, frame_after = [], []
    with EventSlicer(sequence_dir / "events/left/events.h5") as slicer:
        for item in stream_items(slicer, rectify_map, times, events_per_window):
            if item[0] == "window":
                voxels.append(torch.from_numpy(e2vid_normalize(voxel_grid(*item[1], num_bins, height, width)))
                              .half())
                frame_after.append(-1)
            elif voxels:  # a frame before any event has nothing to learn from
                frame_after[-1] = item[1]
    frames = torch.from_numpy(np.stack(frames)).float().div_(255)
    return Drive(sequence_dir.name, torch.stack(voxels), np.array(frame_after), frames)


def clip_loss(model: E2VIDRecurrent, voxels: torch.Tensor, targets: torch.Tensor, has_target: torch.Tensor,
              warmup: int) -> torch.Tensor:
    """Mean L1 over the supervised (clip, window) pairs after ``warmup`` windows.

    voxels (B, L, bins, H, W); targets (B, L, H, W); has_target (B, L) bool."""
    states, total, count = None, voxels.new_zeros(()), 0
    for j in range(voxels.shape[1]):
        image, states = model(voxels[:, j], states)
        mask = has_target[:, j]
        if j >= warmup and mask.any():
            total = total + F.l1_loss(image[mask, 0], targets[mask, j], reduction="sum") / image[0, 0].numel()
            count += int(mask.sum())
    return total / max(count, 1)


def draw_clips(drives: list[Drive], rng: np.random.Generator, batch_size: int, length: int,
               crop_size: tuple[int, int] | None = None, warmup: int = 0):
    """A batch of random clips, each cut to a random ``crop_size`` window: (voxels, targets, has_target)
    as in :func:`clip_loss`. Every clip has a frame to learn from after its ``warmup`` windows."""
    voxels, targets, has_target = [], [], []
    for _ in range(batch_size):
        drive = drives[rng.integers(len(drives))]
        starts = _useful_starts(drive.frame_after, length, warmup)
        if len(starts) == 0:
            raise ValueError(f"drive {drive.name} has no {length} consecutive windows with a frame after the "
                             f"first {warmup}; lower clip_windows' warm-up or use longer drives")
        start = int(starts[rng.integers(len(starts))])
        after = drive.frame_after[start: start + length]
        height, width = drive.frames.shape[1:]
        crop_h, crop_w = crop_size or (height, width)
        top, left = int(rng.integers(height - crop_h + 1)), int(rng.integers(width - crop_w + 1))
        rows, cols = slice(top, top + crop_h), slice(left, left + crop_w)
        voxels.append(drive.voxels[start: start + length, :, rows, cols].float())
        targets.append(drive.frames[np.maximum(after, 0)][:, rows, cols])
        has_target.append(torch.from_numpy(after >= 0))
    return torch.stack(voxels), torch.stack(targets), torch.stack(has_target)


def _useful_starts(frame_after: np.ndarray, length: int, warmup: int) -> np.ndarray:
    """Clip starts whose windows ``warmup .. length-1`` include at least one frame."""
    supervised = np.concatenate([[0], np.cumsum(frame_after >= 0)])
    starts = np.arange(len(frame_after) - length + 1)
    return starts[supervised[starts + length] - supervised[starts + warmup] > 0]


def train_reconstruction(drives: list[Drive], model_cfg: dict, cfg: TrainingConfig, progress: bool = True):
    """Train an E2VIDRecurrent from random weights; returns the model and the per-iteration losses."""
    short = [d.name for d in drives if len(d.voxels) < cfg.clip_windows]
    if short:
        raise ValueError(f"drives {short} have fewer than clip_windows={cfg.clip_windows} windows")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = E2VIDRecurrent(model_cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.iterations)
    losses = []
    bar = tqdm(range(cfg.iterations), desc="train reconstruction", disable=not progress, mininterval=2)
    for step in bar:
        voxels, targets, has_target = draw_clips(drives, rng, cfg.batch_size, cfg.clip_windows, cfg.crop_size,
                                                       cfg.warmup_windows)
        loss = clip_loss(model, voxels, targets, has_target, cfg.warmup_windows)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if step % 25 == 0:
            bar.set_postfix(l1=f"{np.mean(losses[-25:]):.4f}")
            logging.info("step %d L1 %.4f", step, np.mean(losses[-25:]))
    return model.eval(), losses
