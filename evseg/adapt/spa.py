"""Soft prototypical alignment as HPL-ESS's released code computes it (reference/dsec_ess_hplss.md §3.6).

A running class prior p (mean softmax over batch and pixels, an exponential moving average) is subtracted from
the logits of two predictions — the released code subtracts the prior probability vector itself, not its log —
and the Jensen-Shannon divergence of the two resulting softmaxes is the loss. The paper's exact loss is
UNCONFIRMED; this follows the code.

Deviation: in the released code neither side carries a gradient (teacher logits detached, student pass under
no_grad), so the term trains nothing. Here the student side keeps its graph and the target side is detached.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from evseg.adapt.losses import no_autocast
from evseg.distributed import mean_over_processes


class ClassPriorEMA:
    """EMA of the class distribution: value <- m*value + (1-m)*mean(probabilities); starts uniform (1/C).

    HPL-ESS uses an objax ExponentialMovingAverage; its default momentum (probably 0.999) is UNCONFIRMED.
    """

    def __init__(self, num_classes: int, momentum: float = 0.999):
        self.num_classes, self.momentum = num_classes, momentum
        self.value = torch.full((num_classes,), 1.0 / num_classes)

    @torch.no_grad()
    def update(self, probabilities: Tensor) -> Tensor:
        """Fold in the mean over batch and pixels of (B,C,H,W) class probabilities; returns the new value."""
        if probabilities.ndim != 4 or probabilities.shape[1] != self.num_classes:
            raise ValueError(f"probabilities must be (B,{self.num_classes},H,W), got {tuple(probabilities.shape)}")
        mean = mean_over_processes(probabilities.detach().float().mean(dim=(0, 2, 3)))  # the whole batch's
        self.value = self.momentum * self.value.to(mean.device) + (1 - self.momentum) * mean
        return self.value

    def state_dict(self) -> dict:
        return {"value": self.value.clone(), "momentum": self.momentum}

    def load_state_dict(self, state: dict) -> None:
        value = state["value"]
        if value.shape != (self.num_classes,):
            raise ValueError(f"prior of shape {tuple(value.shape)}, expected ({self.num_classes},)")
        self.value = value.detach().float().to(self.value.device).clone()
        self.momentum = state.get("momentum", self.momentum)



def prior_aligned_js(student_logits: Tensor, target_logits: Tensor, prior: Tensor) -> Tensor:
    """JS(softmax(student - prior) || softmax(target - prior)), natural log, summed over classes and averaged over
    pixels (so in [0, ln 2]). Logits (B,C,H,W), prior (C,). Gradient flows into ``student_logits`` only."""
    if student_logits.shape != target_logits.shape:
        raise ValueError(f"logit shapes differ: {tuple(student_logits.shape)} vs {tuple(target_logits.shape)}")
    with no_autocast(student_logits.device):
        p0 = prior.detach().float().to(student_logits.device).view(1, -1, 1, 1)
        log_p = torch.log_softmax(student_logits.float() - p0, dim=1)
        log_q = torch.log_softmax(target_logits.detach().float() - p0, dim=1)
        # log of the midpoint m = (p+q)/2 from the logs: finite even where p or q underflows to 0
        log_m = torch.logaddexp(log_p, log_q) - math.log(2.0)
        js = 0.5 * (log_p.exp() * (log_p - log_m) + log_q.exp() * (log_q - log_m))
        return js.sum(dim=1).mean()
