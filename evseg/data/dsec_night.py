"""DSEC Night-Semantic (CMDA): night drives with events, frames warped into the event view, and 18-class labels.

On disk (reference/cmda_daformer.md §2.7), one folder per sequence under the root, no split level: DSEC's
``events/left/{events.h5, rectify_map.h5}`` and ``images/timestamps.txt`` (one µs timestamp per frame, image
clock), and from the authors' archive ``warp_images/NNNNNN.png`` (the left frame warped into the 640×480 event
view) and ``labels/<seq>_NNNNNN_grey_gtFine_labelTrainIds.png`` (Cityscapes train ids; truck never occurs).

The released split: test = the labelled frames; train = every second frame from N - 12 on, N = 810, 162, 594,
756, 378 for sequences a..e (1692 train and 150 test samples). Both skip frames 0 and 1 and list only frames
with a warp image. A sample's events are those of the interval between the previous frame and its own
(CMDA's ``image_change_range = 1``), found through ``ms_to_idx``. A sample id is ``<sequence>/<frame:06d>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from evseg.data.classes import CITYSCAPES_19, IDENTITY, read_label_png
from evseg.data.dsec import read_timestamps
from evseg.errors import DataError
from evseg.events import EventSlicer, load_rectify_map, rectify_events

NIGHT_SEQUENCES = tuple(f"zurich_city_09_{s}" for s in "abcde")
# N of the released split (create_dsec_dataset_txt.py): training frames start at N - 12
TRAIN_START = {"zurich_city_09_a": 810, "zurich_city_09_b": 162, "zurich_city_09_c": 594,
               "zurich_city_09_d": 756, "zurich_city_09_e": 378}
TRAIN_START_OFFSET = 12
FIRST_FRAME = 2  # frames 0 and 1 are never listed
TRAIN_STRIDE = 2
EXPECTED_COUNTS = {"train": 1692, "test": 150}  # the five released sequences
WARP_DIR, LABEL_DIR = "warp_images", "labels"
LABEL_SUFFIX = "_grey_gtFine_labelTrainIds.png"
FRAME_NUMBER = re.compile(r"\d{6}")


def split_frames(warped: list[int], labelled: list[int], train_start: int, split: str) -> list[int]:
    """The released split rule on one sequence's frame numbers: ``warped`` have a warp image, ``labelled`` a label.

    test: the labelled frames from frame 2 on; train: frames ``train_start - 12, train_start - 10, ...`` (from
    frame 2 on) that have a warp image."""
    if split == "test":
        return sorted(f for f in labelled if f >= FIRST_FRAME)
    if split == "train":
        first = train_start - TRAIN_START_OFFSET
        return sorted(f for f in warped if f >= max(first, FIRST_FRAME) and (f - first) % TRAIN_STRIDE == 0)
    raise ValueError(f"DSEC Night-Semantic has the splits train and test, not {split!r}")


def _frame_numbers(folder: Path, suffix: str, prefix: str = "") -> list[int]:
    """Frame numbers of the files ``<prefix>NNNNNN<suffix>`` in ``folder`` (other files are ignored)."""
    stems = (path.name[len(prefix): -len(suffix)] for path in folder.glob(f"{prefix}*{suffix}"))
    return sorted(int(stem) for stem in stems if FRAME_NUMBER.fullmatch(stem))


@dataclass
class NightSequence:
    """One DSEC Night-Semantic sequence folder: frame timestamps, warp images, labels and events."""

    root: Path
    name: str
    train_start: int
    sensor_size: tuple[int, int] = (480, 640)
    dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.dir = Path(self.root) / self.name
        if not self.dir.is_dir():
            raise DataError(self.dir, "the sequence folder does not exist",
                            f"unpack DSEC's events and images of {self.name} and the authors' Night-Semantic "
                            f"archive (warp_images/, labels/) into {self.dir}, or fix dsec_night.root")
        self.warp_dir, self.label_dir = self.dir / WARP_DIR, self.dir / LABEL_DIR
        if not self.warp_dir.is_dir():
            typo = self.dir / "wrap_images"
            fix = (f"rename {typo} to {WARP_DIR} (older copies of the archive use the misspelling)" if typo.is_dir()
                   else "unpack the authors' Night-Semantic archive (it holds warp_images/ and labels/) here")
            raise DataError(self.warp_dir, "the folder of frames warped into the event view is missing", fix)
        self.timestamps_path = self.dir / "images" / "timestamps.txt"
        if not self.timestamps_path.is_file():
            raise DataError(self.timestamps_path, "the frame timestamps are missing",
                            f"unpack DSEC's images_rectified_left.zip of {self.name} here (it holds "
                            "images/timestamps.txt)")
        self.timestamps_us = read_timestamps(self.timestamps_path)
        self.events_path = self.dir / "events" / "left" / "events.h5"
        self.rectify_map_path = self.dir / "events" / "left" / "rectify_map.h5"
        self.warped = _frame_numbers(self.warp_dir, ".png")
        self.labelled = (_frame_numbers(self.label_dir, LABEL_SUFFIX, f"{self.name}_")
                         if self.label_dir.is_dir() else [])
        beyond = [f for f in self.warped + self.labelled if f >= len(self.timestamps_us)]
        if beyond:
            raise DataError(self.timestamps_path, f"lists {len(self.timestamps_us)} frames, but warp images or "
                            f"labels exist for frame {beyond[0]}", "the timestamps belong to another sequence or "
                            "are truncated: re-unpack images_rectified_left.zip of this sequence")

    def frames(self, split: str) -> list[int]:
        frames = split_frames(self.warped, self.labelled, self.train_start, split)
        if split == "test":
            missing = [f for f in frames if f not in set(self.warped)]
            if missing:
                raise DataError(self.warp_dir / f"{missing[0]:06d}.png", f"frame {missing[0]} is labelled but "
                                f"has no warp image ({len(missing)} labelled frames lack one)",
                                "re-unpack the authors' archive: every labelled frame has a warp image")
        return frames

    def warp_path(self, frame: int) -> Path:
        return self.warp_dir / f"{frame:06d}.png"

    def label_path(self, frame: int) -> Path:
        return self.label_dir / f"{self.name}_{frame:06d}{LABEL_SUFFIX}"

    def warp_image(self, frame: int) -> np.ndarray:
        """The frame warped into the event view: RGB uint8 (H, W, 3), the sensor's size."""
        path = self.warp_path(frame)
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DataError(path, "the warp image is missing or unreadable",
                            "re-unpack warp_images/ from the authors' Night-Semantic archive")
        if image.shape[:2] != tuple(self.sensor_size):
            raise DataError(path, f"is {image.shape[1]}x{image.shape[0]} pixels, expected the event sensor's "
                            f"{self.sensor_size[1]}x{self.sensor_size[0]}", "use the warp_images of the archive "
                            "(frames warped into the event view), or set dsec_night.sensor_size to its size")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def label(self, frame: int) -> np.ndarray:
        """19 Cityscapes train ids (255 ignore), uint8 (H, W), the sensor's size."""
        path = self.label_path(frame)
        label = read_label_png(path, IDENTITY[19], "Cityscapes train-id", "the *_grey_gtFine_labelTrainIds.png files")
        if label.shape != tuple(self.sensor_size):
            raise DataError(path, f"is {label.shape[1]}x{label.shape[0]} pixels, expected the warp images' "
                            f"{self.sensor_size[1]}x{self.sensor_size[0]}", "labels and warp images come from the "
                            "same archive and share the event view: re-unpack it, or fix dsec_night.sensor_size")
        return label


