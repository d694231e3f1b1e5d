"""A frame camera at night: what the synthetic DSEC Night-Semantic drives store as their warp images.

The renderer gives noise-free linear intensity. A real night frame loses much of it, which is why CMDA adds
events: the sensor collects few photons (shot noise), adds read noise, clips the darkest values to black and
the lamps to white (limited dynamic range), and bright lights bloom over their surroundings (glare). The event
simulator works on the noise-free log intensity, so events keep the dark structure that the frames lose.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from evseg.synth.cityscapes import to_srgb8


@dataclass(frozen=True)
class NightCamera:
    exposure: float = 4.0        # gain on the scene's linear intensity (the renderer's night median is ~0.013)
    full_well: float = 120.0     # photo-electrons at full scale: shot noise std = sqrt(x / full_well)
    read_noise: float = 0.015    # std of additive noise, fraction of full scale
    black_level: float = 0.03    # intensities below it (after gain) come out black
    glare_knee: float = 0.6      # intensity (after gain) above which light blooms
    glare_strength: float = 0.8
    glare_sigma: float = 0.03    # of the glare's Gaussian, as a fraction of the image width


def night_frame(rgb: np.ndarray, camera: NightCamera, rng: np.random.Generator) -> np.ndarray:
    """Linear RGB (H, W, 3) in [0, 1] -> the camera's 8-bit sRGB frame (H, W, 3)."""
    x = np.asarray(rgb, np.float32) * camera.exposure
    if camera.glare_strength > 0:
        over = np.clip(x - camera.glare_knee, 0, None)
        sigma = camera.glare_sigma * x.shape[1]
        x = x + camera.glare_strength * cv2.GaussianBlur(over, (0, 0), sigmaX=sigma, sigmaY=sigma)
    if camera.full_well > 0:
        x = rng.poisson(np.clip(x, 0, 4) * camera.full_well).astype(np.float32) / camera.full_well
    x = x + rng.normal(0, camera.read_noise, x.shape).astype(np.float32)
    x = (x - camera.black_level) / (1 - camera.black_level)
    return to_srgb8(x)
