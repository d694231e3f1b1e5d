"""Rule scc: SeCo's semantic connectivity correction of the PSA labels, grouped per sequence.

Every connected region of the PSA labels becomes one sample of a region classifier (timm backbone, the region
mask applied in its stem) trained briefly with label smoothing; each region's loss against its PSA label then
separates clean from noisy regions (``scc.rule``: the paper's Gaussian mixture, or the released median rule),
and regions are kept, relabelled or dropped. No ground truth is used; ``quality.json`` compares with it for
reporting only. ``pictures.png`` shows image / pixel pseudo-label / PSA / SCC / ground truth.
"""

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

from evseg.adapt.data import InputSpec, TargetSamples
from evseg.data.classes import NUM_CLASSES_TO_SET
from evseg.recon.methods import pick_device
from evseg.refine.labels import RefinementQuality, read_label
from evseg.refine.noise import code_rule, paper_rule, region_outcomes
from evseg.refine.region_classifier import (ClassifierTraining, MaskedStemClassifier, recompute_batch_norm,
                                           score_regions, train_classifier)
from evseg.refine.regions import paint_regions, region_samples
from evseg.stage import as_list, run_stage
from evseg.viz import gray, panel, save_rgb


def main(input, output, params, threads):
    torch.set_num_threads(threads)
    dsec, cfg = params.dsec, params.scc
    class_set = NUM_CLASSES_TO_SET[dsec["num_classes"]]
    spec = InputSpec.from_config(params.input, grayscale_source=True)
    samples = TargetSamples.from_folders(as_list(input.sequences), dsec, spec, as_list(input.reconstructions))
    psa = {Path(d).name: Path(d) for d in as_list(input.psa)}
    pixel = {Path(d).name: Path(d) for d in as_list(input.pseudo_labels)}
    folders = {Path(d).name: Path(d) for d in as_list(output.folders)}
    window = tuple(cfg["window"])
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)

    labels, regions, windows, window_masks = [], [], [], []
    for i in range(len(samples)):
        name, index = samples.samples[i]
        label = read_label(psa[name] / f"{index:06d}.png", samples.label_size)
        image = samples.reconstruction(i)
        labels.append(label)
        found = region_samples(image, label, window, sample=i)
        for collected, new in zip((regions, windows, window_masks), found):
            collected.extend(new)
    if len(regions) < 2:
        raise ValueError(f"the PSA labels in {sorted(map(str, psa.values()))} hold {len(regions)} labelled "
                         "region(s); SCC needs at least 2 to separate clean from noisy ones (check psa/quality.json)")
    region_labels = np.array([r.cls for r in regions])
    logging.info("%d regions in %d samples", len(regions), len(samples))

    device = pick_device(cfg["device"])
    torch.manual_seed(cfg["training"]["seed"])
    pretrained = getattr(input, "pretrained", None)  # scc.pretrained, or train_region_classifier's weights
    model = MaskedStemClassifier(cfg["backbone"], dsec["num_classes"], in_chans=1, stem_module=cfg["stem_module"],
                                 pretrained_file=pretrained).to(device)
    images, masks = np.stack(windows), np.stack(window_masks)
    train_losses = train_classifier(model, images, masks, region_labels, ClassifierTraining(**cfg["training"]),
                                    device=device)
    if cfg["precise_bn"]:
        recompute_batch_norm(model, images, masks)
    losses, probabilities = score_regions(model, images, masks, region_labels, device=device)
    if cfg["rule"] == "paper":
        new_labels, eta = paper_rule(losses, probabilities, region_labels, cfg["noise_threshold"],
                                     cfg["correction_threshold"])
    else:
        new_labels, eta = code_rule(losses, probabilities.argmax(1), cfg["ratio"]), np.full(len(losses), np.nan)

    tracker = RefinementQuality(dsec["num_classes"])
    shown = set(np.linspace(0, len(samples) - 1, min(cfg["pictures"], len(samples))).round().astype(int).tolist())
    starts = np.searchsorted([r.sample for r in regions], np.arange(len(samples) + 1))
    rows = []
    for i, label in enumerate(labels):
        name, index = samples.samples[i]
        span = slice(starts[i], starts[i + 1])
        refined = paint_regions(label.shape, regions[span], new_labels[span])
        cv2.imwrite(str(folders[name] / f"{index:06d}.png"), refined)
        truth = samples.label(i)
        tracker.update(label, refined, truth)
        if i in shown:
            pixel_label = read_label(pixel[name] / f"{index:06d}.png", samples.label_size)
            rows.append([gray(samples.reconstruction(i)),
                         *(class_set.colorize(x) for x in (pixel_label, label, refined, truth))])

    pixels = [int(r.crop.sum()) for r in regions]
    pd.DataFrame({"sample_id": [samples.ids[r.sample] for r in regions], "class": region_labels,
                  "pixels": pixels, "loss": losses.round(5),
                  "prediction": probabilities.argmax(1), "confidence": probabilities.max(1).round(5),
                  "eta": np.round(eta, 5), "new_label": new_labels}).to_csv(output.regions, index=False)
    quality = {"rule": cfg["rule"], "backbone": cfg["backbone"], "samples": len(samples), "regions": len(regions),
               "kept": int((new_labels == region_labels).sum()),
               "relabelled": int(((new_labels >= 0) & (new_labels != region_labels)).sum()),
               "dropped": int((new_labels < 0).sum()),
               "classifier_loss_first_last": [float(np.mean(train_losses[:10])), float(np.mean(train_losses[-10:]))],
               **tracker.summary(),
               "per_class": region_outcomes(region_labels, new_labels, pixels, class_set.names)}
    Path(output.quality).write_text(json.dumps(quality, indent=2))
    save_rgb(output.pictures, panel(rows, ["reconstruction", "pixel pseudo-label", "PSA", "SCC", "ground truth"]))
    logging.info("SCC: %d regions kept, %d relabelled, %d dropped; mIoU %.1f -> %.1f on the labelled pixels",
                 quality["kept"], quality["relabelled"], quality["dropped"], 100 * quality["miou_labelled_before"],
                 100 * quality["miou_labelled"])


run_stage(main, globals())
