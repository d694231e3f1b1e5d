"""Writing events and rectification maps in the DSEC file format (for the synthetic benchmark and tests)."""

from __future__ import annotations

from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

# DSEC compresses with Blosc + ZSTD; the chunk size is ours (the official one is not documented).
CHUNK_EVENTS = 1 << 16


def build_ms_to_idx(t_rel_us: np.ndarray) -> np.ndarray:
    """``ms_to_idx[ms]`` = index of the first event with ``t >= 1000 * ms``, for every ms up to one past the
    last event (so that every event can be reached by a window)."""
    last_ms = int(t_rel_us[-1]) // 1000 if len(t_rel_us) else 0
    return np.searchsorted(t_rel_us, np.arange(last_ms + 2, dtype=np.int64) * 1000, side="left").astype(np.uint64)


def write_events_h5(path: str | Path, x: np.ndarray, y: np.ndarray, t_rel_us: np.ndarray, p: np.ndarray,
                    t_offset_us: int, compress: bool = True) -> None:
    """Write ``events/{x,y,t,p}``, ``ms_to_idx`` and ``t_offset`` as DSEC does.

    ``t_rel_us`` are times relative to the recording start (``t_offset`` is added by readers to reach the
    image clock); they must be sorted. Written to a temporary name and renamed, so a killed writer leaves no
    file that looks complete.
    """
    path = Path(path)
    t_rel_us = np.asarray(t_rel_us)
    if len(t_rel_us) and (np.any(np.diff(t_rel_us) < 0) or t_rel_us[0] < 0):
        raise ValueError("event times must be sorted and non-negative (relative to the recording start)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    opts = dict(chunks=(CHUNK_EVENTS,) if len(t_rel_us) else None, maxshape=(None,),
                **(hdf5plugin.Blosc(cname="zstd", clevel=1, shuffle=hdf5plugin.Blosc.SHUFFLE) if compress else {}))
    with h5py.File(tmp, "w") as f:
        f.create_dataset("events/x", data=np.asarray(x, np.uint16), **opts)
        f.create_dataset("events/y", data=np.asarray(y, np.uint16), **opts)
        f.create_dataset("events/t", data=t_rel_us.astype(np.uint32), **opts)
        f.create_dataset("events/p", data=np.asarray(p, np.uint8), **opts)
        f.create_dataset("ms_to_idx", data=build_ms_to_idx(t_rel_us))
        f.create_dataset("t_offset", data=np.array([t_offset_us], dtype=np.int64))
    tmp.replace(path)


def write_rectify_map(path: str | Path, rectify_map: np.ndarray) -> None:
    """Write ``rectify_map`` (H, W, 2): rectified (x, y) of every distorted sensor pixel, as DSEC does."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    with h5py.File(tmp, "w") as f:
        f.create_dataset("rectify_map", data=np.asarray(rectify_map, np.float32))
    tmp.replace(path)
