"""Rule train_cmda: one CMDA model per (model, seed): fusion (CMDA), image_only (DAFormer on the night images),
source_only (the fusion network without adaptation), fusion_l2_<variant> (the L2 study).

Writes ``model.pt`` (evseg.cmda.model), ``metrics.csv`` and ``config.yaml``; the resumable state lives in
``state/`` beside them until the run is complete.
"""

import logging
import shutil
from pathlib import Path

import torch
import yaml

from evseg import distributed
from evseg.adapt.optim import build_optimizer
from evseg.adapt.rcs import rare_class_sampler
from evseg.adapt.trainer import METRICS, run_steps, to_training_device
from evseg.cmda.data import CMDABatches, MotionSource, NightFrames, image_spec
from evseg.cmda.model import build_fusion_segmentor, save_model_file
from evseg.cmda.style import load_style_generator
from evseg.cmda.trainer import CMDAStep
from evseg.recon.methods import pick_device
from evseg.stage import run_stage


def main(input, output, params, threads):
    torch.set_num_threads(threads)
    variant, cmda, night = params.variant, params.cmda, params.dsec_night
    cfg = {**params.train, "adapt": variant["adapt"], "uda": params.uda,
           "cmda": {**cmda, "l2": {**cmda["l2"], "variant": variant["l2"]}}}
    num_classes = params.num_classes
    spec = image_spec(cmda["image_mean"], cmda["image_std"])
    source = MotionSource(input.cityscapes, "cityscapes19", cfg["source_resize"], spec, cmda["motion"],
                          cmda["content"]["source"])
    target = None
    if variant["adapt"]:
        target = NightFrames(night["root"], "train", night["sequences"], night["sensor_size"], night["eval_height"],
                             spec, cmda["events_per_clip_unit"], cmda["content"]["target"])
    rare, min_class_pixels = None, 0
    if cfg["uda"]["rcs"]["enabled"]:
        rare, min_class_pixels = rare_class_sampler(source, cfg["uda"]["rcs"], num_classes)
    batches = CMDABatches(source, cfg["seed"], cfg["batch_size"], cfg["crop_size"], cfg["cat_max_ratio"], target,
                          cmda["target_crop"], rare, min_class_pixels)

    model_cfg = params.model
    torch.manual_seed(cfg["seed"])  # the seed also fixes the initial weights
    student = build_fusion_segmentor(model_cfg["backbone"], num_classes, events=variant["events"],
                                     pretrained=model_cfg["pretrained"] or None,
                                     drop_path_rate=model_cfg["drop_path_rate"], embed_dim=model_cfg["embed_dim"],
                                     fusion_drop_path=cmda["fusion_drop_path"])
    if not model_cfg["pretrained"]:
        logging.warning("model.pretrained is empty: training from random initialisation")
    style = None
    if variant["events"] and cmda["style_transfer"]["enabled"]:
        style = load_style_generator(input.style)
    else:
        logging.warning("no style generator: the source's event input is the Motion-Extractor map itself")
    device = pick_device(cfg["device"])
    logging.info("training %s (%s) on %s: %d source images, %s target samples", model_cfg["backbone"],
                 "image + events" if variant["events"] else "image only", device, len(source),
                 len(target) if target else 0)
    to_training_device(student, device)
    step = CMDAStep(student, cfg, device, style)
    optimizer, scheduler = build_optimizer(student, {**cfg["optimizer"], "max_iters": cfg["max_iters"]})
    state_dir = Path(output.model).parent / "state"
    run_steps(step, batches, optimizer, scheduler, cfg, state_dir)
    if not distributed.world().is_main:
        return

    inputs = {"image_mean": cmda["image_mean"], "image_std": cmda["image_std"],
              "events_per_clip_unit": cmda["events_per_clip_unit"], "content": cmda["content"]}
    save_model_file(output.model, step.student, step.teacher.teacher if step.teacher else None,
                    {**model_cfg, "fusion_drop_path": cmda["fusion_drop_path"]}, inputs, num_classes,
                    cfg["max_iters"])
    shutil.copyfile(state_dir / METRICS, output.metrics)
    resolved = {"model": model_cfg, "variant": variant, "train": cfg, "dsec_night": night, "num_classes": num_classes}
    Path(output.config).write_text(yaml.safe_dump(resolved, sort_keys=False))
    shutil.rmtree(state_dir)


run_stage(main, globals(), data_parallel=True)
