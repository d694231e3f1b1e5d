"""Rule reconstruct: event-to-image reconstruction of one sequence at the protocol's label times.

Writes ``<label index:06d>.png`` (uint8, the label rows of the rectified frame) and ``manifest.csv``
(sample id, timestamp, events used since the previous frame written) into the output folder; with
``fixed_rate_hz`` (stream mode) also ``fixed_rate/<timestamp_us>.png`` and its manifest. Also a picture of
events / reconstruction / frame triplets, and statistics, including the correlation with the ground-truth
frames when the dataset has them (the synthetic benchmark's ``images/left/ev_inf``).
"""

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from evseg.data import DsecSemantic
from evseg.data.dsec import AlignedFrames
from evseg.recon.methods import build_reconstructor
from evseg.recon.stream import per_sample_frame, stream_frames, window_size
from evseg.stage import run_stage
from evseg.viz import event_frame, gray, panel, placeholder, save_rgb


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


def main(input, output, params, threads):
    sequence_dir = Path(input.sequence)
    dsec, ess, cfg = params.dsec, params.dsec["ess"], params.reconstruct
    data = DsecSemantic(sequence_dir.parents[1], sequence_dir.parent.name, [sequence_dir.name],
                        num_classes=dsec["num_classes"], layout=dsec["label_layout"],
                        sensor_size=tuple(dsec["sensor_size"]), label_height=dsec["label_height"],
                        skip_first=ess["skip_first"], stride=ess["stride"])
    height, width = data.sensor_size
    label_height = data.label_size[0]
    reconstructor = build_reconstructor(cfg, height, width, checkpoint=getattr(input, "checkpoint", None))
    out_dir = Path(output.frames)
    out_dir.mkdir(parents=True, exist_ok=True)
    times = [data.timestamp_us(i) for i in range(len(data))]
    outputs = [(t, i) for i, t in enumerate(times)]  # (time, sample index or None for a fixed-rate frame)

    if cfg["mode"] == "stream":
        size = window_size(cfg["events_per_pixel"], height, width)
        slicer = data.slicer(sequence_dir.name)
        if cfg["fixed_rate_hz"] > 0:
            step = round(1e6 / cfg["fixed_rate_hz"])
            extra = set(range(slicer.time_range_us[0] + step, times[-1], step)) - set(times)
            outputs = sorted(outputs + [(t, None) for t in extra], key=lambda o: o[0])
        logging.info("streaming %d outputs, windows of %d events", len(outputs), size)
        frames = stream_frames(slicer, data.rectify_map(sequence_dir.name), [t for t, _ in outputs],
                               reconstructor, size)
    else:
        def per_sample():
            for i, t in enumerate(times):
                x, y, ts, p = data.events_before(i, ess["num_chunks"] * ess["events_per_chunk"])
                yield i, per_sample_frame(x, y, ts, p, t, reconstructor, ess["num_chunks"]), len(ts)
        frames = per_sample()

    truth = AlignedFrames(sequence_dir)
    shown = set(np.linspace(0, len(data) - 1, min(cfg["pictures"], len(data))).round().astype(int).tolist())
    rows, records, rate_records = [], [], []
    for k, frame, used in tqdm(frames, total=len(outputs), desc=sequence_dir.name, mininterval=2):
        t, i = outputs[k]
        image = np.rint(np.clip(frame[:label_height], 0, 1) * 255).astype(np.uint8)
        if i is None:  # a fixed-rate frame
            (out_dir / "fixed_rate").mkdir(exist_ok=True)
            cv2.imwrite(str(out_dir / "fixed_rate" / f"{t}.png"), image)
            rate_records.append({"timestamp_us": t, "events_used": used})
            continue
        name, index = data.samples[i]
        cv2.imwrite(str(out_dir / f"{index:06d}.png"), image)
        reference = truth.at(t, (label_height, width))
        records.append({"sample_id": data.ids[i], "timestamp_us": t, "events_used": used,
                        "correlation": pearson(image, reference) if reference is not None else np.nan})
        if i in shown:
            x, y, _, p = data.events_in_window(i, 50_000)
            rows.append([event_frame(x, y, p, label_height, width), gray(image),
                         gray(reference) if reference is not None else placeholder(label_height, width, "no frame")])
    if rate_records:
        pd.DataFrame(rate_records).to_csv(out_dir / "fixed_rate" / "manifest.csv", index=False)
    manifest = pd.DataFrame(records)
    manifest.to_csv(out_dir / "manifest.csv", index=False)
    save_rgb(output.picture, panel(rows, ["events 50 ms", f"{cfg['method']} ({cfg['mode']})", "frame"]))
    stats = {"sequence": sequence_dir.name, "method": cfg["method"], "mode": cfg["mode"], "frames": len(manifest),
             "correlation_mean": float(manifest.correlation.mean()),
             "correlation_median": float(manifest.correlation.median())}
    Path(output.stats).write_text(json.dumps(stats, indent=2))
    data.close()


run_stage(main, globals())
