"""Dense event representations: the DSEC/ESS voxel grid, the E2VID voxel grid and the ESS sample tensor.

All grids are float32 arrays shaped (bins, height, width). Events arrive as separate arrays: ``x, y``
(pixel coordinates; floats after rectification), ``t`` (µs, sorted) and ``p`` (polarity 0/1, or -1/+1).
The splatting loops are compiled with numba: one pass over the events, no temporaries, one thread. The time
they take is mostly cache misses on the grid, so the common case (an event whose 8 neighbours are all
inside) is written as straight-line code on the flat grid; tests/benchmarks/bench_events.py measures it.
"""

from __future__ import annotations

import numba
import numpy as np

# -- DSEC / ESS voxel grid ------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _splat_trilinear(x, y, t, p, grid, official_truncation):
    bins, height, width = grid.shape
    plane = height * width
    flat = grid.reshape(-1)  # a view: voxel_grid allocates the grid C-contiguous
    n = len(t)
    t_first = float(t[0])
    span = float(t[n - 1]) - t_first
    # (bins - 1) * (t - t0) / span, in this order, puts the last event exactly on the last bin
    # (multiplying by a precomputed (bins - 1) / span can leave a 1e-16 share on the bin before).
    top = float(bins - 1) if span > 0 else 0.0
    span = span if span > 0 else 1.0
    for i in range(n):
        xi, yi = float(x[i]), float(y[i])
        ti = top * (float(t[i]) - t_first) / span
        value = 1.0 if p[i] > 0 else -1.0
        x0, y0, t0 = int(np.floor(xi)), int(np.floor(yi)), int(np.floor(ti))
        if xi >= 0.0 and yi >= 0.0 and x0 < width - 1 and y0 < height - 1 and 0 <= t0 < bins - 1:
            # Most events: all 8 neighbours are inside and floor equals int(), so no checks are needed.
            _splat_inside(flat, t0 * plane + y0 * width + x0, plane, width, value, xi - x0, yi - y0, ti - t0)
        else:
            _splat_border(grid, xi, yi, ti, value, official_truncation)


@numba.njit(cache=True, nogil=True, inline="always")
def _splat_inside(flat, base, plane, width, value, ax, ay, at):
    """Add the 8 trilinear shares of one event whose lower neighbour is ``flat[base]``; ``ax, ay, at`` are
    the event's offsets from it (the weights of the upper neighbours)."""
    w_t0, w_t1 = value * (1.0 - at), value * at
    w_y0x0, w_y0x1 = (1.0 - ay) * (1.0 - ax), (1.0 - ay) * ax
    w_y1x0, w_y1x1 = ay * (1.0 - ax), ay * ax
    for offset, w_t in ((base, w_t0), (base + plane, w_t1)):
        # Weights are computed in float64 and added in float32, the grid's type (about 8% faster than
        # widening each grid value to float64 for the addition; the sums differ by float32 rounding only).
        flat[offset] += np.float32(w_t * w_y0x0)
        flat[offset + 1] += np.float32(w_t * w_y0x1)
        flat[offset + width] += np.float32(w_t * w_y1x0)
        flat[offset + width + 1] += np.float32(w_t * w_y1x1)


@numba.njit(cache=True, nogil=True)
def _splat_border(grid, xi, yi, ti, value, official_truncation):
    """One event near the grid border (or, with ``official_truncation``, at a negative coordinate): the
    generic 8-neighbour loop that drops neighbours outside the grid."""
    bins, height, width = grid.shape
    if official_truncation:  # int() truncates toward zero, as the DSEC code does
        x0, y0, t0 = int(xi), int(yi), int(ti)
    else:
        x0, y0, t0 = int(np.floor(xi)), int(np.floor(yi)), int(np.floor(ti))
    for dt in range(2):
        tn = t0 + dt
        if tn < 0 or tn >= bins:
            continue
        wt = 1.0 - abs(tn - ti)
        for dy in range(2):
            yn = y0 + dy
            if yn < 0 or yn >= height:
                continue
            wy = 1.0 - abs(yn - yi)
            for dx in range(2):
                xn = x0 + dx
                if xn < 0 or xn >= width:
                    continue
                grid[tn, yn, xn] += value * wt * wy * (1.0 - abs(xn - xi))


def voxel_grid(x, y, t, p, num_bins: int, height: int, width: int, normalize: bool = False,
               official_truncation: bool = False) -> np.ndarray:
    """The DSEC/ESS voxel grid: each event adds ±1, split trilinearly over x, y and time.

    Time is scaled so that the first event sits on bin 0 and the last on bin ``num_bins - 1``. Neighbours
    outside the grid are dropped. ``normalize`` standardises the non-zero voxels (mean 0, unbiased std 1;
    only the mean is removed when the std is 0), as the official ``VoxelGrid`` does.

    The official code finds the lower neighbour with ``int()``, which truncates toward zero: for a
    rectified coordinate in (-1, 0) it then splats onto pixels 0 and 1 with weights 1-|d| that can be
    negative (x = -0.5 puts +0.5 on column 0 and -0.5 on column 1). We use ``floor`` and true bilinear
    weights (x = -0.5 puts 0.5 on column 0, the column -1 part is dropped). ``official_truncation=True``
    reproduces the official numbers for side-by-side checks.

    Differences at degenerate inputs: an empty window gives zeros (the official code raises IndexError),
    and a window whose events share one timestamp puts them all on bin 0 (the official code divides by 0).
    """
    grid = np.zeros((num_bins, height, width), dtype=np.float32)
    if len(t) == 0:
        return grid
    _check_same_length(x, y, t, p)
    _splat_trilinear(np.asarray(x), np.asarray(y), np.asarray(t), np.asarray(p), grid, official_truncation)
    if normalize:
        _standardize_nonzero(grid, ddof=1)
    return grid


