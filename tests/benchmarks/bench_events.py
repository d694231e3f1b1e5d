"""Benchmark of the event pipeline: speed of slice + rectify + voxelize, and memory of lazy slicing.

Run ``python tests/benchmarks/bench_events.py [--quick] [--json PATH] [--workdir DIR] [--keep]`` (``make
bench``). It is a script, not a pytest test: it takes about 30 s (5 s with ``--quick``) on 2 cores and
writes a 1 GB file.

1. Speed, one thread. The DSEC-Semantic loaders turn the 1M events before a label into a 15-bin voxel grid
   (640x480) for every sample, so this is the per-sample cost of the event input. Both sides read 1M events
   with ``EventSlicer.get_events_fixed_num`` from a DSEC-format ``events.h5`` (edges sweeping the image at
   20 Mev/s, so 1M events are ~50 ms); every timed read gets a window that no earlier read touched, so it
   pays the Blosc/ZSTD decompression as a loader does for a new sample. Then both rectify with a mild radial
   ``rectify_map`` (corners fall outside the image) and splat the events trilinearly:
   - ours: ``rectify_events`` + ``voxel_grid`` (numba);
   - naive torch: the map indexed with torch, and the official DSEC ``VoxelGrid.convert`` (8 neighbours,
     weights from torch ops, ``index_put_(..., accumulate=True)``), with floor as ours, so both compute
     the same formula. On one common window the grids must agree to 1e-4, or the benchmark stops.
   Numba is compiled before timing; ours and naive alternate, and the medians are reported per stage.
   Target (issue): ours >= 10x faster end to end. The read is the same code on both sides.
2. Memory. A >= 1 GB compressed ``events.h5`` (uniformly random events, which compress poorly) is written in
   pieces; a fresh Python then opens it with ``EventSlicer`` and reads one 50 ms window. Its peak RSS
   (VmHWM) is compared with a Python that only imports ``evseg.events``. Target: < 300 MB, i.e. the slicer
   reads the window, not the file.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one thread: set before numpy, numba and torch are imported

import numpy as np  # noqa: E402
import torch  # noqa: E402

from evseg.events import EventSlicer, rectify_events, voxel_grid  # noqa: E402
from evseg.events.writer import CHUNK_EVENTS, EventsH5Appender  # noqa: E402
from evseg.synth.lens import radial_rectify_map  # noqa: E402

HEIGHT, WIDTH, BINS = 480, 640, 15
WINDOW_EVENTS = 1_000_000
EVENTS_PER_US = 20  # 20 Mev/s
T_OFFSET_US = 50_000_000_000  # DSEC-like: t_offset is the recording's start on the image clock
SPEED_TARGET, RSS_TARGET_MB, BIG_FILE_BYTES = 10.0, 300, 1_050_000_000


def edge_events(n, rng, num_edges=16):
    """About n sorted events (x, y, t_rel, p) on straight edges sweeping the image, plus 10% noise."""
    edges = np.random.default_rng(1)  # the scene: edge angles, speeds (px/s) and phases
    angle, speed = edges.uniform(0, np.pi, num_edges), edges.uniform(200, 2000, num_edges)
    phase = edges.uniform(0, 800, num_edges)
    n_drawn = 2 * n  # about half the points of an edge line fall outside the image
    t = np.sort(rng.random(n_drawn)) * (n / EVENTS_PER_US)
    k = rng.integers(0, num_edges, n_drawn)
    across = (phase[k] + speed[k] * t * 1e-6) % 800 - 400 + rng.normal(0, 1.5, n_drawn)  # distance from centre
    along = rng.uniform(-400, 400, n_drawn)
    x = WIDTH / 2 + across * np.cos(angle[k]) - along * np.sin(angle[k])
    y = HEIGHT / 2 + across * np.sin(angle[k]) + along * np.cos(angle[k])
    noise = rng.random(n_drawn) < 0.1
    x[noise], y[noise] = rng.uniform(0, WIDTH, noise.sum()), rng.uniform(0, HEIGHT, noise.sum())
    p = (k % 2) ^ (rng.random(n_drawn) < 0.2)  # each edge has a main polarity
    keep = (x >= 0) & (x < WIDTH) & (y >= 0) & (y < HEIGHT)
    return x[keep].astype(np.uint16), y[keep].astype(np.uint16), t[keep].astype(np.int64), p[keep].astype(np.uint8)


# -- the naive baseline --------------------------------------------------------------------------------------


def naive_rectify(x, y, rectify_map):
    xy = rectify_map[torch.from_numpy(y.astype(np.int64)), torch.from_numpy(x.astype(np.int64))]
    return xy[:, 0], xy[:, 1]


def naive_voxel_grid(x, y, t, p, bins, height, width):
    """DSEC ``VoxelGrid.convert`` (scripts/dataset/representations.py), with floor instead of int()."""
    t = torch.from_numpy((t - t[0]).astype(np.float32))  # as the DSEC loader: float32, then scaled
    return naive_splat(x, y, (bins - 1) * t / t[-1], torch.from_numpy(p), bins, height, width)


def naive_splat(x, y, t_norm, p, bins, height, width):
    """The 8-neighbour trilinear splat of ``VoxelGrid.convert`` with ``index_put_(accumulate=True)``, on the
    device of ``x``; ``t_norm`` is time already scaled to [0, bins - 1]."""
    grid = torch.zeros(bins * height * width, dtype=torch.float32, device=x.device)
    value = 2 * p.to(x.device).float() - 1
    x0, y0, t0 = x.floor().int(), y.floor().int(), t_norm.floor().int()
    for xlim in (x0, x0 + 1):
        for ylim in (y0, y0 + 1):
            for tlim in (t0, t0 + 1):
                mask = (xlim < width) & (xlim >= 0) & (ylim < height) & (ylim >= 0) & (tlim >= 0) & (tlim < bins)
                weights = value * (1 - (xlim - x).abs()) * (1 - (ylim - y).abs()) * (1 - (tlim - t_norm).abs())
                index = height * width * tlim.long() + width * ylim.long() + xlim.long()
                grid.index_put_((index[mask],), weights[mask].float(), accumulate=True)
    return grid.view(bins, height, width)


# -- 1. speed -------------------------------------------------------------------------------------------------


def time_pipelines(pipelines, repeats):
    """Run each pipeline (a list of (stage, function of the previous stage's output)) repeats + 1 times,
    alternating; the first run warms up. Returns the last outputs and the median ms per stage and total."""
    times = {name: {stage: [] for stage, _ in stages + [("total", None)]} for name, stages in pipelines.items()}
    outputs = {}
    for rep in range(repeats + 1):
        for name, stages in pipelines.items():
            value, total = None, 0.0
            for stage, fn in stages:
                start = time.perf_counter()
                value = fn(value)
                elapsed = 1e3 * (time.perf_counter() - start)
                total += elapsed
                times[name][stage].append(elapsed)
            times[name]["total"].append(total)
            outputs[name] = value
    medians = {name: {stage: statistics.median(v[1:]) for stage, v in stages.items()} for name, stages in times.items()}
    return outputs, medians


def bench_speed(workdir, repeats):
    # Every timed read gets its own window, apart from all others by more than an HDF5 chunk, so that no
    # read is served from the chunk cache of an earlier one: each pays the Blosc/ZSTD decompression, as a
    # data loader reading a new sample does.
    stride = WINDOW_EVENTS + 4 * CHUNK_EVENTS
    num_windows = 2 * (repeats + 1) + 1
    path = workdir / "speed_events.h5"
    rng, t_all, t_shift = np.random.default_rng(0), [], 0
    with EventsH5Appender(path, T_OFFSET_US) as out:
        while sum(map(len, t_all)) < num_windows * stride + 1:
            x, y, t, p = edge_events(2 * WINDOW_EVENTS, rng)
            out.append(x, y, t + t_shift, p)
            t_all.append(t + t_shift)
            t_shift += int(t[-1]) + 1
    t_all = np.concatenate(t_all)
    window_ends = iter(T_OFFSET_US + int(t_all[(k + 1) * stride]) for k in range(num_windows))
    check_end = next(window_ends)
    rectify_map = radial_rectify_map(HEIGHT, WIDTH, focal_px=500)
    rectify_map_t = torch.from_numpy(rectify_map)
    ours = [("rectify", lambda ev: (*rectify_events(ev.x, ev.y, rectify_map), ev.t, ev.p)),
            ("voxelize", lambda ev: voxel_grid(*ev, BINS, HEIGHT, WIDTH))]
    naive = [("rectify", lambda ev: (*naive_rectify(ev.x, ev.y, rectify_map_t), ev.t, ev.p)),
             ("voxelize", lambda ev: naive_voxel_grid(*ev, BINS, HEIGHT, WIDTH))]
    with EventSlicer(path) as slicer:
        events = slicer.get_events_fixed_num(check_end, WINDOW_EVENTS)  # same window, same formula?
        grids = [stages[1][1](stages[0][1](events)) for stages in (ours, naive)]
        read = ("read", lambda _: slicer.get_events_fixed_num(next(window_ends), WINDOW_EVENTS))
        _, medians = time_pipelines({"ours": [read, *ours], "naive torch": [read, *naive]}, repeats)
    diff = float(np.abs(grids[0] - grids[1].numpy()).max())
    if not (diff < 1e-4 and np.abs(grids[0]).sum() > 0):
        raise SystemExit(f"FAILED: our voxel grid and the naive torch one differ by up to {diff:.3g} "
                         "(limit 1e-4), or are empty")
    ratio = medians["naive torch"]["total"] / medians["ours"]["total"]
    path.unlink()
    return {"events": WINDOW_EVENTS, "repeats": repeats, "max_abs_diff": diff, "ms": medians, "ratio": ratio,
            "target_ratio": SPEED_TARGET, "met": ratio >= SPEED_TARGET}


# -- 2. memory ------------------------------------------------------------------------------------------------

# Peak RSS is VmHWM, the kernel's high-water mark of this process image. Not ru_maxrss: Linux carries it over
# fork + exec, so a child of this (large) benchmark process would report the parent's peak.
PROBE = """
import sys
import evseg.events
n = 0
if len(sys.argv) > 1:
    with evseg.events.EventSlicer(sys.argv[1]) as slicer:
        start, end = slicer.time_range_us
        middle = (start + end) // 2
        n = len(slicer.get_events(middle, middle + 50_000))
peak_kb = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(peak_kb, n)
"""


def probe_rss(*args):
    """(peak RSS in MB, events read) of a fresh Python running PROBE."""
    out = subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], check=True, capture_output=True, text=True)
    peak_kb, n = out.stdout.split()
    return int(peak_kb) * 1024 / 1e6, int(n)


def write_big_file(path, min_bytes, piece=8_000_000):
    """Uniformly random events at 20 Mev/s, appended in pieces until the file holds min_bytes."""
    rng, written = np.random.default_rng(0), 0
    with EventsH5Appender(path, T_OFFSET_US) as writer:
        while writer.file_size < min_bytes:
            index = np.arange(written, written + piece)
            t = ((index + rng.random(piece)) / EVENTS_PER_US).astype(np.int64)  # sorted, ~20 per µs
            x, y = rng.integers(0, WIDTH, piece, dtype=np.uint16), rng.integers(0, HEIGHT, piece, dtype=np.uint16)
            writer.append(x, y, t, rng.integers(0, 2, piece, dtype=np.uint8))
            written += piece
    return written


def bench_memory(workdir, keep):
    path = workdir / "big_events.h5"
    start = time.perf_counter()
    num_events = write_big_file(path, BIG_FILE_BYTES)
    write_s = time.perf_counter() - start
    try:
        baseline_mb, _ = probe_rss()
        peak_mb, window_events = probe_rss(path)
        size = path.stat().st_size
    finally:
        if not keep:
            path.unlink()
    return {"file_bytes": size, "file_events": num_events, "write_s": write_s, "window_events": window_events,
            "peak_rss_mb": peak_mb, "import_rss_mb": baseline_mb, "target_mb": RSS_TARGET_MB,
            "met": peak_mb < RSS_TARGET_MB}


# -- report ---------------------------------------------------------------------------------------------------


def report(results):
    lines = []
    if "speed" in results:
        s = results["speed"]
        lines.append(f"speed, 1 thread, {s['events']:,} events, {WIDTH}x{HEIGHT}, {BINS} bins "
                     f"(median of {s['repeats']}; grids agree to {s['max_abs_diff']:.1e}):")
        lines.append(f"  {'ms':<12}" + "".join(f"{stage:>10}" for stage in s["ms"]["ours"]))
        for name, stages in s["ms"].items():
            lines.append(f"  {name:<12}" + "".join(f"{v:>10.1f}" for v in stages.values()))
        ours, naive = s["ms"]["ours"]["total"], s["ms"]["naive torch"]["total"]
        lines.append(f"speed: ours {ours:.1f} ms, naive torch {naive:.1f} ms, ratio {s['ratio']:.1f}x "
                     f"(target >= {SPEED_TARGET:.0f}x){'' if s['met'] else '  MISSED'}")
    if "memory" in results:
        m = results["memory"]
        lines.append(f"memory: peak RSS {m['peak_rss_mb']:.0f} MB reading a 50 ms window ({m['window_events']:,} "
                     f"events) from a {m['file_bytes'] / 1e9:.2f} GB events.h5 ({m['file_events'] / 1e6:.0f}M events, "
                     f"written in {m['write_s']:.0f} s) (import baseline {m['import_rss_mb']:.0f} MB; target < "
                     f"{RSS_TARGET_MB} MB){'' if m['met'] else '  MISSED'}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 1 GB memory benchmark")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--workdir", type=Path, help="where to write the event files (default: a temporary dir)")
    parser.add_argument("--keep", action="store_true", help="keep the 1 GB file")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_events_"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = {"python": sys.version.split()[0], "torch": torch.__version__, "numpy": np.__version__}
    try:
        results["speed"] = bench_speed(workdir, args.repeats)
        if not args.quick:
            results["memory"] = bench_memory(workdir, args.keep)
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    missed = [name for name in ("speed", "memory") if name in results and not results[name]["met"]]
    if missed:
        sys.exit(f"target missed: {', '.join(missed)}")


if __name__ == "__main__":
    main()
