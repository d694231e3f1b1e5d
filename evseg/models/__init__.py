"""Segmentation networks: MiT / timm backbones with the DAFormer decode head."""

from __future__ import annotations

from evseg.models.daformer_head import DAFormerHead
from evseg.models.mit import read_mit_checkpoint
from evseg.models.segmentor import Segmentor, build_backbone, build_segmentor

__all__ = ["DAFormerHead", "Segmentor", "build_backbone", "build_segmentor", "read_mit_checkpoint"]
