"""ECDDP pre-training (../shared/reference/e2vid_ecddp.md §C.1, §C.4) on the loop of the segmentation rules
(evseg.adapt.trainer.run_steps: resume, metrics, checkpoints, data parallelism).

One step:

1. EMA update of the teacher with a momentum that follows a cosine from ``ema.start`` (0.992) to 1;
2. teacher, no gradient: tokens of the whole crop, clustered per image into contexts; tokens of the global
   crops; targets of its image, patch and context scores at the warmed-up temperature (Sinkhorn-Knopp as
   released, or DINO's centering: evseg.pretrain.losses.TeacherTargets);
3. student: the global crops with iBOT's masks and the local crops; the image loss on every crop, the patch
   loss on the masked tokens, the context loss on the contexts each global crop covers;
4. ``image + patch + context_weight * sum over global crops of the context loss / terms`` with ``terms`` the
   number of crop pairs of the DINO losses plus the global crops, which for 2 global and 8 local crops turns
   the released weight 2.0 into 0.1 (supp. Fig. 5);
5. (the loop) gradients averaged over processes, clipped to ``clip_grad_norm``, AdamW step, schedules.

The learning rate warms up linearly and then follows a cosine to ``min_lr``; weight decay follows a cosine
from ``weight_decay`` to ``weight_decay_end``; the patch embedding learns at ``patch_embed_lr_scale`` times
the rate; biases, norms and the learned tokens are not decayed (DINOv2's parameter groups).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from evseg import distributed
from evseg.adapt.trainer import run_steps, to_training_device
from evseg.pretrain.context import ASSIGNMENT_THRESHOLD, cosine_kmeans, warp_assignments
from evseg.pretrain.data import PretrainBatches
from evseg.pretrain.losses import TeacherTargets, context_loss, image_loss, patch_loss
from evseg.pretrain.model import ECDDPNet

__all__ = ["PretrainSchedule", "PretrainStep", "cosine", "pretrain"]


def cosine(step: int, total: int, start: float, end: float) -> float:
    """A half cosine from ``start`` (step 0) to ``end`` (step ``total`` and after)."""
    progress = min(max(step / max(total, 1), 0.0), 1.0)
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * progress))


def learning_rate(step: int, cfg: dict) -> float:
    warmup = cfg["warmup_iters"]
    if step < warmup:
        return cfg["lr"] * step / warmup
    return cosine(step - warmup, cfg["max_iters"] - warmup, cfg["lr"], cfg["min_lr"])


def teacher_temperature(step: int, cfg: dict) -> float:
    temp = cfg["teacher_temperature"]
    if step >= temp["warmup_iters"]:
        return temp["end"]
    return temp["start"] + (temp["end"] - temp["start"]) * step / temp["warmup_iters"]


def param_groups(model: nn.Module, patch_embed_lr_scale: float) -> list[dict]:
    """"patch_embed" (scaled lr, decayed), "no_decay" (biases, norms, 1-D tokens) and "decay"."""
    groups: dict[str, list] = {"patch_embed": [], "no_decay": [], "decay": []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("backbone.patch_embed."):
            groups["patch_embed"].append(p)
        elif p.ndim <= 1 or name.endswith(".bias") or "norm" in name:
            groups["no_decay"].append(p)
        else:
            groups["decay"].append(p)
    scales = {"patch_embed": (patch_embed_lr_scale, True), "no_decay": (1.0, False), "decay": (1.0, True)}
    return [{"params": params, "name": name, "lr_scale": scales[name][0], "decayed": scales[name][1]}
            for name, params in groups.items() if params]


class PretrainSchedule:
    """Sets every group's lr and weight decay for the current step; ``step()`` after each optimiser step."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: dict):
        self.optimizer, self.cfg, self.step_index = optimizer, cfg, 0
        self._apply()

    def _apply(self) -> None:
        lr = learning_rate(self.step_index, self.cfg)
        decay = cosine(self.step_index, self.cfg["max_iters"], self.cfg["weight_decay"], self.cfg["weight_decay_end"])
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
            group["weight_decay"] = decay if group["decayed"] else 0.0

    def step(self) -> None:
        self.step_index += 1
        self._apply()

    def state_dict(self) -> dict:
        return {"step_index": self.step_index}

    def load_state_dict(self, state: dict) -> None:
        self.step_index = int(state["step_index"])
        self._apply()


