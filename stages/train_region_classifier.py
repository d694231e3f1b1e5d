"""Rule train_region_classifier: SCC's region classifier trained on the labelled source regions, the offline
demo's stand-in for the ImageNet weights that SeCo's classifier starts from.

Every 8-connected region of at least ``scc.pretrain.min_region_pixels`` pixels of every source label (Cityscapes
layout, ground truth) becomes one sample, with the
window and mask that ``scc`` cuts around a region; the source images are first resized to the target frames'
width, so that a window covers the same share of the scene. Writes the timm state dict that ``scc`` loads
through ``scc.pretrained``'s loader (``<backbone>.pth``; the final layer is dropped there and learned anew, as
SeCo puts a new fc on ImageNet weights) and ``losses.csv``. A minute or two on a CPU: no intermediate
checkpoints, a killed run starts again.
"""

import logging

import cv2
import numpy as np
import pandas as pd
import torch

from evseg.data.cityscapes import Cityscapes
from evseg.data.classes import NUM_CLASSES_TO_SET
from evseg.recon.methods import pick_device
from evseg.refine.region_classifier import ClassifierTraining, MaskedStemClassifier, train_classifier
from evseg.refine.regions import region_samples
from evseg.stage import run_stage


def main(input, output, params, threads):
    torch.set_num_threads(threads)
    cfg, pretrain = params.scc, params.scc["pretrain"]
    source = Cityscapes(input.cityscapes, "train", classes=params.cityscapes["classes"], grayscale=True)
    width = params.dsec["sensor_size"][1]
    windows, masks, labels = [], [], []
    for i in range(len(source)):
        image, label = source.image(i), source.label(i)
        size = (width, round(image.shape[0] * width / image.shape[1]))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        label = cv2.resize(label, size, interpolation=cv2.INTER_NEAREST)
        regions, crops, crop_masks = region_samples(image, label, tuple(cfg["window"]), sample=i,
                                                    min_pixels=pretrain["min_region_pixels"])
        windows.extend(crops)
        masks.extend(crop_masks)
        labels.extend(r.cls for r in regions)
    if not labels:
        raise ValueError(f"no region of {pretrain['min_region_pixels']} pixels or more in the {len(source)} source "
                         f"labels under {input.cityscapes}; lower scc.pretrain.min_region_pixels or check the "
                         "gtFine label files")
    class_set = NUM_CLASSES_TO_SET[params.dsec["num_classes"]]
    counts = np.bincount(labels, minlength=len(class_set.names))
    logging.info("%d source regions of %d images: %s", len(labels), len(source),
                 ", ".join(f"{n} {c}" for n, c in zip(class_set.names, counts)))

    torch.manual_seed(pretrain["seed"])
    device = pick_device(cfg["device"])
    model = MaskedStemClassifier(cfg["backbone"], len(class_set.names), in_chans=1,
                                 stem_module=cfg["stem_module"]).to(device)
    training = ClassifierTraining(iterations=pretrain["iterations"], batch_size=pretrain["batch_size"],
                                  optimizer="adamw", lr_backbone=pretrain["lr"], lr_classifier=pretrain["lr"],
                                  weight_decay=pretrain["weight_decay"], class_balanced=True, seed=pretrain["seed"])
    losses = train_classifier(model, np.stack(windows), np.stack(masks), np.array(labels), training,
                              device=device)
    logging.info("loss %.3f -> %.3f", np.mean(losses[:20]), np.mean(losses[-20:]))
    torch.save({k: v.cpu() for k, v in model.net.state_dict().items()}, output.weights)
    pd.DataFrame({"step": range(len(losses)), "loss": np.round(losses, 5)}).to_csv(output.losses, index=False)


run_stage(main, globals())
