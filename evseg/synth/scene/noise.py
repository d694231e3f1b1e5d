"""Procedural noise and box-filtered pulses: the anti-aliased texture primitives.

Shared by the caster (leafy canopy rims) and the materials.  Lookups blur with the
pixel footprint, so texture stays world-anchored and fades instead of flickering.
"""

import numpy as np

_NOISE_N = 256           # texels per side of the (tileable) noise table
_NOISE_LEVELS = 8        # pre-blurred copies, for footprint-aware (anti-aliased) lookups


def _build_noise():
    """Tileable 1/f noise at all scales (equal energy per octave), plus blurred copies.

    Level l is blurred with sigma ~ 0.45 * 2**l texels, so sampling it where a pixel
    covers 2**l texels does not alias: distant texture fades to its mean instead of
    flickering, which would create spurious events."""
    n = _NOISE_N
    rng = np.random.default_rng(0x5CE7E)
    spec = np.fft.fft2(rng.standard_normal((n, n)))
    k = np.fft.fftfreq(n)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    amp = 1.0 / np.sqrt(np.maximum(k2, (1.0 / n) ** 2))
    amp[0, 0] = 0.0
    levels = []
    for lev in range(_NOISE_LEVELS):
        sigma = 0.0 if lev == 0 else 0.45 * 2.0 ** lev
        levels.append(np.fft.ifft2(spec * amp * np.exp(-2 * np.pi ** 2 * sigma ** 2 * k2)).real)
    tab = np.stack(levels)
    return (tab / tab[0].std()).astype(np.float32).ravel()


def _corner_table(tab):
    """Per texel, its 4 bilinear neighbours packed in 16 bytes (viewed as complex128),
    so one gather fetches a whole bilinear footprint."""
    n = _NOISE_N
    t = tab.reshape(_NOISE_LEVELS, n, n)
    right, down = np.roll(t, -1, 2), np.roll(t, -1, 1)
    quad = np.stack([t, right, down, np.roll(down, -1, 2)], -1).astype(np.float32)
    return np.ascontiguousarray(quad).view(np.complex128).reshape(-1)


_NOISE = _corner_table(_build_noise())


def _fast_log2(v):
    """Piecewise-linear log2 of positive float32 (exact at powers of two, continuous):
    plenty for picking a blur level, and 5x cheaper than np.log2."""
    v = np.asarray(v, np.float32)
    return (v.view(np.int32) - 0x3F800000).astype(np.float32) * np.float32(1.0 / 2 ** 23)


def _noise(s, r, scale, fp):
    """Zero-mean, unit-std (when sharp) noise at world coordinates (s, r) in metres.

    `scale` is metres per texel, `fp` the pixel footprint in metres; the blur level
    is interpolated (trilinear) so that the result is smooth in the camera motion."""
    n = _NOISE_N
    inv = np.float32(1.0 / scale)
    x, y = s * inv, r * inv
    # fmax also maps NaN footprints (rays that missed) to level 0: indices stay valid
    lev = np.minimum(_fast_log2(np.fmax(fp * inv, np.float32(1.0))), np.float32(_NOISE_LEVELS - 1.001))
    l0 = lev.astype(np.intp)
    wl = lev - np.floor(lev)
    fx, fy = np.floor(x), np.floor(y)
    ax, ay = x - fx, y - fy
    i = (l0 * n + (fy.astype(np.intp) & (n - 1))) * n + (fx.astype(np.intp) & (n - 1))
    out = []
    for g in (_NOISE[i], _NOISE[i + n * n]):
        g = g.view(np.float32).reshape(*i.shape, 4)
        top = g[..., 0] + ax * (g[..., 1] - g[..., 0])
        out.append(top + ay * (g[..., 2] + ax * (g[..., 3] - g[..., 2]) - top))
    return out[0] + wl * (out[1] - out[0])


def _hash01(a, b, seed):
    """Deterministic uniform [0, 1) per integer cell (a, b) — e.g. which window is lit."""
    a, b, seed = (np.asarray(v, np.int64) for v in (a, b, seed))
    h = (a * 73856093) ^ (b * 19349663) ^ (seed * 83492791)
    h = (h ^ (h >> 13)) * 1274126177
    return ((h ^ (h >> 16)) & 0xFFFF).astype(np.float32) / 65536.0


def _pulse_cum(x, period, width):
    k = np.floor(x / period)
    return k * width + np.minimum(x - k * period, width)


def _pulse(s, period, width, fp):
    """Box-filtered pulse train: the fraction of the pixel footprint [s -+ fp/2] that
    falls on [k*period, k*period + width).  Exact anti-aliasing of stripes/grids."""
    h = 0.5 * fp
    return (_pulse_cum(s + h, period, width) - _pulse_cum(s - h, period, width)) / fp


def _band(s, lo, hi, fp):
    """Box-filtered indicator of the single interval [lo, hi]."""
    h = 0.5 * fp
    return np.clip(np.minimum(s + h, hi) - np.maximum(s - h, lo), 0.0, None) / fp
