"""The CMDA training step (reference/cmda_daformer.md §2.5-2.6), driven by evseg.adapt.trainer.run_steps (resume,
logging, checkpoints) with DAFormer's EMA teacher, pseudo-label weight, ClassMix and strong augmentation.

One step:

1. EMA update of the teacher (from step 1 on);
2. source pass on (RGB, stylised Motion-Extractor map, source ISR): L = 0.5 CE(fusion) + 0.5 CE(image)
   + 0.25 CE(events) + 0.25 CE(ISR) against the source label, plus the configured L2 terms of the source pass;
3. from ``uda.start_iter`` on: the teacher's *fusion* prediction on the night image paired with the night events,
   or with probability ``cmda.teacher_isr_p`` with the night ISR (which then takes the event backbone's place);
   DACS's scalar confidence weight;
4. ClassMix with the source label's classes on RGB (then colour jitter and blur), on the event inputs (mask only),
   on labels and weights; the mixed ISR is recomputed from the augmented mixed RGB; the same weighted losses on
   the student's mixed pass, plus the L2 terms between mixed and source features.

The image-only network (no event backbone) runs the same step with the image output alone and weight 1: that is
DAFormer on night images. Without adaptation only step 2 runs (source-only).
"""

from __future__ import annotations

import torch

from evseg import distributed
from evseg.adapt.augment import denormalize, normalize, strong_transform
from evseg.adapt.classmix import class_masks, mix
from evseg.adapt.ema import EMATeacher
from evseg.adapt.losses import confidence_weight, ignore_border, pixel_cross_entropy, pseudo_labels
from evseg.cmda import alignment
from evseg.cmda.inputs import content_extractor_batch, gray_of
from evseg.cmda.model import FusionSegmentor
from evseg.cmda.style import stylize


def repeat3(x: torch.Tensor) -> torch.Tensor:
    """A (B, 1, H, W) event-like map as the 3-channel input of an ImageNet backbone."""
    return x.expand(-1, 3, -1, -1)


class CMDAStep:
    """The models and losses of one CMDA (or image-only, or source-only) run; ``__call__`` is one step."""

    def __init__(self, student: FusionSegmentor, cfg: dict, device: torch.device, style: torch.nn.Module | None = None):
        self.student, self.cfg, self.device = student, cfg, device
        self.uda, self.cmda = cfg["uda"], cfg["cmda"]
        self.adapt = cfg["adapt"]
        self.teacher = EMATeacher(student, alpha=self.uda["ema_alpha"]) if self.adapt else None
        self.weights = dict(self.cmda["loss_weights"]) if student.has_events else {"image": 1.0}
        self.style = style.to(device) if style is not None and student.has_events else None
        self.l2_variant = self.cmda["l2"]["variant"] if student.has_events else "none"
        self.l2_lambdas = self.cmda["l2"]["lambdas"]
        self.mean, self.std = list(self.cmda["image_mean"]), list(self.cmda["image_std"])
        self.mixed_content = self.cmda["content"]["target"]  # released: the mixed ISR uses the target's parameters
        self.autocast = dict(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def state_dict(self) -> dict:
        return {"teacher": self.teacher.state_dict() if self.teacher else None}

    def load_state_dict(self, state: dict) -> None:
        if self.teacher:
            self.teacher.load_state_dict(state["teacher"])

    def forward(self, image, events=None, isr=None):
        with torch.autocast(**self.autocast):
            return self.student(image, events, isr, return_features=True)

    def weighted_loss(self, logits: dict, label, weight=None) -> tuple[torch.Tensor, dict]:
        """sum over outputs of w_k CE_k, and each CE for the logs."""
        losses = {name: pixel_cross_entropy(logits[name], label, weight) for name in self.weights}
        return sum(self.weights[name] * loss for name, loss in losses.items()), losses

    def __call__(self, step: int, batch: dict) -> dict[str, torch.Tensor]:
        logs: dict[str, torch.Tensor] = {}
        if self.teacher is not None and step > 0:
            self.teacher.update(self.student, step)
        events = self.student.has_events
        source_label = batch["source_label"]
        source_events = stylize(self.style, batch["source_events"]) if events else None
        source_isr = repeat3(batch["source_isr"]) if events else None
        logits, features = self.forward(batch["source"], source_events, source_isr)
        loss, parts = self.weighted_loss(logits, source_label)
        last = {name: maps[-1] for name, maps in features.items()}
        l2 = alignment.source_terms(self.l2_variant, self.l2_lambdas, last)
        (loss + alignment.total(l2)).backward()
        logs["loss_source"] = loss.detach()
        logs.update({f"loss_source_{name}": value.detach() for name, value in parts.items()})
        logs.update({f"l2_{name}": value.detach() for name, value in l2.items()})
        source_last = {name: last[name].detach() for name in alignment.needs(self.l2_variant)}
        del logits, features, last

        if not self.adapt or step < self.uda["start_iter"]:
            return logs
        generator = distributed.step_generator(self.cfg["seed"], step)
        target, size = batch["target"], source_label.shape[-2:]
        with torch.no_grad(), self.teacher.pseudo_label_mode(), torch.autocast(**self.autocast):
            pair = None
            if events:
                use_isr = torch.rand((), generator=generator).item() < self.cmda["teacher_isr_p"]
                pair = repeat3(batch["target_isr"] if use_isr else batch["target_events"])
            teacher_logits = self.teacher.teacher(target, pair)[self.student.inference_output]
        probability, label = pseudo_labels(teacher_logits, size=size)
        weight = torch.ones_like(probability)
        if self.uda["pseudo_weighting"]:
            weight = confidence_weight(probability, self.uda["pseudo_threshold"])
        weight = ignore_border(weight, self.uda["pseudo_ignore_top"], self.uda["pseudo_ignore_bottom"])
        logs["pseudo_weight"] = weight.max()

        masks = class_masks(source_label, generator)
        aug = self.uda["strong_aug"]
        rgb = mix(masks, denormalize(batch["source"], self.mean, self.std), denormalize(target, self.mean, self.std))
        rgb = strong_transform(rgb, generator, color_jitter_p=aug["color_jitter_p"],
                               color_jitter_s=aug["color_jitter_s"], blur=aug["blur"])
        mixed_events = mixed_isr = None
        if events:
            mixed_events = mix(masks, source_events, repeat3(batch["target_events"]))
            directions = torch.rand(2, rgb.shape[0], generator=generator) < 0.5
            isr = content_extractor_batch(gray_of(rgb.float()), rightward=directions[0], downward=directions[1],
                                          **self.mixed_content)
            mixed_isr = repeat3(isr[:, None].to(rgb.dtype))
        mixed_label = mix(masks[:, 0], source_label, label)
        mixed_weight = mix(masks[:, 0], torch.ones_like(weight), weight)
        logits, features = self.forward(normalize(rgb, self.mean, self.std), mixed_events, mixed_isr)
        loss, parts = self.weighted_loss(logits, mixed_label, mixed_weight)
        l2 = alignment.mixed_terms(self.l2_variant, self.l2_lambdas,
                                   {name: maps[-1] for name, maps in features.items()}, source_last)
        (loss + alignment.total(l2)).backward()
        logs["loss_mix"] = loss.detach()
        logs.update({f"loss_mix_{name}": value.detach() for name, value in parts.items()})
        logs.update({f"l2_{name}": value.detach() for name, value in l2.items()})
        return logs
