"""The DAFormer decode head (../shared/reference/cmda_daformer.md §1.11): per-stage linear embedding, upsampling
to stride 4, and a depthwise-separable ASPP ("context-aware feature fusion") before the classifier.

Module names deliberately avoid the substring ``norm`` (BatchNorms are called ``bn``): the optimiser gives
parameters whose name contains ``norm`` zero weight decay, and in DAFormer the decode-head BNs keep theirs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DAFormerHead"]


class ConvBNReLU(nn.Module):
    """Conv (no bias, a BN follows) -> BatchNorm -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1,
                 groups: int = 1):
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation,
                              groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class SeparableConvBNReLU(nn.Module):
    """Depthwise 3x3 dilated conv + BN + ReLU, then pointwise 1x1 conv + BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int):
        super().__init__()
        self.depthwise = ConvBNReLU(in_channels, in_channels, 3, dilation=dilation, groups=in_channels)
        self.pointwise = ConvBNReLU(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


class SepASPP(nn.Module):
    """Parallel branches (1x1 for dilation 1, depthwise-separable otherwise), concatenated, then a 3x3
    bottleneck; no image-pooling branch (DAFormer's ``pool=False``)."""

    def __init__(self, in_channels: int, out_channels: int, dilations: Sequence[int]):
        super().__init__()
        self.branches = nn.ModuleList(
            ConvBNReLU(in_channels, out_channels, 1) if d == 1 else SeparableConvBNReLU(in_channels, out_channels, d)
            for d in dilations)
        self.bottleneck = ConvBNReLU(len(dilations) * out_channels, out_channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.bottleneck(torch.cat([branch(x) for branch in self.branches], dim=1))


class DAFormerHead(nn.Module):
    """Multi-level features (strides 4, 8, 16, 32, ...) -> class logits at the resolution of the first."""

    def __init__(self, in_channels: Sequence[int], num_classes: int, embed_dim: int = 256,
                 dilations: Sequence[int] = (1, 6, 12, 18), dropout: float = 0.1):
        super().__init__()
        self.in_channels = tuple(int(c) for c in in_channels)
        self.num_classes = num_classes
        # a bare linear layer per stage on the flattened tokens (DAFormer's "mlp" embedding, no norm/act)
        self.embed = nn.ModuleList(nn.Linear(c, embed_dim) for c in self.in_channels)
        self.fuse = SepASPP(len(self.in_channels) * embed_dim, embed_dim, dilations)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(embed_dim, num_classes, 1)
        nn.init.normal_(self.classifier.weight, mean=0.0, std=0.01)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, features: Sequence[Tensor], dropout: bool = True) -> Tensor:
        """Logits; ``dropout=False`` skips the classifier's Dropout2d also in training (CMDA's shared head
        uses it on the image output only)."""
        if len(features) != len(self.embed):
            raise ValueError(f"DAFormerHead expects {len(self.embed)} feature maps, got {len(features)}")
        size = features[0].shape[-2:]
        maps = []
        for feature, embed in zip(features, self.embed):
            b, _, h, w = feature.shape
            x = embed(feature.flatten(2).transpose(1, 2))  # (B, H*W, C) -> (B, H*W, E)
            x = x.transpose(1, 2).reshape(b, -1, h, w)
            if x.shape[-2:] != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            maps.append(x)
        x = self.fuse(torch.cat(maps, dim=1))
        return self.classifier(self.dropout(x) if dropout else x)