class PretrainStep:
    """Student, EMA teacher and the ECDDP losses; ``__call__`` computes one step's gradients."""

    def __init__(self, student: ECDDPNet, cfg: dict, device: torch.device):
        self.student, self.cfg, self.device = student, cfg, device
        self.teacher = copy.deepcopy(student).eval().requires_grad_(False)
        self.targets = {head: TeacherTargets(cfg["centering"]) for head in ("image", "patch", "context")}
        self.autocast = dict(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def state_dict(self) -> dict:
        return {"teacher": self.teacher.state_dict(),
                "targets": {head: targets.state_dict() for head, targets in self.targets.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.teacher.load_state_dict(state["teacher"])
        for head, targets in self.targets.items():
            targets.load_state_dict(state["targets"][head])

    @torch.no_grad()
    def update_teacher(self, step: int) -> None:
        """The teacher after optimiser step ``step`` (done at the start of the next step, as DAFormer's)."""
        momentum = cosine(step, self.cfg["max_iters"], self.cfg["ema"]["start"], 1.0)
        for t, s in zip(self.teacher.parameters(), self.student.parameters()):
            t.mul_(momentum).add_(s.detach(), alpha=1.0 - momentum)
        for t, s in zip(self.teacher.buffers(), self.student.buffers()):
            t.copy_(s)

    def __call__(self, step: int, batch: dict) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        if step > 0:
            self.update_teacher(step - 1)
        full, glob, local, masks = batch["full"], batch["global"], batch["local"], batch["masks"]
        n_global, n_local = glob.shape[1], local.shape[1]
        temp = teacher_temperature(step, cfg)
        student_temp = cfg["student_temperature"]
        # crops of one kind go through the network together, crop-major: row c * B + b is crop c of sample b
        glob_rows = glob.transpose(0, 1).flatten(0, 1)
        masks_rows = masks.transpose(0, 1).flatten(0, 1)  # (G * B, T)

        with torch.no_grad(), torch.autocast(**self.autocast):
            teacher = self.teacher
            full_tokens, full_grid = teacher.tokens(full)
            tokens, _ = teacher.tokens(glob_rows)
            image_targets = self.targets["image"](teacher.image_scores(tokens), temp).chunk(n_global)
            patch_targets = self.targets["patch"](teacher.patch_scores(tokens[masks_rows]), temp)
            generator = distributed.step_generator(cfg["seed"], step)
            clusters = cfg["context"]["clusters"]
            assignment = cosine_kmeans(full_tokens, clusters, cfg["context"]["iterations"], generator)
            members = F.one_hot(assignment, clusters).transpose(1, 2).bool()  # (B, K, N)
            context_scores = teacher.context_scores(full_tokens, members)
            present = members.any(dim=-1)  # (B, K); k-means keeps empty clusters
            context_targets = torch.zeros_like(context_scores, dtype=torch.float32)
            context_targets[present] = self.targets["context"](context_scores[present], temp)

        with torch.autocast(**self.autocast):
            student = self.student
            grid = masks_rows.shape[1]
            side = int(round(math.sqrt(grid)))
            tokens, _ = student.tokens(glob_rows, masks_rows.view(-1, side, side))
            scores = list(student.image_scores(tokens).chunk(n_global))
            if n_local:
                local_tokens, _ = student.tokens(local.transpose(0, 1).flatten(0, 1))
                scores += list(student.image_scores(local_tokens).chunk(n_local))
            loss_image = image_loss(scores, list(image_targets), student_temp)
            loss_patch = patch_loss(student.patch_scores(tokens[masks_rows]), patch_targets, masks_rows,
                                    student_temp)
            loss_context = tokens.new_zeros((), dtype=torch.float32)
            covered = []
            for g, crop_tokens in enumerate(tokens.chunk(n_global)):
                warped = warp_assignments(assignment, clusters, full_grid, batch["global_grid"][:, g])
                crop_members = warped > ASSIGNMENT_THRESHOLD
                valid = crop_members.any(dim=-1) & present
                crop_scores = student.context_scores(crop_tokens, crop_members)
                loss_context = loss_context + context_loss(crop_scores[valid], context_targets[valid],
                                                           student_temp)
                covered.append(valid.float().sum(dim=1).mean())
            terms = n_global * (n_global - 1) + n_global * n_local + n_global
            loss_context = loss_context * cfg["context"]["weight"] / terms
            loss = loss_image + loss_patch + loss_context
        loss.backward()
        if step < cfg["freeze_prototypes_iters"]:
            for head in (student.image_head, student.patch_head, student.context_head):
                head.prototypes.grad = None
        return {"loss": loss.detach(), "loss_image": loss_image.detach(), "loss_patch": loss_patch.detach(),
                "loss_context": loss_context.detach(), "teacher_temperature": loss.new_tensor(temp),
                "contexts_per_crop": torch.stack(covered).mean()}


def pretrain(student: ECDDPNet, batches: PretrainBatches, cfg: dict, state_dir: str | Path, device: torch.device,
             stop_after: int | None = None) -> PretrainStep:
    """Pre-train ``student`` for ``cfg["max_iters"]`` steps, resuming from ``state_dir`` when possible;
    ``stop_after`` ends the run early after that many steps of this call (a simulated kill, for tests)."""
    torch.manual_seed(cfg["seed"])
    to_training_device(student, device)
    step = PretrainStep(student, cfg, device)
    optimizer = torch.optim.AdamW(param_groups(student, cfg["patch_embed_lr_scale"]), lr=cfg["lr"],
                                  betas=tuple(cfg["betas"]))
    scheduler = PretrainSchedule(optimizer, cfg)
    run_steps(step, batches, optimizer, scheduler, cfg, state_dir, stop_after)
    return step
