"""Voxel grids against brute-force loops written from the formulas (reference §2.1, §2.2)."""

import math

import numpy as np
import pytest

from evseg.events import e2vid_normalize, e2vid_voxel_grid, ess_event_tensor, voxel_grid


def brute_voxel(x, y, t, p, bins, height, width, truncate=False):
    grid = np.zeros((bins, height, width), np.float64)
    span = t[-1] - t[0]
    for xi, yi, ti, pi in zip(x, y, t, p):
        tn = (bins - 1) * (ti - t[0]) / span if span else 0.0
        lower = (int if truncate else math.floor)
        for xn in (lower(xi), lower(xi) + 1):
            for yn in (lower(yi), lower(yi) + 1):
                for tb in (lower(tn), lower(tn) + 1):
                    if 0 <= xn < width and 0 <= yn < height and 0 <= tb < bins:
                        w = (1 - abs(xn - xi)) * (1 - abs(yn - yi)) * (1 - abs(tb - tn))
                        grid[tb, yn, xn] += (1 if pi else -1) * w
    return grid


def random_events(n, height, width, seed=0, margin=2.0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-margin, width - 1 + margin, n).astype(np.float32)
    y = rng.uniform(-margin, height - 1 + margin, n).astype(np.float32)
    t = np.sort(rng.integers(1_000_000, 1_050_000, n))
    p = rng.integers(0, 2, n).astype(np.uint8)
    return x, y, t, p


@pytest.mark.parametrize("bins", [1, 3, 15])
def test_voxel_grid_matches_brute_force(bins):
    x, y, t, p = random_events(400, 12, 16)
    expected = brute_voxel(x.astype(np.float64), y.astype(np.float64), t, p, bins, 12, 16)
    np.testing.assert_allclose(voxel_grid(x, y, t, p, bins, 12, 16), expected, atol=1e-5)


def test_official_truncation_reproduces_negative_weights():
    # x = -0.5: the official int() truncation splats +0.5 on column 0 and -0.5 on column 1.
    x, y, t, p = np.array([-0.5, 3.0]), np.array([1.0, 1.0]), np.array([0, 10]), np.array([1, 1])
    official = voxel_grid(x, y, t, p, 2, 3, 5, official_truncation=True)
    assert official[0, 1, 0] == pytest.approx(0.5) and official[0, 1, 1] == pytest.approx(-0.5)
    ours = voxel_grid(x, y, t, p, 2, 3, 5)
    assert ours[0, 1, 0] == pytest.approx(0.5) and ours[0, 1, 1] == 0.0
    x, y, t, p = random_events(300, 10, 14, seed=3)
    np.testing.assert_allclose(voxel_grid(x, y, t, p, 4, 10, 14, official_truncation=True),
                               brute_voxel(x.astype(float), y.astype(float), t, p, 4, 10, 14, truncate=True),
                               atol=1e-5)


def test_single_event_analytic_weights():
    # one event at (2.25, 1.5), times scaled so the middle event sits at t* = 0.5 of 2 bins
    x, y = np.array([0.0, 2.25, 0.0]), np.array([0.0, 1.5, 0.0])
    t, p = np.array([0, 50, 100]), np.array([0, 1, 0])
    grid = voxel_grid(x, y, t, p, 2, 4, 5)
    middle = grid.copy()
    middle[0, 0, 0] += 1.0  # the first event is -1 at (0, 0, bin 0), the last -1 at (0, 0, bin 1)
    middle[1, 0, 0] += 1.0
    expected = np.zeros_like(grid)
    for xn, wx in ((2, 0.75), (3, 0.25)):
        for yn, wy in ((1, 0.5), (2, 0.5)):
            expected[:, yn, xn] = wx * wy * 0.5
    np.testing.assert_allclose(middle, expected, atol=1e-6)
    assert grid.sum() == pytest.approx(-1.0)  # total mass = sum of polarities when nothing leaves the grid


def test_normalisation_over_nonzero_voxels():
    x, y, t, p = random_events(200, 8, 8, seed=1, margin=0)
    raw = voxel_grid(x, y, t, p, 3, 8, 8)
    grid = voxel_grid(x, y, t, p, 3, 8, 8, normalize=True)
    nz = raw != 0
    assert np.all(grid[~nz] == 0)
    np.testing.assert_allclose(grid[nz].mean(), 0, atol=1e-5)
    np.testing.assert_allclose(grid[nz].std(ddof=1), 1, atol=1e-5)


def test_degenerate_windows():
    assert not voxel_grid([], [], [], [], 5, 4, 4).any()
    grid = voxel_grid(np.array([1.0, 2.0]), np.array([1.0, 1.0]), np.array([7, 7]), np.array([1, 0]), 3, 4, 4)
    assert grid[0, 1, 1] == 1 and grid[0, 1, 2] == -1 and not grid[1:].any()


def test_e2vid_voxel_grid_and_normalisation():
    rng = np.random.default_rng(2)
    n, bins, height, width = 300, 5, 6, 7
    x, y = rng.integers(0, width, n), rng.integers(0, height, n)
    t, p = np.sort(rng.integers(0, 10_000, n)), rng.integers(0, 2, n)
    expected = np.zeros((bins, height, width))
    for xi, yi, ti, pi in zip(x, y, t, p):
        tn = (bins - 1) * (ti - t[0]) / (t[-1] - t[0])
        k = math.floor(tn)
        expected[k, yi, xi] += (1 if pi else -1) * (1 - (tn - k))
        if k + 1 < bins:
            expected[k + 1, yi, xi] += (1 if pi else -1) * (tn - k)
    grid = e2vid_voxel_grid(x, y, t, p, bins, height, width)
    np.testing.assert_allclose(grid, expected, atol=1e-5)
    normed = e2vid_normalize(grid)
    nz = grid != 0
    values = grid[nz].astype(np.float64)
    np.testing.assert_allclose(normed[nz], (values - values.mean()) / values.std(), atol=1e-5)  # population std
    assert np.all(normed[~nz] == 0)
    with pytest.raises(TypeError, match="integer pixel"):
        e2vid_voxel_grid(x.astype(np.float32), y, t, p, bins, height, width)


def test_ess_tensor_chunks_oldest_first_and_crops():
    x, y, t, p = random_events(20 * 30 + 7, 12, 10, seed=4, margin=0)  # 7 newest events are left over
    tensor = ess_event_tensor(x, y, t, p, height=12, width=10, crop_height=11, num_chunks=20, bins_per_chunk=5)
    assert tensor.shape == (100, 11, 10)
    for chunk in (0, 7, 19):
        s = slice(chunk * 30, (chunk + 1) * 30)
        np.testing.assert_allclose(tensor[chunk * 5 : chunk * 5 + 5], voxel_grid(x[s], y[s], t[s], p[s], 5, 12, 10)[:, :11],
                                   atol=1e-6)
