"""The three ECDDP losses and the Sinkhorn-Knopp targets they share (../shared/reference/e2vid_ecddp.md §C.1).

ECDDP trains in the DINOv2/iBOT way: the teacher's prototype scores become targets through Sinkhorn-Knopp
centering, and the student's scores at a lower temperature are pulled towards them by cross-entropy.

- ``image_loss`` (DINO): every student crop (global and local) predicts the teacher's image embedding of each
  *other* global crop; the mean over those crop pairs.
- ``patch_loss`` (iBOT): on the masked tokens of the student's global crops, the teacher's token of the
  unmasked crop; per image the mean over its masked tokens, then the mean over all global-crop images (images
  without a mask add 0, as in DINOv2).
- ``context_loss`` (the ECDDP part): for every (image, context) that the global crop covers, the student's
  pooled context predicts the teacher's pooled context of the whole crop; the mean over those pairs.

Under data parallelism (evseg.distributed) Sinkhorn-Knopp normalises over the whole batch, as DINOv2's does, and
the context loss divides by the whole batch's number of pairs (the processes' shards hold different numbers).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from evseg import distributed

__all__ = ["TeacherTargets", "context_loss", "cross_entropy", "image_loss", "patch_loss", "sinkhorn_knopp"]

SINKHORN_ITERATIONS = 3  # DINOv2's


def _all_reduce_sum(value: Tensor) -> Tensor:
    if distributed.world().size > 1:
        dist.all_reduce(value)
    return value


@torch.no_grad()
def sinkhorn_knopp(scores: Tensor, temperature: float, iterations: int = SINKHORN_ITERATIONS) -> Tensor:
    """Targets (N, K) from teacher scores (N, K): exp(scores / temperature), normalised alternately so that the
    prototypes are used equally over the batch (rows over all processes) and every row sums to 1.

    DINOv2's ``sinkhorn_knopp_teacher``. The scores are cosine similarities (|s| <= 1), so the exponential of
    s / 0.04 stays finite in float32; an all-empty batch (N = 0) gives an empty result.
    """
    q = torch.exp(scores.float() / temperature).t()  # (K, N)
    count = _all_reduce_sum(torch.tensor(float(q.shape[1]), device=q.device))
    if count == 0:
        return scores.new_zeros(scores.shape, dtype=torch.float32)
    num_prototypes = q.shape[0]
    q /= _all_reduce_sum(q.sum())
    for _ in range(iterations):
        q /= _all_reduce_sum(q.sum(dim=1, keepdim=True))
        q /= num_prototypes
        q /= q.sum(dim=0, keepdim=True)
        q /= count
    return (q * count).t()


class TeacherTargets:
    """How teacher scores (N, K) become targets: ``sinkhorn_knopp`` (ECDDP, DINOv2) or ``softmax_center`` (DINO:
    softmax((scores - center) / temperature), the center an EMA of the batch mean with ``momentum``).

    Sinkhorn-Knopp spreads every batch evenly over the prototypes; with a small batch (the offline demo's 16
    windows against hundreds of prototypes) that leaves targets the student cannot predict from another view,
    and the image and context losses collapse to the uniform distribution (README, fidelity). DINO's centering
    has no such floor. The center is state: it is saved with the checkpoint.
    """

    def __init__(self, mode: str, momentum: float = 0.9):
        if mode not in ("sinkhorn_knopp", "softmax_center"):
            raise ValueError(f"pretrain.centering must be sinkhorn_knopp or softmax_center, not {mode!r}")
        self.mode, self.momentum, self.center = mode, momentum, None

    @torch.no_grad()
    def __call__(self, scores: Tensor, temperature: float) -> Tensor:
        if self.mode == "sinkhorn_knopp":
            return sinkhorn_knopp(scores, temperature)
        scores = scores.float()
        if self.center is None:
            self.center = torch.zeros(scores.shape[-1], device=scores.device)
        targets = torch.softmax((scores - self.center) / temperature, dim=-1)
        count = _all_reduce_sum(torch.tensor(float(scores.shape[0]), device=scores.device))
        if count > 0:  # the center moves after the targets are made (DINO's update_center)
            mean = _all_reduce_sum(scores.sum(dim=0)) / count
            self.center = self.center * self.momentum + mean * (1 - self.momentum)
        return targets

    def state_dict(self) -> dict:
        return {"center": self.center}

    def load_state_dict(self, state: dict) -> None:
        self.center = state["center"]


def cross_entropy(target: Tensor, student_scores: Tensor, temperature: float) -> Tensor:
    """Per row, -sum_k target_k log softmax(student / temperature)_k."""
    return -(target * F.log_softmax(student_scores.float() / temperature, dim=-1)).sum(dim=-1)


def image_loss(student: list[Tensor], teacher_targets: list[Tensor], temperature: float) -> Tensor:
    """DINO's cross-view loss. ``student``: scores (B, K) of every crop, the global crops first, in the order
    of ``teacher_targets`` (one per global crop); crop i never predicts its own view's target."""
    total, pairs = student[0].new_zeros((), dtype=torch.float32), 0
    for i, scores in enumerate(student):
        for j, target in enumerate(teacher_targets):
            if i == j:
                continue
            total = total + cross_entropy(target, scores, temperature).mean()
            pairs += 1
    return total / pairs


def patch_loss(student_scores: Tensor, teacher_targets: Tensor, masks: Tensor, temperature: float) -> Tensor:
    """iBOT's masked-token loss. ``student_scores`` and ``teacher_targets``: (M, K) of the masked tokens, in
    the order of ``masks.nonzero()``; ``masks``: (N, T) bool, one row per global-crop image."""
    weight = (1.0 / masks.sum(dim=1).clamp(min=1).float())[:, None].expand_as(masks)[masks]
    loss = (cross_entropy(teacher_targets, student_scores, temperature) * weight).sum()
    return loss / masks.shape[0]


def context_loss(student_scores: Tensor, teacher_targets: Tensor, temperature: float) -> Tensor:
    """ECDDP's context loss over the valid (image, context) pairs of one global crop: (M, K) each; the mean
    cross-entropy over the pairs of the whole batch (0 when the crop covers no context)."""
    count = torch.tensor(float(student_scores.shape[0]), device=student_scores.device)
    return cross_entropy(teacher_targets, student_scores, temperature).sum() / distributed.per_process_denominator(count)
