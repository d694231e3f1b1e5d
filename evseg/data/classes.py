"""Class tables, names and palettes: Cityscapes (34 label ids, 19 train ids) and the ESS/DSEC 11 classes.

Every mapping in the project comes from here. Sources: the Cityscapes ``labels.py`` table; ESS
``config/settings.py`` (11 class names and palette) and ``utils/labels.py`` (Cityscapes to 11 classes);
HPL-ESS ``tools/convert_datasets/dsec.py`` (19 to 11). See ../shared/reference/dsec_ess_hplss.md §1.8.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from evseg.errors import DataError

IGNORE = 255

# (name, Cityscapes labelId, trainId); trainId 255 = not evaluated. "license plate" (id -1) never
# appears in the PNGs and is left out.
CITYSCAPES_LABELS = [
    ("unlabeled", 0, IGNORE), ("ego vehicle", 1, IGNORE), ("rectification border", 2, IGNORE),
    ("out of roi", 3, IGNORE), ("static", 4, IGNORE), ("dynamic", 5, IGNORE), ("ground", 6, IGNORE),
    ("road", 7, 0), ("sidewalk", 8, 1), ("parking", 9, IGNORE), ("rail track", 10, IGNORE),
    ("building", 11, 2), ("wall", 12, 3), ("fence", 13, 4), ("guard rail", 14, IGNORE),
    ("bridge", 15, IGNORE), ("tunnel", 16, IGNORE), ("pole", 17, 5), ("polegroup", 18, IGNORE),
    ("traffic light", 19, 6), ("traffic sign", 20, 7), ("vegetation", 21, 8), ("terrain", 22, 9),
    ("sky", 23, 10), ("person", 24, 11), ("rider", 25, 12), ("car", 26, 13), ("truck", 27, 14),
    ("bus", 28, 15), ("caravan", 29, IGNORE), ("trailer", 30, IGNORE), ("train", 31, 16),
    ("motorcycle", 32, 17), ("bicycle", 33, 18),
]


@dataclass(frozen=True)
class ClassSet:
    """The classes a model predicts: names in id order, an RGB palette, and the ignore index."""

    name: str
    names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    ignore_index: int = IGNORE

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def colorize(self, label: np.ndarray) -> np.ndarray:
        """An RGB picture of a label map. Ignored pixels are white (black is ESS's background colour)."""
        lut = np.full((256, 3), 255, dtype=np.uint8)
        lut[: self.num_classes] = self.palette
        return lut[label]


CITYSCAPES_19 = ClassSet(
    "cityscapes19",
    names=tuple(name for name, _, train_id in sorted(
        (entry for entry in CITYSCAPES_LABELS if entry[2] != IGNORE), key=lambda e: e[2])),
    palette=((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
             (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
             (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
             (0, 80, 100), (0, 0, 230), (119, 11, 32)),
)

ESS_11 = ClassSet(
    "ess11",
    names=("background", "building", "fence", "person", "pole", "road", "sidewalk", "vegetation", "car",
           "wall", "traffic sign"),
    palette=((0, 0, 0), (70, 70, 70), (190, 153, 153), (220, 20, 60), (153, 153, 153), (128, 64, 128),
             (244, 35, 232), (107, 142, 35), (0, 0, 142), (102, 102, 156), (220, 220, 0)),
)

CLASS_SETS = {c.name: c for c in (CITYSCAPES_19, ESS_11)}
NUM_CLASSES_TO_SET = {19: CITYSCAPES_19, 11: ESS_11}

# 19 train ids -> 11 ESS classes (HPL-ESS convert_to_train_id): traffic light joins traffic sign,
# terrain joins vegetation, sky is "background", rider joins person, every vehicle is "car".
TRAIN19_TO_ESS11 = {
    0: 5, 1: 6, 2: 1, 3: 9, 4: 2, 5: 4, 6: 10, 7: 10, 8: 7, 9: 7, 10: 0, 11: 3, 12: 3,
    13: 8, 14: 8, 15: 8, 16: 8, 17: 8, 18: 8,
}


def _lut(pairs: dict[int, int], valid: list[int]) -> np.ndarray:
    """A 256-entry lookup table; entries for ids that the table does not know are -1 (an error)."""
    lut = np.full(256, -1, dtype=np.int16)
    lut[valid] = IGNORE
    for src, dst in pairs.items():
        lut[src] = dst
    return lut


LABELID_TO_TRAIN19 = _lut({lid: tid for _, lid, tid in CITYSCAPES_LABELS}, [lid for _, lid, _ in CITYSCAPES_LABELS])
TRAIN19_TO_ESS11_LUT = _lut(TRAIN19_TO_ESS11, [IGNORE])
LABELID_TO_ESS11 = np.where(LABELID_TO_TRAIN19 >= 0,
                            TRAIN19_TO_ESS11_LUT[np.clip(LABELID_TO_TRAIN19, 0, 255)], -1).astype(np.int16)
TRAIN19_TO_LABELID = {tid: lid for _, lid, tid in CITYSCAPES_LABELS if tid != IGNORE}
IDENTITY = {19: _lut({i: i for i in range(19)}, [IGNORE]), 11: _lut({i: i for i in range(11)}, [IGNORE])}


def apply_lut(label: np.ndarray, lut: np.ndarray, path: str | Path, table: str) -> np.ndarray:
    """Map a label image through ``lut``; ids the table does not know raise a DataError naming them."""
    mapped = lut[label]
    if (mapped < 0).any():
        bad = np.unique(label[mapped < 0]).tolist()
        raise DataError(path, f"holds label ids {bad[:10]} that the {table} table does not define",
                        f"check that the file is a {table} label image (not a colour or instance PNG), "
                        "or that the config's number of classes matches the label folder")
    return mapped.astype(np.uint8)


def read_label_png(path: str | Path, lut: np.ndarray, table: str, expected: str) -> np.ndarray:
    """Read a single-channel class-id PNG and map it through ``lut`` (see ``apply_lut``).

    ``expected`` names the right files in the error message, for a PNG that is not single-channel.
    """
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None or label.ndim != 2 or label.dtype != np.uint8:
        found = "unreadable" if label is None else f"{label.dtype} with shape {label.shape}"
        raise DataError(path, f"is not a single-channel 8-bit label PNG ({found})",
                        f"use {expected} (class ids, not the colour or 16-bit instance PNGs)")
    return apply_lut(label, lut, path, table)


def count_pixels(labels) -> np.ndarray:
    """Pixels per id (256 bins: class ids and the ignore index) over an iterable of label maps."""
    counts = np.zeros(256, np.int64)
    for label in labels:
        counts += np.bincount(label.ravel(), minlength=256)
    return counts
