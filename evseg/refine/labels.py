"""Pseudo-label files, and how a refinement step changes them against the ground truth (reporting only)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from evseg.data.classes import IGNORE
from evseg.errors import DataError
from evseg.metrics import ConfusionMatrix


def read_label(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """A uint8 label PNG of ``size`` (height, width) written by pseudo_label, psa or scc."""
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None or label.shape != tuple(size) or label.dtype != np.uint8:
        raise DataError(path, f"is missing or not a {size[1]}x{size[0]} uint8 label PNG",
                        "rerun the rule that writes it (snakemake -R pseudo_label, psa or scc)")
    return label


class RefinementQuality:
    """Coverage, and mIoU / pixel accuracy on the labelled pixels, of the labels before and after a step."""

    def __init__(self, num_classes: int):
        self.before, self.after = ConfusionMatrix(num_classes), ConfusionMatrix(num_classes)
        self.labelled = {"before": 0, "after": 0}
        self.pixels = 0

    def update(self, before: np.ndarray, after: np.ndarray, truth: np.ndarray) -> None:
        for key, matrix, label in (("before", self.before, before), ("after", self.after, after)):
            matrix.update(np.where(label == IGNORE, 0, label), np.where(label == IGNORE, IGNORE, truth))
            self.labelled[key] += int((label != IGNORE).sum())
        self.pixels += truth.size

    def summary(self) -> dict:
        return {"labelled_share_before": self.labelled["before"] / self.pixels,
                "labelled_share": self.labelled["after"] / self.pixels,
                "miou_labelled_before": self.before.mean_iou(), "miou_labelled": self.after.mean_iou(),
                "pixel_accuracy_labelled_before": self.before.pixel_accuracy(),
                "pixel_accuracy_labelled": self.after.pixel_accuracy()}
