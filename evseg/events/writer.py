"""Writing events and rectification maps in the DSEC file format (for the synthetic benchmark and tests)."""

from __future__ import annotations

from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

# DSEC compresses with Blosc + ZSTD; the chunk size is ours (the official one is not documented).
CHUNK_EVENTS = 1 << 16


def write_events_h5(path: str | Path, x: np.ndarray, y: np.ndarray, t_rel_us: np.ndarray, p: np.ndarray,
                    t_offset_us: int, compress: bool = True) -> None:
    """Write ``events/{x,y,t,p}``, ``ms_to_idx`` and ``t_offset`` as DSEC does.

    ``t_rel_us`` are times relative to the recording start (``t_offset`` is added by readers to reach the
    image clock); they must be sorted. ``ms_to_idx`` covers every millisecond up to one past the last event,
    so that every event can be reached by a window. Written to a temporary name and renamed, so a killed
    writer leaves no file that looks complete.
    """
    with EventsH5Appender(path, t_offset_us, compress) as out:
        out.append(x, y, t_rel_us, p)


def _compression(compress: bool) -> dict:
    return hdf5plugin.Blosc(cname="zstd", clevel=1, shuffle=hdf5plugin.Blosc.SHUFFLE) if compress else {}


class EventsH5Appender:
    """Write a DSEC ``events.h5`` piece by piece, for recordings too large to hold in memory at once.

    ``append`` pieces in time order; leaving the ``with`` block adds ``ms_to_idx`` and ``t_offset`` and
    renames the file into place (an exception leaves no file). The result is the file ``write_events_h5``
    writes for the concatenated events.
    """

    def __init__(self, path: str | Path, t_offset_us: int, compress: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(self.path.name + ".partial")
        self._t_offset_us = int(t_offset_us)
        self._h5 = h5py.File(self._tmp, "w")
        opts = dict(shape=(0,), chunks=(CHUNK_EVENTS,), maxshape=(None,), **_compression(compress))
        self._datasets = {name: self._h5.create_dataset(f"events/{name}", dtype=dtype, **opts)
                          for name, dtype in (("x", np.uint16), ("y", np.uint16), ("t", np.uint32), ("p", np.uint8))}
        self.num_events = 0
        self._t_last = -1
        self._ms_to_idx = []  # pieces of ms_to_idx, for the milliseconds up to the last appended event

    def append(self, x: np.ndarray, y: np.ndarray, t_rel_us: np.ndarray, p: np.ndarray) -> None:
        t_rel_us = np.asarray(t_rel_us, dtype=np.int64)
        if not len(t_rel_us):
            return
        if t_rel_us[0] < max(self._t_last, 0) or np.any(np.diff(t_rel_us) < 0):
            raise ValueError("event times must be sorted and non-negative, also across appended pieces")
        for name, values in (("x", x), ("y", y), ("t", t_rel_us), ("p", p)):
            dtype = self._datasets[name].dtype
            high = 1 if name == "p" else np.iinfo(dtype).max
            if np.min(values) < 0 or np.max(values) > high:  # DSEC's dtypes would silently wrap
                raise ValueError(f"events/{name} holds values outside [0, {high}] ({dtype} in the DSEC format)")
        # ms_to_idx for the milliseconds whose first event is in this piece: 1000*ms in (previous last t, last t].
        first_ms, last_ms = self._t_last // 1000 + 1, int(t_rel_us[-1]) // 1000
        ms = np.arange(first_ms, last_ms + 1, dtype=np.int64)
        self._ms_to_idx.append(self.num_events + np.searchsorted(t_rel_us, ms * 1000, side="left"))
        start, self.num_events = self.num_events, self.num_events + len(t_rel_us)
        for name, values in (("x", x), ("y", y), ("t", t_rel_us), ("p", p)):
            dataset = self._datasets[name]
            dataset.resize((self.num_events,))
            dataset[start:] = np.asarray(values, dtype=dataset.dtype)
        self._t_last = int(t_rel_us[-1])

    @property
    def file_size(self) -> int:
        """Bytes in the file so far (compressed events, before ``ms_to_idx`` is added)."""
        return self._h5.id.get_filesize()

    def close(self) -> None:
        """Finish the file (``ms_to_idx`` up to one ms past the last event, ``t_offset``) and publish it."""
        if not self._h5:  # already closed
            return
        last_ms = self._t_last // 1000 if self.num_events else 0
        tail = np.full(last_ms + 2 - (self._t_last // 1000 + 1), self.num_events, dtype=np.int64)
        self._h5.create_dataset("ms_to_idx", data=np.concatenate([*self._ms_to_idx, tail]).astype(np.uint64))
        self._h5.create_dataset("t_offset", data=np.array([self._t_offset_us], dtype=np.int64))
        self._h5.close()
        self._tmp.replace(self.path)

    def __enter__(self) -> EventsH5Appender:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self._h5.close()
            self._tmp.unlink(missing_ok=True)


def write_rectify_map(path: str | Path, rectify_map: np.ndarray) -> None:
    """Write ``rectify_map`` (H, W, 2): rectified (x, y) of every distorted sensor pixel, as DSEC does."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    with h5py.File(tmp, "w") as f:
        f.create_dataset("rectify_map", data=np.asarray(rectify_map, np.float32))
    tmp.replace(path)
