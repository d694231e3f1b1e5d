"""UniMatch's training batches on the target: labelled samples with their refined pseudo-labels, and unlabelled
samples as a weak view, two strong views and a CutMix partner (reference/seco_unimatch.md §4, "Data").

Geometry of every sample: the long side is rescaled to a random integer between ``scale_range`` times the
original (bilinear for inputs, nearest for labels), padded to the crop (inputs with 0, labels with 255; on
unlabelled samples the padding is marked so that no loss reaches it), randomly cropped and flipped with
p = 0.5. Each step's batch is drawn from ``numpy.random.default_rng([seed, step])``, as in evseg.adapt.data,
so a resumed run sees the same batches.

Deviations from the released UniMatch (README, fidelity): labelled and unlabelled samples are drawn uniformly
with replacement at every step, where UniMatch repeats the labelled list and walks through both in epochs;
the CutMix partner is another random unlabelled sample, where UniMatch's second loader pass happens to give
the same image under another augmentation (its authors report no difference).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from evseg.adapt.data import SourceImages, TargetSamples, crop_pad
from evseg.data.classes import IGNORE
from evseg.errors import DataError
from evseg.semi.views import StrongViews, cutmix_box


def rescale(rng: np.random.Generator, x: np.ndarray, label: np.ndarray | None,
            scale_range: tuple[float, float]) -> tuple[np.ndarray, np.ndarray | None]:
    """``x`` (C, H, W) and ``label`` (H, W) with the long side rescaled to a random integer in
    [long x low, long x high], the short side in proportion."""
    height, width = x.shape[-2:]
    long = max(height, width)
    new_long = int(rng.integers(int(long * scale_range[0]), int(long * scale_range[1]) + 1))
    if new_long == long:
        return x, label
    size = (max(1, round(height * new_long / long)), max(1, round(width * new_long / long)))
    x = F.interpolate(torch.from_numpy(np.ascontiguousarray(x))[None], size=size, mode="bilinear",
                      align_corners=False)[0].numpy()
    if label is not None:
        label = F.interpolate(torch.from_numpy(label)[None, None], size=size, mode="nearest-exact")[0, 0].numpy()
    return x, label


def random_geometry(rng: np.random.Generator, x: np.ndarray, label: np.ndarray | None, crop: tuple[int, int],
                    scale_range: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(input crop (C, h, w), label crop (h, w), padding mask (h, w) bool): rescale, pad, crop, flip. Without a
    label the label crop is 255 on padded pixels and 0 elsewhere."""
    x, label = rescale(rng, x, label, scale_range)
    if label is None:
        label = np.zeros(x.shape[-2:], dtype=np.uint8)
    return random_crop_flip(rng, x, label, crop)


