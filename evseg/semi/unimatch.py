"""One UniMatch training step (reference/seco_unimatch.md §4): the labelled loss, two strong views and a
feature-perturbation stream, all supervised by the weak view's hard pseudo-labels.

In the order of the released step:

1. the CutMix partners' pseudo-labels: the model in eval mode, no gradient;
2. labelled and weak unlabelled inputs share one encoder pass; the decoder runs on their features and on a
   copy with channel dropout (``feature_dropout``, 0.5), which gives the feature-perturbed prediction p^fp of
   the weak view. UniMatch drops its decoder's two inputs; the DAFormer head has four, and all four are dropped;
3. the two strong views in one pass;
4. pseudo-labels: the argmax of the (detached) weak prediction, with its max softmax as confidence; inside each
   CutMix box, label, confidence and padding come from the partner;
5. loss = (L_s + 0.25 L_s1 + 0.25 L_s2 + 0.5 L_fp) / 2, plus ``source_weight`` times the cross-entropy of a
   batch of labelled source crops when that weight is above 0 (not UniMatch: SeCo's UDA setting keeps the source
   labels; README, fidelity); one backward.

The unlabelled losses keep pixels whose confidence reaches the threshold and that are not padding; they are
summed and divided by the number of non-padding pixels (not by the confident ones), as released.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evseg.adapt.losses import no_autocast, pixel_cross_entropy, pseudo_labels, resize_logits
from evseg.distributed import gather_rows, per_process_denominator

STRONG_WEIGHT = 0.25   # each of the two strong views (lambda / 2 with lambda = 0.5)
FP_WEIGHT = 0.5        # the feature-perturbed view (mu = 0.5)


def unimatch_loss(supervised: Tensor, strong1: Tensor, strong2: Tensor, perturbed: Tensor) -> Tensor:
    """UniMatch's total: (L_s + 0.25 L_s1 + 0.25 L_s2 + 0.5 L_fp) / 2."""
    return (supervised + STRONG_WEIGHT * strong1 + STRONG_WEIGHT * strong2 + FP_WEIGHT * perturbed) / 2


def unlabelled_loss(logits: Tensor, labels: Tensor, confidence: Tensor, padding: Tensor, threshold: float) -> Tensor:
    """Cross-entropy on pixels with ``confidence >= threshold`` outside ``padding``, summed and divided by the
    number of non-padding pixels (0 when every pixel is padding)."""
    with no_autocast(logits.device):
        loss = F.cross_entropy(resize_logits(logits.float(), labels.shape[-2:]), labels.long(), reduction="none")
        kept = (confidence >= threshold) & ~padding
        return (loss * kept).sum() / per_process_denominator((~padding).sum())


def ohem_cross_entropy(logits: Tensor, labels: Tensor, threshold: float = 0.7, min_kept: int = 200_000,
                       ignore_index: int = 255) -> Tensor:
    """UniMatch's labelled loss on Cityscapes: the mean cross-entropy over the hard pixels, those whose
    probability of the labelled class is at most max(``threshold``, the ``min_kept``-th smallest such
    probability). With fewer than ``min_kept`` labelled pixels every labelled pixel is kept."""
    with no_autocast(logits.device):
        logits = resize_logits(logits.float(), labels.shape[-2:])
        labels = labels.long()
        valid = labels != ignore_index
        all_valid = gather_rows(valid)  # under data parallelism the cut is the whole batch's
        if 0 < min_kept <= int(all_valid.sum()):
            with torch.no_grad():
                probability = F.softmax(logits, dim=1).gather(1, labels.clamp(max=logits.shape[1] - 1)[:, None])[:, 0]
                kth = gather_rows(probability)[all_valid].kthvalue(min_kept).values
                cut = torch.maximum(kth, torch.tensor(threshold, device=kth.device))
                valid = valid & (probability <= cut)
            labels = labels.masked_fill(~valid, ignore_index)
        return pixel_cross_entropy(logits, labels, ignore_index=ignore_index, average="valid")


