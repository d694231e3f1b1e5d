"""SAM for pixel semantic aggregation: the official checkpoints, automatic masks and batched prompts.

SeCo (../shared/reference/seco_unimatch.md §1.3) asks SAM two things per image:

- stuff: the automatic mask generator with the official default parameters;
- things: one mask per connected component, prompted with a box and one or two points.

The released code calls the mask decoder once per component. Here the image embedding is computed once
and all prompts of an image go through the decoder together, in one batch per number of points: SAM's
prompt tokens cannot be padded without changing the output (a padding point adds a "not a point" token
that the decoder attends to), so prompts with 1 and with 2 points form two batches. That gives the same
masks as one call per component.

The official files (``sam_vit_{b,l,h}_*.pth``) are plain state dicts; they are loaded strictly into the
segment-anything classes, and a file of another variant is named as such.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator, SamPredictor
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from evseg.errors import DataError


@dataclass(frozen=True)
class SamSpec:
    """The architecture of a SAM network (segment-anything's ``_build_sam`` arguments).

    The three official variants are in :data:`SAM_VARIANTS`; other values build small networks for tests."""

    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    image_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    prompt_embed_dim: int = 256
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_hidden_dim: int = 256


SAM_VARIANTS = {
    "vit_b": SamSpec(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": SamSpec(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": SamSpec(1280, 32, 16, (7, 15, 23, 31)),
    # Not an official file: the offline demo's SAM, trained by rule train_sam on the simulated drives
    # (evseg/refine/sam_training.py). SAM's geometry (embedding at 1/16, masks at 1/4 of the input) for 110x160
    # frames: a 160-pixel input, 4 blocks of width 128, a 64-wide decoder.
    "vit_demo": SamSpec(128, 4, 4, (1, 3), image_size=160, patch_size=16, window_size=5, prompt_embed_dim=64,
                        decoder_mlp_dim=256, decoder_num_heads=4, iou_head_hidden_dim=64),
}
OFFICIAL_FILES = {"vit_b": "sam_vit_b_01ec64.pth", "vit_l": "sam_vit_l_0b3195.pth", "vit_h": "sam_vit_h_4b8939.pth"}
OFFICIAL_URL = "https://dl.fbaipublicfiles.com/segment_anything/"

# segment-anything's automatic mask generator defaults, which SeCo uses unchanged (§1.3).
OFFICIAL_AMG = dict(points_per_side=32, points_per_batch=64, pred_iou_thresh=0.88, stability_score_thresh=0.95,
                    stability_score_offset=1.0, box_nms_thresh=0.7, crop_n_layers=0, min_mask_region_area=0)


def build_sam(spec: SamSpec):
    """A SAM with random weights, built from segment-anything's own classes (as its ``_build_sam``)."""
    grid = spec.image_size // spec.patch_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=spec.encoder_depth, embed_dim=spec.encoder_embed_dim, img_size=spec.image_size, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=spec.encoder_num_heads,
            patch_size=spec.patch_size, qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=spec.encoder_global_attn_indexes, window_size=spec.window_size,
            out_chans=spec.prompt_embed_dim),
        prompt_encoder=PromptEncoder(embed_dim=spec.prompt_embed_dim, image_embedding_size=(grid, grid),
                                     input_image_size=(spec.image_size, spec.image_size), mask_in_chans=16),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=spec.prompt_embed_dim,
                                          mlp_dim=spec.decoder_mlp_dim, num_heads=spec.decoder_num_heads),
            transformer_dim=spec.prompt_embed_dim, iou_head_depth=3, iou_head_hidden_dim=spec.iou_head_hidden_dim),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


