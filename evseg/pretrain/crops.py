"""The views of one pre-training sample: random-resized crops of the whole event crop and iBOT's block masks.

A crop is a box of the whole crop, resized (bilinear) to a square and maybe flipped. It is applied through
a sampling grid in the whole crop's normalised coordinates (``grid_sample``'s convention, x first, pixel
centres at ``-1 + (2i + 1) / size``); the same box evaluated at the crop's *token* centres says where each of
its tokens lies in the whole crop, which is how the teacher's contexts reach the student's tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["CropBox", "apply_grid", "block_mask", "draw_masks", "random_resized_box"]


@dataclass(frozen=True)
class CropBox:
    """A box of a (height, width) image in pixels (float: resized crops start between pixels), and a flip."""

    top: float
    left: float
    height: float
    width: float
    flip: bool = False

    def grid(self, out_size: tuple[int, int], image_size: tuple[int, int]) -> Tensor:
        """(h, w, 2) normalised (x, y) coordinates in the image of the centres of an ``out_size`` grid laid
        over the box (the output pixels of the resized crop, or its tokens)."""
        (out_h, out_w), (height, width) = out_size, image_size
        ys = self.top + (torch.arange(out_h, dtype=torch.float64) + 0.5) * self.height / out_h
        xs = self.left + (torch.arange(out_w, dtype=torch.float64) + 0.5) * self.width / out_w
        if self.flip:
            xs = xs.flip(0)
        gy, gx = torch.meshgrid(2 * ys / height - 1, 2 * xs / width - 1, indexing="ij")
        return torch.stack([gx, gy], dim=-1).float()


def random_resized_box(rng: np.random.Generator, size: tuple[int, int], scale: tuple[float, float],
                       ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True) -> CropBox:
    """torchvision's RandomResizedCrop box (area share in ``scale``, log-uniform aspect ``ratio``, ten tries,
    then the largest centred box of a valid ratio), with a fair coin for the horizontal flip (if ``flip``)."""
    height, width = size
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    box = None
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w, h = math.sqrt(target * aspect), math.sqrt(target / aspect)
        if 0 < w <= width and 0 < h <= height:
            box = (rng.uniform(0, height - h), rng.uniform(0, width - w), h, w)
            break
    if box is None:
        aspect = width / height
        if aspect < ratio[0]:
            w, h = width, width / ratio[0]
        elif aspect > ratio[1]:
            h, w = height, height * ratio[1]
        else:
            h, w = height, width
        box = ((height - h) / 2, (width - w) / 2, h, w)
    flipped = bool(rng.random() < 0.5)  # drawn either way, so that the other draws do not depend on ``flip``
    return CropBox(*box, flip=flip and flipped)


def apply_grid(image: Tensor, grid: Tensor) -> Tensor:
    """Resample (C, H, W) at a (h, w, 2) grid: bilinear, zeros outside (a box never leaves the image)."""
    return F.grid_sample(image[None], grid[None], mode="bilinear", padding_mode="zeros", align_corners=False)[0]


def block_mask(rng: np.random.Generator, grid: tuple[int, int], target: int, min_block: int = 4,
               max_block: int | None = None, aspect: tuple[float, float] = (0.3, 1 / 0.3)) -> np.ndarray:
    """BEiT/iBOT block masking (DINOv2's ``MaskingGenerator``): rectangles of ``min_block`` to ``max_block``
    tokens (default: half the grid) with a log-uniform aspect ratio are added until about ``target`` tokens
    are masked (never more). Returns a bool (h, w) mask."""
    height, width = grid
    max_block = max_block or height * width // 2
    mask = np.zeros(grid, dtype=bool)
    log_aspect = (math.log(aspect[0]), math.log(aspect[1]))
    count = 0
    while count < target:
        budget = min(target - count, max_block)
        added = 0
        for _ in range(10):
            area = rng.uniform(min_block, budget) if budget >= min_block else float(budget)
            ratio = math.exp(rng.uniform(*log_aspect))
            h, w = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
            if 0 < h < height and 0 < w < width:
                top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
                new = h * w - int(mask[top: top + h, left: left + w].sum())
                if 0 < new <= budget:
                    mask[top: top + h, left: left + w] = True
                    added = new
                    break
        if added == 0:
            break
        count += added
    return mask


def draw_masks(rng: np.random.Generator, images: int, grid: tuple[int, int], probability: float,
               ratio: tuple[float, float]) -> np.ndarray:
    """DINOv2's masks of a batch of global crops: ``int(images * probability)`` of them masked, their target
    shares spread evenly over ``ratio`` (one uniform draw in each of equal sub-ranges), in random order; the
    others unmasked. Returns bool (images, h * w)."""
    tokens = grid[0] * grid[1]
    masked = int(images * probability)
    edges = np.linspace(ratio[0], ratio[1], masked + 1)
    masks = [block_mask(rng, grid, int(tokens * rng.uniform(edges[i], edges[i + 1]))).ravel() for i in range(masked)]
    masks += [np.zeros(tokens, dtype=bool)] * (images - masked)
    return np.stack([masks[i] for i in rng.permutation(images)])
