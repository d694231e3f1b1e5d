"""Rule inspect_sequence: pictures and statistics of one DSEC-format sequence.

Rows are label times of the ESS protocol; columns show the events of the last ``window_ms``, the ESS
input tensor summed over its channels, the grayscale frame aligned with the event camera (when the
dataset has one) and the label.
"""

import json
from pathlib import Path

import numpy as np

from evseg.data import DsecSemantic
from evseg.data.classes import count_pixels
from evseg.data.dsec import AlignedFrames
from evseg.stage import run_stage
from evseg.viz import event_frame, gray, panel, placeholder, save_rgb, signed_map


def main(input, output, params, threads):
    sequence_dir = Path(input.sequence)
    dsec, ess = params.dsec, params.dsec["ess"]
    data = DsecSemantic(sequence_dir.parents[1], sequence_dir.parent.name, [sequence_dir.name],
                        num_classes=dsec["num_classes"], layout=dsec["label_layout"],
                        sensor_size=tuple(dsec["sensor_size"]), label_height=dsec["label_height"],
                        skip_first=ess["skip_first"], stride=ess["stride"])
    height, width = data.label_size
    shown = np.linspace(0, len(data) - 1, min(params.inspect["samples_per_sequence"], len(data))).round().astype(int)
    frames = AlignedFrames(sequence_dir)
    rows, window_counts, counts = [], [], np.zeros(256, np.int64)
    for i in range(len(data)):
        x, y, t, p = data.events_in_window(i, params.inspect["window_ms"] * 1000)
        window_counts.append(len(t))
        label = data.label(i)
        counts += count_pixels([label])
        if i not in shown:
            continue
        tensor = data.ess_tensor(i, ess["num_chunks"], ess["events_per_chunk"], ess["bins_per_chunk"],
                                 ess["official_truncation"])
        frame = frames.at(data.timestamp_us(i), (height, width))
        rows.append([event_frame(x, y, p, height, width), signed_map(tensor.sum(0)),
                     gray(frame) if frame is not None else placeholder(height, width, "no ev_inf frame"),
                     data.classes.colorize(label)])
    titles = [f"events {params.inspect['window_ms']} ms", "ESS tensor (sum)", "frame", "label"]
    save_rgb(output.picture, panel(rows, titles))

    slicer = data.slicer(sequence_dir.name)
    first, last = slicer.time_range_us
    duration_s = (last - first) * 1e-6
    stats = {
        "domain": "target", "split": sequence_dir.parent.name, "sequence": sequence_dir.name,
        "labels": len(data.sequences[sequence_dir.name].timestamps_us), "samples": len(data),
        "events": slicer.num_events, "duration_s": duration_s,
        "event_rate_mev_s": slicer.num_events / max(duration_s, 1e-9) / 1e6,
        "events_per_window_mean": float(np.mean(window_counts)) if window_counts else 0.0,
        "class_pixels": {name: int(counts[c]) for c, name in enumerate(data.classes.names)},
        "ignored_pixels": int(counts[255]),
    }
    data.close()
    Path(output.stats).write_text(json.dumps(stats, indent=2))


run_stage(main, globals())
