"""Rule train_semi: UniMatch retraining on the target, from the adapted model of the same seed.

The labelled set is ``split/labeled.txt`` with the refined (SCC) pseudo-labels as ground truth, the unlabelled
set ``split/unlabeled.txt``. Writes ``model.pt`` (the student; no teacher), ``metrics.csv`` and ``config.yaml``,
like the other training rules; the resumable state lives in ``state/`` until the run is complete.
"""

import hashlib
import logging
import shutil
from pathlib import Path

import torch
import yaml

from evseg import distributed
from evseg.adapt.data import SourceImages, TargetSamples, read_ids
from evseg.adapt.inference import load_model_file, save_model_file
from evseg.adapt.optim import build_optimizer
from evseg.adapt.trainer import METRICS, run_steps, to_training_device
from evseg.data.classes import NUM_CLASSES_TO_SET
from evseg.recon.methods import pick_device
from evseg.semi.copy_paste import CopyPaste
from evseg.semi.data import SemiBatches, read_refined_labels
from evseg.semi.unimatch import UniMatchStep
from evseg.semi.views import StrongViews
from evseg.stage import as_list, run_stage


def main(input, output, params, threads):
    torch.set_num_threads(threads)
    with open(input.model, "rb") as f:
        # in the resume hash: a checkpoint left by a killed run must not continue on a retrained UDA model
        initial = hashlib.file_digest(f, "sha256").hexdigest()[:16]
    cfg = {**params.semi, **params.loop, "seed": params.seed, "initial_model_sha256": initial,
           "source": params.source}  # in the resume hash too
    student, spec, meta = load_model_file(input.model, which=cfg["init_from"])
    target = TargetSamples.from_folders(as_list(input.sequences), params.dsec, spec,
                                        as_list(getattr(input, "reconstructions", [])))
    labeled = read_ids(input.labeled)
    label_folders = {Path(folder).name: Path(folder) for folder in as_list(input.labels)}
    labels = read_refined_labels(label_folders, labeled, target.label_size)
    unlabeled = read_ids(input.unlabeled)
    mean, std = spec.mean_std()
    views = StrongViews.from_config(cfg["strong_aug"], images=spec.target == "reconstruction", mean=mean, std=std)
    classes = NUM_CLASSES_TO_SET[meta["num_classes"]]
    copy_paste = CopyPaste(lambda i: target.input(target.index[i]), labels, classes, cfg["crop_size"],
                           cfg["copy_paste"]) if cfg["copy_paste"]["p"] > 0 else None
    source = None
    if cfg["source_weight"] > 0:
        source = SourceImages(input.cityscapes, params.source["classes"], params.source["resize"], spec)
    batches = SemiBatches(target, labels, unlabeled, cfg["seed"], cfg["batch_size"], cfg["crop_size"],
                          cfg["scale_range"], views, cfg["strong_aug"]["cutmix_p"], copy_paste, source)

    device = pick_device(cfg["device"])
    logging.info("UniMatch from the %s of %s on %s: %d labelled, %d unlabelled samples", cfg["init_from"],
                 input.model, device, len(labeled), len(unlabeled))
    if copy_paste is not None:
        logging.info("copy-paste (p %.2f) of %s", copy_paste.p, {classes.names[c]: len(ids) for c, ids in
                                                                 copy_paste.pool.items()})
    torch.manual_seed(cfg["seed"])
    to_training_device(student, device)
    step = UniMatchStep(student, cfg, device)
    optimizer, scheduler = build_optimizer(student, {**cfg["optimizer"], "max_iters": cfg["max_iters"]})
    state_dir = Path(output.model).parent / "state"
    run_steps(step, batches, optimizer, scheduler, cfg, state_dir)
    if not distributed.world().is_main:
        return  # data-parallel run (evseg.distributed): the first process writes the outputs

    save_model_file(output.model, student, None, meta["model"], spec, meta["classes"], meta["num_classes"],
                    cfg["max_iters"])
    shutil.copyfile(state_dir / METRICS, output.metrics)
    resolved = {"model": meta["model"], "initial_model": str(input.model), "semi": cfg, "dsec": params.dsec}
    Path(output.config).write_text(yaml.safe_dump(resolved, sort_keys=False))
    shutil.rmtree(state_dir)


run_stage(main, globals(), data_parallel=True)
