"""DACS strong augmentation of the mixed images (reference/cmda_daformer.md §1.6), written with torch ops.

Colour jitter follows torchvision's semantics (multiplicative brightness; contrast and saturation blend with the
grayscale mean / grayscale image; hue rotates in HSV; clamping to [0,1] after each op) rather than kornia 0.5.8's,
which DAFormer used (its brightness is additive, for one): the factors are drawn in the same ranges, but the
images are not bit-identical to the reference. One uniform draw per batch decides jitter (applied when it
exceeds p), one random order of the four ops is shared by the batch, and the factors are drawn per image.

Gray (1-channel) inputs: saturation and hue are undefined, so only brightness and contrast apply. HPL-ESS's released
code skips the whole jitter for anything that is not 3-channel (its strong_transform is effectively blur-only on
its 1-channel data); ``gray_jitter=False`` reproduces that. Other non-RGB channel counts are treated like gray
(contrast mean over all channels).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch import Tensor

from evseg.adapt.losses import no_autocast
from evseg.distributed import shared_draws, world

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale (ITU-R 601-2 luma)
BLUR_SIGMA = (0.15, 1.15)


def _draw_device(generator: torch.Generator | None) -> torch.device:
    # CPU for torch's global RNG: one saved CPU RNG state then reproduces a run on any device.
    return generator.device if generator is not None else torch.device("cpu")


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None) -> Tensor:
    u = torch.rand(n, generator=generator, device=_draw_device(generator), dtype=torch.float64)
    return low + (high - low) * u



def _per_image(values: Tensor, x: Tensor) -> Tensor:
    return values.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)


def _grayscale(x: Tensor) -> Tensor:
    """(B,1,H,W) luma of RGB images; the channel mean for other channel counts (the image itself for gray)."""
    if x.shape[1] == 3:
        w = torch.tensor(GRAY_WEIGHTS, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x * w).sum(1, keepdim=True)
    return x.mean(1, keepdim=True)


def _blend(x: Tensor, other: Tensor, factor: Tensor, clamp: bool) -> Tensor:
    y = factor * x + (1 - factor) * other
    return y.clamp(0, 1) if clamp else y


def color_jitter(x: Tensor, factors: Tensor, order: Sequence[int], clamp: bool = True) -> Tensor:
    """Apply brightness/contrast/saturation/hue (op ids 0..3, in ``order``) with per-image ``factors`` (4, B).

    Saturation and hue are skipped unless the images are RGB.
    """
    rgb = x.shape[1] == 3
    for op in order:
        f = _per_image(factors[op], x)
        if op == 0:
            x = x * f
            x = x.clamp(0, 1) if clamp else x
        elif op == 1:
            x = _blend(x, _grayscale(x).mean((1, 2, 3), keepdim=True), f, clamp)
        elif op == 2 and rgb:
            x = _blend(x, _grayscale(x), f, clamp)
        elif op == 3 and rgb:
            x = torch.stack([TF.adjust_hue(img, float(h)) for img, h in zip(x, factors[3])])
    return x


def gaussian_kernel1d(size: int, sigma: float, device=None, dtype=torch.float32) -> Tensor:
    """Normalised Gaussian taps of odd ``size`` centred on the middle tap."""
    x = torch.arange(size, device=device, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x**2 / (2 * sigma**2))
    return (g / g.sum()).to(dtype)


def blur_kernel_size(length: int) -> int:
    """About 10% of the image side, rounded up to an odd number (at least 1)."""
    k = max(1, math.ceil(0.1 * length))
    return k if k % 2 else k + 1


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur, kernel ~10% of H and of W, reflect padding (a constant image stays constant)."""
    b, c, h, w = x.shape
    kh, kw = blur_kernel_size(h), blur_kernel_size(w)
    x = F.pad(x, (kw // 2, kw // 2, kh // 2, kh // 2), mode="reflect")
    gy = gaussian_kernel1d(kh, sigma, x.device, x.dtype).view(1, 1, kh, 1).expand(c, 1, kh, 1)
    gx = gaussian_kernel1d(kw, sigma, x.device, x.dtype).view(1, 1, 1, kw).expand(c, 1, 1, kw)
    x = F.conv2d(x, gy, groups=c)
    return F.conv2d(x, gx, groups=c)


def strong_transform(images: Tensor, generator: torch.Generator | None = None, color_jitter_p: float = 0.2,
                     color_jitter_s: float = 0.2, blur: bool = True, gray_jitter: bool = True,
                     clamp: bool = True) -> Tensor:
    """DACS strong augmentation of a batch (B,C,H,W) of images in [0,1]; returns a new tensor of the same dtype.

    Jitter when a uniform draw > ``color_jitter_p`` (so p = 0.2 jitters ~80% of the batches), with brightness,
    contrast and saturation factors ~ U(max(0, 1-s), 1+s) and hue ~ U(-s, s) (s <= 0.5) per image. Blur (if
    ``blur``) when another draw > 0.5, with one sigma ~ U(0.15, 1.15) for the batch. ``clamp=False`` is for inputs
    that are not intensities (e.g. event tensors, blur only): nothing is clamped to [0,1] then.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (B,C,H,W), got {tuple(images.shape)}")
    rgb = images.shape[1] == 3
    s = color_jitter_s
    if rgb and s > 0.5:
        raise ValueError(f"hue jitter needs color_jitter_s <= 0.5, got {s}")
    shared_draws(generator)
    with no_autocast(images.device):
        x = images.float()
        if _uniform(1, 0, 1, generator).item() > color_jitter_p:
            # drawn for the whole batch, of which this process holds some rows (evseg.distributed)
            batch = x.shape[0] * world().size
            factors = _uniform(4 * batch, 0, 1, generator).view(4, -1)[:, world().rows(batch)]
            lo, hi = max(0.0, 1 - s), 1 + s
            factors[:3] = lo + (hi - lo) * factors[:3]
            factors[3] = -s + 2 * s * factors[3]
            order = torch.randperm(4, generator=generator, device=_draw_device(generator)).tolist()
            if rgb or gray_jitter:
                x = color_jitter(x, factors, order, clamp)
        if blur and _uniform(1, 0, 1, generator).item() > 0.5:
            x = gaussian_blur(x, _uniform(1, *BLUR_SIGMA, generator).item())
            x = x.clamp(0, 1) if clamp else x
    return x.to(images.dtype)


def _channel_stats(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> tuple[Tensor, Tensor]:
    if len(mean) != x.shape[1] or len(std) != x.shape[1]:
        raise ValueError(f"{x.shape[1]} channels, but {len(mean)} means and {len(std)} stds")
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return m, s


def normalize(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """(x - mean)/std per channel of (B,C,H,W); mean/std in the units of x (e.g. [0,1] intensities)."""
    m, s = _channel_stats(x, mean, std)
    return (x - m) / s


def denormalize(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """The inverse of ``normalize``: x*std + mean per channel."""
    m, s = _channel_stats(x, mean, std)
    return x * s + m
