"""CMDA's input extractors against hand-computed values and brute-force versions."""

import math

import numpy as np
import pytest

from evseg.cmda.inputs import (EVENTS_PER_CLIP_UNIT, SOURCE_CONTENT, TARGET_CONTENT, as_uint8, content_extractor,
                               event_image, motion_extractor, split_rescale)


def test_split_rescale_by_hand():
    change = np.array([[-1.0, -0.4, 0.0], [0.1, 0.5, 2.0]])
    expected = np.array([[-1.0, -0.5, 0.0], [0.125, 0.625, 1.0]])
    np.testing.assert_allclose(split_rescale(change, 0.8), expected, atol=1e-6)
    # no negative change at all: the negative part is 0, not -1 (the released code divides by zero)
    np.testing.assert_allclose(split_rescale(np.array([0.0, 0.4]), 0.8), [0.0, 1.0])
    with pytest.raises(ValueError, match="clip range must be positive"):
        split_rescale(change, 0)


def test_motion_extractor_by_hand():
    previous = np.full((2, 3), 100, np.uint8)
    frame = np.array([[100, 150, 105], [60, 255, 100]], np.uint8)
    up, top = math.log(200 / 150), math.log(305 / 150)  # top (0.71) is under the 0.8 clip: the largest change
    # log(155/150) = 0.033 is below the 0.1 threshold: no change there
    expected = np.array([[0, up / top, 0], [-1, 1, 0]])
    np.testing.assert_allclose(motion_extractor(frame, previous), expected, atol=1e-6)
    assert as_uint8(expected).tolist() == [[128, round((up / top + 1) / 2 * 255), 128], [0, 255, 128]]


def brute_content(gray, shift, val_range, threshold, clip, rightward, downward):
    """The content extractor written out pixel by pixel, with split_rescale's formula spelled out."""
    low, high = val_range
    scale = math.log(high / low)
    height, width = gray.shape
    value = lambda r, c: gray[r][c] / 255 * (high - low) + low  # noqa: E731
    maps = []
    for dx, dy in ((shift if rightward else -shift, 0), (0, shift if downward else -shift)):
        change = np.zeros((height, width))
        for r in range(height):
            for c in range(width):
                source_r, source_c = min(max(r - dy, 0), height - 1), min(max(c - dx, 0), width - 1)
                d = math.log(value(source_r, source_c)) - math.log(value(r, c))
                change[r, c] = 0 if abs(d) <= threshold * scale else d
        positive = np.minimum(np.maximum(change, 0), clip * scale)
        negative = np.maximum(np.minimum(change, 0), -clip * scale)
        out = np.zeros((height, width))
        if positive.max() > positive.min():
            out += (positive - positive.min()) / (positive.max() - positive.min())
        if negative.max() > negative.min():
            out += (negative - negative.min()) / (negative.max() - negative.min()) - 1
        maps.append(out)
    return (maps[0] + maps[1]) / 2


@pytest.mark.parametrize("params", [TARGET_CONTENT, SOURCE_CONTENT])
@pytest.mark.parametrize("rightward,downward", [(True, True), (False, True), (True, False)])
def test_content_extractor_matches_a_brute_force_version(params, rightward, downward):
    gray = np.random.default_rng(1).integers(0, 256, (9, 12)).astype(np.uint8)
    gray[2:9, 2:11] = 200  # a flat patch: changes only near its border
    found = content_extractor(gray, **params, rightward=rightward, downward=downward)
    expected = brute_content(gray, params["shift_pixel"], params["val_range"], params["threshold"], params["clip"],
                             rightward, downward)
    np.testing.assert_allclose(found, expected, atol=1e-5)
    assert found.dtype == np.float32 and found.min() >= -1 and found.max() <= 1
    assert (found[5, 5:8] == 0).all()  # in the patch, 3 pixels from its border, nothing changes


def test_content_extractor_of_a_vertical_edge():
    """A dark-to-bright step seen by a 1-pixel rightward shift: only the bright column next to the edge
    changes (it sees the dark pixel), and nothing changes vertically, so the map is -1/2 there."""
    gray = np.zeros((4, 6), np.uint8)
    gray[:, 3:] = 255
    found = content_extractor(gray, 1, (1.0, 10.0), 0.03, 0.2)
    expected = np.zeros((4, 6))
    expected[:, 3] = -0.5
    np.testing.assert_allclose(found, expected, atol=1e-6)


def test_event_image_is_the_rescaled_standardised_polarity_sum():
    rng = np.random.default_rng(0)
    n, height, width = 2000, 12, 16
    x, y = rng.uniform(0, width - 1, n), rng.uniform(0, height - 1, n)
    t, p = np.sort(rng.integers(0, 50_000, n)), rng.integers(0, 2, n)
    grid = np.zeros((height, width))
    for xi, yi, pi in zip(x, y, p):  # bilinear polarity splat, written out
        x0, y0 = int(xi), int(yi)
        for xn, wx in ((x0, 1 - (xi - x0)), (x0 + 1, xi - x0)):
            for yn, wy in ((y0, 1 - (yi - y0)), (y0 + 1, yi - y0)):
                grid[yn, xn] += (1 if pi else -1) * wx * wy
    nonzero = grid != 0
    grid[nonzero] = (grid[nonzero] - grid[nonzero].mean()) / grid[nonzero].std(ddof=1)
    clip = 1.5 * n / 500_000
    expected = split_rescale(grid, clip)
    np.testing.assert_allclose(event_image(x, y, t, p, height, width), expected, atol=1e-4)
    assert EVENTS_PER_CLIP_UNIT * clip == pytest.approx(n)
    assert not event_image(x[:0], y[:0], t[:0], p[:0], height, width).any()  # an empty window: zeros


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="consecutive frames differ in size"):
        motion_extractor(np.zeros((4, 6)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"one grayscale \(H, W\) image, got shape \(4, 6, 3\)"):
        content_extractor(np.zeros((4, 6, 3)), 1, (1.0, 10.0), 0.03, 0.2)
    with pytest.raises(ValueError, match="val_range must be 0 < a < b"):
        content_extractor(np.zeros((4, 6)), 1, (0.0, 10.0), 0.03, 0.2)
    with pytest.raises(ValueError, match="shift_pixel must be at least 1"):
        content_extractor(np.zeros((4, 6)), 0, (1.0, 10.0), 0.03, 0.2)


@pytest.mark.parametrize("params", [TARGET_CONTENT, SOURCE_CONTENT], ids=["target", "source"])
def test_batched_content_extractor_equals_the_per_image_one(params):
    """The mixed image's ISR is computed on tensors: per image and direction it equals the NumPy version."""
    import torch

    from evseg.cmda.inputs import content_extractor_batch

    rng = np.random.default_rng(4)
    gray = rng.integers(0, 256, (4, 9, 13)).astype(np.float64)
    gray[1] = 17.0  # a flat image: no change anywhere
    rightward, downward = np.array([True, False, True, False]), np.array([True, True, False, False])
    out = content_extractor_batch(torch.from_numpy(gray), rightward=torch.from_numpy(rightward),
                                  downward=torch.from_numpy(downward), **params)
    assert out.dtype == torch.float32 and out.shape == (4, 9, 13)
    for i in range(4):
        expected = content_extractor(gray[i], rightward=bool(rightward[i]), downward=bool(downward[i]), **params)
        np.testing.assert_allclose(out[i].numpy(), expected, atol=1e-6)
    assert (out[1] == 0).all()