def _standardize_nonzero(grid: np.ndarray, ddof: int) -> None:
    mask = grid != 0
    count = int(mask.sum())
    if count == 0:
        return
    values = grid[mask].astype(np.float64)
    mean = values.mean()
    std = values.std(ddof=ddof) if count > ddof else 0.0
    grid[mask] = ((values - mean) / std) if std > 0 else (values - mean)


# -- E2VID voxel grid -------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _splat_time_bilinear(x, y, t, p, grid):
    bins = grid.shape[0]
    n = len(t)
    t_first = float(t[0])
    span = float(t[n - 1]) - t_first
    if span == 0:
        span = 1.0  # E2VID's convention: with one timestamp every event lands on bin 0
    for i in range(n):
        ti = (bins - 1) * (float(t[i]) - t_first) / span
        value = 1.0 if p[i] > 0 else -1.0
        t0 = int(ti)  # ti >= 0, so truncation is floor here
        frac = ti - t0
        grid[t0, y[i], x[i]] += value * (1.0 - frac)
        if t0 + 1 < bins:
            grid[t0 + 1, y[i], x[i]] += value * frac


def e2vid_voxel_grid(x, y, t, p, num_bins: int, height: int, width: int) -> np.ndarray:
    """The E2VID voxel grid: ±1 per event, split bilinearly in time only, on integer pixels.

    Coordinates must be integer pixels (raw sensor events, or rectified coordinates rounded by the caller);
    E2VID's own code casts to ``long``. Use ``e2vid_normalize`` before feeding E2VID.
    """
    grid = np.zeros((num_bins, height, width), dtype=np.float32)
    if len(t) == 0:
        return grid
    _check_same_length(x, y, t, p)
    x, y = np.asarray(x), np.asarray(y)
    if not (np.issubdtype(x.dtype, np.integer) and np.issubdtype(y.dtype, np.integer)):
        raise TypeError("the E2VID voxel grid takes integer pixel coordinates; round rectified coordinates "
                        "first, or use voxel_grid() which splats them bilinearly")
    if x.min() < 0 or y.min() < 0 or x.max() >= width or y.max() >= height:
        raise ValueError(f"event coordinates fall outside the {width}x{height} grid")
    _splat_time_bilinear(x, y, np.asarray(t), np.asarray(p), grid)
    return grid


def e2vid_normalize(grid: np.ndarray) -> np.ndarray:
    """E2VID's input normalisation: standardise the non-zero entries with the population std; zeros stay 0."""
    out = grid.astype(np.float32, copy=True)
    _standardize_nonzero(out, ddof=0)
    return out


# -- ESS sample tensor ------------------------------------------------------------------------------------


def ess_event_tensor(x, y, t, p, height: int, width: int, crop_height: int, num_chunks: int = 20,
                     bins_per_chunk: int = 5, official_truncation: bool = False) -> np.ndarray:
    """The ESS input: the events cut into ``num_chunks`` equal-count chunks, oldest first, each a
    ``bins_per_chunk`` DSEC voxel grid (not normalised), stacked to (num_chunks*bins, crop_height, width).

    ESS loads the last 20 x 100k events before the label time (``EventSlicer.get_events_fixed_num``) and
    crops the bottom rows to the 440-row label frame. As in ESS, each chunk has ``len // num_chunks``
    events and the remainder (the newest ``len % num_chunks`` events) is not used; with fewer events
    than chunks the tensor is zero (ESS raises there). ``official_truncation`` as in ``voxel_grid``.
    """
    per_chunk = len(t) // num_chunks
    tensor = np.empty((num_chunks * bins_per_chunk, crop_height, width), dtype=np.float32)
    for chunk in range(num_chunks):
        s = slice(chunk * per_chunk, (chunk + 1) * per_chunk)
        grid = voxel_grid(x[s], y[s], t[s], p[s], bins_per_chunk, height, width,
                          official_truncation=official_truncation)
        tensor[chunk * bins_per_chunk : (chunk + 1) * bins_per_chunk] = grid[:, :crop_height]
    return tensor


def _check_same_length(x, y, t, p) -> None:
    lengths = {len(x), len(y), len(t), len(p)}
    if len(lengths) != 1:
        raise ValueError(f"x, y, t, p have different lengths: {len(x)}, {len(y)}, {len(t)}, {len(p)}")
