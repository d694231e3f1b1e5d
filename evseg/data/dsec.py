"""DSEC-Semantic: sequences, label timestamps, label layouts and the ESS sampling protocol.

On disk, a DSEC root holds ``<split>/<seq>/events/left/{events.h5, rectify_map.h5}`` and the semantic
labels in one of the layouts found in the wild (../shared/reference/dsec_ess_hplss.md §1.5):

- ``raw``: what ``{train,test}_semantic_segmentation.zip`` unpack to, ``<split>/<seq>/{11,19}classes/*.png``
  with ``<split>/<seq>/<seq>_semantic_timestamps.txt``;
- ``ess``: what the ESS code reads, ``<split>/<seq>/semantic/{11,19}classes/data/*.png`` with
  ``<split>/<seq>/semantic/timestamps.txt``;
- ``ess_readme``: the tree drawn in the ESS README, ``<split>/<seq>/semantic/left/{11,19}classes/data/``.

Label timestamps are µs on the image clock, one per line, matching the sorted PNG list one to one.

The ESS protocol (what HPL-ESS's numbers rely on): drop the first 6 labels of every sequence ("not
enough events before them"), then use every second label; the event window ends at the label time.
A sample id is ``<sequence>/<label index:06d>``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np

from evseg.data.classes import IDENTITY, NUM_CLASSES_TO_SET, read_label_png
from evseg.errors import DataError
from evseg.events import EventSlicer, ess_event_tensor, load_rectify_map, rectify_events

# uzh-rpg/ess DSEC/dataset/provider.py; the maintainer confirms there is no validation split (ess#12).
DSEC_SEMANTIC_SEQUENCES = {
    "train": ["zurich_city_00_a", "zurich_city_01_a", "zurich_city_02_a", "zurich_city_04_a",
              "zurich_city_05_a", "zurich_city_06_a", "zurich_city_07_a", "zurich_city_08_a"],
    "test": ["zurich_city_13_a", "zurich_city_14_c", "zurich_city_15_a"],
}

ESS_SKIP_FIRST_LABELS = 6  # (250 ms // 100 + 1) * 2 in ESS's loader
ESS_LABEL_STRIDE = 2

LABEL_LAYOUTS = {  # name -> (label folder, timestamps file), relative to <root>/<split>/<seq>
    "raw": ("{nc}classes", "{seq}_semantic_timestamps.txt"),
    "ess": ("semantic/{nc}classes/data", "semantic/timestamps.txt"),
    "ess_readme": ("semantic/left/{nc}classes/data", "semantic/timestamps.txt"),
}


def ess_label_indices(num_labels: int, skip_first: int = ESS_SKIP_FIRST_LABELS,
                      stride: int = ESS_LABEL_STRIDE) -> list[int]:
    """Indices of the labels the ESS protocol uses: ``skip_first, skip_first + stride, ...``."""
    return list(range(skip_first, num_labels, stride))


def ess_num_samples(num_labels: int, skip_first: int = ESS_SKIP_FIRST_LABELS, stride: int = ESS_LABEL_STRIDE) -> int:
    """ceil((N - skip_first) / stride), ESS's ``__len__`` after trimming (0 for short sequences)."""
    return max(math.ceil((num_labels - skip_first) / stride), 0)


def read_timestamps(path: Path) -> np.ndarray:
    """One int64 µs timestamp per line (image clock)."""
    try:
        values = np.loadtxt(path, dtype=np.int64, ndmin=1, comments="#")
    except ValueError as err:
        raise DataError(path, f"is not a list of integer microsecond timestamps ({err})",
                        "it must hold one integer per line, as <seq>_semantic_timestamps.txt does") from err
    if len(values) > 1 and np.any(np.diff(values) <= 0):
        raise DataError(path, "timestamps are not strictly increasing",
                        "the file is corrupt or belongs to another sequence: re-download the label archive")
    return values


