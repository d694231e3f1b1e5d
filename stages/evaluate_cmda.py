"""Rule evaluate_cmda: a CMDA model on the DSEC Night-Semantic test split, whole frames cut to ``eval_height`` rows.

The headline mIoU is the model's inference output (fusion; image for the image-only network), averaged over the
evaluated classes (``dsec_night.eval_classes``: the 18 Cityscapes classes without truck, computed directly
rather than by rescaling a 19-class mean; reference/cmda_daformer.md §2.8). The student is evaluated, as in
DAFormer and CMDA. The other outputs' mIoU (image, events) are reported beside it. Writes ``metrics.json``,
``per_class.csv``, ``confusion.npy`` and ``panels.png`` (night image / event image / prediction / label).
"""

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from evseg.cmda.data import NightFrames, image_spec
from evseg.cmda.model import load_model_file
from evseg.cmda.trainer import repeat3
from evseg.data.classes import CITYSCAPES_19
from evseg.metrics import ConfusionMatrix
from evseg.recon.methods import pick_device
from evseg.stage import run_stage
from evseg.viz import panel, save_rgb, signed_map


@torch.no_grad()
def main(input, output, params, threads):
    torch.set_num_threads(threads)
    night, cfg = params.dsec_night, params.evaluate
    device = pick_device(cfg["device"])
    model, meta = load_model_file(input.model, which="student", device=device)
    inputs = meta["inputs"]
    samples = NightFrames(night["root"], "test", night["sequences"], night["sensor_size"], night["eval_height"],
                          image_spec(inputs["image_mean"], inputs["image_std"]), inputs["events_per_clip_unit"],
                          inputs["content"]["target"])
    classes = CITYSCAPES_19
    evaluated = [classes.names.index(name) for name in night["eval_classes"]]
    outputs = ["fusion", "image", "events"] if model.has_events else ["image"]
    confusion = {name: ConfusionMatrix(classes.num_classes) for name in outputs}
    shown = set(np.linspace(0, len(samples) - 1, min(cfg["panels"], len(samples))).round().astype(int).tolist())
    rows = []
    autocast = dict(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    for i in tqdm(range(len(samples)), desc="evaluate", mininterval=5):
        sample = samples.test_sample(i)
        image = torch.from_numpy(sample["image"][None]).to(device)
        events = repeat3(torch.from_numpy(sample["events"][None]).to(device)) if model.has_events else None
        with torch.autocast(**autocast):
            logits = model(image, events)
        for name in outputs:
            up = torch.nn.functional.interpolate(logits[name].float(), size=image.shape[-2:], mode="bilinear",
                                                 align_corners=False)
            prediction = up.argmax(1)[0].cpu().numpy().astype(np.uint8)
            confusion[name].update(prediction, sample["label"])
            if name == model.inference_output and i in shown:
                rows.append([sample["rgb"], signed_map(sample["events"][0]), classes.colorize(prediction),
                             classes.colorize(sample["label"])])

    main_output = model.inference_output
    summary = confusion[main_output].summary(list(classes.names), evaluated)
    per_class = pd.DataFrame(summary.pop("per_class"))
    per_class.to_csv(output.per_class, index=False)
    summary.update(model=str(input.model), output=main_output, samples=len(samples),
                   miou_classes=list(night["eval_classes"]),
                   miou_all_classes=confusion[main_output].mean_iou(),
                   miou_by_output={name: confusion[name].mean_iou(evaluated) for name in outputs})
    Path(output.metrics).write_text(json.dumps(summary, indent=2))
    np.save(output.confusion, confusion[main_output].matrix)
    save_rgb(output.panels, panel(rows, ["night image", "events", f"prediction ({main_output})", "label"]))
    logging.info("mIoU (%d classes, %s output) %.2f on %d samples; by output %s", len(evaluated), main_output,
                 100 * summary["miou"], len(samples),
                 {k: round(100 * v, 2) for k, v in summary["miou_by_output"].items()})


run_stage(main, globals())
