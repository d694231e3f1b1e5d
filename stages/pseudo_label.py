"""Rule pseudo_label: the adapted teacher's labels for every target training sample, grouped per sequence.

Per sample ``<index:06d>.png`` (uint8 class ids, 255 where the confidence is below the threshold) and
``<index:06d>_confidence.png`` (uint16, max softmax probability x 65535). ``quality.json`` compares the labels
with the ground truth of the training sequences (used for reporting only, never for training).

Thresholds: ``class_median`` is SeCo's generator (per class, the median confidence of the pixels predicted as
that class over the whole set, capped at ``median_cap``: about the top half of each class); ``fixed`` uses
one threshold for all classes.
"""

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from evseg.adapt.data import TargetSamples
from evseg.adapt.inference import load_model_file, predict
from evseg.data.classes import IGNORE
from evseg.metrics import ConfusionMatrix
from evseg.recon.methods import pick_device
from evseg.stage import as_list, run_stage

LEVELS = 65535


def class_thresholds(histograms: np.ndarray, cfg: dict) -> np.ndarray:
    """Per class threshold (as a uint16 confidence level) from per-class histograms of confidence levels."""
    num_classes = histograms.shape[0]
    if cfg["mode"] == "fixed":
        return np.full(num_classes, round(cfg["threshold"] * LEVELS))
    cap = round(cfg["median_cap"] * LEVELS)
    thresholds = np.full(num_classes, cap)
    for c, histogram in enumerate(histograms):
        total = histogram.sum()
        if total:  # the lower median of the class's confidence levels
            thresholds[c] = min(cap, int(np.searchsorted(np.cumsum(histogram), (total + 1) // 2)))
    return thresholds


def main(input, output, params, threads):
    torch.set_num_threads(threads)
    dsec, cfg = params.dsec, params.pseudo_label
    device = pick_device(cfg["device"])
    model, spec, meta = load_model_file(input.model, which="teacher", device=device)
    samples = TargetSamples.from_folders(as_list(input.sequences), dsec, spec, as_list(input.reconstructions))
    folders = {Path(d).name: Path(d) for d in as_list(output.folders)}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)

    # pass 1: raw predictions and confidences, and the per-class confidence histograms
    histograms = np.zeros((meta["num_classes"], LEVELS + 1), np.int64)
    raw = ConfusionMatrix(meta["num_classes"])
    for i, label, probability in tqdm(predict(model, samples, device, cfg["batch_size"]), total=len(samples),
                                      desc="predict", mininterval=5):
        name, index = samples.samples[i]
        level = np.rint(probability * LEVELS).astype(np.uint16)
        histograms += np.bincount(label.ravel().astype(np.int64) * (LEVELS + 1) + level.ravel(),
                                  minlength=histograms.size).reshape(histograms.shape)
        cv2.imwrite(str(folders[name] / f"{index:06d}.png"), label)
        cv2.imwrite(str(folders[name] / f"{index:06d}_confidence.png"), level)
        raw.update(label, samples.label(i))

    # pass 2: ignore the pixels below their class's threshold
    thresholds = class_thresholds(histograms, cfg)
    kept = ConfusionMatrix(meta["num_classes"])
    labelled = 0
    for i in range(len(samples)):
        name, index = samples.samples[i]
        path = folders[name] / f"{index:06d}.png"
        label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        level = cv2.imread(str(folders[name] / f"{index:06d}_confidence.png"), cv2.IMREAD_UNCHANGED)
        label[level < thresholds[label]] = IGNORE
        cv2.imwrite(str(path), label)
        kept.update(np.where(label == IGNORE, 0, label), np.where(label == IGNORE, IGNORE, samples.label(i)))
        labelled += int((label != IGNORE).sum())

    total = len(samples) * samples.label_size[0] * samples.label_size[1]
    quality = {"model": str(input.model), "seed": params.seed, "samples": len(samples), "mode": cfg["mode"],
               "thresholds": (thresholds / LEVELS).round(4).tolist(), "labelled_share": labelled / total,
               "miou_labelled": kept.mean_iou(), "miou_all_pixels": raw.mean_iou(),
               "pixel_accuracy_labelled": kept.pixel_accuracy()}
    Path(output.quality).write_text(json.dumps(quality, indent=2))
    logging.info("pseudo-labels: mIoU %.1f on the %.0f%% labelled pixels, %.1f before thresholding",
                 100 * quality["miou_labelled"], 100 * quality["labelled_share"], 100 * quality["miou_all_pixels"])


run_stage(main, globals())
