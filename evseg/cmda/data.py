"""CMDA's training and test inputs (reference/cmda_daformer.md §2.1-2.3, §2.6).

Source (Cityscapes, RGB): the image resized as in DAFormer, its label, the Image Motion-Extractor map of frames 18
and 19 (computed at full size, stored through uint8 as the released ``leftImg8bit_IC1`` PNGs are, resized with the
image) and the Image Content-Extractor map (ISR) of the crop, with the source parameters.

Target (DSEC Night-Semantic): a random ``target_crop`` of the warp image and of the event image, flipped with the
same draw and resized to the training crop size (released: 400×400 crops of 640×480, resized to 512×512), and the
ISR of the resized image with the target parameters. Shift directions of the ISR are drawn per sample.

Test samples: the top ``eval_height`` rows of the whole warp image, event image and label (released: 440 of 480);
the test output is the fusion of image and events, so no ISR is computed.

Images are standardised with ImageNet's mean/std; event-like maps are in [-1, 1] and enter as they are (1 channel
here; the step repeats them to 3). Every random choice of step ``k`` comes from ``default_rng([seed, k])``, as in
evseg.adapt.data, so a resumed run sees the same batches.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch

from evseg.adapt.data import InputSpec, SourceImages, crop_pad, random_crop_box
from evseg.cmda.inputs import (EVENTS_PER_CLIP_UNIT, SOURCE_CONTENT, TARGET_CONTENT, as_uint8, content_extractor,
                               event_image, motion_extractor)
from evseg.data.classes import IGNORE
from evseg.data.dsec_night import DsecNight

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def image_spec(mean=IMAGENET_MEAN, std=IMAGENET_STD) -> InputSpec:
    """The standardisation of CMDA's RGB inputs."""
    return InputSpec("warp_image", (0, 1), False, tuple(mean), tuple(std), rgb_source=True)


def gray(rgb: np.ndarray) -> np.ndarray:
    """PIL's convert("L") of an (H, W, 3) RGB uint8 image, as float64 in [0, 255]."""
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def isr(rgb: np.ndarray, params: dict, rng: np.random.Generator) -> np.ndarray:
    """The Content-Extractor map of an RGB uint8 image, shift directions drawn from ``rng``."""
    rightward, downward = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
    return content_extractor(gray(rgb), rightward=rightward, downward=downward, **params)


class MotionSource(SourceImages):
    """Labelled RGB source images with the Motion-Extractor map of each (from ``leftImg8bit_sequence``)."""

    def __init__(self, root: str | Path, classes: str, resize: tuple[int, int], spec: InputSpec, motion: dict,
                 content: dict = SOURCE_CONTENT):
        super().__init__(root, classes, resize, spec)
        self.motion_params, self.content = dict(motion), dict(content)
        self._motion: dict[int, np.ndarray] = {}

    def motion(self, i: int) -> np.ndarray:
        """float32 (H, W) in [-1, 1] at the resized size."""
        if i not in self._motion:
            frame = cv2.cvtColor(self.data.image(i, grayscale=False), cv2.COLOR_RGB2GRAY)
            previous = cv2.cvtColor(self.data.previous_frame(i), cv2.COLOR_RGB2GRAY)
            stored = as_uint8(motion_extractor(frame, previous, **self.motion_params))
            height, width = self.get(i)[1].shape
            resized = cv2.resize(stored, (width, height), interpolation=cv2.INTER_LINEAR)
            self._motion[i] = resized.astype(np.float32) / 255 * 2 - 1
        return self._motion[i]

    def sample(self, rng: np.random.Generator, i: int, crop: tuple[int, int], cat_max_ratio: float,
               rare_class: int | None = None, min_class_pixels: int = 0) -> dict[str, np.ndarray]:
        image, label = self.get(i)
        top, left, flip = self.crop_box(rng, i, crop, cat_max_ratio, rare_class, min_class_pixels)
        rgb = crop_pad(image.transpose(2, 0, 1), top, left, crop, flip, 0).transpose(1, 2, 0)
        return {"image": self.spec.image(rgb), "label": crop_pad(label, top, left, crop, flip, IGNORE),
                "events": crop_pad(self.motion(i), top, left, crop, flip, 0.0)[None],
                "isr": isr(rgb, self.content, rng)[None]}


