"""Rule psa: SeCo's pixel semantic aggregation of the pixel pseudo-labels, grouped per sequence.

Per sample ``<index:06d>.png`` (uint8 class ids, 255 outside every accepted region). ``quality.json`` holds
the region counts and compares the labels with the ground truth of the training sequences, as
``pseudo_label``'s does (for reporting only); ``pictures.png`` shows image / pixel pseudo-label / PSA /
ground truth for a few samples.
"""

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from evseg.adapt.data import InputSpec, TargetSamples
from evseg.data.classes import NUM_CLASSES_TO_SET
from evseg.recon.methods import pick_device
from evseg.refine.labels import RefinementQuality, read_label
from evseg.refine.proposals import PsaSettings, SamProposals, SuperpixelProposals, refine_label
from evseg.refine.psa import class_partition
from evseg.stage import as_list, run_stage
from evseg.viz import gray, panel, save_rgb


def event_image(events: np.ndarray) -> np.ndarray:
    """A summed event frame as a gray uint8 image: event-free pixels mid-grey, scaled to the 99th percentile."""
    frame = events.sum(0)
    scale = max(float(np.percentile(np.abs(frame), 99)), 1e-6)
    return np.rint(127.5 + 127.5 * np.clip(frame / scale, -1, 1)).astype(np.uint8)


def build_proposals(cfg: dict, checkpoint):
    if cfg["backend"] == "superpixels":
        sp = cfg["superpixels"]
        return SuperpixelProposals(sp["method"], sp["min_cover"], **sp["params"])
    from evseg.refine.sam import load_sam

    sam = load_sam(checkpoint, cfg["sam"]["variant"], device=pick_device(cfg["sam"]["device"]))
    return SamProposals(sam, **cfg["sam"]["amg"])


def main(input, output, params, threads):
    torch.set_num_threads(threads)
    dsec, cfg = params.dsec, params.psa
    class_set = NUM_CLASSES_TO_SET[dsec["num_classes"]]
    stuff, things = class_partition(class_set.name, dsec["num_classes"], cfg["partition"])
    settings = PsaSettings(stuff, things, dsec["num_classes"], cfg["stuff_threshold"], cfg["unclip_ratio"],
                           cfg["min_class_pixels"], cfg["min_component_pixels"], cfg["purity_radius"],
                           cfg["unassigned"] == "keep")
    spec = InputSpec.from_config(params.input, grayscale_source=True)
    samples = TargetSamples.from_folders(as_list(input.sequences), dsec, spec, as_list(input.reconstructions))
    pseudo = {Path(d).name: Path(d) for d in as_list(input.pseudo_labels)}
    folders = {Path(d).name: Path(d) for d in as_list(output.folders)}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    proposals = build_proposals(cfg, getattr(input, "checkpoint", None))

    tracker = RefinementQuality(settings.num_classes)
    counts = {"stuff_proposals": 0, "thing_prompts": 0}
    shown = set(np.linspace(0, len(samples) - 1, min(cfg["pictures"], len(samples))).round().astype(int).tolist())
    rows = []
    for i in tqdm(range(len(samples)), desc="psa", mininterval=5):
        name, index = samples.samples[i]
        label = read_label(pseudo[name] / f"{index:06d}.png", samples.label_size)
        image = samples.reconstruction(i) if cfg["image"] == "reconstruction" else event_image(samples.events(i))
        refined, stats = refine_label(label, image, proposals, settings)
        cv2.imwrite(str(folders[name] / f"{index:06d}.png"), refined)
        for key in counts:
            counts[key] += stats[key]
        truth = samples.label(i)
        tracker.update(label, refined, truth)
        if i in shown:
            rows.append([gray(image), *(class_set.colorize(x) for x in (label, refined, truth))])

    quality = {"backend": cfg["backend"], "image": cfg["image"], "samples": len(samples), **counts,
               **tracker.summary(),
               "per_class_iou": {name: None if np.isnan(iou) else round(float(iou), 4)
                                 for name, iou in zip(class_set.names, tracker.after.iou())}}
    Path(output.quality).write_text(json.dumps(quality, indent=2))
    save_rgb(output.pictures, panel(rows, [cfg["image"], "pixel pseudo-label", f"PSA ({cfg['backend']})",
                                          "ground truth"]))
    logging.info("PSA: mIoU %.1f -> %.1f on the labelled pixels, labelled share %.0f%% -> %.0f%%",
                 100 * quality["miou_labelled_before"], 100 * quality["miou_labelled"],
                 100 * quality["labelled_share_before"], 100 * quality["labelled_share"])


run_stage(main, globals())
