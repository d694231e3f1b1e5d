"""E2VID's post-processing of a reconstruction: unsharp mask and intensity rescaling (optionally auto-HDR).

As in the reference inference (../shared/reference/e2vid_ecddp.md §A.5): the network's sigmoid output in
[0, 1] is sharpened with ``img <- (1 + a) img - a blur(img)`` (a = 0.3, 5x5 Gaussian with sigma 1), then
mapped to [0, 1] with ``(img - Imin) / (Imax - Imin)`` (E2VID multiplies by 255 and casts to uint8). Without auto-HDR, Imin = 0 and Imax = 1; with
it, Imin = clip(min, 0, 0.45) and Imax = clip(max, 0.55, 1) per frame, each replaced by its median over
the last frames (a sliding window of 10), which is stateful across frames.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np


def gaussian_kernel(size: int = 5, sigma: float = 1.0) -> np.ndarray:
    """A normalised 2-D Gaussian kernel (E2VID's ``gkern``)."""
    axis = np.arange(size) - (size - 1) / 2
    g = np.exp(-(axis**2) / (2 * sigma**2))
    kernel = np.outer(g, g)
    return (kernel / kernel.sum()).astype(np.float32)


def unsharp_mask(image: np.ndarray, amount: float = 0.3, sigma: float = 1.0) -> np.ndarray:
    """``(1 + amount) image - amount blur(image)``; the blur is a 5x5 Gaussian (zero padding, as the
    reference's conv2d with padding 2)."""
    blurred = cv2.filter2D(image.astype(np.float32), -1, gaussian_kernel(5, sigma), borderType=cv2.BORDER_CONSTANT)
    return (1 + amount) * image - amount * blurred


@dataclass
class IntensityRescaler:
    """Maps an image to [0, 1] (E2VID's 8-bit mapping before the cast); with ``auto_hdr`` the range
    follows the median min and max of the last ``median_window`` frames."""

    auto_hdr: bool = False
    median_window: int = 10
    _mins: deque = field(default_factory=deque, repr=False)
    _maxs: deque = field(default_factory=deque, repr=False)

    def reset(self) -> None:
        self._mins.clear()
        self._maxs.clear()

    def __call__(self, image: np.ndarray) -> np.ndarray:
        low, high = 0.0, 1.0
        if self.auto_hdr:
            self._mins.append(float(np.clip(image.min(), 0.0, 0.45)))
            self._maxs.append(float(np.clip(image.max(), 0.55, 1.0)))
            while len(self._mins) > self.median_window:
                self._mins.popleft()
                self._maxs.popleft()
            low, high = float(np.median(self._mins)), float(np.median(self._maxs))
        return np.clip((image - low) / (high - low), 0.0, 1.0).astype(np.float32)
