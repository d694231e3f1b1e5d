"""DAFormer's ImageNet feature distance (reference/cmda_daformer.md §1.9): keep the student's bottleneck features
close to those of the frozen ImageNet-initialised model, on source cells that are clearly a "thing" class.

Reading of ``downscale_label_ratio`` (the reference says: a cell keeps its majority class only if it covers
>= min_ratio of the cell, else ignore): shares are over ALL the scale*scale pixels of a cell, ignore pixels
included, and "ignore" competes for the majority like a class, so a cell that is mostly ignore stays ignore and
ignore pixels lower the share of every real class. (Labels outside [0, num_classes) count as ignore.) With
min_ratio > 0.5 the majority class is unique; for smaller ratios ties go to the lowest class id.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from evseg.adapt.losses import no_autocast
from evseg.distributed import per_process_denominator

# Cityscapes trainIds: traffic light, traffic sign, person, rider, car, truck, bus, train, motorcycle, bicycle.
THING_CLASSES_19 = (6, 7, 11, 12, 13, 14, 15, 16, 17, 18)
# ESS 11-class ids: 3 person (person+rider), 8 car (all vehicles), 10 traffic sign (light+sign), i.e. the
# classes the 19 things map to under the 19->11 mapping (reference/dsec_ess_hplss.md §1.8). Pole (4) is a
# "stuff" class in DAFormer's list, so it stays out.
THING_CLASSES_11 = (3, 8, 10)


def downscale_label_ratio(labels: Tensor, scale: int, min_ratio: float, num_classes: int,
                          ignore_index: int = 255) -> Tensor:
    """(B,H,W) labels -> (B,H//scale,W//scale): per cell the majority class if its share of the cell's pixels
    (all of them, ignore included) is >= ``min_ratio``, else ``ignore_index``. Rows/columns beyond a whole
    number of cells are dropped."""
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    b, h, w = labels.shape
    hc, wc = h // scale, w // scale
    labels = labels[:, :hc * scale, :wc * scale].long()
    slots = num_classes + 1  # the last slot collects ignore (and out-of-range) pixels
    cls = torch.where((labels < 0) | (labels >= num_classes) | (labels == ignore_index), num_classes, labels)
    image = torch.arange(b, device=labels.device).view(b, 1, 1)
    row = (torch.arange(hc * scale, device=labels.device) // scale).view(1, -1, 1)
    col = (torch.arange(wc * scale, device=labels.device) // scale).view(1, 1, -1)
    index = ((image * slots + cls) * hc + row) * wc + col
    counts = torch.bincount(index.flatten(), minlength=b * slots * hc * wc).view(b, slots, hc, wc)
    majority = counts.argmax(dim=1)  # first maximum on ties
    share = counts.gather(1, majority[:, None])[:, 0].float() / (scale * scale)
    keep = (majority != num_classes) & (share >= min_ratio)
    return torch.where(keep, majority, torch.full_like(majority, ignore_index))



def feature_distance(student_feat: Tensor, imnet_feat: Tensor, labels: Tensor | None,
                     thing_classes: Sequence[int], min_ratio: float = 0.75,
                     num_classes: int | None = None, ignore_index: int = 255) -> Tensor:
    """Mean over cells of ||student - imnet||_2 (over channels), on the cells whose downscaled label is a thing.

    Features (B,C,h,w); labels (B,H,W) are downscaled by scale = H // h (must give (h,w)). ``labels=None``
    averages over all cells. Returns a zero that keeps the graph when no cell qualifies. ``imnet_feat`` is
    detached (the ImageNet model is frozen). ``num_classes=None``: every label except ``ignore_index`` is a class
    (the value only sizes the per-cell histogram; the result is the same for any bound above the largest id).
    Not weighted: multiply by lambda_FD (0.005 in DAFormer) outside.
    """
    with no_autocast(student_feat.device):
        diff = student_feat.float() - imnet_feat.detach().float()
        dist = torch.linalg.vector_norm(diff, dim=1)  # (B,h,w); its gradient at a zero difference is 0, not NaN
        if labels is None:
            return dist.mean()
        h, w = dist.shape[-2:]
        scale = labels.shape[-2] // h
        if num_classes is None:
            num_classes = int(labels.max()) + 1 if labels.numel() else 1
        cells = downscale_label_ratio(labels, scale, min_ratio, num_classes, ignore_index)
        if tuple(cells.shape) != tuple(dist.shape):
            raise ValueError(f"labels {tuple(labels.shape)} downscaled by {scale} give {tuple(cells.shape)}, "
                             f"features are {tuple(dist.shape)}")
        mask = torch.isin(cells, torch.as_tensor(list(thing_classes), device=cells.device, dtype=cells.dtype))
        # Sum/count instead of dist[mask].mean(): no host sync, and a graph-keeping 0 when the mask is empty.
        return torch.where(mask, dist, 0.0).sum() / per_process_denominator(mask.sum())
