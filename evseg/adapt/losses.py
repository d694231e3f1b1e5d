"""Losses and pseudo-labels of the DACS/DAFormer step (reference/cmda_daformer.md §1.4, §1.7), in float32."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor

from evseg.distributed import mean_over_processes, per_process_denominator


def no_autocast(device: torch.device):
    """Full precision inside an autocast region: losses and their statistics are computed in float32."""
    try:
        return torch.autocast(device.type, enabled=False)
    except RuntimeError:
        return contextlib.nullcontext()


def resize_logits(logits: Tensor, size) -> Tensor:
    if size is not None and tuple(logits.shape[-2:]) != tuple(size):
        logits = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
    return logits


def pixel_cross_entropy(logits: Tensor, labels: Tensor, weight: Tensor | None = None, ignore_index: int = 255,
                        average: str = "all") -> Tensor:
    """Per-pixel cross-entropy times ``weight``, as mmseg computes DAFormer's losses.

    ``logits`` (B,C,h,w) are bilinearly upsampled to the label size (B,H,W). Ignored pixels contribute 0.
    ``average="all"``: the mean over ALL pixels, ignored ones included (mmseg, reference §1.7);
    ``average="valid"``: the sum over the non-ignored pixels divided by their count (F.cross_entropy's mean when
    there are no weights; 0 rather than NaN when every pixel is ignored).
    """
    if average not in ("all", "valid"):
        raise ValueError(f"average must be 'all' or 'valid', got {average!r}")
    with no_autocast(logits.device):
        logits = resize_logits(logits.float(), labels.shape[-2:])
        loss = F.cross_entropy(logits, labels.long(), ignore_index=ignore_index, reduction="none")
        if weight is not None:
            loss = loss * weight.float()
        if average == "all":
            return loss.mean()
        return loss.sum() / per_process_denominator((labels != ignore_index).sum())


def pseudo_labels(logits: Tensor, size=None) -> tuple[Tensor, Tensor]:
    """(max softmax probability (B,H,W) float32, argmax label (B,H,W) long), after upsampling to ``size``."""
    with torch.no_grad(), no_autocast(logits.device):
        probability = torch.softmax(resize_logits(logits.float(), size), dim=1)
        value, label = probability.max(dim=1)
        return value, label


def confidence_weight(probability: Tensor, threshold: float = 0.968) -> Tensor:
    """DACS's pseudo-label weight: ONE scalar for the whole batch, broadcast to every pixel (B,H,W).

    The scalar is the fraction of all pixels of the batch (all images together) whose max probability is
    >= ``threshold``; it is not a per-pixel confidence mask. Stays on the device (no host sync).
    """
    fraction = mean_over_processes((probability >= threshold).float().mean())  # the whole batch's
    return fraction.expand(probability.shape).clone()


def ignore_border(weight: Tensor, top: int = 0, bottom: int = 0) -> Tensor:
    """A copy of ``weight`` (..., H, W) with the first ``top`` and the last ``bottom`` rows zeroed (DAFormer's
    pseudo-label crop: 15/120 in its final config, 0/0 in DACS and CMDA)."""
    weight = weight.clone()
    if top > 0:
        weight[..., :top, :] = 0
    if bottom > 0:
        weight[..., max(0, weight.shape[-2] - bottom):, :] = 0
    return weight
