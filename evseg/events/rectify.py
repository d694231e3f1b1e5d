"""Rectification of DSEC events with the forward map ``rectify_map[y, x] = (x_rect, y_rect)``.

``rectify_map.h5`` holds, for every distorted sensor pixel, its fractional position in the rectified
frame (the frame the DSEC-Semantic labels are drawn in). It is a forward map, not a ``cv2.remap`` map;
rectified coordinates are fractional and may fall slightly outside the image (DSEC's corners reach about
(-12, -3.8) to (656, 498)), so events are splatted bilinearly by the voxel grids rather than rounded.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numba
import numpy as np

from evseg.errors import DataError

DSEC_SENSOR_SIZE = (480, 640)  # (height, width) of the DSEC event cameras


def load_rectify_map(path: str | Path, sensor_size: tuple[int, int] = DSEC_SENSOR_SIZE) -> np.ndarray:
    """Read ``rectify_map`` (height, width, 2) float32 and check it fits the sensor."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "the rectification map does not exist",
                        "DSEC ships it beside events.h5 (<seq>/events/left/rectify_map.h5) in <seq>_events_left.zip")
    with h5py.File(path, "r") as f:
        if "rectify_map" not in f:
            raise DataError(path, f"has no 'rectify_map' dataset (it holds {sorted(f.keys())})",
                            "use the rectify_map.h5 from the sequence's events archive")
        rectify_map = np.asarray(f["rectify_map"][()], dtype=np.float32)
    expected = (*sensor_size, 2)
    if rectify_map.shape != expected:
        raise DataError(path, f"rectify_map has shape {rectify_map.shape}, expected {expected} "
                        "(sensor height, width, and the rectified x and y)",
                        "use the map of the same event camera as events.h5 (DSEC: left camera, 480x640), "
                        "or set the dataset's sensor_size in the config to the map's resolution")
    return rectify_map


def rectify_events(x: np.ndarray, y: np.ndarray, rectify_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rectified (x, y) float32 coordinates of events at integer sensor pixels (x, y)."""
    x, y, rectify_map = np.asarray(x), np.asarray(y), np.asarray(rectify_map)
    if len(x) != len(y):
        raise ValueError(f"x and y have different lengths: {len(x)}, {len(y)}")
    if x.dtype.kind not in "iu" or y.dtype.kind not in "iu":
        raise TypeError(f"rectification takes integer sensor pixels, got x {x.dtype} and y {y.dtype}")
    height, width = rectify_map.shape[:2]
    if len(x) and (int(x.max()) >= width or int(y.max()) >= height):
        raise ValueError(f"events reach pixel (x={int(x.max())}, y={int(y.max())}) but the rectification map "
                         f"covers {width}x{height}: the map belongs to another camera or resolution")
    if len(x) and "i" in (x.dtype.kind, y.dtype.kind) and min(int(x.min()), int(y.min())) < 0:
        raise ValueError(f"events have negative pixel coordinates (min x {int(x.min())}, min y {int(y.min())})")
    # A compiled gather: NumPy's rectify_map[y, x] with two index arrays is about 10x slower.
    x_rect = np.empty(len(x), dtype=rectify_map.dtype)
    y_rect = np.empty(len(x), dtype=rectify_map.dtype)
    _lookup(x, y, rectify_map, x_rect, y_rect)
    return x_rect, y_rect


@numba.njit(cache=True, nogil=True)
def _lookup(x, y, rectify_map, x_rect, y_rect):
    for i in range(len(x)):
        x_rect[i] = rectify_map[y[i], x[i], 0]
        y_rect[i] = rectify_map[y[i], x[i], 1]
