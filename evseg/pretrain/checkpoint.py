"""The pre-training checkpoint, in the layout of the released ECDDP file: ``{"model": {...}}`` with the student's
and the teacher's parameters under ``student.*`` and ``teacher.*`` (the backbones under ``student.backbone.*`` and
``teacher.backbone.*``, in timm's names), and what evseg needs to rebuild the network under ``"ecddp"``.

``model.pretrained`` of the segmentation rules reads such a file through evseg.models'
``select_backbone_weights`` (a key filter like timm's ``checkpoint_filter_fn``): the teacher's backbone, as
ECDDP's fine-tuning does with ``load_teacher``.
"""

from __future__ import annotations

from pathlib import Path

from evseg.adapt.trainer import save_atomic
from evseg.pretrain.model import ECDDPNet

__all__ = ["save_pretrained"]


def save_pretrained(path: str | Path, student: ECDDPNet, teacher: ECDDPNet, network: dict, spec: dict,
                    iterations: int) -> None:
    """Write the checkpoint (tensors on the CPU; plain Python in ``"ecddp"`` so that
    ``torch.load(weights_only=True)`` reads it)."""
    model = {f"student.{k}": v.detach().cpu() for k, v in student.state_dict().items()}
    model.update({f"teacher.{k}": v.detach().cpu() for k, v in teacher.state_dict().items()})
    save_atomic({"model": model, "ecddp": {"network": network, "input": spec, "iterations": int(iterations)}},
                Path(path))
