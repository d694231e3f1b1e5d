"""CMDA's three extra inputs (reference/cmda_daformer.md §2.1-2.3): what the image and event backbones see
besides the RGB frame.

- **Image Motion-Extractor** (the released code's ``img_time_res``): the thresholded, clipped and rescaled
  log-difference of two consecutive grayscale frames, a day-time stand-in for an event frame (on Cityscapes:
  ``leftImg8bit_sequence`` frames 18 and 19). CMDA then passes it through a frozen day→night style generator.
- **Image Content-Extractor** (``img_self_res``, "ISR"): the same log-difference between one grayscale image and
  itself shifted by a few pixels, horizontally and vertically, averaged: an edge map that looks like events
  and needs no second frame.
- **The event image**: the events of one inter-frame interval as a one-bin voxel grid (each event adds its
  polarity ±1, split bilinearly over its 4 neighbouring pixels), its non-zero pixels standardised, then clipped
  at 1.5 × events / 500,000 and rescaled.

All three end in :func:`split_rescale`: positive values clipped to [0, clip] and min-max rescaled to [0, 1],
negative ones clipped to [-clip, 0] and rescaled to [-1, 0], so that 0 stays "no change". The networks see each
map repeated to 3 channels. Arrays are float32, (H, W).
"""

from __future__ import annotations

import numpy as np
import torch

from evseg.events.representations import voxel_grid

# The released parameters (§2.2, the DSEC run): ISR of the target's (and the mixed) images, and of Cityscapes.
TARGET_CONTENT = dict(val_range=(0.01, 1.01), threshold=0.005, clip=0.1, shift_pixel=1)
SOURCE_CONTENT = dict(val_range=(1.0, 10.0), threshold=0.03, clip=0.2, shift_pixel=3)
EVENTS_PER_CLIP_UNIT = 500_000 / 1.5  # clip range = 1.5 × events / 500,000


