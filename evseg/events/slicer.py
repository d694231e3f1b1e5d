"""Lazy reading of DSEC ``events.h5`` files by time window.

DSEC stores one sequence's events as ``events/{x,y,t,p}`` (``t`` in microseconds, relative to the start of
the recording), a lookup table ``ms_to_idx`` with ``t[ms_to_idx[ms]] >= 1000*ms > t[ms_to_idx[ms] - 1]``,
and ``t_offset``, the time to *add* to ``t`` to reach the image (and label) clock. The events are compressed
with Blosc/ZSTD, which h5py reads only after ``import hdf5plugin``.

The slicer reads only the part of the file a window needs: ``ms_to_idx`` locates the window to within one
millisecond, and a binary search inside that bucket gives the exact microsecond boundaries. The semantics
follow the official ``EventSlicer`` (DSEC ``scripts/utils/eventslicer.py``) and ESS's
``get_events_fixed_num``; the differences are listed in the method docstrings.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from evseg.errors import DataError

try:  # registers the Blosc/ZSTD filter with HDF5; without it h5py cannot decompress DSEC events
    import hdf5plugin  # noqa: F401
except ImportError:  # reported with a fix when a compressed file is actually read
    hdf5plugin = None

EVENT_FIELDS = ("x", "y", "t", "p")
CHUNK_CACHE_BYTES = 16 * 2**20


@dataclass(frozen=True)
class Events:
    """A slice of events: pixel coordinates, time on the image clock (µs, int64) and polarity (0/1).

    ``len(events)`` is the number of events; ``x, y, t, p = events`` unpacks the arrays. An empty slice is
    still truthy: ``None``, not an empty slice, means "the recording does not cover this window".
    """

    x: np.ndarray
    y: np.ndarray
    t: np.ndarray
    p: np.ndarray

    def __len__(self) -> int:
        return len(self.t)

    def __iter__(self):
        return iter((self.x, self.y, self.t, self.p))

    def __bool__(self) -> bool:
        return True


class EventSlicer:
    """Read time windows of a DSEC ``events.h5`` without loading the file.

    ``ms_to_idx`` (one int per millisecond) is read once; the event arrays are read per window.
    Use as a context manager or call ``close()``.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(self.path, "the events file does not exist",
                            "check the dataset root in the config; DSEC puts it at <seq>/events/left/events.h5")
        try:
            # A chunk cache of 16 MB per dataset holds a 2M-event ESS window, so consecutive samples whose
            # windows overlap decompress only the new chunks.
            self._h5 = h5py.File(self.path, "r", rdcc_nbytes=CHUNK_CACHE_BYTES)
        except OSError as err:
            raise DataError(self.path, f"is not a readable HDF5 file ({err})",
                            "re-download or re-unpack the sequence's events archive") from err
        try:
            self._open()
        except Exception:
            self._h5.close()
            raise

    def _open(self) -> None:
        missing = [f"events/{f}" for f in EVENT_FIELDS if f"events/{f}" not in self._h5]
        if "ms_to_idx" not in self._h5:
            missing.append("ms_to_idx")
        if missing:
            raise DataError(self.path, f"lacks the dataset(s) {', '.join(missing)} of the DSEC event format",
                            "use the events.h5 from the official <seq>_events_left.zip (or a converter that "
                            "writes events/{x,y,t,p}, ms_to_idx and t_offset)")
        names = [f"events/{f}" for f in EVENT_FIELDS] + [n for n in ("ms_to_idx", "t_offset") if n in self._h5]
        self._datasets = {name: self._h5[name] for name in names}
        lengths = {f: len(self._datasets[f"events/{f}"]) for f in EVENT_FIELDS}
        if len(set(lengths.values())) != 1:
            raise DataError(self.path, f"the event arrays have different lengths {lengths}",
                            "the file is truncated or was written incorrectly: re-download it")
        self.num_events = lengths["t"]
        if "t_offset" in self._h5:
            self.t_offset = int(self._read("t_offset").reshape(-1)[0])
        else:  # the official slicer does the same; such files already hold image-clock times
            warnings.warn(f"{self.path}: no t_offset dataset; using 0 as the official DSEC slicer does")
            self.t_offset = 0
        self.ms_to_idx = self._read("ms_to_idx", dtype=np.int64)
        # Reading one value decompresses one chunk: this is where a missing Blosc filter shows up.
        n = self.num_events
        self._t_first = int(self._read_t(0, 1)[0]) if n else 0
        self._t_last = int(self._read_t(n - 1, n)[0]) if n else 0
        last_ms_needed = self._t_last // 1000
        if self.num_events and len(self.ms_to_idx) <= last_ms_needed:
            raise DataError(self.path, f"ms_to_idx has {len(self.ms_to_idx)} entries but the events run to "
                            f"t = {self._t_last} µs, which needs at least {last_ms_needed + 1}",
                            "the file is truncated or ms_to_idx was built from fewer events: re-download it "
                            "or rebuild ms_to_idx from events/t")

    def _read(self, name: str, start: int | None = None, stop: int | None = None, dtype=None) -> np.ndarray:
        """``name[start:stop]`` (the whole dataset by default), with HDF5 filter errors made clear."""
        try:
            dataset = self._datasets[name]  # kept open: HDF5's chunk cache then serves overlapping windows
            return np.asarray(dataset[()] if start is None else dataset[start:stop], dtype=dtype)
        except OSError as err:
            if "filter" in str(err).lower() or "plugin" in str(err).lower():
                raise DataError(self.path, f"{name} is compressed with the Blosc/ZSTD HDF5 filter, which is not "
                                "registered in this Python", "pip install hdf5plugin (it is pinned in "
                                "envs/requirements.txt); evseg imports it before opening the file") from err
            raise DataError(self.path, f"reading {name}[{start}:{stop}] failed ({err})",
                            "the file is probably truncated: re-download it") from err

    def _read_t(self, i0: int, i1: int) -> np.ndarray:
        return self._read("events/t", i0, i1, dtype=np.int64)

    # -- public API ------------------------------------------------------------------------------------

    @property
    def time_range_us(self) -> tuple[int, int]:
        """First and last event time on the image clock (µs)."""
        return self._t_first + self.t_offset, self._t_last + self.t_offset

    def get_events(self, t_start_us: int, t_end_us: int) -> Events | None:
        """Events with ``t_start_us <= t < t_end_us`` (image clock, µs), or ``None`` past the end.

        As the official slicer, returns ``None`` when the window reaches a millisecond that ``ms_to_idx``
        does not cover (the recording cannot guarantee the window). Unlike it, a window starting before the
        recording is clamped to the first event instead of indexing ``ms_to_idx`` from its end.
        """
        if t_end_us < t_start_us:
            raise ValueError(f"window end {t_end_us} µs is before its start {t_start_us} µs")
        t0 = int(t_start_us) - self.t_offset
        t1 = int(t_end_us) - self.t_offset
        start_ms, end_ms = max(math.floor(t0 / 1000), 0), max(math.ceil(t1 / 1000), 0)
        if end_ms >= len(self.ms_to_idx):
            return None
        i0, i1 = int(self.ms_to_idx[start_ms]), int(self.ms_to_idx[end_ms])
        t = self._read_t(i0, i1)
        # Events are sorted by time, so a binary search equals the official linear scan.
        j0 = i0 + int(np.searchsorted(t, t0, side="left"))
        j1 = i0 + int(np.searchsorted(t, t1, side="left"))
        return self._events(j0, j1, t[j0 - i0 : j1 - i0])

    def get_events_fixed_num(self, t_end_us: int, num_events: int) -> Events:
        """The ``num_events`` events just before ``t_end_us`` (image clock), fewer at the recording start.

        As ESS's ``get_events_fixed_num``, the window ends at the first event with ``t >= t_end_us``. Unlike
        it: a ``t_end_us`` on an exact millisecond is handled (ESS's search bucket is empty there), a
        ``t_end_us`` after the last event returns the last events, and the returned ``t`` is on the image
        clock like ``get_events`` (ESS returns it without ``t_offset``).
        """
        t1 = int(t_end_us) - self.t_offset
        if t1 > self._t_last:
            end = self.num_events
        elif t1 <= self._t_first:
            end = 0
        else:
            lo_ms, hi_ms = math.floor(t1 / 1000), math.ceil(t1 / 1000)
            i0 = int(self.ms_to_idx[lo_ms])
            i1 = int(self.ms_to_idx[hi_ms]) if hi_ms < len(self.ms_to_idx) else self.num_events
            end = i0 + int(np.searchsorted(self._read_t(i0, i1), t1, side="left"))
        start = max(end - int(num_events), 0)
        return self._events(start, end, self._read("events/t", start, end))  # stored dtype; _events widens

    def get_events_by_index(self, start: int, end: int) -> Events:
        """Events ``start`` to ``end - 1`` of the file (time order), ``t`` on the image clock."""
        if not 0 <= start <= end <= self.num_events:
            raise IndexError(f"events [{start}, {end}) are outside the {self.num_events} events of {self.path}")
        return self._events(start, end, self._read("events/t", start, end))

    def _events(self, i0: int, i1: int, t_rel: np.ndarray) -> Events:
        return Events(x=self._read("events/x", i0, i1), y=self._read("events/y", i0, i1),
                      t=np.add(t_rel, self.t_offset, dtype=np.int64), p=self._read("events/p", i0, i1))

    def close(self) -> None:
        self._h5.close()

    def __enter__(self) -> EventSlicer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