@dataclass
class DsecSequence:
    """One DSEC-Semantic sequence: its label PNGs, label timestamps and event files."""

    root: Path
    split: str
    name: str
    num_classes: int = 11
    layout: str = "auto"

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.dir = self.root / self.split / self.name
        if not self.dir.is_dir():
            raise DataError(self.dir, "the sequence folder does not exist",
                            f"unpack the sequence's events and labels under {self.root}/{self.split}/, or fix "
                            "the dataset root / sequence list in the config")
        self.layout = self._detect_layout() if self.layout == "auto" else self.layout
        folder, ts_file = (s.format(nc=self.num_classes, seq=self.name) for s in LABEL_LAYOUTS[self.layout])
        self.label_dir, self.timestamps_path = self.dir / folder, self.dir / ts_file
        if not self.label_dir.is_dir():
            raise DataError(self.label_dir, f"the {self.num_classes}-class label folder of the '{self.layout}' "
                            "layout does not exist", "unpack the label archive there, or set label_layout to "
                            "auto (or to the layout the files are in)")
        self.label_paths = sorted(self.label_dir.glob("*.png"))
        if not self.timestamps_path.is_file():
            raise DataError(self.timestamps_path, "the label timestamps file is missing",
                            f"the '{self.layout}' label layout keeps it there; unpack it from the label archive")
        self.timestamps_us = read_timestamps(self.timestamps_path)
        if len(self.label_paths) != len(self.timestamps_us):
            raise DataError(self.timestamps_path, f"holds {len(self.timestamps_us)} timestamps but "
                            f"{self.label_dir} holds {len(self.label_paths)} label PNGs",
                            "they must correspond one to one: re-unpack the label archive of this sequence")
        self.events_path = self.dir / "events" / "left" / "events.h5"
        self.rectify_map_path = self.dir / "events" / "left" / "rectify_map.h5"

    def _detect_layout(self) -> str:
        found = [name for name, (folder, _) in LABEL_LAYOUTS.items()
                 if (self.dir / folder.format(nc=self.num_classes, seq=self.name)).is_dir()]
        if len(found) != 1:
            expected = ", ".join(f"{n}: {f.format(nc=self.num_classes, seq=self.name)}/"
                                 for n, (f, _) in LABEL_LAYOUTS.items())
            problem = ("no folder of " if not found else f"more than one layout ({found}) has a folder of ") + \
                f"{self.num_classes}-class labels"
            raise DataError(self.dir, problem, f"unpack the labels in one layout ({expected}), or set "
                            "label_layout in the config")
        return found[0]

    def read_label(self, index: int) -> np.ndarray:
        """The label PNG ``index`` as uint8 class ids (255 = ignore); unknown ids raise a DataError."""
        return read_label_png(self.label_paths[index], IDENTITY[self.num_classes], f"DSEC {self.num_classes}-class",
                              f"the {self.num_classes}classes PNGs of DSEC-Semantic")


