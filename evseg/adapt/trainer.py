"""The training loop of rules train_uda and train_source_only: DAFormer/DACS self-training with HPL-ESS
hybrid pseudo-labels, or (adaptation off) plain supervised training on the source. The loop itself
(``run_steps``: resume, logging, checkpoints) also drives train_semi.

One step, in DAFormer's order (each loss has its own backward; one optimizer step at the end):

1. EMA update of the teacher (from step 1 on);
2. source cross-entropy; optionally the ImageNet feature distance on thing classes;
3. after ``uda.start_iter`` (HPL-ESS's source-only warm-up): teacher pseudo-labels on target inputs, with
   DACS's confidence weight; ClassMix of source onto target, strong augmentation, weighted cross-entropy;
4. HPL-ESS hybrid labels: the student segments the reconstructions of hybrid-subset samples (no gradient),
   ClassMix of those event inputs, labelled by the reconstruction's prediction, onto target inputs labelled
   by the teacher; cross-entropy;
5. optionally soft prototypical alignment between the student on hybrid event inputs and its own
   (detached) prediction on their reconstructions, both shifted by an EMA class prior.

A checkpoint every ``checkpoint_every`` steps holds everything a resumed run needs (models, optimizer,
scheduler, RNG states, step); batches are a function of (seed, step), so a killed run that is rerun reaches
the same weights as an uninterrupted one.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from evseg import distributed
from evseg.adapt.augment import denormalize, normalize, strong_transform
from evseg.adapt.classmix import class_masks, mix
from evseg.adapt.data import InputSpec, StepBatches
from evseg.adapt.ema import EMATeacher, dropout_off
from evseg.adapt.feature_distance import feature_distance
from evseg.adapt.losses import confidence_weight, ignore_border, pixel_cross_entropy, pseudo_labels
from evseg.adapt.optim import build_optimizer
from evseg.adapt.spa import ClassPriorEMA, prior_aligned_js

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.csv"


def config_hash(cfg: dict) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


class Step:
    """The models and losses of one training run; ``__call__`` performs one step and returns its logs."""

    def __init__(self, student, cfg: dict, num_classes: int, spec: InputSpec, device: torch.device):
        self.student, self.cfg, self.device = student, cfg, device
        self.num_classes, self.spec = num_classes, spec
        uda = cfg["uda"]
        self.adapt = cfg["adapt"]
        self.teacher = EMATeacher(student, alpha=uda["ema_alpha"]) if self.adapt else None
        fd = uda["feature_distance"]
        # DAFormer's ImageNet model: a frozen copy of the initial (pretrained) student.
        self.imnet = copy.deepcopy(student).eval().requires_grad_(False) if fd["weight"] > 0 else None
        self.prior = ClassPriorEMA(num_classes, momentum=uda["hybrid"]["spa_momentum"]) \
            if self.adapt and uda["hybrid"]["enabled"] and uda["hybrid"]["spa_weight"] > 0 else None
        self.autocast = dict(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def state_dict(self) -> dict:
        return {"teacher": self.teacher.state_dict() if self.teacher else None,
                "prior": self.prior.state_dict() if self.prior else None}

    def load_state_dict(self, state: dict) -> None:
        if self.teacher:
            self.teacher.load_state_dict(state["teacher"])
        if self.prior:
            self.prior.load_state_dict(state["prior"])

    def forward(self, x, **kwargs):
        with torch.autocast(**self.autocast):
            return self.student(x, **kwargs)

    def strong(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """DACS strong augmentation of mixed inputs. Colour jitter needs intensities: it applies to
        reconstruction targets; mixed event tensors get the blur only (README, fidelity)."""
        aug = self.cfg["uda"]["strong_aug"]
        mean, std = self.spec.mean_std()
        if self.spec.target == "reconstruction":
            x = denormalize(images, mean, std)
            x = strong_transform(x, generator, color_jitter_p=aug["color_jitter_p"],
                                 color_jitter_s=aug["color_jitter_s"], blur=aug["blur"], gray_jitter=aug["gray_jitter"])
            return normalize(x, mean, std)
        if not aug["blur"]:
            return images
        return strong_transform(images, generator, color_jitter_p=1.0, color_jitter_s=0.0, blur=True, clamp=False)

    def __call__(self, step: int, batch: dict) -> dict[str, torch.Tensor]:
        """One step's gradients (the caller steps the optimizer); returns its losses as detached tensors."""
        cfg, uda = self.cfg, self.cfg["uda"]
        logs = {}
        if self.teacher is not None and step > 0:
            self.teacher.update(self.student, step)
        source, source_label = batch["source"], batch["source_label"]

        fd_on = self.imnet is not None
        logits, features = self.forward(source, return_features=True)
        loss = pixel_cross_entropy(logits, source_label)
        loss.backward(retain_graph=fd_on)
        logs["loss_source"] = loss.detach()
        if fd_on:
            with torch.no_grad(), torch.autocast(**self.autocast):
                imnet_features = self.imnet(source, return_features=True)[1]
            fd = uda["feature_distance"]
            loss = fd["weight"] * feature_distance(features[-1].float(), imnet_features[-1].float(), source_label,
                                                   fd["thing_classes"], fd["min_ratio"], self.num_classes)
            loss.backward()
            logs["loss_feature_distance"] = loss.detach()
        del logits, features

        if not self.adapt or step < uda["start_iter"]:
            return logs
        target = batch["target"]
        size = source_label.shape[-2:]
        # ClassMix and the strong augmentation draw per batch: from a generator of (seed, step) that every
        # data-parallel process shares; dropout keeps torch's global RNG
        generator = distributed.step_generator(cfg["seed"], step)
        with torch.no_grad(), self.teacher.pseudo_label_mode(), torch.autocast(**self.autocast):
            teacher_logits = self.teacher.teacher(target)
        probability, label = pseudo_labels(teacher_logits, size=size)
        weight = torch.ones_like(probability)
        if uda["pseudo_weighting"]:
            weight = confidence_weight(probability, uda["pseudo_threshold"])
        weight = ignore_border(weight, uda["pseudo_ignore_top"], uda["pseudo_ignore_bottom"])
        logs["pseudo_weight"] = weight.max()

        masks = class_masks(source_label, generator)
        mixed = self.strong(mix(masks, source, target), generator)
        mixed_label = mix(masks[:, 0], source_label, label)
        mixed_weight = mix(masks[:, 0], torch.ones_like(weight), weight)
        loss = pixel_cross_entropy(self.forward(mixed), mixed_label, mixed_weight)
        loss.backward()
        logs["loss_mix"] = loss.detach()

        hybrid = uda["hybrid"]
        if not hybrid["enabled"]:
            return logs
        with torch.no_grad(), dropout_off(self.student):
            recon_logits = self.forward(batch["hybrid_image"]).float()
        recon_label = pseudo_labels(recon_logits, size=size)[1]
        masks = class_masks(recon_label, generator)
        mixed = mix(masks, batch["hybrid"], target)
        mixed_label = mix(masks[:, 0], recon_label, label)
        mixed_weight = mix(masks[:, 0], torch.ones_like(weight), weight)
        loss = hybrid["weight"] * pixel_cross_entropy(self.forward(mixed), mixed_label, mixed_weight)
        loss.backward()
        logs["loss_hybrid"] = loss.detach()

        if self.prior is not None:
            self.prior.update(F.softmax(recon_logits, dim=1))
            student_logits = self.forward(batch["hybrid"]).float()
            loss = hybrid["spa_weight"] * prior_aligned_js(student_logits, recon_logits, self.prior.value)
            loss.backward()
            logs["loss_spa"] = loss.detach()
        return logs