class DsecNight:
    """The samples of one split of DSEC Night-Semantic: warp images, labels and event windows."""

    classes = CITYSCAPES_19

    def __init__(self, root: str | Path, split: str, sequences: dict[str, int] | None = None,
                 sensor_size: tuple[int, int] = (480, 640)):
        """``sequences``: {name: N of the split rule}; by default the five released sequences."""
        sequences = TRAIN_START if sequences is None else sequences
        self.root, self.split, self.sensor_size = Path(root), split, tuple(sensor_size)
        self.sequences = {name: NightSequence(self.root, name, start, self.sensor_size)
                          for name, start in sequences.items()}
        self.samples = [(name, f) for name, seq in self.sequences.items() for f in seq.frames(split)]
        if not self.samples:
            raise DataError(self.root, f"the {split} split of {list(self.sequences)} is empty",
                            "check the warp_images/ and labels/ folders and the sequences' N (dsec_night.sequences)")
        self._slicers: dict[str, EventSlicer] = {}
        self._rectify_maps: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def ids(self) -> list[str]:
        return [f"{name}/{frame:06d}" for name, frame in self.samples]

    def image(self, i: int) -> np.ndarray:
        name, frame = self.samples[i]
        return self.sequences[name].warp_image(frame)

    def label(self, i: int) -> np.ndarray:
        name, frame = self.samples[i]
        return self.sequences[name].label(frame)

    def _slicer(self, name: str) -> EventSlicer:
        if name not in self._slicers:
            self._slicers[name] = EventSlicer(self.sequences[name].events_path)
        return self._slicers[name]

    def window_us(self, i: int) -> tuple[int, int]:
        """[previous frame's time, this frame's time) on the image clock."""
        name, frame = self.samples[i]
        stamps = self.sequences[name].timestamps_us
        return int(stamps[frame - 1]), int(stamps[frame])

    def events(self, i: int):
        """The rectified events of the sample's inter-frame interval: (x, y) float32, t µs, p."""
        name, frame = self.samples[i]
        seq = self.sequences[name]
        start, end = self.window_us(i)
        events = self._slicer(name).get_events(start, end)
        first, last = self._slicer(name).time_range_us
        if events is None or end <= first:
            raise DataError(seq.events_path, f"frame {frame}'s interval [{start}, {end}) µs is not covered by the "
                            f"events ({first} to {last} µs on the image clock): frames and events are misaligned",
                            f"check that {seq.timestamps_path} and the events belong to the same sequence, and that "
                            "events/t_offset puts the events on the image clock")
        if name not in self._rectify_maps:
            self._rectify_maps[name] = load_rectify_map(seq.rectify_map_path, self.sensor_size)
        x, y = rectify_events(events.x, events.y, self._rectify_maps[name])
        return x, y, events.t, events.p

    def close(self) -> None:
        for slicer in self._slicers.values():
            slicer.close()
        self._slicers.clear()
