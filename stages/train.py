"""Rules train_uda, train_source_only and train_supervised: one segmentation model per seed.

train_supervised trains on the target's own labelled training samples instead of the source (the transfer
protocol by which event pre-training is judged), from ``input.pretrained`` when the rule gives one.

Writes ``model.pt`` (student and teacher, see evseg.adapt.inference), ``metrics.csv`` (losses, learning rate
and speed every ``log_every`` steps) and ``config.yaml`` (the resolved settings). The resumable state lives
in ``state/`` beside them: rerunning a killed job continues from its last checkpoint.
"""

import logging
import shutil
from pathlib import Path

import torch
import yaml

from evseg import distributed
from evseg.adapt.data import InputSpec, LabelledTarget, SourceImages, StepBatches, TargetSamples, read_ids
from evseg.adapt.inference import save_model_file
from evseg.adapt.rcs import rare_class_sampler
from evseg.adapt.trainer import METRICS, train
from evseg.errors import DataError
from evseg.models import build_segmentor
from evseg.recon.methods import pick_device
from evseg.stage import as_list, run_stage

def main(input, output, params, threads):
    torch.set_num_threads(threads)
    cfg = {**params.train, "adapt": params.adapt, "uda": params.uda}
    classes, num_classes = params.cityscapes["classes"], params.num_classes
    spec = InputSpec.from_config(cfg["input"], params.cityscapes["grayscale"])
    if params.labelled_target:
        source = LabelledTarget(TargetSamples.from_folders(as_list(input.sequences), params.dsec, spec))
    else:
        source = SourceImages(input.cityscapes, classes, cfg["source_resize"], spec)
    target = hybrid = None
    if params.adapt:
        dsec = params.dsec
        target = TargetSamples.from_folders(as_list(input.sequences), dsec, spec,
                                            as_list(getattr(input, "reconstructions", [])))
        if cfg["uda"]["hybrid"]["enabled"]:
            ids = read_ids(input.hybrid)
            unknown = [i for i in ids if i not in target.index]
            if unknown:
                raise DataError(input.hybrid, f"lists {len(unknown)} ids that are not target training samples, "
                                f"e.g. {unknown[:3]}", "rerun the sample rule (snakemake -R sample)")
            hybrid = [target.index[i] for i in ids]
    rare, min_class_pixels = None, 0
    if cfg["uda"]["rcs"]["enabled"]:
        rare, min_class_pixels = rare_class_sampler(source, cfg["uda"]["rcs"], num_classes)
    batches = StepBatches(source, cfg["seed"], cfg["batch_size"], cfg["crop_size"], cfg["cat_max_ratio"],
                          target, hybrid, rare, min_class_pixels)

    model_cfg = params.model
    # the seed also fixes the initial weights (and so the frozen ImageNet-distance copy made on resume)
    torch.manual_seed(cfg["seed"])
    pretrained = getattr(input, "pretrained", None)
    student = build_segmentor(model_cfg["backbone"], num_classes, in_chans=spec.channels, pretrained=pretrained,
                              drop_path_rate=model_cfg["drop_path_rate"], embed_dim=model_cfg["embed_dim"],
                              reinit_patch_embed=model_cfg["pretrained_patch_embed"] == "reinit")
    if not pretrained:
        logging.warning("no pretrained weights: training from random initialisation")
    device = pick_device(cfg["device"])
    logging.info("training %s on %s: %d source images, %s target samples, %s hybrid samples, %d input channels",
                 model_cfg["backbone"], device, len(source), len(target) if target else 0,
                 len(hybrid) if hybrid else 0, spec.channels)
    state_dir = Path(output.model).parent / "state"
    step = train(student, batches, cfg, num_classes, state_dir, device)
    if not distributed.world().is_main:
        return  # data-parallel run (evseg.distributed): the first process writes the outputs

    model_cfg = {**model_cfg, "pretrained": str(pretrained or "")}
    save_model_file(output.model, step.student, step.teacher.teacher if step.teacher else None, model_cfg,
                    spec, classes, num_classes, cfg["max_iters"])
    shutil.copyfile(state_dir / METRICS, output.metrics)
    resolved = {"model": model_cfg, "train": cfg, "cityscapes": params.cityscapes, "num_classes": num_classes}
    if params.adapt or params.labelled_target:
        resolved["dsec"] = params.dsec
    Path(output.config).write_text(yaml.safe_dump(resolved, sort_keys=False))
    shutil.rmtree(state_dir)  # the outputs are complete: the resumable state (gigabytes for MiT-B5) goes


run_stage(main, globals(), data_parallel=True)
