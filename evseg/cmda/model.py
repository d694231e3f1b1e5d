"""CMDA's network (reference/cmda_daformer.md §2.4): two MiT backbones, per-stage attention-average fusion and
one DAFormer head shared by four outputs.

- ``image``: the RGB frame through the image backbone;
- ``events``: the event image (or, on the source, the Motion-Extractor's event-like map) through the event
  backbone;
- ``isr``: the Image Content-Extractor map, through the *same* event backbone;
- ``fusion``: per stage, one single-head MiT block on the image tokens and another on the event tokens
  (self-attention within each modality, no cross-attention), the two results averaged.

The head's classifier dropout acts on the image output only, as released. With ``event_backbone=None`` the
network is the image-only DAFormer of the same size (the "image-only" baseline): it has the image output only.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from timm.models.pvt_v2 import Block
from torch import Tensor, nn

from evseg.adapt.inference import read_model_state
from evseg.models import DAFormerHead, build_backbone
from evseg.models.mit import MIT_TO_TIMM

OUTPUTS = ("image", "events", "fusion", "isr")
MIT_SR_RATIOS = (8, 4, 2, 1)


class AttentionAvgFusion(nn.Module):
    """Per stage i: Block_i^image(image tokens) and Block_i^events(event tokens), averaged. Each block is a MiT
    block with one head, MLP ratio 4, the stage's spatial-reduction ratio, qkv bias and drop path 0.05 (released),
    randomly initialised (the released blocks are not pretrained)."""

    def __init__(self, dims: tuple[int, ...], sr_ratios: tuple[int, ...] = MIT_SR_RATIOS, drop_path: float = 0.05):
        super().__init__()
        if len(dims) != len(sr_ratios):
            raise ValueError(f"one sr ratio per stage: {len(dims)} stages, {len(sr_ratios)} ratios")

        def blocks():
            return nn.ModuleList(Block(dim, num_heads=1, mlp_ratio=4.0, sr_ratio=sr, qkv_bias=True,
                                       drop_path=drop_path) for dim, sr in zip(dims, sr_ratios))

        self.image_blocks, self.event_blocks = blocks(), blocks()

    @staticmethod
    def _attend(block: nn.Module, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        tokens = block(x.flatten(2).transpose(1, 2), (h, w))
        return tokens.transpose(1, 2).reshape(b, c, h, w)

    def forward(self, image: list[Tensor], events: list[Tensor]) -> list[Tensor]:
        if len(image) != len(self.image_blocks) or len(events) != len(self.event_blocks):
            raise ValueError(f"AttentionAvgFusion has {len(self.image_blocks)} stages, got {len(image)} image "
                             f"and {len(events)} event maps")
        return [(self._attend(bi, fi) + self._attend(be, fe)) / 2
                for bi, be, fi, fe in zip(self.image_blocks, self.event_blocks, image, events)]


class FusionSegmentor(nn.Module):
    """Image and event backbones, their fusion and the shared DAFormer head (see the module docstring)."""

    def __init__(self, image_backbone: nn.Module, event_backbone: nn.Module | None, fusion: AttentionAvgFusion | None,
                 decode_head: DAFormerHead):
        super().__init__()
        if (event_backbone is None) != (fusion is None):
            raise ValueError("an event backbone and a fusion module go together")
        self.image_backbone, self.event_backbone = image_backbone, event_backbone
        self.fusion, self.decode_head = fusion, decode_head

    @property
    def has_events(self) -> bool:
        return self.event_backbone is not None

    @property
    def inference_output(self) -> str:
        """The output that evaluation and pseudo-labels use: fusion, or image for the image-only network."""
        return "fusion" if self.has_events else "image"

    def features(self, image: Tensor | None = None, events: Tensor | None = None,
                 isr: Tensor | None = None) -> dict[str, list[Tensor]]:
        """Stage maps of each output that the given inputs allow (fusion needs image and events)."""
        if (events is not None or isr is not None) and not self.has_events:
            raise ValueError("this network is image-only: it takes no events or ISR input")
        features = {}
        if image is not None:
            features["image"] = list(self.image_backbone(image))
        if events is not None:
            features["events"] = list(self.event_backbone(events))
        if isr is not None:
            features["isr"] = list(self.event_backbone(isr))
        if "image" in features and "events" in features:
            features["fusion"] = self.fusion(features["image"], features["events"])
        return features

    def forward(self, image: Tensor | None = None, events: Tensor | None = None, isr: Tensor | None = None,
                return_features: bool = False):
        """{output: logits at 1/4 of the input}; with ``return_features`` also {output: stage maps}."""
        features = self.features(image, events, isr)
        logits = {name: self.decode_head(maps, dropout=name == "image") for name, maps in features.items()}
        return (logits, features) if return_features else logits

    def predict(self, image: Tensor, events: Tensor | None = None, output: str | None = None) -> Tensor:
        """Logits of ``output`` (default: :attr:`inference_output`) resized (bilinear) to the input size."""
        output = output or self.inference_output
        logits = self(image, events if self.has_events else None)
        if output not in logits:
            raise ValueError(f"output {output!r} needs inputs that were not given (outputs: {sorted(logits)})")
        return F.interpolate(logits[output], size=image.shape[-2:], mode="bilinear", align_corners=False)


def build_fusion_segmentor(backbone: str, num_classes: int, events: bool = True, pretrained: str | Path | None = None,
                           drop_path_rate: float = 0.1, embed_dim: int = 256,
                           fusion_drop_path: float = 0.05) -> FusionSegmentor:
    """CMDA's network on two MiT backbones of the same variant (both from ``pretrained``, the official ImageNet
    file, when given); ``events=False`` gives the image-only network."""
    if backbone not in MIT_TO_TIMM:
        raise ValueError(f"CMDA fuses MiT stages (mit_b0 ... mit_b5), not {backbone!r}")
    image_backbone = build_backbone(backbone, 3, pretrained, drop_path_rate)
    dims = tuple(image_backbone.feature_info.channels())
    event_backbone = fusion = None
    if events:
        event_backbone = build_backbone(backbone, 3, pretrained, drop_path_rate)
        fusion = AttentionAvgFusion(dims, MIT_SR_RATIOS, fusion_drop_path)
    return FusionSegmentor(image_backbone, event_backbone, fusion, DAFormerHead(dims, num_classes, embed_dim))


FORMAT = "evseg-cmda-1"


def save_model_file(path: str | Path, student: FusionSegmentor, teacher: FusionSegmentor | None, model_cfg: dict,
                    inputs: dict, num_classes: int, step: int) -> None:
    """``model.pt`` of a CMDA run: student and teacher weights and what rebuilds the network and its inputs."""
    torch.save({"format": FORMAT, "student": student.state_dict(),
                "teacher": teacher.state_dict() if teacher is not None else None,
                "model": {**model_cfg, "events": student.has_events}, "inputs": inputs,
                "num_classes": num_classes, "step": step}, path)


def load_model_file(path: str | Path, which: str = "student", device: torch.device | str = "cpu"):
    """(network in eval mode, the file's metadata). ``which``: student or teacher."""
    state = read_model_state(path, FORMAT, which, "train_cmda rule",
                             "results/<run>/cmda/train/<model>/seed<seed>/model.pt")
    cfg = state["model"]
    model = build_fusion_segmentor(cfg["backbone"], state["num_classes"], events=cfg["events"],
                                   drop_path_rate=cfg["drop_path_rate"], embed_dim=cfg["embed_dim"])
    model.load_state_dict(state[which])
    return model.to(device).eval(), state