def _min_max(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def split_rescale(change: np.ndarray, clip: float) -> np.ndarray:
    """[-1, 1] map of a signed change: positives clipped to [0, clip], min-max rescaled to [0, 1]; negatives
    clipped to [-clip, 0], rescaled to [-1, 0]; the two summed.

    As released, the rescaling is min-max over the whole clipped part, so 0 maps to 0 only when some pixel is not
    positive (not negative); a part whose values are all equal (e.g. no negative change at all) is 0 (the
    released code divides by zero there)."""
    if clip <= 0:
        raise ValueError(f"the clip range must be positive, got {clip}")
    change = np.asarray(change, np.float32)
    positive = _min_max(np.clip(change, 0, clip))
    negative_part = np.clip(change, -clip, 0)
    negative = _min_max(negative_part) - 1 if negative_part.max() > negative_part.min() else 0
    return (positive + negative).astype(np.float32)


def log_change(after: np.ndarray, before: np.ndarray, offset: float, threshold: float) -> np.ndarray:
    """log(after + offset) - log(before + offset), with changes of at most ``threshold`` set to 0."""
    change = np.log(np.asarray(after, np.float64) + offset) - np.log(np.asarray(before, np.float64) + offset)
    change[np.abs(change) <= threshold] = 0
    return change


def _gray(image: np.ndarray, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"the {name} must be one grayscale (H, W) image, got shape {image.shape}")
    return image.astype(np.float64)


def motion_extractor(frame: np.ndarray, previous: np.ndarray, log_offset: float = 50.0, threshold: float = 0.1,
                     clip: float = 0.8) -> np.ndarray:
    """The Image Motion-Extractor of two consecutive grayscale uint8-range frames (released: log_add 50,
    threshold 0.1, clip_range 0.8)."""
    frame, previous = _gray(frame, "frame"), _gray(previous, "previous frame")
    if frame.shape != previous.shape:
        raise ValueError(f"consecutive frames differ in size: {frame.shape} and {previous.shape}")
    return split_rescale(log_change(frame, previous, log_offset, threshold), clip)


def as_uint8(change: np.ndarray) -> np.ndarray:
    """A [-1, 1] map stored as a uint8 image, (x + 1) / 2 × 255 rounded (the released IC1 files)."""
    return np.rint((np.clip(change, -1, 1) + 1) / 2 * 255).astype(np.uint8)


def shifted(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """``image`` moved by (dx, dy) pixels (content moves right for dx > 0, down for dy > 0), the uncovered
    border filled with the nearest edge pixel."""
    height, width = image.shape
    rows = np.clip(np.arange(height) - dy, 0, height - 1)
    cols = np.clip(np.arange(width) - dx, 0, width - 1)
    return image[rows][:, cols]


def content_extractor(gray: np.ndarray, shift_pixel: int, val_range: tuple[float, float], threshold: float,
                      clip: float, rightward: bool = True, downward: bool = True) -> np.ndarray:
    """The Image Content-Extractor (ISR) of a grayscale uint8-range image.

    Intensities are mapped to [a, b] = ``val_range``; the log-change from the image to its copy shifted by
    ``shift_pixel`` (right or left, then down or up) is thresholded and clipped at ``threshold`` and ``clip``
    *times ln(b / a)*, rescaled by :func:`split_rescale`, and the horizontal and vertical maps are averaged."""
    low, high = val_range
    if not 0 < low < high:
        raise ValueError(f"val_range must be 0 < a < b, got {val_range}")
    if shift_pixel < 1:
        raise ValueError(f"shift_pixel must be at least 1, got {shift_pixel}")
    image = _gray(gray, "image") / 255 * (high - low) + low
    scale = np.log(high / low)
    maps = []
    for dx, dy in ((shift_pixel if rightward else -shift_pixel, 0), (0, shift_pixel if downward else -shift_pixel)):
        change = log_change(shifted(image, dx, dy), image, 0.0, threshold * scale)
        maps.append(split_rescale(change, clip * scale))
    return ((maps[0] + maps[1]) / 2).astype(np.float32)


def event_image(x: np.ndarray, y: np.ndarray, t: np.ndarray, p: np.ndarray, height: int, width: int,
                events_per_clip_unit: float = EVENTS_PER_CLIP_UNIT) -> np.ndarray:
    """CMDA's event input of one window: the one-bin voxel grid (polarity sums, bilinear in x and y), its
    non-zero pixels standardised, then :func:`split_rescale` at events / ``events_per_clip_unit`` (released:
    1.5 × events / 500,000 on the 640×480 sensor)."""
    grid = voxel_grid(x, y, t, p, 1, height, width, normalize=True)[0]
    if len(t) == 0:
        return grid
    return split_rescale(grid, len(t) / events_per_clip_unit)


# --------------------------------------------------------------------------------------------------------
# the Content-Extractor on a batch of tensors (CMDA recomputes it on the augmented mixed image)

GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # PIL's convert("L"), which the released code uses


def _split_rescale_torch(change: torch.Tensor, clip: float) -> torch.Tensor:
    """:func:`split_rescale` of each map of a (B, H, W) batch."""
    def min_max(values):
        low = values.amin(dim=(-2, -1), keepdim=True)
        high = values.amax(dim=(-2, -1), keepdim=True)
        span = high - low
        return torch.where(span > 0, (values - low) / span.clamp_min(1e-30), torch.zeros_like(values)), span > 0

    positive, _ = min_max(change.clamp(0, clip))
    negative, varies = min_max(change.clamp(-clip, 0))
    return positive + torch.where(varies, negative - 1, torch.zeros_like(negative))


def content_extractor_batch(gray: torch.Tensor, shift_pixel: int, val_range: tuple[float, float], threshold: float,
                            clip: float, rightward: torch.Tensor, downward: torch.Tensor) -> torch.Tensor:
    """:func:`content_extractor` of a (B, H, W) batch of grayscale images in [0, 255], with a shift direction
    per image (``rightward``, ``downward``: (B,) bool). Computed in float64, returned as float32."""
    low, high = val_range
    image = gray.double() / 255 * (high - low) + low
    scale = float(np.log(high / low))
    height, width = image.shape[-2:]
    device = image.device
    maps = []
    for horizontal, sign in ((True, rightward), (False, downward)):
        step = torch.where(sign.to(device), shift_pixel, -shift_pixel).view(-1, 1)
        if horizontal:
            cols = (torch.arange(width, device=device) - step).clamp(0, width - 1)  # (B, W)
            moved = torch.gather(image, 2, cols[:, None, :].expand(-1, height, -1))
        else:
            rows = (torch.arange(height, device=device) - step).clamp(0, height - 1)  # (B, H)
            moved = torch.gather(image, 1, rows[:, :, None].expand(-1, -1, width))
        change = torch.log(moved) - torch.log(image)
        change = torch.where(change.abs() <= threshold * scale, torch.zeros_like(change), change)
        maps.append(_split_rescale_torch(change, clip * scale))
    return ((maps[0] + maps[1]) / 2).float()


def gray_of(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> (B, H, W) gray in [0, 255]."""
    weights = torch.tensor(GRAY_WEIGHTS, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return (rgb * weights).sum(1) * 255
