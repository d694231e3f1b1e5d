"""PSA's proposal backend that needs no weights: superpixels in place of SAM's masks.

SAM cannot be downloaded where the offline demo runs, so the demo aggregates pseudo-labels over
superpixels (scikit-image's Felzenszwalb or SLIC) through the same aggregation code:

- stuff: every superpixel is a proposal, voted on exactly like a SAM automatic mask;
- things: a prompt's mask is every superpixel inside its box that the prompting component covers for more
  than ``min_cover`` of its pixels, plus the superpixels under its points, cut to the box. It plays the
  role of SAM's "the object at these points, inside this box".
"""

from __future__ import annotations

import numpy as np


def superpixels(image: np.ndarray, method: str = "felzenszwalb", **params) -> np.ndarray:
    """Segment ids (H, W) int of a grayscale or RGB uint8 image."""
    from skimage.segmentation import felzenszwalb, slic

    gray = image if image.ndim == 2 else image.mean(axis=2)
    gray = gray.astype(np.float64) / 255.0
    if method == "felzenszwalb":
        return felzenszwalb(gray, channel_axis=None, **params)
    if method == "slic":
        return slic(gray, channel_axis=None, start_label=0, **params)
    raise ValueError(f"unknown superpixel method {method!r}: felzenszwalb or slic")


def segment_masks(segments: np.ndarray) -> list[np.ndarray]:
    """One boolean mask per superpixel, in id order."""
    return [segments == s for s in np.unique(segments)]


def prompt_mask(segments: np.ndarray, component: np.ndarray, box: np.ndarray, points: np.ndarray,
                min_cover: float = 0.5) -> np.ndarray:
    """The superpixels that answer a thing prompt (component, XYXY box, (x, y) points), cut to the box."""
    x0, y0, x1, y1 = np.rint(box).astype(int)
    inside = np.zeros_like(component)
    inside[y0: y1 + 1, x0: x1 + 1] = True
    ids = segments[inside]
    size = np.bincount(ids, minlength=segments.max() + 1)
    covered = np.bincount(ids, weights=component[inside], minlength=segments.max() + 1)
    chosen = covered > min_cover * np.maximum(size, 1)
    chosen[segments[points[:, 1], points[:, 0]]] = True
    return chosen[segments] & inside
