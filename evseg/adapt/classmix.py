"""ClassMix as used by DACS/DAFormer (reference/cmda_daformer.md §1.5): paste half of the classes of one image
onto another, with the same mask for images, labels and pixel weights."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from evseg.distributed import classes_present, shared_draws, world


def _draw_device(generator: torch.Generator | None) -> torch.device:
    # Draws happen on the generator's device, and on the CPU for torch's global RNG, so that one saved CPU RNG
    # state reproduces a run whatever device the tensors live on.
    return generator.device if generator is not None else torch.device("cpu")


def class_masks(labels: Tensor, generator: torch.Generator | None = None, ignore_index: int | None = None) -> Tensor:
    """ClassMix masks (B,1,H,W) float: per image, ceil(n/2) of the n candidate classes, chosen uniformly.

    DACS quirk, kept: the candidates are the classes present in the WHOLE batch (``torch.unique(labels)``), not
    in image i alone, so an image can be given a class it does not contain (it then pastes nothing for it), and
    the ignore index counts as a class (ignore pixels can be pasted, carrying their ignore label). Pass
    ``ignore_index`` to remove it from the candidates first (a deviation from DACS).
    """
    if labels.ndim != 3:
        raise ValueError(f"labels must be (B,H,W), got {tuple(labels.shape)}")
    classes = classes_present(labels)
    if ignore_index is not None:
        classes = classes[classes != ignore_index]
    n = classes.numel()
    k = math.ceil(n / 2)
    # Under data parallelism ``labels`` are this process's rows: the draws are made for the whole batch (with
    # a generator shared by the processes) and each process keeps its own.
    shared_draws(generator)
    batch = labels.shape[0] * world().size
    rows = world().rows(batch)
    masks = []
    for i in range(batch):
        order = torch.randperm(n, generator=generator, device=_draw_device(generator))
        if rows.start <= i < rows.stop:
            chosen = classes[order[:k].to(classes.device)]
            masks.append(torch.isin(labels[i - rows.start], chosen))
    return torch.stack(masks)[:, None].float()


def mix(mask: Tensor, foreground: Tensor | float, background: Tensor | float) -> Tensor:
    """mask*foreground + (1-mask)*background.

    ``mask`` (B,1,H,W) broadcasts against images (B,C,H,W); for labels or weight maps (B,H,W) its channel
    axis is dropped (a (B,H,W) mask also works). Integer/bool inputs keep their dtype (the mask must then be
    binary), float inputs give their promoted float dtype; numbers are accepted for either side (e.g. a weight of
    1 for pasted source pixels).
    """
    fg = torch.as_tensor(foreground, device=mask.device)
    bg = torch.as_tensor(background, device=mask.device)
    if mask.ndim == 4 and max(fg.ndim, bg.ndim) == 3:
        if mask.shape[1] != 1:
            raise ValueError(f"a (B,H,W) input needs a single-channel mask, got {tuple(mask.shape)}")
        mask = mask[:, 0]
    dtype = torch.promote_types(fg.dtype, bg.dtype)
    if not dtype.is_floating_point and not dtype.is_complex:
        return torch.where(mask.bool(), fg, bg).to(dtype)
    m = mask.to(dtype)  # the result keeps the inputs' dtype (a binary mask is exact in any float type)
    return m * fg + (1 - m) * bg
