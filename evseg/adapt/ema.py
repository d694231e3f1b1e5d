"""Mean teacher of DAFormer/DACS (reference/cmda_daformer.md §1.2): an exponential moving average of the student.

The teacher starts as a copy of the student. At step t the average uses a_t = min(1 - 1/(t+1), alpha), so step 0
copies the student outright and early steps average over the short history that exists; alpha = 0.999 as in
DAFormer, CMDA and HPL-ESS (0.99 in the DACS base config).

Documented deviation: DAFormer averages ``parameters()`` only; its BatchNorm running statistics are never
averaged (and never used, because its teacher always runs in train mode). With ``average_buffers=True`` (our
default) floating-point buffers (BN running mean/var) are averaged with the same a_t and integer buffers
(``num_batches_tracked``) are copied, so that the teacher can also be evaluated in eval mode offline.
``average_buffers=False`` gives DAFormer's behaviour.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd


def ema_alpha(step: int, alpha: float) -> float:
    """The averaging weight of the teacher at ``step``: min(1 - 1/(step+1), alpha)."""
    return min(1.0 - 1.0 / (step + 1), alpha)


def _is_dropout(module: nn.Module) -> bool:
    # By class name as well as by type: backbones may bring their own DropPath (DAFormer's MiT copy does),
    # which is not timm's class but must be switched off in the same way.
    return isinstance(module, _DropoutNd) or type(module).__name__ == "DropPath"


@contextlib.contextmanager
def dropout_off(model: nn.Module) -> Iterator[nn.Module]:
    """Dropout and DropPath off, every other module's mode unchanged (how DAFormer and HPL-ESS run the
    networks that produce pseudo-labels)."""
    switched = [m for m in model.modules() if m.training and _is_dropout(m)]
    for m in switched:
        m.training = False
    try:
        yield model
    finally:
        for m in switched:
            m.training = True


class EMATeacher:
    """An EMA copy of ``student`` (the ``teacher`` attribute), updated in place by ``update``."""

    def __init__(self, student: nn.Module, alpha: float = 0.999, average_buffers: bool = True):
        self.alpha = alpha
        self.average_buffers = average_buffers
        self.teacher = copy.deepcopy(student)
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, student: nn.Module, step: int) -> None:
        """theta_t <- a*theta_t + (1-a)*theta_s with a = ema_alpha(step, alpha); buffers per ``average_buffers``."""
        a = ema_alpha(step, self.alpha)
        teacher_params = list(self.teacher.parameters())
        student_params = [p.detach() for p in student.parameters()]
        if len(teacher_params) != len(student_params):
            raise ValueError(f"teacher has {len(teacher_params)} parameters, student {len(student_params)}")
        pairs = list(zip(teacher_params, student_params))
        if self.average_buffers:
            teacher_buffers, student_buffers = list(self.teacher.buffers()), list(student.buffers())
            if len(teacher_buffers) != len(student_buffers):
                raise ValueError(f"teacher has {len(teacher_buffers)} buffers, student {len(student_buffers)}")
            for t, s in zip(teacher_buffers, student_buffers):
                if t.is_floating_point():
                    pairs.append((t, s))
                else:
                    t.copy_(s)
        if not pairs:
            return
        teacher_t, student_t = [t for t, _ in pairs], [s for _, s in pairs]
        # Written as a*t + (1-a)*s (not lerp) so that the result is exactly the formula; at a = 0 (step 0)
        # this is an exact copy of the student.
        torch._foreach_mul_(teacher_t, a)
        torch._foreach_add_(teacher_t, student_t, alpha=1.0 - a)

    @contextlib.contextmanager
    def pseudo_label_mode(self, keep_buffers: bool | None = None) -> Iterator[nn.Module]:
        """Train mode (BN normalises with batch statistics, as DAFormer's teacher) with Dropout/DropPath off.

        Every module's ``training`` flag is restored on exit. Run the forward under ``torch.no_grad()``.
        ``keep_buffers``: restore the BN running statistics after the block, so that the teacher's buffers stay the
        pure average of the student's; None = do so exactly when buffers are averaged (with
        ``average_buffers=False`` the pseudo-labelling passes update them, as in DAFormer).
        """
        if keep_buffers is None:
            keep_buffers = self.average_buffers
        modes = [(m, m.training) for m in self.teacher.modules()]
        saved = []
        if keep_buffers:
            saved = [(b, b.clone()) for m in self.teacher.modules() if isinstance(m, _BatchNorm)
                     for b in m.buffers(recurse=False)]
        self.teacher.train()
        for m in self.teacher.modules():
            if _is_dropout(m):
                m.training = False
        try:
            yield self.teacher
        finally:
            for m, mode in modes:
                m.training = mode
            with torch.no_grad():
                for b, value in saved:
                    b.copy_(value)

    def state_dict(self) -> dict:
        """The teacher module's state dict (loadable into a plain model of the student's class)."""
        return self.teacher.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.teacher.load_state_dict(state)
