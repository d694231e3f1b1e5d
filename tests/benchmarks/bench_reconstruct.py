"""Benchmark of streaming reconstruction: frames per second of ``stream_frames`` against a naive per-frame loop.

Run ``python tests/benchmarks/bench_reconstruct.py [--quick] [--full] [--json PATH] [--workdir DIR]``. It is a
script, not a pytest test. On 2 CPU cores it takes about 100 s (about 15 s with ``--quick``; ``--full`` adds about
40 s). It exits non-zero only when a correctness check fails, never on speed.

Setting, both sides: outputs every 50 ms (20 Hz, DSEC's label rate); E2VID is fed windows of 0.35 events per
pixel (its default: 6,720 events at 160x120, 107,520 at 640x480), cut at every output time; the whole sequence is
one pass with the state kept; ``torch.set_num_threads(2)`` on both sides (the numba kernels are single-threaded).

- Ours, streaming: ``evseg.recon.stream.stream_frames``: events read 50 ms at a time (``EventSlicer.get_events``),
  ``rectify_events``, then (a) ``HighPassFilter`` (default config) or (b) E2VID lightweight with random weights
  (``build_reconstruction_model('E2VIDRecurrent', E2VID_LIGHTWEIGHT_CONFIG)``, seed 0) in
  ``NetworkReconstructor``: one numba ``voxel_grid`` + ``e2vid_normalize`` per window.
- Naive, per frame: for every output time the frame's events (from the previous output time) are looked up again
  in the file (``EventSlicer.get_events``) and rectified by indexing the map with torch; then
  - E2VID: the same windows as ours (0.35 events/px counted from the previous output, the last one cut at the
    output), each window's voxel grid rebuilt from scratch with the DSEC ``VoxelGrid.convert`` formula in torch
    (bench_events.py's ``naive_voxel_grid``: 8 trilinear neighbours, ``index_put_(accumulate=True)``, floor;
    time scaled in float64 as ours, see ``naive_voxel_grid``), E2VID's normalisation in torch, all on the
    model's device; then the same model with its state kept and E2VID's post-processing (unsharp mask, [0, 1]).
  - High-pass filter: a per-event Python loop would be a straw man (measured: 11.5 µs per event against numba's
    0.05 µs, 250x), so the naive counterpart is the filter's closed form in torch. With the default config (no
    per-event decay, no frame) the filter is linear: at output time t_k,
    L <- exp(-alpha (t_k - t_{k-1})) L + sum_i c_i w_i exp(-alpha (t_k - t_i)) over the frame's events (bilinear
    shares w_i on 4 pixels, ``index_put_(accumulate=True)``, float64), then the same display mapping with
    ``torch.quantile``. It needs no windows: the filter is exact per event, so its frames do not depend on them.

Correctness (a failure exits non-zero): the two sides must use the same events per frame and give the same frames,
every frame compared: high-pass max |diff| < 1e-5, E2VID fp32 (CPU) < 1e-3. On the windows of the first 3 outputs
the voxel grids are compared window by window: raw < 1e-4, normalised < 1e-3 (leaving out rounding-residue voxels,
see ``grid_check``). On CUDA the network runs in bf16 autocast, as ``NetworkReconstructor`` does there, and bf16
rounds the two sides' nearly equal inputs differently: grids are checked as on the CPU, frames against
``GPU_FRAME_TOLERANCE`` (5e-2; bf16 autocast on the CPU at 160x120 gave 4.9e-3 max, 3e-6 mean).

Data, written at the start (reused from ``--workdir`` if already there):
- 160x120: a rendered night drive, ``write_dsec_sequence`` with ``DriveConfig(sensor_size=(120, 160),
  label_height=110, duration_s=2, render_fps=400)``, seed 3 (about 10 s to write; 1 s with ``--quick``): real
  scene content through the ESIM-style simulator and the sequence's own lens map. 1.3M events in 2 s, i.e.
  34 events/pixel/s, 1.7 events/pixel per output and so about 5 windows per output.
- 640x480: rendering at this size would take many minutes, so it is bench_events.py's DSEC-format events from
  16 edges sweeping the image plus 10% uniform noise, at the drive's rate per pixel (10.4 Mev/s, again about 5
  windows per output), written with ``EventsH5Appender`` (Blosc/ZSTD), with a mild radial ``rectify_map``
  (``radial_rectify_map(480, 640, focal_px=500)``, corners outside the image); 1 s long (2 s with a GPU).

Cases; frames per second = output frames / wall time of a whole pass, median of the passes (ours and naive
alternate; numba kernels, the model and the naive torch ops are warmed up first):
- CPU, always: high-pass (3 passes) and E2VID (39 frames, 2 passes; E2VID's forward is ~90 ms here) at 160x120;
  high-pass at 640x480 (19 frames, 2 passes; not with ``--quick``). ``--quick``: 1 s drive, E2VID 8 frames, 1 pass.
- CPU, ``--full`` only: E2VID at 640x480 (~1.6 s per forward), ``--full-frames`` frames (2), one pass.
- GPU, when ``torch.cuda.is_available()``: E2VID at 640x480 on CUDA in bf16 autocast, ``--gpu-frames`` (40), 3
  passes. The high-pass filter is CPU code (numba) and has no GPU case. Without a GPU the report says so.
Also reported: windows per output, and for E2VID the forward's time per frame on each side (CUDA-synchronised),
so that the rest (reading, rectifying, gridding, post-processing) can be told apart.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_events import naive_splat  # noqa: E402

from evseg.events import EventSlicer, e2vid_normalize, load_rectify_map, rectify_events, voxel_grid
from evseg.events.writer import EventsH5Appender
from evseg.recon.checkpoint import build_reconstruction_model
from evseg.recon.e2vid import E2VID_LIGHTWEIGHT_CONFIG, crop_back, pad_to_multiple
from evseg.recon.highpass import LOG_1_5, HighPassConfig, HighPassFilter
from evseg.recon.postprocess import IntensityRescaler, unsharp_mask
from evseg.recon.stream import NetworkReconstructor, stream_frames, window_size
from evseg.synth.dsec import DriveConfig, write_dsec_sequence
from evseg.synth.lens import radial_rectify_map

THREADS = 2
PERIOD_US = 50_000  # one output every 50 ms: DSEC's 20 Hz labels
EVENTS_PER_PIXEL = 0.35  # E2VID's window
T_OFFSET_US = 50_000_000_000  # DSEC-like image clock for the 640x480 file
DRIVE_SEED = 3
HF_TOLERANCE, CPU_FRAME_TOLERANCE, RAW_GRID_TOLERANCE, GRID_TOLERANCE = 1e-5, 1e-3, 1e-4, 1e-3
# bf16 autocast on CUDA: both sides' inputs agree to ~1e-6, but bf16 rounds them to 8 bits, so a few pixels
# differ by a bf16 step. Measured with bf16 autocast on the CPU (160x120, 19 frames): max 4.9e-3 (one step at
# 0.5, times the unsharp mask's 1.3), mean 3e-6. The limit allows 10 steps; the grids are checked tightly.
GPU_FRAME_TOLERANCE = 5e-2
GRID_CHECK_FRAMES = 3


# -- data -----------------------------------------------------------------------------------------------------


def drive_sequence(workdir: Path, duration_s: float) -> dict:
    """The rendered 160x120 night drive (reused if ``workdir`` already holds it)."""
    height, width = 120, 160
    seq = workdir / f"drive_{width}x{height}_{duration_s:g}s_seed{DRIVE_SEED}"
    start, reuse = time.perf_counter(), (seq / "events/left/events.h5").is_file()
    if not reuse:
        cfg = DriveConfig(sensor_size=(height, width), label_height=110, duration_s=duration_s, render_fps=400)
        write_dsec_sequence(seq, seed=DRIVE_SEED, cfg=cfg, progress=False)
    write_s = None if reuse else time.perf_counter() - start
    path = seq / "events/left/events.h5"
    return describe(path, load_rectify_map(seq / "events/left/rectify_map.h5", (height, width)), height, width,
                    f"rendered night drive, {duration_s:g} s", write_s)


def edge_events(n, rng, height, width, events_per_us, num_edges=16):
    """n sorted events (x, y, t_rel, p) over n / events_per_us µs on straight edges sweeping the image, plus
    10% noise (bench_events.py's generator at a given size and rate)."""
    edges = np.random.default_rng(1)  # the scene: edge angles, speeds (px/s) and phases
    span = math.hypot(height, width) / 2  # edges sweep across the whole image
    angle, speed = edges.uniform(0, np.pi, num_edges), edges.uniform(200, 2000, num_edges)
    phase = edges.uniform(0, 2 * span, num_edges)
    n_drawn = 3 * n  # about half the points of an edge line fall outside the image; n are kept below
    t = np.sort(rng.random(n_drawn)) * (n / events_per_us)
    k = rng.integers(0, num_edges, n_drawn)
    across = (phase[k] + speed[k] * t * 1e-6) % (2 * span) - span + rng.normal(0, 1.5, n_drawn)
    along = rng.uniform(-span, span, n_drawn)
    x = width / 2 + across * np.cos(angle[k]) - along * np.sin(angle[k])
    y = height / 2 + across * np.sin(angle[k]) + along * np.cos(angle[k])
    noise = rng.random(n_drawn) < 0.1
    x[noise], y[noise] = rng.uniform(0, width, noise.sum()), rng.uniform(0, height, noise.sum())
    p = (k % 2) ^ (rng.random(n_drawn) < 0.2)  # each edge has a main polarity
    keep = np.flatnonzero((x >= 0) & (x < width) & (y >= 0) & (y < height))
    keep = np.sort(rng.choice(keep, size=min(n, len(keep)), replace=False))  # exactly the requested rate
    return x[keep].astype(np.uint16), y[keep].astype(np.uint16), t[keep].astype(np.int64), p[keep].astype(np.uint8)


def edge_sequence(workdir: Path, duration_s: float, events_per_pixel_s: float) -> dict:
    """640x480 edge events at ``events_per_pixel_s``, ``duration_s`` long (reused if present)."""
    height, width = 480, 640
    rate = events_per_pixel_s * height * width / 1e6  # events per µs
    path = workdir / f"edges_{width}x{height}_{duration_s:g}s_{events_per_pixel_s:.1f}evpxs.h5"
    start, reuse = time.perf_counter(), path.is_file()
    if not reuse:
        rng, t_shift, piece_us = np.random.default_rng(0), 0, 100_000
        with EventsH5Appender(path, T_OFFSET_US) as out:
            while t_shift < duration_s * 1e6:
                x, y, t, p = edge_events(int(rate * piece_us), rng, height, width, rate)
                t = np.minimum(t, piece_us - 1) + t_shift  # pieces of exactly 100 ms, in order
                out.append(x, y, t, p)
                t_shift += piece_us
    write_s = None if reuse else time.perf_counter() - start
    return describe(path, radial_rectify_map(height, width, focal_px=500), height, width,
                    f"sweeping edges + 10% noise, {duration_s:g} s", write_s)


def describe(path: Path, rectify_map: np.ndarray, height: int, width: int, kind: str, write_s: float) -> dict:
    with EventSlicer(path) as slicer:
        first, last = slicer.time_range_us
        num_events = slicer.num_events
        origin = slicer.t_offset
    # outputs on the image clock every 50 ms, up to the last event (get_events must cover the window)
    times = list(range(origin + PERIOD_US, last + 1, PERIOD_US))
    seconds = (last - first) / 1e6
    per_pixel_s = num_events / seconds / (height * width)
    return {"path": path, "rectify_map": rectify_map, "height": height, "width": width, "kind": kind,
            "times": times, "events": num_events, "seconds": seconds, "events_per_pixel_s": per_pixel_s,
            "write_s": write_s}


# -- the naive baseline ---------------------------------------------------------------------------------------


def naive_rectify(x, y, rectify_map_t):
    """Index the (H, W, 2) map tensor (on the baseline's device) with torch."""
    device = rectify_map_t.device
    xy = rectify_map_t[torch.from_numpy(y.astype(np.int64)).to(device),
                       torch.from_numpy(x.astype(np.int64)).to(device)]
    return xy[:, 0], xy[:, 1]


def naive_voxel_grid(x, y, t, p, bins, height, width):
    """DSEC ``VoxelGrid.convert`` with floor (bench_events.py), on the device of ``x``, with time scaled as
    ours in float64, (bins - 1) (t - t_first) / span. A window of one timestamp puts every event on bin 0,
    as ours (the DSEC code divides by 0 there)."""
    span = float(t[-1] - t[0])
    t_rel = torch.from_numpy((t - t[0]).astype(np.float64)).to(x.device)
    t_norm = (bins - 1) * t_rel / span if span > 0 else torch.zeros_like(t_rel)
    return naive_splat(x, y, t_norm, torch.from_numpy(p), bins, height, width)


def naive_normalize(grid):
    """E2VID's ``EventPreprocessor``: standardise the non-zero voxels (population std), in torch."""
    mask = grid != 0
    values = grid[mask]
    if values.numel():
        mean, std = values.mean(), values.std(correction=0)
        grid[mask] = (values - mean) / std if std > 0 else values - mean
    return grid


class NaiveNetworkReconstructor:
    """The network driven as ``NetworkReconstructor`` drives it (one stream, its default post-processing:
    unsharp mask, fixed [0, 1] range), fed torch coordinates, with the grid built by the naive torch formula.
    Self-contained, so that it does not depend on ``NetworkReconstructor``'s internals."""

    def __init__(self, model, num_bins, height, width, multiple, device):
        self.model, self.device = model.eval().to(device), torch.device(device)
        self.num_bins, self.height, self.width, self.multiple = num_bins, height, width, multiple
        self.reset()

    def reset(self):
        self.states, self.rescale = None, IntensityRescaler()
        self.image = np.full((self.height, self.width), 0.5, np.float32)

    @torch.inference_mode()
    def update(self, x, y, t, p):
        if len(t) == 0:
            return
        voxel = naive_normalize(naive_voxel_grid(x, y, t, p, self.num_bins, self.height, self.width))[None]
        padded, crop = pad_to_multiple(voxel, self.multiple)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            image, self.states = self.model(padded, self.states)
        self.image = crop_back(image, crop)[0, 0].float().cpu().numpy()

    def frame(self, t_us):
        return self.rescale(unsharp_mask(self.image))


def naive_network_frames(slicer, rectify_map_t, times, reconstructor, size):
    """Per output: re-read the frame's events, rectify, cut the same windows as ``stream_frames``, feed them."""
    reconstructor.reset()
    t_prev = slicer.time_range_us[0]
    for k, t_out in enumerate(times):
        events = slicer.get_events(t_prev, t_out)
        x, y = naive_rectify(events.x, events.y, rectify_map_t)
        for s in range(0, len(events), size):
            reconstructor.update(x[s : s + size], y[s : s + size], events.t[s : s + size], events.p[s : s + size])
        yield k, reconstructor.frame(t_out), len(events)
        t_prev = t_out


@torch.inference_mode()
def naive_highpass_frames(slicer, rectify_map_t, times, height, width, config: HighPassConfig):
    """The high-pass filter's closed form per output (valid without per-event decay and without a frame)."""
    if config.per_event_decay != 0 or config.smooth_range:
        raise ValueError("the closed form needs per_event_decay = 0 and smooth_range off")
    alpha = config.alpha
    state = torch.zeros(height * width, dtype=torch.float64)
    t_prev = slicer.time_range_us[0]
    for k, t_out in enumerate(times):
        events = slicer.get_events(t_prev, t_out)
        x, y = naive_rectify(events.x, events.y, rectify_map_t)
        x, y = x.double(), y.double()
        age_s = torch.from_numpy((t_out - events.t).astype(np.float64) * 1e-6)
        on = torch.from_numpy(events.p > 0)
        c_on, c_off = (torch.tensor(v, dtype=torch.float64) for v in (config.contrast_on, -config.contrast_off))
        c = torch.where(on, c_on, c_off) * torch.exp(-alpha * age_s)
        x0, y0 = x.floor(), y.floor()
        state *= math.exp(-alpha * (t_out - t_prev) * 1e-6)
        for xn in (x0, x0 + 1):
            for yn in (y0, y0 + 1):
                inside = (xn >= 0) & (xn < width) & (yn >= 0) & (yn < height)
                w = (1 - (xn - x).abs()) * (1 - (yn - y).abs())
                index = (yn * width + xn).long()
                state.index_put_((index[inside],), (c * w)[inside], accumulate=True)
        img = torch.exp(state + LOG_1_5) - 1.0
        q = torch.tensor([config.display_trim, 1.0 - config.display_trim], dtype=torch.float64)
        lo, hi = torch.quantile(img, q).tolist() if config.display_trim > 0 else (img.min().item(), img.max().item())
        lo = min(lo - config.display_margin, config.display_low_cap)
        hi = max(hi + config.display_margin, config.display_high_floor)
        frame = ((img - lo) * (1.0 / (hi - lo))).clamp(0.0, 1.0).float().view(height, width).numpy()
        yield k, frame, len(events)
        t_prev = t_out


# -- timing ---------------------------------------------------------------------------------------------------


class TimedModel(torch.nn.Module):
    """The model, with the wall time of its forward passes summed (CUDA-synchronised)."""

    def __init__(self, model):
        super().__init__()
        self.inner, self.seconds = model, 0.0

    def forward(self, x, states):
        sync(x.device)
        start = time.perf_counter()
        out = self.inner(x, states)
        sync(x.device)
        self.seconds += time.perf_counter() - start
        return out


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_pass(data, frames_fn, num_frames):
    """One pass over the first ``num_frames`` outputs with a fresh slicer (cold HDF5 chunk cache)."""
    times = data["times"][:num_frames]
    with EventSlicer(data["path"]) as slicer:
        start = time.perf_counter()
        out = [(frame, used) for _, frame, used in frames_fn(slicer, times)]
        seconds = time.perf_counter() - start
    return [f for f, _ in out], [u for _, u in out], seconds


def grid_check(data, size, bins, device, num_frames):
    """Compare our grids with the naive ones, window by window, on the first outputs. Returns the max
    difference of the raw grids, of the normalised grids, and the number of windows and of "residue" voxels.

    Residues: a voxel where events cancel can come out as a rounding residue (~1e-17 with our float64
    weights) on one side and exactly 0 on the other; E2VID's normalisation counts every non-zero voxel, so
    there it becomes -mean/std on one side and stays 0 on the other (a difference of ~0.05). Such voxels
    (non-zero on one side only, with |value| < 1e-5) are left out of the normalised comparison and counted."""
    rectify_map_t = torch.from_numpy(data["rectify_map"]).to(device)
    height, width = data["height"], data["width"]
    raw_diff = norm_diff = 0.0
    windows = residues = 0
    with EventSlicer(data["path"]) as slicer, torch.inference_mode():
        t_prev = slicer.time_range_us[0]
        for t_out in data["times"][:num_frames]:
            x, y, t, p = slicer.get_events(t_prev, t_out)
            xr, yr = rectify_events(x, y, data["rectify_map"])
            xn, yn = naive_rectify(x, y, rectify_map_t)
            for s in range(0, len(t), size):
                w = slice(s, s + size)
                ours = voxel_grid(xr[w], yr[w], t[w], p[w], bins, height, width)
                naive = naive_voxel_grid(xn[w], yn[w], t[w], p[w], bins, height, width)
                ours_norm, naive_norm = e2vid_normalize(ours), naive_normalize(naive.clone()).cpu().numpy()
                naive = naive.cpu().numpy()
                raw_diff = max(raw_diff, float(np.abs(ours - naive).max()))
                residue = (ours != 0) != (naive != 0)
                if np.abs(ours[residue]).max(initial=0) < 1e-5 and np.abs(naive[residue]).max(initial=0) < 1e-5:
                    residues += int(residue.sum())
                    residue_free = ~residue
                else:  # a real difference: compare everything
                    residue_free = np.ones_like(residue)
                norm_diff = max(norm_diff, float(np.abs(ours_norm - naive_norm)[residue_free].max()))
                windows += 1
            t_prev = t_out
    return {"grid_raw_max_abs_diff": raw_diff, "grid_max_abs_diff": norm_diff, "grid_windows": windows,
            "grid_residue_voxels": residues}


def bench_case(method, data, device, num_frames, repeats):
    height, width = data["height"], data["width"]
    size = window_size(EVENTS_PER_PIXEL, height, width)
    num_frames = min(num_frames, len(data["times"]))
    rectify_map_t = torch.from_numpy(data["rectify_map"]).to(device)
    result = {"method": method, "device": str(device), "height": height, "width": width, "frames": num_frames,
              "window_events": size, "data": data["kind"], "repeats": repeats, "threads": THREADS}
    if method == "highpass":
        config = HighPassConfig()
        hf = HighPassFilter(height, width, config)

        def ours_fn(slicer, times):
            return stream_frames(slicer, data["rectify_map"], times, hf, size)

        def naive_fn(slicer, times):
            return naive_highpass_frames(slicer, rectify_map_t, times, height, width, config)

        tolerance, models = HF_TOLERANCE, {}
        run_pass(data, ours_fn, 1)  # warm-up: numba kernels, torch ops, file cache
        run_pass(data, naive_fn, 1)
    else:
        torch.manual_seed(0)
        model = build_reconstruction_model("E2VIDRecurrent", E2VID_LIGHTWEIGHT_CONFIG).eval().to(device)
        models = {"ours": TimedModel(model), "naive": TimedModel(model)}
        bins, multiple = E2VID_LIGHTWEIGHT_CONFIG["num_bins"], model.pad_multiple
        ours_rec = NetworkReconstructor(models["ours"], bins, height, width, multiple, device)
        naive_rec = NaiveNetworkReconstructor(models["naive"], bins, height, width, multiple, device)

        def ours_fn(slicer, times):
            return stream_frames(slicer, data["rectify_map"], times, ours_rec, size)

        def naive_fn(slicer, times):
            return naive_network_frames(slicer, rectify_map_t, times, naive_rec, size)

        tolerance = GPU_FRAME_TOLERANCE if device.type == "cuda" else CPU_FRAME_TOLERANCE
        # The grid check also warms up both sides' gridding (numba kernels, torch ops on the device).
        result.update(grid_check(data, size, bins, device, GRID_CHECK_FRAMES))
        with torch.inference_mode():  # warm-up: first forward passes (allocator, cuDNN, autocast) are slow
            padded = pad_to_multiple(torch.zeros(1, bins, height, width, device=device), multiple)[0]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                for _ in range(3 if device.type == "cuda" else 1):
                    model(padded, None)
            sync(device)
    seconds = {"ours": [], "naive": []}
    network = {"ours": [], "naive": []}
    frames = {}
    for _ in range(repeats):
        for name, fn in (("ours", ours_fn), ("naive", naive_fn)):
            if models:
                models[name].seconds = 0.0
            out_frames, counts, elapsed = run_pass(data, fn, num_frames)
            seconds[name].append(elapsed)
            if models:
                network[name].append(models[name].seconds)
            frames.setdefault(name, (out_frames, counts))
    (ours_frames, ours_counts), (naive_frames, naive_counts) = frames["ours"], frames["naive"]
    diff = max(float(np.abs(a - b).max()) for a, b in zip(ours_frames, naive_frames))
    result.update({
        "events": int(sum(ours_counts)), "windows_per_frame": sum(-(-c // size) for c in ours_counts) / num_frames,
        "max_abs_diff": diff, "tolerance": tolerance, "counts_equal": ours_counts == naive_counts,
        "seconds": seconds, "fps": {k: num_frames / statistics.median(v) for k, v in seconds.items()}})
    result["ratio"] = result["fps"]["ours"] / result["fps"]["naive"]
    if models:
        result["network_ms_per_frame"] = {k: 1e3 * statistics.median(v) / num_frames for k, v in network.items()}
    failures = []
    if not result["counts_equal"]:
        failures.append("the two sides used different events per frame")
    if not diff < tolerance or not np.isfinite(diff):
        failures.append(f"frames differ by up to {diff:.3g} (limit {tolerance:g})")
    for key, limit in (("grid_raw_max_abs_diff", RAW_GRID_TOLERANCE), ("grid_max_abs_diff", GRID_TOLERANCE)):
        if key in result and not result[key] < limit:
            failures.append(f"voxel grids ({key}) differ by up to {result[key]:.3g} (limit {limit:g})")
    result["failures"] = failures
    return result


# -- report ---------------------------------------------------------------------------------------------------


def report(results):
    lines = [f"streaming reconstruction vs naive per-frame loop: outputs every {PERIOD_US // 1000} ms, windows of "
             f"{EVENTS_PER_PIXEL} events/px, torch threads {THREADS} on both sides (numba kernels 1 thread)"]
    for d in results["data"]:
        lines.append(f"data {d['width']}x{d['height']}: {d['kind']}, {d['events'] / 1e6:.2f}M events "
                     f"({d['events_per_pixel_s']:.0f} events/px/s), {d['outputs']} outputs; "
                     + (f"written in {d['write_s']:.0f} s" if d["write_s"] is not None else "reused from --workdir"))
    header = (f"  {'method':<9}{'device':<7}{'size':>8}{'frames':>7}{'win/fr':>7}{'ours fps':>10}{'naive fps':>10}"
              f"{'ratio':>7}{'net ms/fr':>15}{'max|diff|':>11}")
    lines.append(header)
    for r in results["cases"]:
        net = r.get("network_ms_per_frame")
        net_text = f"{net['ours']:.0f} / {net['naive']:.0f}" if net else "-"
        lines.append(f"  {r['method']:<9}{r['device']:<7}{r['width']:>4}x{r['height']:<3}{r['frames']:>7}"
                     f"{r['windows_per_frame']:>7.1f}{r['fps']['ours']:>10.2f}{r['fps']['naive']:>10.2f}"
                     f"{r['ratio']:>6.2f}x{net_text:>15}{r['max_abs_diff']:>11.1e}"
                     + ("  FAILED: " + "; ".join(r["failures"]) if r["failures"] else ""))
    lines.append("  (fps: output frames / wall time of a pass, median of the passes; net ms/fr: E2VID forward "
                 "per frame, ours / naive; max|diff|: frames of the two sides)")
    for r in results["cases"]:
        if "grid_max_abs_diff" in r:
            lines.append(f"  grids {r['method']} {r['device']} {r['width']}x{r['height']}, first {r['grid_windows']} "
                         f"windows: raw grids agree to {r['grid_raw_max_abs_diff']:.1e}, normalised to "
                         f"{r['grid_max_abs_diff']:.1e} (leaving out {r['grid_residue_voxels']} rounding-residue "
                         "voxels, see grid_check)")
    if not results["gpu"]:
        lines.append("GPU: no CUDA device available in this run; no GPU figures")
    lines.append(f"total run time {results['total_s']:.0f} s")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 1 s drive, 8 E2VID frames, one pass, no 640x480")
    parser.add_argument("--full", action="store_true", help="also E2VID at 640x480 on the CPU (a few frames)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--workdir", type=Path, help="where to write (and reuse) the event files (default: a "
                        "temporary dir, removed at the end)")
    parser.add_argument("--full-frames", type=int, default=2, help="E2VID frames at 640x480 on the CPU (--full)")
    parser.add_argument("--gpu-frames", type=int, default=40, help="E2VID frames at 640x480 on CUDA")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    cv2.setNumThreads(THREADS)  # E2VID's unsharp mask, the same code on both sides
    started = time.perf_counter()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_reconstruct_"))
    workdir.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.is_available()
    results = {"python": sys.version.split()[0], "torch": torch.__version__, "numpy": np.__version__,
               "threads": THREADS, "gpu": torch.cuda.get_device_name() if gpu else None, "cases": []}
    cpu = torch.device("cpu")
    try:
        drive = drive_sequence(workdir, 1.0 if args.quick else 2.0)
        datasets = [drive]
        e2vid_frames, repeats = (8, 1) if args.quick else (40, 2)
        results["cases"].append(bench_case("highpass", drive, cpu, 10**6, 1 if args.quick else 3))
        results["cases"].append(bench_case("e2vid", drive, cpu, e2vid_frames, repeats))
        if not args.quick or args.full or gpu:
            outputs = max(19, args.gpu_frames if gpu else 0, args.full_frames if args.full else 0)
            seconds = (outputs + 1) * PERIOD_US / 1e6  # 1 s on the CPU, 2.05 s with a GPU
            large = edge_sequence(workdir, seconds, round(drive["events_per_pixel_s"], 1))
            datasets.append(large)
            if not args.quick:
                results["cases"].append(bench_case("highpass", large, cpu, 20, 2))
            if args.full:
                results["cases"].append(bench_case("e2vid", large, cpu, args.full_frames, 1))
            if gpu:
                results["cases"].append(bench_case("e2vid", large, torch.device("cuda"), args.gpu_frames, 3))
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    results["data"] = [{k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()
                        if k not in ("rectify_map", "times")} | {"outputs": len(d["times"])} for d in datasets]
    results["total_s"] = time.perf_counter() - started
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    failed = [f"{r['method']} {r['device']} {r['width']}x{r['height']}: {'; '.join(r['failures'])}"
              for r in results["cases"] if r["failures"]]
    if failed:
        sys.exit("FAILED: " + " | ".join(failed))


if __name__ == "__main__":
    main()
