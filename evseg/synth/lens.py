"""A mild lens distortion for the synthetic event camera, expressed as a DSEC ``rectify_map``.

The map gives, for every distorted sensor pixel, its rectified position: a radial (barrel) model
``x_r = c_x + f (x_n (1 + k1 r^2 + k2 r^4)) + shift``. With the defaults the corners land a few pixels
outside the image, as DSEC's own maps do (about -12..656 over 640 columns), so the negative-coordinate
and out-of-image paths of the loaders are exercised by the demo data.
"""

from __future__ import annotations

import numpy as np


def radial_rectify_map(height: int, width: int, focal_px: float, k1: float = 0.04, k2: float = 0.01,
                       shift_px: tuple[float, float] = (0.4, 0.8)) -> np.ndarray:
    """(height, width, 2) float32: the rectified (x, y) of each distorted pixel (x, y)."""
    cx, cy = (width - 1) / 2, (height - 1) / 2
    yd, xd = np.mgrid[0:height, 0:width].astype(np.float64)
    xn, yn = (xd - cx) / focal_px, (yd - cy) / focal_px
    r2 = xn**2 + yn**2
    gain = 1 + k1 * r2 + k2 * r2**2
    x_rect = cx + focal_px * xn * gain + shift_px[0]
    y_rect = cy + focal_px * yn * gain + shift_px[1]
    return np.stack([x_rect, y_rect], axis=-1).astype(np.float32)