class NightFrames:
    """DSEC Night-Semantic samples as network inputs; the dataset is opened per process (loader workers)."""

    def __init__(self, root: str | Path, split: str, sequences: dict[str, int], sensor_size: tuple[int, int],
                 eval_height: int, spec: InputSpec, events_per_clip_unit: float = EVENTS_PER_CLIP_UNIT,
                 content: dict = TARGET_CONTENT):
        self.args = dict(root=root, split=split, sequences=dict(sequences), sensor_size=tuple(sensor_size))
        self.spec, self.events_per_clip_unit, self.content = spec, events_per_clip_unit, dict(content)
        self._data, self._pid = None, None
        self.ids = list(self.data.ids)
        self.eval_height = eval_height

    @property
    def data(self) -> DsecNight:
        if self._pid != os.getpid():
            self._data, self._pid = DsecNight(**self.args), os.getpid()
        return self._data

    def __getstate__(self):
        return {**self.__dict__, "_data": None, "_pid": None}

    def __len__(self) -> int:
        return len(self.ids)

    def event_image(self, i: int) -> np.ndarray:
        """The whole event image of sample ``i``: float32 (H, W) in [-1, 1]."""
        x, y, t, p = self.data.events(i)
        height, width = self.data.sensor_size
        return event_image(x, y, t, p, height, width, self.events_per_clip_unit)

    def sample(self, rng: np.random.Generator, i: int, crop: tuple[int, int],
               size: tuple[int, int]) -> dict[str, np.ndarray]:
        """A training sample: random ``crop`` (height, width) of image and events, flipped, resized to ``size``."""
        image, events = self.data.image(i), self.event_image(i)
        top, left = random_crop_box(rng, events.shape, crop)
        flip = bool(rng.random() < 0.5)
        rgb = crop_pad(image.transpose(2, 0, 1), top, left, crop, flip, 0).transpose(1, 2, 0)
        events = crop_pad(events, top, left, crop, flip, 0.0)
        if tuple(crop) != tuple(size):
            rgb = cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
            events = cv2.resize(events, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        return {"image": self.spec.image(rgb), "events": events[None], "isr": isr(rgb, self.content, rng)[None]}

    def test_sample(self, i: int) -> dict[str, np.ndarray]:
        """Whole-frame inputs (the fusion output needs image and events) and label, cut to the top
        ``eval_height`` rows; ``rgb`` is the uint8 image for pictures."""
        rows = slice(0, self.eval_height)
        rgb = np.ascontiguousarray(self.data.image(i)[rows])
        return {"rgb": rgb, "image": self.spec.image(rgb), "events": self.event_image(i)[rows][None],
                "label": self.data.label(i)[rows]}


class CMDABatches(torch.utils.data.Dataset):
    """Item ``step`` is the batch of that step: ``source``, ``source_label``, ``source_events`` (the Motion-Extractor
    map), ``source_isr``, and with a target ``target``, ``target_events``, ``target_isr``."""

    def __init__(self, source: MotionSource, seed: int, batch_size: int, crop: tuple[int, int], cat_max_ratio: float,
                 target: NightFrames | None = None, target_crop: tuple[int, int] | None = None, rare_classes=None,
                 min_class_pixels: int = 0):
        self.source, self.target = source, target
        self.seed, self.batch_size, self.crop, self.cat_max_ratio = seed, batch_size, tuple(crop), cat_max_ratio
        self.target_crop = tuple(target_crop or crop)
        self.rare_classes, self.min_class_pixels = rare_classes, min_class_pixels

    def __len__(self) -> int:
        return 2**62  # indexed by step

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, step])
        rows: dict[str, list] = {}
        for _ in range(self.batch_size):
            rare, i = None, int(rng.integers(len(self.source)))
            if self.rare_classes is not None:
                rare, i = self.rare_classes.sample(torch.Generator().manual_seed(int(rng.integers(2**62))))
            sample = self.source.sample(rng, i, self.crop, self.cat_max_ratio, rare, self.min_class_pixels)
            for key, value in sample.items():
                rows.setdefault("source" if key == "image" else f"source_{key}", []).append(value)
        if self.target is not None:
            for _ in range(self.batch_size):
                sample = self.target.sample(rng, int(rng.integers(len(self.target))), self.target_crop, self.crop)
                for key, value in sample.items():
                    rows.setdefault("target" if key == "image" else f"target_{key}", []).append(value)
        batch = {key: torch.from_numpy(np.stack(values)) for key, values in rows.items()}
        batch["source_label"] = batch["source_label"].long()
        return batch
