"""The samples of SeCo's connectivity correction (reference/seco_unimatch.md §2.2): one per connected region.

Every 8-connected component of every class in a PSA label is a region ("connectivity"), with no minimum size,
as the released ``gen_ins_mask.py``. The classifier sees a fixed-aspect window around the region: centred on its
bounding box, enlarged at the same aspect when the box does not fit, shifted to stay inside the image, and resized
to the window size (the released code cuts 256x512 windows of 1024x2048 images).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from evseg.data.classes import IGNORE


@dataclass
class Region:
    """One connected region of one sample: its class and its mask, stored as the crop inside its box."""

    sample: int
    cls: int
    box: tuple[int, int, int, int]  # y0, x0, y1, x1 (exclusive ends)
    crop: np.ndarray  # bool (y1 - y0, x1 - x0)

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        full = np.zeros(shape, bool)
        y0, x0, y1, x1 = self.box
        full[y0:y1, x0:x1] = self.crop
        return full


def connected_regions(label: np.ndarray, sample: int = 0) -> list[Region]:
    """Every 8-connected component of every class in ``label`` (255 is not a class), class by class."""
    regions = []
    for cls in np.unique(label):
        if cls == IGNORE:
            continue
        count, components, stats, _ = cv2.connectedComponentsWithStats((label == cls).astype(np.uint8),
                                                                        connectivity=8)
        for k in range(1, count):
            x0, y0, w, h = stats[k, :4]
            crop = components[y0:y0 + h, x0:x0 + w] == k
            regions.append(Region(sample, int(cls), (int(y0), int(x0), int(y0 + h), int(x0 + w)), crop))
    return regions


def window_box(box: tuple[int, int, int, int], image_shape: tuple[int, int],
               window: tuple[int, int]) -> tuple[int, int, int, int]:
    """(y0, x0, y1, x1) of the window the classifier sees for a region box: ``window``'s aspect, centred on the
    box, grown to hold the box, shifted inside the image (and cut to it when larger than the image)."""
    height, width = image_shape
    win_h, win_w = window
    y0, x0, y1, x1 = box
    scale = max(1.0, (y1 - y0) / win_h, (x1 - x0) / win_w)
    h, w = min(height, round(win_h * scale)), min(width, round(win_w * scale))
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    top = int(np.clip(round(cy - h / 2), 0, height - h))
    left = int(np.clip(round(cx - w / 2), 0, width - w))
    return top, left, top + h, left + w


def region_window(image: np.ndarray, region: Region, window: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The image window around a region and the region's mask in it, both resized to ``window`` (h, w):
    (image uint8, mask bool); the image bilinear, the mask nearest."""
    y0, x0, y1, x1 = window_box(region.box, image.shape[:2], window)
    mask = region.mask(image.shape[:2])[y0:y1, x0:x1]
    size = (window[1], window[0])
    return (cv2.resize(image[y0:y1, x0:x1], size, interpolation=cv2.INTER_LINEAR),
            cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool))


def region_samples(image: np.ndarray, label: np.ndarray, window: tuple[int, int], sample: int = 0,
                   min_pixels: int = 1) -> tuple[list[Region], list[np.ndarray], list[np.ndarray]]:
    """The classifier's samples of one labelled image: its regions of at least ``min_pixels`` pixels, with their
    windows and window masks (:func:`region_window`)."""
    regions, windows, masks = [], [], []
    for region in connected_regions(label, sample=sample):
        if region.crop.sum() >= min_pixels:
            crop, mask = region_window(image, region, window)
            regions.append(region)
            windows.append(crop)
            masks.append(mask)
    return regions, windows, masks


def paint_regions(shape: tuple[int, int], regions: list[Region], labels: np.ndarray) -> np.ndarray:
    """A uint8 label with each region painted with its new label, in order; -1 (dropped) stays 255."""
    canvas = np.full(shape, IGNORE, np.uint8)
    for region, label in zip(regions, labels):
        if label >= 0:
            y0, x0, y1, x1 = region.box
            canvas[y0:y1, x0:x1][region.crop] = label
    return canvas