class DsecSemantic:
    """The ESS-protocol samples of a DSEC-Semantic split: labels, event windows and ESS tensors."""

    def __init__(self, root: str | Path, split: str, sequences: list[str] | None = None, num_classes: int = 11,
                 layout: str = "auto", sensor_size: tuple[int, int] = (480, 640), label_height: int = 440,
                 skip_first: int = ESS_SKIP_FIRST_LABELS, stride: int = ESS_LABEL_STRIDE):
        if num_classes not in NUM_CLASSES_TO_SET:
            raise ValueError(f"DSEC-Semantic has 11 or 19 classes, not {num_classes}")
        names = DSEC_SEMANTIC_SEQUENCES[split] if sequences is None else sequences
        self.classes = NUM_CLASSES_TO_SET[num_classes]
        self.sensor_size = tuple(sensor_size)
        self.label_size = (label_height, sensor_size[1])  # labels are the top rows of the rectified frame
        self.sequences = {n: DsecSequence(Path(root), split, n, num_classes, layout) for n in names}
        self.samples = [(n, i) for n, seq in self.sequences.items()
                        for i in ess_label_indices(len(seq.timestamps_us), skip_first, stride)]
        self._slicers: dict[str, EventSlicer] = {}
        self._rectify_maps: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.samples)

    @cached_property
    def ids(self) -> list[str]:
        return [f"{name}/{index:06d}" for name, index in self.samples]

    def label(self, i: int) -> np.ndarray:
        name, index = self.samples[i]
        label = self.sequences[name].read_label(index)
        if label.shape != self.label_size:
            raise DataError(self.sequences[name].label_paths[index], f"is {label.shape[1]}x{label.shape[0]} "
                            f"pixels, expected {self.label_size[1]}x{self.label_size[0]} (the top label_height "
                            "rows of the rectified event frame)", "set sensor_size and label_height in the "
                            "config to this dataset's values (DSEC: 480x640 sensor, 440-row labels)")
        return label

    def timestamp_us(self, i: int) -> int:
        name, index = self.samples[i]
        return int(self.sequences[name].timestamps_us[index])

    def slicer(self, name: str) -> EventSlicer:
        if name not in self._slicers:
            self._slicers[name] = EventSlicer(self.sequences[name].events_path)
        return self._slicers[name]

    def rectify_map(self, name: str) -> np.ndarray:
        if name not in self._rectify_maps:
            self._rectify_maps[name] = load_rectify_map(self.sequences[name].rectify_map_path, self.sensor_size)
        return self._rectify_maps[name]

    def _rectified(self, name: str, events):
        try:
            x, y = rectify_events(events.x, events.y, self.rectify_map(name))
        except ValueError as err:
            seq = self.sequences[name]
            raise DataError(seq.events_path, f"its events do not fit {seq.rectify_map_path}: {err}",
                            "use the events.h5 and rectify_map.h5 of the same camera, and set dsec.sensor_size "
                            "to its resolution") from err
        return x, y, events.t, events.p

    def events_before(self, i: int, num_events: int):
        """The last ``num_events`` events before the label time, rectified: (x, y) float32, t µs, p."""
        name, index = self.samples[i]
        return self._rectified(name, self.slicer(name).get_events_fixed_num(self.timestamp_us(i), num_events))

    def events_in_window(self, i: int, duration_us: int):
        """Rectified events in ``[t_label - duration_us, t_label)``; a window the recording does not
        cover raises a DataError."""
        name, index = self.samples[i]
        t_end = self.timestamp_us(i)
        events = self.slicer(name).get_events(t_end - duration_us, t_end)
        if events is None:
            path = self.sequences[name].events_path
            first, last = self.slicer(name).time_range_us
            raise DataError(path, f"the event window [{t_end - duration_us}, {t_end}) µs of label {index} "
                            f"is not covered by ms_to_idx (events run from {first} to {last} µs, image clock)",
                            "check that the label timestamps belong to this sequence and are on the image "
                            "clock (events/t + t_offset)")
        return self._rectified(name, events)

    def ess_tensor(self, i: int, num_chunks: int = 20, events_per_chunk: int = 100_000, bins_per_chunk: int = 5,
                   official_truncation: bool = False) -> np.ndarray:
        """The ESS input tensor of sample ``i``: (num_chunks * bins, label_height, width)."""
        x, y, t, p = self.events_before(i, num_chunks * events_per_chunk)
        height, width = self.sensor_size
        return ess_event_tensor(x, y, t, p, height, width, self.label_size[0], num_chunks, bins_per_chunk,
                                official_truncation)

    def close(self) -> None:
        for slicer in self._slicers.values():
            slicer.close()
        self._slicers.clear()


class AlignedFrames:
    """A sequence's ``images/left/ev_inf`` frames (grayscale, aligned with the event camera; the synthetic
    benchmark writes them as ground truth), looked up by timestamp."""

    def __init__(self, sequence_dir: Path):
        stamps_path = sequence_dir / "images/timestamps.txt"
        self.paths = sorted((sequence_dir / "images/left/ev_inf").glob("*.png"))
        self.stamps = read_timestamps(stamps_path) if self.paths and stamps_path.is_file() else np.zeros(0, np.int64)

    def at(self, t_us: int, size):
        """The frame taken at ``t_us``, cropped to ``size``, or None."""
        hits = np.nonzero(self.stamps[: len(self.paths)] == t_us)[0]
        if len(hits) == 0:
            return None
        return cv2.imread(str(self.paths[hits[0]]), cv2.IMREAD_GRAYSCALE)[: size[0], : size[1]]
