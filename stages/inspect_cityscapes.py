"""Rule inspect_cityscapes: a picture of source images with their labels, and class statistics."""

import json
from pathlib import Path

import numpy as np

from evseg.data import Cityscapes
from evseg.data.classes import count_pixels
from evseg.stage import run_stage
from evseg.viz import gray, panel, save_rgb


def main(input, output, params, threads):
    cfg = params.cityscapes
    data = Cityscapes(input.root, "train", classes=cfg["classes"], grayscale=cfg["grayscale"])
    labels = [data.label(i) for i in range(len(data))]
    shown = np.linspace(0, len(data) - 1, min(params.inspect["source_images"], len(data))).round().astype(int)
    rows = [[data.image(i, grayscale=False), gray(data.image(i)), data.classes.colorize(labels[i])] for i in shown]
    save_rgb(output.picture, panel(rows, ["image", "model input", "label"], scale=1))

    counts = count_pixels(labels)
    stats = {
        "domain": "source", "split": "train", "sequence": "cityscapes", "labels": len(data), "samples": len(data),
        "class_pixels": {name: int(counts[c]) for c, name in enumerate(data.classes.names)},
        "ignored_pixels": int(counts[255]),
    }
    Path(output.stats).write_text(json.dumps(stats, indent=2))


run_stage(main, globals())
