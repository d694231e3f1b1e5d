"""Rule evaluate: a trained model on the whole target test set.

One confusion matrix over all test pixels (labels 255 skipped); IoU per class, mIoU, pixel accuracy. mIoU
follows mmseg (HPL-ESS, CMDA): the mean over the classes that occur in the ground truth or the prediction;
``miou_absent_as_zero`` follows ESS (every class counts, an absent one as 0). The student is evaluated, as
in DAFormer. Writes ``metrics.json``, ``per_class.csv``, ``confusion.npy``, ``confusion.png`` and
``panels.png`` (events of the last 50 ms / reconstruction / prediction / label).
"""

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from evseg.adapt.data import TargetSamples
from evseg.adapt.inference import load_model_file, predict
from evseg.metrics import ConfusionMatrix
from evseg.recon.methods import pick_device
from evseg.stage import as_list, run_stage
from evseg.viz import confusion_picture, event_frame, gray, panel, save_rgb


def main(input, output, params, threads):
    torch.set_num_threads(threads)
    dsec, cfg = params.dsec, params.evaluate
    device = pick_device(cfg["device"])
    model, spec, meta = load_model_file(input.model, which="student", device=device)
    samples = TargetSamples.from_folders(as_list(input.sequences), dsec, spec, as_list(input.reconstructions))
    classes = samples.data.classes
    if meta["num_classes"] != classes.num_classes:
        raise ValueError(f"{input.model} predicts {meta['num_classes']} classes but the test labels have "
                         f"{classes.num_classes} (dsec.num_classes)")

    confusion = ConfusionMatrix(classes.num_classes)
    shown = set(np.linspace(0, len(samples) - 1, min(cfg["panels"], len(samples))).round().astype(int).tolist())
    rows = []
    for i, prediction, _ in tqdm(predict(model, samples, device, cfg["batch_size"]), total=len(samples),
                                 desc="evaluate", mininterval=5):
        label = samples.label(i)
        confusion.update(prediction, label)
        if i in shown:
            height, width = samples.label_size
            x, y, _, p = samples.data.events_in_window(i, 50_000)
            rows.append([event_frame(x, y, p, height, width), gray(samples.reconstruction(i)), classes.colorize(prediction),
                         classes.colorize(label)])

    summary = confusion.summary(list(classes.names))
    per_class = pd.DataFrame(summary.pop("per_class"))
    per_class.to_csv(output.per_class, index=False)
    summary.update(model=str(input.model), samples=len(samples), classes=classes.name, input=spec.target)
    Path(output.metrics).write_text(json.dumps(summary, indent=2))
    np.save(output.confusion, confusion.matrix)
    save_rgb(output.confusion_picture, confusion_picture(confusion.matrix, classes.names, Path(input.model).parent.name))
    save_rgb(output.panels, panel(rows, ["events 50 ms", "reconstruction", "prediction", "label"]))
    logging.info("mIoU %.2f, pixel accuracy %.2f on %d samples", 100 * summary["miou"],
                 100 * summary["pixel_accuracy"], len(samples))


run_stage(main, globals())
