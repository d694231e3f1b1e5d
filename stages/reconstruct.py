"""Rule reconstruct: event-to-image reconstruction of sequences at the protocol's label times.

For each sequence, writes ``<label index:06d>.png`` (uint8, the label rows of the rectified frame) and
``manifest.csv`` (sample id, timestamp, events used since the previous frame written) into its output
folder; with ``fixed_rate_hz`` (stream mode) also ``fixed_rate/<timestamp_us>.png`` and its manifest. Also a
picture of events / reconstruction / frame triplets, and statistics, including the correlation with the
ground-truth frames when the dataset has them (the synthetic benchmark's ``images/left/ev_inf``).

One job handles one sequence, or, with ``reconstruct.batch_sequences``, all sequences of a split, whose
windows then run through the network as one batch (how several sequences share a GPU).
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
from evseg.recon.stream import per_sample_frame, stream_frames, stream_frames_batched, window_size
from evseg.stage import as_list, run_stage
from evseg.viz import event_frame, gray, panel, placeholder, save_rgb


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


class SequenceOutput:
    """Everything reconstructed for one sequence: its output times, frames, manifest, picture, stats."""

    def __init__(self, sequence_dir: Path, dsec: dict, cfg: dict, frames_dir: str, picture: str, stats: str):
        ess = dsec["ess"]
        self.dir, self.cfg = sequence_dir, cfg
        self.data = DsecSemantic(sequence_dir.parents[1], sequence_dir.parent.name, [sequence_dir.name],
                                 num_classes=dsec["num_classes"], layout=dsec["label_layout"],
                                 sensor_size=tuple(dsec["sensor_size"]), label_height=dsec["label_height"],
                                 skip_first=ess["skip_first"], stride=ess["stride"])
        self.slicer = self.data.slicer(sequence_dir.name)
        self.rectify_map = self.data.rectify_map(sequence_dir.name)
        self.frames_dir, self.picture, self.stats = Path(frames_dir), picture, stats
        self.frames_dir.mkdir(parents=True, exist_ok=True)
        self.times = [self.data.timestamp_us(i) for i in range(len(self.data))]
        # (time, sample index, or None for a fixed-rate frame)
        self.outputs = [(t, i) for i, t in enumerate(self.times)]
        if cfg["mode"] == "stream" and cfg["fixed_rate_hz"] > 0:
            step = round(1e6 / cfg["fixed_rate_hz"])
            extra = set(range(self.slicer.time_range_us[0] + step, self.times[-1], step)) - set(self.times)
            self.outputs = sorted(self.outputs + [(t, None) for t in extra], key=lambda o: o[0])
        self.truth = AlignedFrames(sequence_dir)
        count = len(self.data)
        self.shown = set(np.linspace(0, count - 1, min(cfg["pictures"], count)).round().astype(int).tolist())
        self.rows, self.records, self.rate_records = [], [], []

    @property
    def output_times(self) -> list:
        return [t for t, _ in self.outputs]

    def add(self, k: int, frame: np.ndarray, used: int) -> None:
        t, i = self.outputs[k]
        label_height, width = self.data.label_size
        image = np.rint(np.clip(frame[:label_height], 0, 1) * 255).astype(np.uint8)
        if i is None:  # a fixed-rate frame
            (self.frames_dir / "fixed_rate").mkdir(exist_ok=True)
            cv2.imwrite(str(self.frames_dir / "fixed_rate" / f"{t}.png"), image)
            self.rate_records.append({"timestamp_us": t, "events_used": used})
            return
        cv2.imwrite(str(self.frames_dir / f"{self.data.samples[i][1]:06d}.png"), image)
        reference = self.truth.at(t, (label_height, width))
        self.records.append({"sample_id": self.data.ids[i], "timestamp_us": t, "events_used": used,
                             "correlation": pearson(image, reference) if reference is not None else np.nan})
        if i in self.shown:
            x, y, _, p = self.data.events_in_window(i, 50_000)
            self.rows.append([event_frame(x, y, p, label_height, width), gray(image),
                              gray(reference) if reference is not None else placeholder(label_height, width, "no frame")])

    def finish(self) -> None:
        manifest = pd.DataFrame(self.records)
        manifest.to_csv(self.frames_dir / "manifest.csv", index=False)
        if self.rate_records:
            pd.DataFrame(self.rate_records).to_csv(self.frames_dir / "fixed_rate" / "manifest.csv", index=False)
        save_rgb(self.picture, panel(self.rows, ["events 50 ms", f"{self.cfg['method']} ({self.cfg['mode']})",
                                                 "frame"]))
        stats = {"sequence": self.dir.name, "method": self.cfg["method"], "mode": self.cfg["mode"],
                 "frames": len(manifest), "correlation_mean": float(manifest.correlation.mean()),
                 "correlation_median": float(manifest.correlation.median())}
        Path(self.stats).write_text(json.dumps(stats, indent=2))
        self.data.close()


def per_sample_frames(sequence: SequenceOutput, reconstructor, ess: dict):
    """The ESS protocol: each sample's last num_chunks x events_per_chunk events, after a reset."""
    for i, t in enumerate(sequence.times):
        x, y, ts, p = sequence.data.events_before(i, ess["num_chunks"] * ess["events_per_chunk"])
        yield i, per_sample_frame(x, y, ts, p, t, reconstructor, ess["num_chunks"]), len(ts)


def main(input, output, params, threads):
    dsec, cfg = params.dsec, params.reconstruct
    sequences = [SequenceOutput(Path(d), dsec, cfg, f, pic, st) for d, f, pic, st in
                 zip(as_list(input.sequences), as_list(output.frames), as_list(output.pictures), as_list(output.stats))]
    height, width = sequences[0].data.sensor_size
    reconstructor = build_reconstructor(cfg, height, width, checkpoint=getattr(input, "checkpoint", None),
                                        streams=len(sequences))
    size = window_size(cfg["events_per_pixel"], height, width)
    total = sum(len(s.outputs) for s in sequences)
    progress = tqdm(total=total, desc="reconstruct", mininterval=2)
    if cfg["mode"] == "stream" and len(sequences) > 1 and cfg["method"] != "highpass":
        logging.info("streaming %d sequences as one batch, windows of %d events", len(sequences), size)
        sources = [(s.slicer, s.rectify_map, s.output_times) for s in sequences]
        for index, k, frame, used in stream_frames_batched(sources, reconstructor, size):
            sequences[index].add(k, frame, used)
            progress.update()
    else:
        for s in sequences:
            if cfg["mode"] == "stream":
                logging.info("streaming %s: %d outputs, windows of %d events", s.dir.name, len(s.outputs), size)
                frames = stream_frames(s.slicer, s.rectify_map, s.output_times, reconstructor, size)
            else:
                frames = per_sample_frames(s, reconstructor, dsec["ess"])
            for k, frame, used in frames:
                s.add(k, frame, used)
                progress.update()
    for s in sequences:
        s.finish()


run_stage(main, globals())