def _describe(state_dict: dict) -> tuple[int, int]:
    """(encoder blocks, encoder width) of a SAM state dict."""
    blocks = {int(m.group(1)) for k in state_dict if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", k))}
    weight = state_dict.get("image_encoder.patch_embed.proj.weight")
    return len(blocks), int(weight.shape[0]) if isinstance(weight, torch.Tensor) else -1


def load_sam(path: str | Path, variant: str | SamSpec, device: str | torch.device = "cpu"):
    """Load a SAM checkpoint (a plain state dict, as the official ``sam_vit_*.pth``) into ``variant``."""
    path = Path(path)
    spec = SAM_VARIANTS[variant] if isinstance(variant, str) else variant
    name = variant if isinstance(variant, str) else "the configured"
    if variant == "vit_demo":
        fix = "train it with rule train_sam (psa.sam.train.enabled: true), which writes this file"
    else:
        fix = (f"download {OFFICIAL_URL}{OFFICIAL_FILES.get(variant, OFFICIAL_FILES['vit_h'])} and point "
               "psa.sam.checkpoint at it")
    if not path.is_file():
        raise DataError(path, "the SAM checkpoint does not exist", fix)
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated files, pickles with code, not a torch file
        raise DataError(path, f"is not a readable torch checkpoint ({type(err).__name__}: {err})", fix) from err
    if isinstance(state_dict, dict) and isinstance(state_dict.get("model"), dict):
        state_dict = state_dict["model"]  # some re-packaged files nest the weights
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise DataError(path, "is not a SAM state dict (a dict of tensors)", fix)
    blocks, width = _describe(state_dict)
    if (blocks, width) != (spec.encoder_depth, spec.encoder_embed_dim):
        known = [v for v, s in SAM_VARIANTS.items() if (s.encoder_depth, s.encoder_embed_dim) == (blocks, width)]
        looks = f"a {known[0]} SAM" if known else "not an official SAM variant"
        raise DataError(path, f"has {blocks} encoder blocks of width {width} ({looks}), but {name} variant has "
                        f"{spec.encoder_depth} of width {spec.encoder_embed_dim}",
                        f"set psa.sam.variant to {known[0]!r}" if known else fix)
    sam = build_sam(spec)
    missing, unexpected = sam.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        raise DataError(path, f"does not match the SAM network: missing {sorted(missing)[:5]}, "
                        f"unexpected {sorted(unexpected)[:5]}", fix)
    return sam.to(device).eval()


def as_rgb(image: np.ndarray) -> np.ndarray:
    """SAM takes HWC uint8 RGB; a grayscale frame is repeated over the three channels."""
    if image.dtype != np.uint8:
        raise ValueError(f"SAM needs uint8 images, got {image.dtype}")
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image


class SamMasks:
    """SAM's masks for one image at a time: the automatic masks (stuff) and the prompted ones (things)
    share one image-encoder pass."""

    def __init__(self, sam, **amg_overrides):
        self.predictor = SharedEmbeddingPredictor(sam)
        self.generator = SamAutomaticMaskGenerator(sam, **{**OFFICIAL_AMG, **amg_overrides})
        self.generator.predictor = self.predictor
        self.image = None

    def set_image(self, image: np.ndarray) -> None:
        self.image = as_rgb(image)
        self.predictor.forget()
        self.predictor.set_image(self.image)

    def automatic(self) -> list[np.ndarray]:
        """Boolean masks of the automatic mask generator, in its output order."""
        return [record["segmentation"] for record in self.generator.generate(self.image)]

    @torch.no_grad()
    def prompted(self, boxes: list[np.ndarray], points: list[np.ndarray], return_logits: bool = False) -> list:
        """One mask (H, W) per prompt (XYXY box, (x, y) positive points); prompts with the same number
        of points share one decoder call."""
        results: list = [None] * len(boxes)
        size = self.predictor.original_size
        transform, device = self.predictor.transform, self.predictor.device
        for count in sorted({len(p) for p in points}):
            group = [i for i, p in enumerate(points) if len(p) == count]
            coords = torch.as_tensor(np.stack([points[i] for i in group]), dtype=torch.float, device=device)
            box = torch.as_tensor(np.stack([boxes[i] for i in group]), dtype=torch.float, device=device)
            masks, _, _ = self.predictor.predict_torch(
                transform.apply_coords_torch(coords, size), torch.ones(coords.shape[:2], device=device),
                transform.apply_boxes_torch(box, size), multimask_output=False, return_logits=return_logits)
            for i, mask in zip(group, masks[:, 0].cpu().numpy()):
                results[i] = mask
        return results

    def prompted_one_by_one(self, boxes: list[np.ndarray], points: list[np.ndarray],
                            return_logits: bool = False) -> list:
        """The released code's way, one decoder call per prompt (the benchmark's baseline)."""
        return [self.predictor.predict(point_coords=p.astype(np.float32), point_labels=np.ones(len(p)),
                                       box=b.astype(np.float32), multimask_output=False,
                                       return_logits=return_logits)[0][0]
                for b, p in zip(boxes, points)]


class SharedEmbeddingPredictor(SamPredictor):
    """A SamPredictor that keeps its image embedding when the automatic mask generator resets it, and skips the
    encoder when it is given the same image again."""

    _keep = False

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        key = (image.shape, hashlib.sha1(np.ascontiguousarray(image).tobytes()).digest())
        if not (self.is_image_set and key == getattr(self, "_key", None)):
            super().set_image(image, image_format)
            self._key, self._keep = key, True

    def reset_image(self) -> None:
        if not self._keep:
            super().reset_image()

    def forget(self) -> None:
        self._keep = False
        self.reset_image()