# --------------------------------------------------------------------------------------------------------
# checkpoints


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():  # the device this process trains on: a rerun may see fewer GPUs
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_atomic(obj, path: Path) -> None:
    """Write to a temporary name, then rename: a kill never leaves a half-written checkpoint."""
    partial = path.with_name(path.name + ".partial")
    torch.save(obj, partial)
    os.replace(partial, path)


def resume(state_dir: Path, expected_hash: str, step: Step, optimizer, scheduler) -> int:
    """Load the run's last checkpoint if it belongs to this config; returns the step to continue from."""
    path = state_dir / CHECKPOINT
    if not path.is_file():
        return 0
    state = torch.load(path, map_location=step.device, weights_only=False)
    if state["config_hash"] != expected_hash:
        logging.warning("%s belongs to another config (%s, now %s): starting from step 0", path,
                        state["config_hash"], expected_hash)
        return 0
    step.student.load_state_dict(state["student"])
    step.load_state_dict(state["step_state"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    logging.info("resuming %s at step %d", path, state["step"])
    return state["step"]


def checkpoint(state_dir: Path, cfg_hash: str, step_index: int, step: Step, optimizer, scheduler) -> None:
    save_atomic({"config_hash": cfg_hash, "step": step_index, "student": step.student.state_dict(),
                 "step_state": step.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "rng": rng_state()}, state_dir / CHECKPOINT)


# --------------------------------------------------------------------------------------------------------
# the loop


def to_training_device(model: torch.nn.Module, device: torch.device) -> None:
    """Train mode on ``device``; channels_last on CUDA, where the convolutions are faster in that layout.
    Under data parallelism, BatchNorm normalises over the whole batch (copies made later, such as the EMA
    teacher, inherit that)."""
    if distributed.world().size > 1:
        distributed.sync_batch_norm(model)
    model.to(device).train()
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)


def train(student: torch.nn.Module, batches: StepBatches, cfg: dict, num_classes: int, state_dir: str | Path,
          device: torch.device, stop_after: int | None = None) -> Step:
    """Train ``student`` for ``cfg["max_iters"]`` steps, resuming from ``state_dir`` when possible.

    ``batches`` is a StepBatches; ``stop_after`` ends the run early after that many steps of this call (a
    simulated kill, for tests). Returns the Step object (student, teacher) at the end.
    """
    torch.manual_seed(cfg["seed"])
    to_training_device(student, device)
    step = Step(student, cfg, num_classes, batches.source.spec, device)
    optimizer, scheduler = build_optimizer(student, {**cfg["optimizer"], "max_iters": cfg["max_iters"]})
    run_steps(step, batches, optimizer, scheduler, cfg, state_dir, stop_after)
    return step


def run_steps(step, batches, optimizer, scheduler, cfg: dict, state_dir: str | Path,
              stop_after: int | None = None) -> None:
    """The loop shared by every segmentation training rule: resume, one batch per step, the optimizer and
    schedule steps, ``metrics.csv`` rows and periodic checkpoints.

    ``step`` is callable as ``step(index, batch) -> {name: loss}`` (it computes the gradients) and has
    ``student``, ``device``, ``state_dict()`` and ``load_state_dict()`` for the state beyond the student.
    ``batches[k]`` is the batch of step ``k``. ``cfg`` needs seed, max_iters, num_workers, log_every and
    checkpoint_every, and may set clip_grad_norm (applied to the averaged gradients); all of it goes into the
    hash that decides whether a checkpoint may be resumed.

    Under data parallelism (evseg.distributed) each process trains on its rows of every batch, gradients are
    averaged before the optimizer step, and the first process alone writes metrics and checkpoints.
    """
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    device = step.device
    world = distributed.world()
    cfg_hash = config_hash(cfg)
    start = resume(state_dir, cfg_hash, step, optimizer, scheduler)
    metrics_path = state_dir / METRICS
    rows = []  # rows logged after the checkpoint we resume from are dropped (those steps run again)
    if start > 0 and metrics_path.is_file():
        rows = [row for row in pd.read_csv(metrics_path).to_dict("records") if row["step"] <= start]

    stop = cfg["max_iters"] if stop_after is None else min(cfg["max_iters"], start + stop_after)
    loader = torch.utils.data.DataLoader(batches, batch_size=None, sampler=range(start, stop),
                                         num_workers=cfg["num_workers"], pin_memory=device.type == "cuda",
                                         persistent_workers=False,
                                         # its own generator: drawing worker seeds from the global RNG would
                                         # shift dropout and ClassMix draws between fresh and resumed runs
                                         generator=torch.Generator().manual_seed(cfg["seed"]))
    progress = tqdm(total=cfg["max_iters"], initial=start, desc="train", mininterval=5, disable=not world.is_main)
    window, tic = [], time.perf_counter()
    for index, batch in zip(range(start, stop), loader):
        batch = {k: v.to(device, non_blocking=True) for k, v in distributed.local_rows(batch).items()}
        if device.type == "cuda":
            batch = {k: v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 else v
                     for k, v in batch.items()}
        optimizer.zero_grad(set_to_none=True)
        distributed.seed_process_rng(cfg["seed"], index)
        logs = step(index, batch)
        distributed.average_gradients(step.student)
        if cfg.get("clip_grad_norm"):
            torch.nn.utils.clip_grad_norm_(step.student.parameters(), cfg["clip_grad_norm"])
        optimizer.step()
        scheduler.step()
        window.append(logs)
        progress.update()
        done = index + 1
        if done % cfg["log_every"] == 0 or done == stop:
            row = {"step": done, **{f"lr_{g['name']}": g["lr"] for g in optimizer.param_groups},
                   "seconds_per_iter": (time.perf_counter() - tic) / len(window)}
            # losses stay on the device until here: one synchronisation per logged row, not per loss
            for key in dict.fromkeys(k for logs in window for k in logs):
                mean = torch.stack([logs[key].float() for logs in window if key in logs]).mean()
                row[key] = distributed.mean_over_processes(mean).item()
            if device.type == "cuda":
                row["max_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
            rows.append(row)
            if world.is_main:
                pd.DataFrame(rows).to_csv(metrics_path, index=False)  # columns appear when their losses start
            progress.set_postfix({k: f"{v:.3f}" for k, v in row.items() if k.startswith("loss")})
            window, tic = [], time.perf_counter()
        if world.is_main and (done % cfg["checkpoint_every"] == 0 or done == cfg["max_iters"]):
            checkpoint(state_dir, cfg_hash, done, step, optimizer, scheduler)
    progress.close()
    distributed.barrier()
