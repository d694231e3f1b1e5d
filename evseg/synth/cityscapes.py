"""The synthetic source domain: daylight RGB street scenes written in the Cityscapes layout.

``<root>/leftImg8bit/<split>/<city>/<city>_<seq:06d>_<frame:06d>_leftImg8bit.png`` (8-bit sRGB) and
``<root>/gtFine/<split>/<city>/..._gtFine_labelIds.png`` (Cityscapes label ids, so that the official
mapping tables are exercised). Like Cityscapes, the bottom of the image shows the ego vehicle's hood,
labelled "ego vehicle" (id 1), which maps to ignore. Optionally the frame before each labelled one is written to
``<root>/leftImg8bit_sequence/<split>/<city>/<city>_<seq>_000018_leftImg8bit.png``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from evseg.data.classes import IGNORE, TRAIN19_TO_LABELID
from evseg.synth.scene import Camera, pixel_grid, random_street, render

CITIES = ("synthberg", "pixelstadt", "rendertal")
CITYSCAPES_FPS = 17
EGO_VEHICLE_ID, UNLABELED_ID = 1, 0
_TRAIN_TO_LABEL_ID = np.full(256, UNLABELED_ID, dtype=np.uint8)
for _train_id, _label_id in TRAIN19_TO_LABELID.items():
    _TRAIN_TO_LABEL_ID[_train_id] = _label_id


def to_srgb8(linear: np.ndarray) -> np.ndarray:
    """Linear intensity in [0, 1] to 8-bit with a 1/2.2 gamma, as a camera writes it."""
    return np.rint(np.clip(linear, 0, 1) ** (1 / 2.2) * 255).astype(np.uint8)


def hood_mask(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """The ego vehicle's bonnet: a flat ellipse rising a few percent into the bottom of the image."""
    rise = rng.uniform(0.04, 0.08) * height
    yy, xx = np.mgrid[0:height, 0:width]
    u = (xx - width / 2) / (0.75 * width)
    return yy > height - rise * np.sqrt(np.clip(1 - u**2, 0, 1))


def write_cityscapes_split(root: str | Path, split: str, num_images: int, size: tuple[int, int], seed: int,
                           previous_frames: bool = False) -> None:
    """Render ``num_images`` labelled day scenes of size (width, height) into ``root``. With ``previous_frames``
    also the frame before each labelled one (number 18, 1/17 s earlier, the ego car driving at 3-12 m/s) into
    ``leftImg8bit_sequence``, as Cityscapes' sequence archive holds it (CMDA's Image Motion-Extractor reads it)."""
    width, height = size
    rng = np.random.default_rng(seed)
    motion = np.random.default_rng([seed, 1])  # its own draws: the labelled images do not depend on the option
    cam, uv = Camera.for_resolution(width, height), pixel_grid(width, height)
    for i in tqdm(range(num_images), desc=f"cityscapes {split}", mininterval=2):
        city = CITIES[i % len(CITIES)]
        street = random_street(rng, length_m=80.0, style="day")
        pose = (rng.uniform(-1.5, 1.5), rng.uniform(0.0, 60.0), rng.normal(0.0, 0.04))
        time_s = rng.uniform(0.0, 5.0)
        rgb, train_ids = render(street, cam, pose, uv, time_s=time_s, style="day")
        label_ids = _TRAIN_TO_LABEL_ID[train_ids]
        label_ids[train_ids == IGNORE] = UNLABELED_ID
        hood = hood_mask(height, width, rng)
        rgb[hood] = rgb[hood] * 0.15 + 0.02
        label_ids[hood] = EGO_VEHICLE_ID
        stem = f"{city}_{i // len(CITIES):06d}_{19:06d}"  # Cityscapes' labelled frame is number 19
        image_path = Path(root) / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"
        label_path = Path(root) / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"
        image_path.parent.mkdir(parents=True, exist_ok=True)
        label_path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(image_path), cv2.cvtColor(to_srgb8(rgb), cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(label_path), label_ids)
        if previous_frames:
            step = motion.uniform(3.0, 12.0) / CITYSCAPES_FPS
            before = (pose[0], pose[1] - step, pose[2])
            previous, _ = render(street, cam, before, uv, time_s=time_s - 1 / CITYSCAPES_FPS, style="day")
            previous[hood] = previous[hood] * 0.15 + 0.02
            name = f"{city}_{i // len(CITIES):06d}_{18:06d}_leftImg8bit.png"
            path = Path(root) / "leftImg8bit_sequence" / split / city / name
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), cv2.cvtColor(to_srgb8(previous), cv2.COLOR_RGB2BGR))
