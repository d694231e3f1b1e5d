"""Rare-class sampling of DAFormer (reference/cmda_daformer.md §1.8): draw a class, favouring rare ones, then a
source image that contains enough of it.

f_c = pixels of class c over all labelled pixels of the source set; P(c) = softmax((1 - f_c)/T) with T = 0.01.
The softmax runs only over classes that have at least one image with more than ``min_pixels`` pixels of them:
DAFormer draws the image among those, so a class without any would have nothing to draw (the reference would
fail on it); such classes get probability 0. The denominator of f_c still counts every labelled pixel. The re-drawn
crop (up to 10 crops holding > min_pixels*0.5 pixels of c) belongs to the data loader, not here.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

CITYSCAPES_AREA = 2048 * 1024  # DAFormer's min_pixels refer to full-size labels


def scaled_min_pixels(min_pixels_at_full: int, full_area: int, area: int) -> int:
    """``min_pixels`` for labels of ``area`` pixels, given the threshold meant for labels of ``full_area`` pixels
    (DAFormer's 3000 refers to the class statistics of the full-size source labels)."""
    return int(round(min_pixels_at_full * area / full_area))


def count_class_pixels(label: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes,) int64 pixel counts of one label map; other values (ignore) are not counted."""
    label = np.asarray(label).ravel()
    label = label[(label >= 0) & (label < num_classes)].astype(np.int64)
    return np.bincount(label, minlength=num_classes).astype(np.int64)


class RareClassSampler:
    """Draws (class, image index) pairs from per-image class pixel counts ``class_pixels`` (N images, C classes)."""

    def __init__(self, class_pixels: np.ndarray, temperature: float = 0.01, min_pixels: int = 3000):
        counts = np.asarray(class_pixels, dtype=np.int64)
        if counts.ndim != 2:
            raise ValueError(f"class_pixels must be (N images, C classes), got shape {counts.shape}")
        if counts.sum() <= 0:
            raise ValueError("class_pixels holds no labelled pixel")
        self.temperature, self.min_pixels = temperature, min_pixels
        self.frequencies = counts.sum(0) / counts.sum()
        # Per class, the images with more than min_pixels pixels of it (strictly more, as DAFormer).
        self.images_with_class = [np.flatnonzero(counts[:, c] > min_pixels) for c in range(counts.shape[1])]
        samplable = np.array([len(i) > 0 for i in self.images_with_class])
        if not samplable.any():
            raise ValueError(f"no image has more than {min_pixels} pixels of any class")
        logits = torch.from_numpy((1 - self.frequencies) / temperature)
        logits[~torch.from_numpy(samplable)] = -torch.inf
        self.class_probabilities = torch.softmax(logits, 0).numpy()

    def sample(self, generator: torch.Generator | None = None) -> tuple[int, int]:
        """(class id, image index): c ~ class_probabilities, then an image uniformly among those with > min_pixels
        of c. Draws use ``generator`` (CPU), or torch's global CPU RNG."""
        probabilities = torch.from_numpy(self.class_probabilities)
        c = int(torch.multinomial(probabilities, 1, generator=generator))
        images = self.images_with_class[c]
        j = int(torch.randint(len(images), (1,), generator=generator))
        return c, int(images[j])


def rare_class_sampler(source, rcs: dict, num_classes: int) -> tuple[RareClassSampler, int]:
    """DAFormer's rare-class sampling of a source set (evseg.adapt.data.SourceImages), with ``min_pixels`` scaled
    to its resized images; returns the sampler and the pixels of the class that a re-drawn crop must show."""
    pixels = source.class_pixels(num_classes)
    height, width = source.get(0)[1].shape
    min_pixels = scaled_min_pixels(rcs["min_pixels"], CITYSCAPES_AREA, height * width)
    sampler = RareClassSampler(pixels, temperature=rcs["temperature"], min_pixels=min_pixels)
    logging.info("rare-class sampling: P(c) = %s", [round(float(p), 3) for p in sampler.class_probabilities])
    return sampler, int(min_pixels * rcs["min_crop_ratio"])
