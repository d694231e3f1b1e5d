"""The ECDDP network (../shared/reference/e2vid_ecddp.md §C.1): a timm backbone whose patch tokens at one feature
level are scored by three prototype heads, for the image (after attention pooling), for each token (iBOT) and
for each context (attention pooling restricted to the context's tokens).

The backbone is the timm model that the segmentation rules build by the same name (evseg.models
``timm_backbone_spec``), not its features-only wrapper, so that its state dict carries timm's own parameter
names; ``backbone.*`` of a pre-training checkpoint is what ``model.pretrained`` loads.

Masked tokens (iBOT) replace the patch embedding's output, at the positions of the token-level mask scaled
up to the patch-embedding grid, by a learned mask token (DINOv2's ``mask_token``, zero at the start).
"""

from __future__ import annotations

import math

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evseg.models.segmentor import timm_backbone_spec

__all__ = ["AttentionPool", "ECDDPNet", "PrototypeHead"]


class AttentionPool(nn.Module):
    """Attention pooling with one learned query: per group of tokens (a mask row), the softmax over the
    group's tokens of <key(token), query> / sqrt(D) weighs the tokens."""

    def __init__(self, dim: int):
        super().__init__()
        self.query = nn.Parameter(torch.zeros(dim))
        nn.init.trunc_normal_(self.query, std=0.02)
        self.key = nn.Linear(dim, dim)

    def forward(self, tokens: Tensor, groups: Tensor | None = None) -> Tensor:
        """``tokens`` (B, N, D), ``groups`` (B, M, N) bool (default: one group of all tokens) -> (B, M, D).
        An empty group pools all tokens (its row is finite but meaningless: callers drop it)."""
        scores = self.key(tokens) @ self.query / math.sqrt(tokens.shape[-1])  # (B, N)
        if groups is None:
            groups = torch.ones_like(scores, dtype=torch.bool)[:, None]
        groups = groups | ~groups.any(dim=-1, keepdim=True)
        weights = scores[:, None, :].expand(-1, groups.shape[1], -1).masked_fill(~groups, float("-inf"))
        return torch.softmax(weights.float(), dim=-1).to(tokens.dtype) @ tokens


class PrototypeHead(nn.Module):
    """DINO's head: an MLP (GELU) to a bottleneck, L2-normalised, then cosine scores against the prototypes
    (DINO's weight-normalised last layer with its norm fixed to 1)."""

    def __init__(self, in_dim: int, prototypes: int, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 layers: int = 3):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (layers - 1) + [bottleneck_dim]
        mlp: list[nn.Module] = []
        for i in range(layers):
            mlp.append(nn.Linear(dims[i], dims[i + 1]))
            if i < layers - 1:
                mlp.append(nn.GELU())
        self.mlp = nn.Sequential(*mlp)
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        self.prototypes = nn.Parameter(torch.empty(prototypes, bottleneck_dim))
        nn.init.kaiming_uniform_(self.prototypes, a=math.sqrt(5))  # nn.Linear's initialisation

    def forward(self, x: Tensor) -> Tensor:
        x = F.normalize(self.mlp(x), dim=-1)
        return F.linear(x, F.normalize(self.prototypes, dim=-1))


class ECDDPNet(nn.Module):
    """Backbone, mask token, and the image, patch and context heads of ECDDP (student and teacher alike)."""

    def __init__(self, backbone: str, in_chans: int, level: int, prototypes: int, hidden_dim: int = 2048,
                 bottleneck_dim: int = 256, drop_path_rate: float = 0.1):
        super().__init__()
        self.name = backbone
        timm_name, _, kwargs = timm_backbone_spec(backbone, in_chans, drop_path_rate)
        self.backbone = timm.create_model(timm_name, **kwargs)
        if not hasattr(self.backbone, "forward_intermediates") or not hasattr(self.backbone, "patch_embed"):
            raise ValueError(f"backbone {backbone!r}: ECDDP pre-training needs a timm model with patch_embed and "
                             "forward_intermediates (MiT/pvt_v2, Swin, ViT, ...)")
        levels = len(self.backbone.feature_info)
        if not -levels <= level < levels:
            raise ValueError(f"pretrain.token_level {level} does not exist: {backbone} has {levels} feature levels")
        self.level = level % levels
        self.stride = int(self.backbone.feature_info[self.level]["reduction"])
        self.dim = int(self.backbone.feature_info[self.level]["num_chs"])
        self.embed_dim = int(self.backbone.feature_info[0]["num_chs"])
        self.mask_token = nn.Parameter(torch.zeros(self.embed_dim))
        self.image_pool = AttentionPool(self.dim)
        self.image_head = PrototypeHead(self.dim, prototypes, hidden_dim, bottleneck_dim)
        self.patch_head = PrototypeHead(self.dim, prototypes, hidden_dim, bottleneck_dim)
        self.context_pool = AttentionPool(self.dim)
        self.context_head = PrototypeHead(self.dim, prototypes, hidden_dim, bottleneck_dim)
        self._mask: Tensor | None = None
        self.backbone.patch_embed.register_forward_hook(self._mask_patches)

    def _mask_patches(self, module: nn.Module, inputs, output: Tensor) -> Tensor | None:
        if self._mask is None:
            return None
        if output.ndim != 4:
            raise ValueError(f"backbone {self.name!r} embeds patches as {tuple(output.shape)}, not as a 2-D grid: "
                             "ECDDP pre-training masks patches of hierarchical backbones (MiT/pvt_v2, Swin)")
        channels_last = output.shape[-1] == self.embed_dim  # pvt_v2 and Swin embed to NHWC
        size = output.shape[1:3] if channels_last else output.shape[2:4]
        mask = F.interpolate(self._mask[:, None].float(), size=tuple(size), mode="nearest")[:, 0].bool()
        token = self.mask_token.to(output.dtype)
        if channels_last:
            return torch.where(mask[..., None], token, output)
        return torch.where(mask[:, None], token[:, None, None], output)

    def tokens(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, tuple[int, int]]:
        """Tokens (B, h * w, D) of the configured level and their grid (h, w); ``mask`` (B, h, w) bool marks
        the tokens whose patches are replaced by the mask token."""
        self._mask = mask
        try:
            feature = self.backbone.forward_intermediates(x, indices=[self.level], intermediates_only=True,
                                                          stop_early=True)[0]
        finally:
            self._mask = None
        return feature.flatten(2).transpose(1, 2), tuple(feature.shape[-2:])

    def image_scores(self, tokens: Tensor) -> Tensor:
        return self.image_head(self.image_pool(tokens)[:, 0])

    def patch_scores(self, tokens: Tensor) -> Tensor:
        return self.patch_head(tokens)

    def context_scores(self, tokens: Tensor, members: Tensor) -> Tensor:
        """``members`` (B, K, N) bool: the tokens of each context -> scores (B, K, prototypes)."""
        return self.context_head(self.context_pool(tokens, members))