def random_crop_flip(rng: np.random.Generator, x: np.ndarray, label: np.ndarray,
                     crop: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random ``crop`` of ``x`` (C, H, W) and ``label`` (H, W), padded with 0 and 255, flipped with p = 0.5;
    also the mask of the padded pixels."""
    height, width = label.shape
    top = int(rng.integers(0, max(height - crop[0], 0) + 1))
    left = int(rng.integers(0, max(width - crop[1], 0) + 1))
    flip = bool(rng.random() < 0.5)
    padding = crop_pad(np.zeros(label.shape, np.uint8), top, left, crop, flip, 1).astype(bool)
    return crop_pad(x, top, left, crop, flip, 0.0), crop_pad(label, top, left, crop, flip, IGNORE), padding


def read_refined_labels(folder_of_sequence: dict[str, Path], ids: list[str], size: tuple[int, int]) -> dict:
    """{sample id: uint8 label} from ``<folder>/<index>.png`` for ids ``<sequence>/<index>``."""
    labels = {}
    for sample_id in ids:
        sequence, index = sample_id.split("/")
        path = Path(folder_of_sequence[sequence]) / f"{index}.png"
        label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if label is None or label.shape != tuple(size) or label.dtype != np.uint8:
            found = "missing or unreadable" if label is None else f"{label.dtype} {label.shape[1]}x{label.shape[0]}"
            raise DataError(path, f"the refined label of {sample_id} is {found}, expected a uint8 "
                            f"{size[1]}x{size[0]} PNG", "rerun the scc rule (snakemake -R scc)")
        labels[sample_id] = label
    return labels


class SemiBatches(torch.utils.data.Dataset):
    """Item ``step`` is the whole batch of that UniMatch step.

    Keys, each with ``batch_size`` rows: ``labeled`` (B, C, h, w) and ``label`` (B, h, w); ``weak``, ``strong1``,
    ``strong2`` (B, C, h, w) with the CutMix boxes ``box1``, ``box2`` (B, h, w) already filled from the partner's
    strong views; ``weak_padding`` (B, h, w) bool; the partner's ``mix_weak`` and ``mix_padding``.
    """

    def __init__(self, target: TargetSamples, labels: dict[str, np.ndarray], unlabeled: list[str], seed: int,
                 batch_size: int, crop: tuple[int, int], scale_range: tuple[float, float], views: StrongViews,
                 cutmix_p: float = 0.5, copy_paste=None, source: SourceImages | None = None):
        """``copy_paste``: an evseg.semi.copy_paste.CopyPaste applied to every labelled crop, or None;
        ``source``: labelled source images, whose crops (as train_uda draws them) add the keys ``source`` and
        ``source_label`` after everything else is drawn, or None."""
        unknown = [i for i in [*labels, *unlabeled] if i not in target.index]
        if unknown:
            raise ValueError(f"{len(unknown)} split ids are not target training samples, e.g. {unknown[:3]}")
        if not labels or not unlabeled:
            raise ValueError(f"UniMatch needs labelled and unlabelled samples, got {len(labels)} and "
                             f"{len(unlabeled)}")
        self.target, self.labels = target, labels
        self.labeled = list(labels)
        self.unlabeled = [target.index[i] for i in unlabeled]
        self.seed, self.batch_size, self.crop = seed, batch_size, tuple(crop)
        self.scale_range, self.views, self.cutmix_p = tuple(scale_range), views, cutmix_p
        self.copy_paste, self.source = copy_paste, source

    def __len__(self) -> int:
        return 2**62  # indexed by step; the loader's sampler says which steps

    def _unlabelled(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(weak view, padding mask, strong view 1, strong view 2) of a random unlabelled sample."""
        i = self.unlabeled[int(rng.integers(len(self.unlabeled)))]
        weak, _, padding = random_geometry(rng, self.target.input(i), None, self.crop, self.scale_range)
        return weak, padding, self.views(weak, rng), self.views(weak, rng)

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, step])
        out: dict[str, list] = {key: [] for key in ("labeled", "label", "weak", "weak_padding", "strong1", "strong2",
                                                    "box1", "box2", "mix_weak", "mix_padding")}
        for _ in range(self.batch_size):
            sample_id = self.labeled[int(rng.integers(len(self.labeled)))]
            x, label, padding = random_geometry(rng, self.target.input(self.target.index[sample_id]),
                                                self.labels[sample_id], self.crop, self.scale_range)
            if self.copy_paste is not None:
                x, label = self.copy_paste(rng, x, label, padding)
            out["labeled"].append(x)
            out["label"].append(label)
        for _ in range(self.batch_size):
            weak, padding, strong1, strong2 = self._unlabelled(rng)
            mix_weak, mix_padding, mix1, mix2 = self._unlabelled(rng)
            box1, box2 = cutmix_box(rng, self.crop, self.cutmix_p), cutmix_box(rng, self.crop, self.cutmix_p)
            out["weak"].append(weak)
            out["weak_padding"].append(padding)
            out["strong1"].append(np.where(box1, mix1, strong1))
            out["strong2"].append(np.where(box2, mix2, strong2))
            out["box1"].append(box1)
            out["box2"].append(box2)
            out["mix_weak"].append(mix_weak)
            out["mix_padding"].append(mix_padding)
        if self.source is not None:
            crops = [self.source.crop(rng, int(rng.integers(len(self.source))), self.crop, 1.0)
                     for _ in range(self.batch_size)]
            out["source"], out["source_label"] = [c[0] for c in crops], [c[1] for c in crops]
        batch = {key: torch.from_numpy(np.stack(values)) for key, values in out.items()}
        batch["label"] = batch["label"].long()
        if self.source is not None:
            batch["source_label"] = batch["source_label"].long()
        return batch
