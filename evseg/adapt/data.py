"""Training inputs: labelled source crops, unlabelled target samples, and one whole batch per training step.

Every random choice of a step (which images, crops, flips) is drawn from ``numpy.random.default_rng([seed,
step])``, so batch ``k`` is the same whether a run is interrupted or not, with or without loader workers.
That is what makes a resumed run reach the same weights as an uninterrupted one.

Network inputs: images (source, reconstructions) are scaled to [0, 1] and standardised with ImageNet's
mean/std; event tensors enter as they are (the ESS voxel grids are already standardised per chunk). The
network has as many input channels as the target input (a gray source image is repeated over a voxel
grid's channels), or 3 with RGB source images (1-channel targets are then repeated).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from evseg.data import DsecSemantic
from evseg.data.cityscapes import Cityscapes
from evseg.data.classes import IGNORE
from evseg.errors import DataError


@dataclass(frozen=True)
class InputSpec:
    """How raw samples become network inputs (the config's ``train.input`` and ``cityscapes.grayscale``)."""

    target: str                        # "event_tensor" or "reconstruction"
    event_channels: tuple[int, int]    # which channels of the ESS tensor (20 chunks x 5 bins, oldest first)
    sum_event_channels: bool           # HPL-ESS: sum them into one "event frame"
    image_mean: tuple[float, float, float]  # RGB; gray images use the mean over channels
    image_std: tuple[float, float, float]
    rgb_source: bool = False           # RGB source images; 1-channel targets are then repeated to 3

    @property
    def target_channels(self) -> int:
        if self.target == "reconstruction" or self.sum_event_channels:
            return 1
        return self.event_channels[1] - self.event_channels[0]

    @property
    def channels(self) -> int:
        """Input channels of the network."""
        return 3 if self.rgb_source else self.target_channels

    def mean_std(self) -> tuple[list[float], list[float]]:
        """Per network channel, the standardisation of images."""
        if self.rgb_source:
            return list(self.image_mean), list(self.image_std)
        mean, std = float(np.mean(self.image_mean)), float(np.mean(self.image_std))
        return [mean] * self.channels, [std] * self.channels

    @classmethod
    def from_config(cls, cfg: dict, grayscale_source: bool = True) -> "InputSpec":
        return cls(cfg["target"], tuple(cfg["event_channels"]), cfg["sum_event_channels"], tuple(cfg["image_mean"]),
                   tuple(cfg["image_std"]), rgb_source=not grayscale_source)

    def image(self, image: np.ndarray) -> np.ndarray:
        """uint8 gray (H, W) or RGB (H, W, 3) to a standardised float32 (channels, H, W)."""
        mean, std = self.mean_std()
        x = image.astype(np.float32) / 255.0
        x = x.transpose(2, 0, 1) if x.ndim == 3 else np.repeat(x[None], self.channels, axis=0)
        return (x - np.float32(mean)[:, None, None]) / np.float32(std)[:, None, None]

    def target_input(self, tensor: np.ndarray) -> np.ndarray:
        """An event tensor (C, H, W) as network input: repeated to 3 channels for an RGB-trained network."""
        return np.repeat(tensor, 3, axis=0) if self.rgb_source else tensor


# --------------------------------------------------------------------------------------------------------
# crops


def random_crop_box(rng: np.random.Generator, size: tuple[int, int], crop: tuple[int, int],
                    label: np.ndarray | None = None, cat_max_ratio: float = 1.0) -> tuple[int, int]:
    """Top-left corner of a crop. With ``cat_max_ratio`` < 1 (mmseg RandomCrop), up to 10 crops are drawn
    until no single class covers more than that share of the crop's labelled pixels."""
    height, width = size
    ch, cw = min(crop[0], height), min(crop[1], width)
    for _ in range(10):
        top, left = int(rng.integers(0, height - ch + 1)), int(rng.integers(0, width - cw + 1))
        if label is None or cat_max_ratio >= 1.0:
            break
        counts = np.bincount(label[top: top + ch, left: left + cw].ravel(), minlength=256)[:IGNORE]
        counts = counts[counts > 0]
        if len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio:
            break
    return top, left


def crop_pad(array: np.ndarray, top: int, left: int, crop: tuple[int, int], flip: bool, fill) -> np.ndarray:
    """Crop (..., H, W) at (top, left), mirror if asked, and pad bottom/right with ``fill`` to ``crop``."""
    out = array[..., top: top + crop[0], left: left + crop[1]]
    if flip:
        out = out[..., ::-1]
    pad_h, pad_w = crop[0] - out.shape[-2], crop[1] - out.shape[-1]
    if pad_h or pad_w:
        out = np.pad(out, [(0, 0)] * (out.ndim - 2) + [(0, pad_h), (0, pad_w)], constant_values=fill)
    return np.ascontiguousarray(out)


def resize_keep_ratio(image: np.ndarray, label: np.ndarray, scale: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """mmseg Resize(img_scale=(long, short), keep_ratio=True): the largest size that fits both edges."""
    height, width = label.shape
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    size = (round(width * factor), round(height * factor))
    if size == (width, height):
        return image, label
    return (cv2.resize(image, size, interpolation=cv2.INTER_LINEAR),
            cv2.resize(label, size, interpolation=cv2.INTER_NEAREST))


# --------------------------------------------------------------------------------------------------------
# datasets


class SourceImages:
    """Labelled Cityscapes-format images, resized as in DAFormer (keep ratio) and cached in memory."""

    def __init__(self, root: str | Path, classes: str, resize: tuple[int, int], spec: InputSpec):
        self.data = Cityscapes(root, "train", classes=classes, grayscale=not spec.rgb_source)
        self.resize, self.spec = tuple(resize), spec
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.data)

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Resized (gray uint8 image, uint8 label)."""
        if i not in self._cache:
            self._cache[i] = resize_keep_ratio(self.data.image(i), self.data.label(i), self.resize)
        return self._cache[i]

    def class_pixels(self, num_classes: int) -> np.ndarray:
        """(images, classes) pixel counts at the resized resolution, for rare-class sampling."""
        return np.stack([np.bincount(self.get(i)[1].ravel(), minlength=256)[:num_classes] for i in range(len(self))])

    def crop_box(self, rng: np.random.Generator, i: int, crop: tuple[int, int], cat_max_ratio: float,
                 rare_class: int | None = None, min_class_pixels: int = 0) -> tuple[int, int, bool]:
        """(top, left, flip) of a random crop of image ``i``."""
        label = self.get(i)[1]
        for _ in range(10):  # rare-class sampling: re-draw the crop until it shows enough of the class
            top, left = random_crop_box(rng, label.shape, crop, label, cat_max_ratio)
            window = label[top: top + crop[0], left: left + crop[1]]
            if rare_class is None or (window == rare_class).sum() > min_class_pixels:
                break
        return top, left, bool(rng.random() < 0.5)

    def crop(self, rng: np.random.Generator, i: int, crop: tuple[int, int], cat_max_ratio: float,
             rare_class: int | None = None, min_class_pixels: int = 0) -> tuple[np.ndarray, np.ndarray]:
        image, label = self.get(i)
        top, left, flip = self.crop_box(rng, i, crop, cat_max_ratio, rare_class, min_class_pixels)
        return (crop_pad(self.spec.image(image), top, left, crop, flip, 0.0),
                crop_pad(label, top, left, crop, flip, IGNORE))


class TargetSamples:
    """DSEC-format target samples (ESS protocol): event tensors and the reconstructed frames.

    HDF5 files are opened per process (loader workers must not share handles), on first use.
    """

    def __init__(self, root: str | Path, split: str, sequences: list[str], dsec: dict, spec: InputSpec,
                 reconstructions: str | Path | None = None):
        self.args = dict(root=root, split=split, sequences=sequences, num_classes=dsec["num_classes"],
                         layout=dsec["label_layout"], sensor_size=tuple(dsec["sensor_size"]),
                         label_height=dsec["label_height"], skip_first=dsec["ess"]["skip_first"],
                         stride=dsec["ess"]["stride"])
        self.ess, self.spec, self.split = dsec["ess"], spec, split
        self.reconstructions = Path(reconstructions) if reconstructions else None
        self._data, self._pid = None, None
        data = self.data
        self.ids, self.samples, self.label_size = list(data.ids), list(data.samples), data.label_size
        self.index = {sample_id: i for i, sample_id in enumerate(self.ids)}
        data.close()

    @classmethod
    def from_folders(cls, sequence_dirs: list[str], dsec: dict, spec: InputSpec,
                     reconstruction_dirs: list[str] = ()) -> "TargetSamples":
        """From rule inputs: ``<root>/<split>/<seq>`` folders and their ``<recon>/<split>/<seq>`` folders."""
        dirs = [Path(d) for d in sequence_dirs]
        recon_root = Path(reconstruction_dirs[0]).parents[1] if reconstruction_dirs else None
        return cls(dirs[0].parents[1], dirs[0].parent.name, [d.name for d in dirs], dsec, spec, recon_root)

    @property
    def data(self) -> DsecSemantic:
        if self._pid != os.getpid():
            self._data, self._pid = DsecSemantic(**self.args), os.getpid()
        return self._data

    def __len__(self) -> int:
        return len(self.ids)

    def __getstate__(self):
        return {**self.__dict__, "_data": None, "_pid": None}

    def events(self, i: int) -> np.ndarray:
        """The configured channels of the ESS tensor (summed to one event frame if asked): float32 (C, H, W)."""
        ess = self.ess
        first, last = self.spec.event_channels
        tensor = self.data.ess_tensor(i, ess["num_chunks"], ess["events_per_chunk"], ess["bins_per_chunk"],
                                      ess["official_truncation"])[first:last]
        return tensor.sum(0, keepdims=True) if self.spec.sum_event_channels else tensor

    def reconstruction(self, i: int) -> np.ndarray:
        """The reconstructed frame of sample ``i`` (gray uint8, label-sized)."""
        if self.reconstructions is None:
            raise ValueError("TargetSamples was built without a reconstruction folder")
        name, index = self.samples[i]
        path = self.reconstructions / self.split / name / f"{index:06d}.png"
        frame = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if frame is None or frame.shape != self.label_size:
            found = "missing or unreadable" if frame is None else f"{frame.shape[1]}x{frame.shape[0]} pixels"
            raise DataError(path, f"the reconstruction of {self.ids[i]} is {found}, expected a "
                            f"{self.label_size[1]}x{self.label_size[0]} gray PNG",
                            "rerun the reconstruct rule for this sequence (snakemake -R reconstruct)")
        return frame

    def input(self, i: int) -> np.ndarray:
        """The network input of sample ``i`` in the configured target modality: float32 (C, H, W)."""
        if self.spec.target == "reconstruction":
            return self.spec.image(self.reconstruction(i))
        return self.spec.target_input(self.events(i))

    def label(self, i: int) -> np.ndarray:
        return self.data.label(i)


class LabelledTarget:
    """Labelled target samples in the place of the source (rule train_supervised: supervised training on the
    target's own labels, the transfer protocol by which pre-training is judged). Inputs are read per crop."""

    def __init__(self, target: TargetSamples):
        self.target, self.spec = target, target.spec

    def __len__(self) -> int:
        return len(self.target)

    def crop(self, rng: np.random.Generator, i: int, crop: tuple[int, int], cat_max_ratio: float,
             rare_class: int | None = None, min_class_pixels: int = 0) -> tuple[np.ndarray, np.ndarray]:
        if rare_class is not None:
            raise ValueError("rare-class sampling is a source-side method: set uda.rcs.enabled: false")
        label = self.target.label(i)
        top, left = random_crop_box(rng, label.shape, crop, label, cat_max_ratio)
        flip = bool(rng.random() < 0.5)
        return (crop_pad(self.target.input(i), top, left, crop, flip, 0.0),
                crop_pad(label, top, left, crop, flip, IGNORE))


def read_ids(path: str | Path) -> list[str]:
    ids = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    if not ids:
        raise DataError(path, "lists no sample ids", "rerun the sample rule (snakemake -R sample)")
    return ids


# --------------------------------------------------------------------------------------------------------
# one batch per step


class StepBatches(torch.utils.data.Dataset):
    """Item ``step`` is the whole batch of that training step, drawn from ``default_rng([seed, step])``.

    Keys: ``source`` (B, C, h, w) and ``source_label`` (B, h, w); with a target, ``target`` (B, C, h, w);
    with a hybrid subset, ``hybrid`` (event input) and ``hybrid_image`` (its reconstruction, as an image)
    under the same crop. Targets are drawn uniformly (HPL-ESS pairs source and target lists by index, which
    leaves part of the target unseen: README, fidelity).
    """

    def __init__(self, source: SourceImages, seed: int, batch_size: int, crop: tuple[int, int],
                 cat_max_ratio: float, target: TargetSamples | None = None, hybrid: list[int] | None = None,
                 rare_classes=None, min_class_pixels: int = 0):
        self.source, self.target, self.hybrid = source, target, hybrid
        self.seed, self.batch_size, self.crop, self.cat_max_ratio = seed, batch_size, tuple(crop), cat_max_ratio
        self.rare_classes, self.min_class_pixels = rare_classes, min_class_pixels

    def __len__(self) -> int:
        return 2**62  # indexed by step; the loader's sampler says which steps

    def _target_crop(self, rng, frames: list[np.ndarray], fills: list) -> list[np.ndarray]:
        top, left = random_crop_box(rng, frames[0].shape[-2:], self.crop)
        flip = bool(rng.random() < 0.5)
        return [crop_pad(frame, top, left, self.crop, flip, fill) for frame, fill in zip(frames, fills)]

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, step])
        out: dict[str, list] = {"source": [], "source_label": []}
        for _ in range(self.batch_size):
            rare, i = None, int(rng.integers(len(self.source)))
            if self.rare_classes is not None:
                rare, i = self.rare_classes.sample(torch.Generator().manual_seed(int(rng.integers(2**62))))
            image, label = self.source.crop(rng, i, self.crop, self.cat_max_ratio, rare, self.min_class_pixels)
            out["source"].append(image)
            out["source_label"].append(label)
        if self.target is not None:
            out["target"] = [self._target_crop(rng, [self.target.input(int(rng.integers(len(self.target))))],
                                               [0.0])[0] for _ in range(self.batch_size)]
        if self.hybrid is not None:
            out["hybrid"], out["hybrid_image"] = [], []
            for _ in range(self.batch_size):
                i = self.hybrid[int(rng.integers(len(self.hybrid)))]
                events, frame = self._target_crop(
                    rng, [self.target.input(i), self.target.spec.image(self.target.reconstruction(i))], [0.0, 0.0])
                out["hybrid"].append(events)
                out["hybrid_image"].append(frame)
        batch = {key: torch.from_numpy(np.stack(values)) for key, values in out.items()}
        batch["source_label"] = batch["source_label"].long()
        return batch


def hybrid_subset(ids: list[str], fraction: float, seed: int) -> list[str]:
    """The HPL-ESS hybrid subset: round(fraction N) distinct ids (at least one), seeded, in dataset order.
    The released script draws with replacement and without a seed (README, fidelity)."""
    count = max(1, round(fraction * len(ids)))
    chosen = np.random.default_rng(seed).choice(len(ids), size=count, replace=False)
    return [ids[i] for i in sorted(chosen)]
