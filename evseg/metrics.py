"""Segmentation metrics from one confusion matrix accumulated over a whole test set.

Both published rules are here (../shared/reference/dsec_ess_hplss.md §2.3, §3.4 item 7;
cmda_daformer.md §2.8): HPL-ESS and CMDA use mmseg's nanmean over classes, ESS counts absent classes as 0.
The two differ only for classes with no ground-truth and no predicted pixel, so reporting both is cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def _as_numpy(array) -> np.ndarray:
    # Duck-typed so that importing this module does not import torch.
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def _bad_values(values: np.ndarray, limit: int = 10) -> list[int]:
    return np.unique(values).tolist()[:limit]


class ConfusionMatrix:
    """Pixel counts ``matrix[g, p]`` (rows = ground truth, columns = prediction), summed over many updates."""

    def __init__(self, num_classes: int, ignore_index: int = 255):
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.matrix = np.zeros((self.num_classes, self.num_classes), np.int64)

    def update(self, prediction, label) -> None:
        """Add one prediction/label pair (numpy or torch, any integer dtype, same shape, e.g. (H, W) or (B, H, W)).

        Pixels whose label is ``ignore_index`` are skipped. Predictions must lie in [0, C) everywhere (also
        at ignored pixels: anything else means a wrong array was passed); labels in [0, C) or the ignore index.
        """
        pred, label = _as_numpy(prediction), _as_numpy(label)
        if pred.shape != label.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from label shape {label.shape}")
        for name, a in (("prediction", pred), ("label", label)):
            if not np.issubdtype(a.dtype, np.integer):
                raise ValueError(f"{name} must hold integer class ids, got dtype {a.dtype}")
        # int64 before label * C: uint8 labels would overflow.
        pred, label = pred.reshape(-1).astype(np.int64), label.reshape(-1).astype(np.int64)
        c = self.num_classes
        if pred.size and (pred.min() < 0 or pred.max() >= c):
            bad = _bad_values(pred[(pred < 0) | (pred >= c)])
            raise ValueError(f"prediction holds values {bad} outside [0, {c})")
        keep = label != self.ignore_index
        pred, label = pred[keep], label[keep]
        if label.size and (label.min() < 0 or label.max() >= c):
            bad = _bad_values(label[(label < 0) | (label >= c)])
            raise ValueError(f"label holds values {bad} outside [0, {c}) and not the ignore index "
                             f"{self.ignore_index}")
        self.matrix += np.bincount(label * c + pred, minlength=c * c).reshape(c, c)

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix (e.g. from another worker) into this one; returns self."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge a {other.num_classes}-class matrix into a {self.num_classes}-class one")
        self.matrix += other.matrix
        return self

    def __iadd__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        return self.merge(other)

    def save(self, path: str | Path) -> None:
        """The matrix as a .npy file (ignore_index is not stored: it does not affect the counts)."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:  # a file object, so that numpy does not append ".npy" to the name
            np.save(f, self.matrix)

    @classmethod
    def load(cls, path: str | Path, ignore_index: int = 255) -> ConfusionMatrix:
        matrix = np.load(path)
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or not np.issubdtype(matrix.dtype, np.integer):
            raise ValueError(f"{path}: not a square integer confusion matrix ({matrix.dtype}, {matrix.shape})")
        cm = cls(matrix.shape[0], ignore_index)
        cm.matrix[:] = matrix
        return cm

    # --- metrics ---

    def _classes(self, classes: Sequence[int] | None) -> np.ndarray:
        if classes is None:
            return np.arange(self.num_classes)
        idx = np.asarray(list(classes), np.int64)
        if idx.size == 0 or idx.min() < 0 or idx.max() >= self.num_classes or len(set(idx.tolist())) != idx.size:
            raise ValueError(f"classes must be distinct ids in [0, {self.num_classes}), got {list(classes)}")
        return idx

    @staticmethod
    def _nanmean(values: np.ndarray) -> float:
        # np.nanmean warns on all-NaN input; an empty test set is NaN without the noise.
        finite = values[~np.isnan(values)]
        return float(finite.mean()) if finite.size else float("nan")

    def iou(self) -> np.ndarray:
        """Per-class TP / (TP + FP + FN); NaN for a class absent from both ground truth and prediction."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - tp
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(union > 0, tp / union, np.nan)

    def mean_iou(self, classes: Sequence[int] | None = None) -> float:
        """mmseg's mIoU (used by HPL-ESS and CMDA): nanmean of ``iou()`` over ``classes`` (default all).

        A class absent from the ground truth but predicted somewhere has IoU 0 and counts; a class absent
        from both is left out. For a protocol on fewer classes than the model predicts (DSEC Night: 18 of
        the 19 Cityscapes classes, no truck) pass the class list explicitly; rescaling the 19-class mean by
        19/18 is right only when truck is predicted somewhere (cmda_daformer.md §2.8).
        """
        return self._nanmean(self.iou()[self._classes(classes)])

    def mean_iou_absent_as_zero(self, classes: Sequence[int] | None = None) -> float:
        """ESS's mIoU: plain mean over ``classes`` with a class absent from ground truth and prediction as 0."""
        return float(np.nan_to_num(self.iou(), nan=0.0)[self._classes(classes)].mean())

    def pixel_accuracy(self) -> float:
        """Correct / all counted pixels (mmseg's aAcc, ESS's accuracy)."""
        total = self.matrix.sum()
        return float(np.trace(self.matrix) / total) if total else float("nan")

    def class_accuracy(self) -> np.ndarray:
        """Per-class recall TP / ground-truth pixels; NaN for a class without ground-truth pixels."""
        gt = self.matrix.sum(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(gt > 0, np.diag(self.matrix) / gt, np.nan)

    def mean_class_accuracy(self, classes: Sequence[int] | None = None) -> float:
        """nanmean of ``class_accuracy()`` over ``classes`` (mmseg's mAcc)."""
        return self._nanmean(self.class_accuracy()[self._classes(classes)])

    def summary(self, class_names: Sequence[str], classes: Sequence[int] | None = None) -> dict:
        """All metrics as plain Python values (NaN becomes None, so the dict can be written as strict JSON).

        The means are over ``classes`` (default all); the per-class list always covers every class.
        """
        if len(class_names) != self.num_classes:
            raise ValueError(f"{len(class_names)} class names for a {self.num_classes}-class matrix")

        def num(value) -> float | None:
            return None if np.isnan(value) else float(value)

        iou, acc = self.iou(), self.class_accuracy()
        gt, predicted = self.matrix.sum(1), self.matrix.sum(0)
        return {
            "miou": num(self.mean_iou(classes)),
            "miou_absent_as_zero": num(self.mean_iou_absent_as_zero(classes)),
            "pixel_accuracy": num(self.pixel_accuracy()),
            "mean_class_accuracy": num(self.mean_class_accuracy(classes)),
            "num_pixels": int(self.matrix.sum()),
            "per_class": [
                {"class": name, "iou": num(iou[i]), "accuracy": num(acc[i]),
                 "gt_pixels": int(gt[i]), "predicted_pixels": int(predicted[i])}
                for i, name in enumerate(class_names)
            ],
        }