def perturbed_forward(model: nn.Module, x: Tensor, dropout: float) -> tuple[Tensor, Tensor]:
    """(logits, logits with channel dropout on every decoder input) from one encoder pass over ``x``; the
    decoder sees clean and dropped features as one batch, so its batch norm sees both."""
    features = model.extract_features(x)
    both = model.decode_head([torch.cat([f, F.dropout2d(f, dropout, training=True)]) for f in features])
    return both.chunk(2)


def cutmix_targets(box: Tensor, own: tuple[Tensor, ...], partner: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """Per tensor pair, the partner's values inside ``box`` (B, H, W) and the own values outside."""
    return tuple(torch.where(box, b, a) for a, b in zip(own, partner))


@contextlib.contextmanager
def evaluation_mode(model: nn.Module):
    """Eval mode (no dropout, batch norm with running statistics) inside, the previous mode after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


class UniMatchStep:
    """The model and losses of one train_semi run; ``__call__`` computes one step's gradients and returns its
    logs. UniMatch has no state beyond the model and the optimizer."""

    def __init__(self, student: nn.Module, cfg: dict, device: torch.device):
        self.student, self.device = student, device
        self.threshold, self.dropout = cfg["confidence_threshold"], cfg["feature_dropout"]
        self.ohem = cfg["ohem"]
        self.source_weight = cfg["source_weight"]
        self.autocast = dict(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def supervised_loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        if self.ohem["enabled"]:
            return ohem_cross_entropy(logits, labels, self.ohem["threshold"], self.ohem["min_kept"])
        return pixel_cross_entropy(logits, labels, average="valid")

    def __call__(self, step: int, batch: dict) -> dict[str, Tensor]:
        model, labels = self.student, batch["label"]
        size = labels.shape[-2:]
        with torch.no_grad(), evaluation_mode(model), torch.autocast(**self.autocast):
            mix_logits = model(batch["mix_weak"])
        mix_confidence, mix_label = pseudo_labels(mix_logits, size)

        count = labels.shape[0]
        with torch.autocast(**self.autocast):
            logits, logits_fp = perturbed_forward(model, torch.cat([batch["labeled"], batch["weak"]]), self.dropout)
            strong1, strong2 = model(torch.cat([batch["strong1"], batch["strong2"]])).chunk(2)
        confidence, label = pseudo_labels(logits[count:].detach(), size)
        weak = (label, confidence, batch["weak_padding"])
        partner = (mix_label, mix_confidence, batch["mix_padding"])

        loss_x = self.supervised_loss(logits[:count], labels)
        loss_s1 = unlabelled_loss(strong1, *cutmix_targets(batch["box1"], weak, partner), self.threshold)
        loss_s2 = unlabelled_loss(strong2, *cutmix_targets(batch["box2"], weak, partner), self.threshold)
        loss_fp = unlabelled_loss(logits_fp[count:], *weak, self.threshold)
        loss = unimatch_loss(loss_x, loss_s1, loss_s2, loss_fp)
        logs = {}
        if "source" in batch:  # semi.source_weight > 0: the labelled source crops too, as train_uda's step 2
            with torch.autocast(**self.autocast):
                source_logits = model(batch["source"])
            logs["loss_source"] = pixel_cross_entropy(source_logits, batch["source_label"])
            loss = loss + self.source_weight * logs["loss_source"]
        loss.backward()
        unpadded = ~batch["weak_padding"]
        # logged rows average over processes: this denominator makes that the whole batch's share
        confident = ((confidence >= self.threshold) & unpadded).sum() / per_process_denominator(unpadded.sum())
        return {"loss": loss.detach(), "loss_labeled": loss_x.detach(), "loss_strong1": loss_s1.detach(),
                "loss_strong2": loss_s2.detach(), "loss_feature_perturbation": loss_fp.detach(),
                "confident_share": confident.detach(), **{k: v.detach() for k, v in logs.items()}}
