"""E2VID's post-processing against hand computations (reference e2vid_ecddp.md §A.5)."""

import numpy as np

from evseg.recon.postprocess import IntensityRescaler, gaussian_kernel, unsharp_mask


def test_unsharp_mask():
    kernel = gaussian_kernel(5, 1.0)
    assert abs(kernel.sum() - 1) < 1e-6
    assert abs(kernel[2, 2] / kernel[2, 3] - np.exp(0.5)) < 1e-5  # exp(-d^2 / 2 sigma^2) ratio
    image = np.zeros((9, 9), np.float32)
    image[4, 4] = 1.0
    out = unsharp_mask(image, amount=0.3)
    assert abs(out[4, 4] - (1.3 - 0.3 * kernel[2, 2])) < 1e-6
    assert abs(out[4, 5] - (-0.3 * kernel[2, 3])) < 1e-6
    flat = np.full((9, 9), 0.4, np.float32)
    assert np.allclose(unsharp_mask(flat)[2:-2, 2:-2], 0.4)  # the interior of a flat image is unchanged


def test_intensity_rescaler():
    image = np.array([[0.2, 0.5, 0.8]], np.float32)
    np.testing.assert_allclose(IntensityRescaler()(image), image)  # without auto-HDR: [0, 1] as is
    rescale = IntensityRescaler(auto_hdr=True, median_window=3)
    # per frame: min clipped to [0, 0.45], max to [0.55, 1]; the bounds are medians over the last 3 frames
    for low, high in ((0.1, 0.9), (0.3, 0.7), (0.6, 0.6)):
        out = rescale(np.array([[low, high]], np.float32))
    mins, maxs = sorted([0.1, 0.3, 0.45]), sorted([0.9, 0.7, 0.6])
    np.testing.assert_allclose(out, np.clip((np.array([[0.6, 0.6]]) - mins[1]) / (maxs[1] - mins[1]), 0, 1), atol=1e-6)
