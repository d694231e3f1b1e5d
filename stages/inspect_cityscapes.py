"""Rule inspect_cityscapes: a picture of source images with their labels, and class statistics."""

import json
from pathlib import Path

import numpy as np

from evseg.data import Cityscapes
from evseg.stage import run_stage
from evseg.viz import gray, panel, save_rgb


def main(input, output, params, threads):
    cfg = params.cityscapes
    data = Cityscapes(input.root, "train", classes=cfg["classes"], grayscale=cfg["grayscale"])
    shown = np.linspace(0, len(data) - 1, min(params.inspect["source_images"], len(data))).round().astype(int)
    rgb = Cityscapes(input.root, "train", classes=cfg["classes"], grayscale=False)
    rows = [[rgb.image(i), gray(data.image(i)), data.classes.colorize(data.label(i))] for i in shown]
    save_rgb(output.picture, panel(rows, ["image", "model input", "label"], scale=1))

    counts = np.zeros(256, np.int64)
    for i in range(len(data)):
        counts += np.bincount(data.label(i).ravel(), minlength=256)
    stats = {
        "domain": "source", "split": "train", "sequence": "cityscapes", "labels": len(data), "samples": len(data),
        "class_pixels": {name: int(counts[c]) for c, name in enumerate(data.classes.names)},
        "ignored_pixels": int(counts[255]),
    }
    Path(output.stats).write_text(json.dumps(stats, indent=2))


run_stage(main, globals())
