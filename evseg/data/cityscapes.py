"""Cityscapes as the labelled source domain: ``leftImg8bit`` images and ``gtFine_labelIds`` labels.

Layout: ``<root>/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png`` and
``<root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png``. Labels are mapped with the
official tables to the 19 train ids or to the ESS 11 classes. HPL-ESS feeds one grayscale channel
(RGB2Gray with weights 0.299, 0.587, 0.114, which is OpenCV's conversion).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from evseg.data.classes import CLASS_SETS, LABELID_TO_ESS11, LABELID_TO_TRAIN19, read_label_png
from evseg.errors import DataError

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"
LABEL_LUTS = {"cityscapes19": LABELID_TO_TRAIN19, "ess11": LABELID_TO_ESS11}


class Cityscapes:
    """Images and mapped labels of one Cityscapes split."""

    def __init__(self, root: str | Path, split: str = "train", classes: str = "ess11", grayscale: bool = False):
        self.root = Path(root)
        if classes not in LABEL_LUTS:
            raise ValueError(f"classes must be one of {sorted(LABEL_LUTS)}, not {classes!r}")
        self.classes = CLASS_SETS[classes]
        self.grayscale = grayscale
        image_dir = self.root / "leftImg8bit" / split
        self.image_paths = sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}"))
        if not self.image_paths:
            raise DataError(image_dir, f"holds no <city>/*{IMAGE_SUFFIX} images",
                            "unpack leftImg8bit_trainvaltest.zip into the Cityscapes root named in the config")
        self.label_paths = [self.root / "gtFine" / split / p.parent.name / p.name.replace(IMAGE_SUFFIX, LABEL_SUFFIX)
                            for p in self.image_paths]
        missing = [p for p in self.label_paths if not p.is_file()]
        if missing:
            raise DataError(missing[0], f"is missing ({len(missing)} of {len(self.label_paths)} label files are)",
                            "unpack gtFine_trainvaltest.zip into the same Cityscapes root as leftImg8bit")

    def __len__(self) -> int:
        return len(self.image_paths)

    @property
    def ids(self) -> list[str]:
        return [f"{p.parent.name}/{p.name[: -len(IMAGE_SUFFIX)]}" for p in self.image_paths]

    def image(self, i: int, grayscale: bool | None = None) -> np.ndarray:
        """RGB uint8 (H, W, 3), or (H, W) when grayscale (the dataset's setting unless given)."""
        path = self.image_paths[i]
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DataError(path, "cannot be read as an image", "re-unpack leftImg8bit_trainvaltest.zip")
        gray = self.grayscale if grayscale is None else grayscale
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY if gray else cv2.COLOR_BGR2RGB)

    def previous_frame(self, i: int, gap: int = 1) -> np.ndarray:
        """The frame ``gap`` frames before image ``i``, from ``leftImg8bit_sequence`` (RGB uint8, or gray as
        :meth:`image`): CMDA's Image Motion-Extractor compares frames 18 and 19."""
        path = self.image_paths[i]
        city, seq, frame = path.name[: -len(IMAGE_SUFFIX)].rsplit("_", 2)
        before = (self.root / "leftImg8bit_sequence" / path.parent.parent.name / path.parent.name
                  / f"{city}_{seq}_{int(frame) - gap:06d}{IMAGE_SUFFIX}")
        bgr = cv2.imread(str(before), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DataError(before, f"the frame {gap} before {path.name} is missing or unreadable",
                            "unpack leftImg8bit_sequence_trainvaltest.zip into the Cityscapes root (it holds 30 "
                            "frames around every labelled one)")
        height, width = self.image(i).shape[:2]
        if bgr.shape[:2] != (height, width):
            raise DataError(before, f"is {bgr.shape[1]}x{bgr.shape[0]} pixels, but {path.name} is {width}x{height}",
                            "use the sequence archive of the same Cityscapes release")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY if self.grayscale else cv2.COLOR_BGR2RGB)

    def label(self, i: int) -> np.ndarray:
        return read_label_png(self.label_paths[i], LABEL_LUTS[self.classes.name], "Cityscapes labelIds",
                              f"the *{LABEL_SUFFIX} files of gtFine")
