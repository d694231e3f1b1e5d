"""UniMatch's strong views of an unlabelled crop (reference/seco_unimatch.md §4, "Data").

Each strong view is drawn independently from the weak crop: colour jitter (brightness, contrast, saturation
0.5, hue 0.25) with p = 0.8, grayscale with p = 0.2, Gaussian blur with sigma ~ U(0.1, 2.0) and p = 0.5; and a
CutMix box with p = 0.5 whose area is U(0.02, 0.4) of the crop and whose aspect ratio is U(0.3, 1/0.3), drawn
again until it lies inside the crop.

Event inputs are not intensities: like our DACS augmentation (README, fidelity), they get the blur and the
CutMix box only. Gray reconstructions get brightness and contrast (saturation, hue and grayscale have no
meaning for one channel). The blur kernel spans about 10 % of the crop side (DACS's), not PIL's box
approximation of the same sigma.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from evseg.adapt.augment import GRAY_WEIGHTS, color_jitter, denormalize, gaussian_blur, normalize

CUTMIX_AREA = (0.02, 0.4)
CUTMIX_ASPECT = (0.3, 1 / 0.3)


@dataclass(frozen=True)
class StrongViews:
    """The strong augmentation of one crop; ``images`` says whether the inputs are standardised images
    (mean/std per channel) or event tensors."""

    images: bool
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    jitter_p: float = 0.8
    brightness: float = 0.5
    contrast: float = 0.5
    saturation: float = 0.5
    hue: float = 0.25
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)

    @classmethod
    def from_config(cls, cfg: dict, images: bool, mean=(), std=()) -> "StrongViews":
        return cls(images, tuple(mean), tuple(std), cfg["jitter_p"], cfg["brightness"], cfg["contrast"],
                   cfg["saturation"], cfg["hue"], cfg["grayscale_p"], cfg["blur_p"], tuple(cfg["blur_sigma"]))

    def __call__(self, crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A strong view of ``crop`` (C, H, W), float32 in network units. Every draw is made (and used or not)
        in a fixed order, so the rng advances the same way whatever the input."""
        jitter, gray, blur = rng.random(3) < (self.jitter_p, self.grayscale_p, self.blur_p)
        factors = np.array([rng.uniform(max(0.0, 1 - self.brightness), 1 + self.brightness),
                            rng.uniform(max(0.0, 1 - self.contrast), 1 + self.contrast),
                            rng.uniform(max(0.0, 1 - self.saturation), 1 + self.saturation),
                            rng.uniform(-self.hue, self.hue)])
        order = rng.permutation(4).tolist()
        sigma = rng.uniform(*self.blur_sigma)
        x = torch.from_numpy(crop)[None]
        if self.images:
            x = denormalize(x, self.mean, self.std)
            if jitter:
                x = color_jitter(x, torch.from_numpy(factors)[:, None], order)
            if gray and x.shape[1] == 3:
                luma = (x * torch.tensor(GRAY_WEIGHTS).view(1, 3, 1, 1)).sum(1, keepdim=True)
                x = luma.expand_as(x)
        if blur:
            x = gaussian_blur(x, sigma)
            x = x.clamp(0, 1) if self.images else x
        if self.images:
            x = normalize(x, self.mean, self.std)
        return np.ascontiguousarray(x[0].numpy(), dtype=np.float32)


def cutmix_box(rng: np.random.Generator, size: tuple[int, int], p: float = 0.5) -> np.ndarray:
    """A (H, W) bool mask: with probability ``p`` one axis-aligned box inside the crop, else empty."""
    height, width = size
    mask = np.zeros((height, width), dtype=bool)
    if rng.random() >= p:
        return mask
    area = rng.uniform(*CUTMIX_AREA) * height * width
    for _ in range(1000):
        aspect = rng.uniform(*CUTMIX_ASPECT)
        box_w, box_h = int(np.sqrt(area / aspect)), int(np.sqrt(area * aspect))
        left, top = int(rng.integers(0, width)), int(rng.integers(0, height))
        if left + box_w <= width and top + box_h <= height:
            mask[top: top + box_h, left: left + box_w] = True
            return mask
    raise RuntimeError(f"no CutMix box of area {area:.0f} fits a {height}x{width} crop in 1000 draws")
