"""The synthetic target domain: night drives seen by an event camera, written in the DSEC layout.

One sequence is a drive along a procedural street, rendered at a high frame rate through a distorted
lens (the raw sensor view) and turned into events by the ESIM-style simulator. At every label time
(20 Hz, like DSEC's images) the undistorted view gives the semantic labels and a grayscale frame.
Files, as the DSEC archives unpack them (``<split>/<seq>/``):

- ``events/left/events.h5`` (Blosc/ZSTD, ``ms_to_idx``, ``t_offset``) and ``events/left/rectify_map.h5``;
- ``19classes/*.png`` and ``11classes/*.png`` (the top ``label_height`` rows of the rectified frame),
  ``<seq>_semantic_timestamps.txt`` (image clock, µs);
- ``images/left/ev_inf/*.png`` with ``images/timestamps.txt``: the grayscale frames in the event camera's
  rectified view (the name DSEC tools use for images aligned with the event camera). They are the ground
  truth that event-to-image reconstruction is compared with.

With ``layout="night_semantic"`` a drive is written as a DSEC Night-Semantic sequence instead
(evseg.data.dsec_night): ``<seq>/`` holds the events, ``images/timestamps.txt`` (every frame),
``warp_images/*.png`` (the night RGB frame in the event view, through evseg.synth.night_camera) and
``labels/<seq>_NNNNNN_grey_gtFine_labelTrainIds.png`` (19 train ids, full frame) for the frames in
``labelled_frames``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from evseg.data.classes import TRAIN19_TO_ESS11_LUT
from evseg.events.writer import EventsH5Appender, write_rectify_map
from evseg.synth.cityscapes import to_srgb8
from evseg.synth.esim import EsimConfig, EventSimulator
from evseg.synth.lens import radial_rectify_map
from evseg.synth.night_camera import NightCamera, night_frame
from evseg.synth.scene import Camera, pixel_grid, random_street, render

LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)  # linear RGB to luminance


@dataclass
class DriveConfig:
    sensor_size: tuple[int, int] = (120, 160)  # (height, width)
    label_height: int = 110  # DSEC keeps the top 440 of 480 rows
    duration_s: float = 6.0
    render_fps: int = 400  # high enough that texture moves about a pixel or less per frame
    label_hz: int = 20
    speed_mps: tuple[float, float] = (7.0, 11.0)
    t_offset_us: int = 50_000_000_000  # DSEC-like: above 2**32, so clock arithmetic must be int64
    style: str = "day"  # DSEC-Semantic's drives are daytime; "night" for DSEC Night-Semantic-like data
    esim: EsimConfig = field(default_factory=EsimConfig)
    layout: str = "semantic"  # or "night_semantic" (see the module docstring)
    labelled_frames: tuple[int, ...] = ()  # night_semantic: the frames that get a label
    night_camera: NightCamera = field(default_factory=NightCamera)


def drive_pose(t: float, speed: float, lane_x: float, phase: float) -> tuple[float, float, float]:
    """Camera pose (x, z, yaw) at time t: forward at constant speed with a gentle weave."""
    weave = np.sin(2 * np.pi * t / 4.0 + phase)
    return lane_x + 0.4 * weave, speed * t, 0.03 * np.cos(2 * np.pi * t / 4.0 + phase)


def write_dsec_sequence(seq_dir: str | Path, seed: int, cfg: DriveConfig, progress: bool = True) -> dict:
    """Simulate one drive into ``seq_dir`` (replaced atomically when complete). Returns counts."""
    seq_dir = Path(seq_dir)
    tmp = seq_dir.with_name(seq_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    height, width = cfg.sensor_size
    if cfg.render_fps % cfg.label_hz:
        raise ValueError("render_fps must be a multiple of label_hz so that labels fall on rendered frames")
    if cfg.layout not in ("semantic", "night_semantic"):
        raise ValueError(f"unknown layout {cfg.layout!r}: semantic or night_semantic")
    rng = np.random.default_rng(seed)
    camera_noise = np.random.default_rng([seed, 1])  # its own draws: the events do not depend on the layout
    cam = Camera.for_resolution(width, height)
    rectify_map = radial_rectify_map(height, width, cam.fx)
    speed = rng.uniform(*cfg.speed_mps)
    lane_x, phase = rng.uniform(-1.2, 1.2), rng.uniform(0, 2 * np.pi)
    street = random_street(rng, length_m=speed * cfg.duration_s, style=cfg.style)
    simulator = EventSimulator(height, width, cfg.esim, rng)
    grid = pixel_grid(width, height)

    frames_per_label = cfg.render_fps // cfg.label_hz
    num_frames = int(round(cfg.duration_s * cfg.render_fps)) + 1
    label_times, pending = [], []
    with EventsH5Appender(tmp / "events/left/events.h5", cfg.t_offset_us) as events_out:
        for k in tqdm(range(num_frames), desc=seq_dir.name, disable=not progress, mininterval=2):
            t_s = k / cfg.render_fps
            t_us = int(round(t_s * 1e6))
            pose = drive_pose(t_s, speed, lane_x, phase)
            # The raw sensor pixel (x, y) sees the scene at its rectified position rectify_map[y, x].
            sensor_rgb, _ = render(street, cam, pose, rectify_map, t_s, cfg.style)
            pending.append(simulator.step(sensor_rgb @ LUMA, t_us))
            if k > 0 and k % frames_per_label == 0:
                rgb, train_ids = render(street, cam, pose, grid, t_s, cfg.style)
                if cfg.layout == "semantic":
                    _write_label_frame(tmp, len(label_times), rgb @ LUMA, train_ids, cfg.label_height)
                else:
                    frame = len(label_times)
                    labelled = train_ids if frame in cfg.labelled_frames else None
                    _write_night_frame(tmp, seq_dir.name, frame,
                                       night_frame(rgb, cfg.night_camera, camera_noise), labelled)
                label_times.append(t_us)
                pending = _flush(events_out, pending)
        _flush(events_out, pending)
        num_events = events_out.num_events
    write_rectify_map(tmp / "events/left/rectify_map.h5", rectify_map)
    (tmp / "images").mkdir(parents=True, exist_ok=True)
    stamps = "".join(f"{cfg.t_offset_us + t}\n" for t in label_times)
    if cfg.layout == "semantic":
        (tmp / f"{seq_dir.name}_semantic_timestamps.txt").write_text(stamps)
    (tmp / "images/timestamps.txt").write_text(stamps)
    if seq_dir.exists():
        shutil.rmtree(seq_dir)
    tmp.rename(seq_dir)
    return {"events": num_events, "labels": len(label_times), "duration_s": cfg.duration_s}


def _flush(events_out: EventsH5Appender, pending: list) -> list:
    """Append the simulator's per-frame event arrays collected since the last flush."""
    if pending:
        events_out.append(*(np.concatenate([frame[i] for frame in pending]) for i in range(4)))
    return []


def _write_label_frame(seq_dir: Path, index: int, gray: np.ndarray, train_ids: np.ndarray, label_height: int) -> None:
    name = f"{index:06d}.png"
    label19 = train_ids[:label_height]
    outputs = {"19classes": label19, "11classes": TRAIN19_TO_ESS11_LUT[label19].astype(np.uint8),
               "images/left/ev_inf": to_srgb8(gray)}
    for folder, image in outputs.items():
        path = seq_dir / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), image)


def _write_night_frame(seq_dir: Path, seq_name: str, index: int, rgb8: np.ndarray,
                       train_ids: np.ndarray | None) -> None:
    name = f"{index:06d}.png"
    (seq_dir / "warp_images").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(seq_dir / "warp_images" / name), cv2.cvtColor(rgb8, cv2.COLOR_RGB2BGR))
    if train_ids is not None:
        (seq_dir / "labels").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(seq_dir / "labels" / f"{seq_name}_{index:06d}_grey_gtFine_labelTrainIds.png"), train_ids)
