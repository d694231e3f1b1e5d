"""Encoder-decoder segmentor: a timm feature backbone (MiT as ``pvt_v2``, or any timm model with
``features_only``) and the DAFormer head.

Pretrained weights are loaded strictly. They go through timm's own loader (``pretrained_cfg_overlay`` with the
state dict, so that timm renames them for its features-only wrapper and adapts the first conv to ``in_chans``),
but that loader is not strict for features-only models (it drops the classifier and then loads with
``strict=False``), so the file is first checked against a reference model built on the meta device, and every
tensor of the built backbone is afterwards compared with the file.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from timm.models import adapt_input_conv
from torch import Tensor, nn

from evseg.errors import DataError
from evseg.models.daformer_head import DAFormerHead
from evseg.models.mit import (MIT_TO_TIMM, SEGFORMER_URL, check_state_dict_fits, load_state_dict_file,
                              mit_timm_kwargs, read_mit_checkpoint)

ECDDP_FIX = ("; an ECDDP checkpoint (pretrain_events) fits the model.backbone and train.input it was "
             "pre-trained with")

__all__ = ["Segmentor", "build_backbone", "build_segmentor", "timm_backbone_spec"]


class Segmentor(nn.Module):
    """``backbone`` (timm features-only model, a list of stage maps) -> ``decode_head`` -> logits."""

    def __init__(self, backbone: nn.Module, decode_head: DAFormerHead, in_chans: int, input_multiple: int = 1):
        super().__init__()
        self.backbone = backbone
        self.decode_head = decode_head
        self._in_chans = in_chans
        # Swin's patch embedding needs sides that its strides divide: inputs are padded (bottom, right) with
        # zeros, as ECDDP's SWINPad does, and the logits cut back to the input's
        self.input_multiple = input_multiple
        # some timm feature extractors (e.g. Swin) return NHWC maps; the head wants NCHW
        self._nhwc = str(getattr(backbone, "output_fmt", "NCHW")).endswith("NHWC")

    @property
    def in_chans(self) -> int:
        return self._in_chans

    def extract_features(self, x: Tensor) -> list[Tensor]:
        features = list(self.backbone(x))
        if self._nhwc:
            features = [f.permute(0, 3, 1, 2).contiguous() for f in features]
        return features

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Logits at the resolution of the first feature map (1/4 of the input); with ``return_features``
        also the backbone maps."""
        height, width = x.shape[-2:]
        m = self.input_multiple
        if height % m or width % m:
            x = F.pad(x, (0, -width % m, 0, -height % m))
        features = self.extract_features(x)
        logits = self.decode_head(features)
        if height % m or width % m:
            stride = x.shape[-1] // logits.shape[-1]
            logits = logits[..., : -(-height // stride), : -(-width // stride)]
        return (logits, features) if return_features else logits

    def predict(self, x: Tensor) -> Tensor:
        """Logits resized (bilinear) to the input size."""
        # pvt_v2's patch embeddings are padded convolutions, so any input size >= 32 works without padding
        return F.interpolate(self(x), size=x.shape[-2:], mode="bilinear", align_corners=False)


def build_segmentor(backbone: str, num_classes: int, in_chans: int = 3, pretrained: str | Path | None = None,
                    drop_path_rate: float = 0.1, embed_dim: int = 256, reinit_patch_embed: bool = False) -> Segmentor:
    """A segmentor on ``backbone`` ('mit_b0' ... 'mit_b5', or a timm model name supporting ``features_only``;
    its last four feature levels are used). ``pretrained`` is a file: the official MiT ImageNet file for
    mit_*, a timm-format state dict or an ECDDP checkpoint otherwise; without it the weights are random.
    ``reinit_patch_embed`` keeps the patch embedding at its random initialisation (ECDDP's fine-tuning with
    ``keep_patch_keys: false``, for a file pre-trained on another input representation)."""
    encoder = build_backbone(backbone, in_chans, pretrained, drop_path_rate, reinit_patch_embed)
    head = DAFormerHead(encoder.feature_info.channels(), num_classes, embed_dim=embed_dim)
    multiple = max(encoder.feature_info.reduction()) if backbone.startswith("swin") else 1
    return Segmentor(encoder, head, in_chans, multiple)


def timm_backbone_spec(backbone: str, in_chans: int = 3, drop_path_rate: float = 0.1
                       ) -> tuple[str, tuple[int, ...], dict]:
    """(timm model name, the four feature levels used, ``create_model`` kwargs) of a backbone name; the
    pre-training rule builds the same network (evseg.pretrain.model)."""
    if backbone in MIT_TO_TIMM:
        return (MIT_TO_TIMM[backbone], (0, 1, 2, 3),
                dict(mit_timm_kwargs(backbone, drop_path_rate), in_chans=in_chans, num_classes=0))
    if not timm.is_model(backbone):
        raise ValueError(f"unknown backbone {backbone!r}: use mit_b0 ... mit_b5 or a timm model name")
    kwargs = dict(drop_path_rate=drop_path_rate, in_chans=in_chans, num_classes=0)
    if backbone.startswith("swin"):  # any input size (crops, whole frames), windows padded, as ECDDP's SWINPad
        kwargs["strict_img_size"] = False
    return backbone, (-4, -3, -2, -1), kwargs


def build_backbone(backbone: str, in_chans: int = 3, pretrained: str | Path | None = None,
                   drop_path_rate: float = 0.1, reinit_patch_embed: bool = False) -> nn.Module:
    """The timm features-only encoder of :func:`build_segmentor` (a list of four stage maps, NCHW or NHWC)."""
    timm_name, out_indices, model_kwargs = timm_backbone_spec(backbone, in_chans, drop_path_rate)
    if pretrained is None:
        encoder = timm.create_model(timm_name, features_only=True, out_indices=out_indices, **model_kwargs)
    else:
        encoder = _pretrained_backbone(backbone, timm_name, Path(pretrained), out_indices, model_kwargs,
                                       reinit_patch_embed)
    return encoder


def _pretrained_backbone(backbone: str, timm_name: str, path: Path, out_indices: tuple[int, ...],
                         model_kwargs: dict, reinit_patch_embed: bool = False) -> nn.Module:
    in_chans = model_kwargs["in_chans"]
    with torch.device("meta"):  # shapes and config only: no memory, no init cost
        reference = timm.create_model(timm_name, **model_kwargs)
    if backbone in MIT_TO_TIMM:
        fix = (f"use the official ImageNet-1K pretrained {backbone}.pth from {SEGFORMER_URL}, or choose the "
               f"backbone the file was made for{ECDDP_FIX}")
        state_dict = read_mit_checkpoint(path)
    else:
        fix = (f"use a timm-format state dict of {timm_name} (e.g. torch.save(timm.create_model({timm_name!r}, "
               f"pretrained=True).state_dict(), path)), or choose the backbone the file was made for{ECDDP_FIX}")
        state_dict = load_state_dict_file(path, fix)
        junk = [k for k, v in state_dict.items() if not isinstance(v, Tensor)]
        if junk:
            raise DataError(path, f"entries that are not tensors: {junk[:3]}", fix)
        if not set(state_dict) <= set(reference.state_dict()):
            # another layout of the same network (e.g. Microsoft's Swin names, as in ECDDP's release): timm's
            # own key filter renames it; files already in the model's names must not go through it
            filter_fn = getattr(importlib.import_module(type(reference).__module__), "checkpoint_filter_fn", None)
            if filter_fn is not None:
                state_dict = dict(filter_fn(state_dict, reference))
        classifiers = reference.pretrained_cfg.get("classifier") or ()
        for name in (classifiers,) if isinstance(classifiers, str) else classifiers:
            state_dict.pop(f"{name}.weight", None)
            state_dict.pop(f"{name}.bias", None)

    # what timm's loader will make of the first conv, so that the check and the final comparison see it too
    expected = {k: v.shape for k, v in reference.state_dict().items()}
    base_chans = (reference.pretrained_cfg.get("input_size") or (3,))[0]
    first_convs = reference.pretrained_cfg.get("first_conv") or ()
    if reinit_patch_embed:  # the file's first layer is replaced by a randomly initialised one
        fresh = timm.create_model(timm_name, **model_kwargs).state_dict()
        for conv in (first_convs,) if isinstance(first_convs, str) else first_convs:
            for key in (f"{conv}.weight", f"{conv}.bias"):
                if key in fresh:
                    state_dict[key] = fresh[key]
    adapted = dict(state_dict)
    for conv in (first_convs,) if isinstance(first_convs, str) else first_convs:
        key = f"{conv}.weight"
        # only the input channels may differ: other shape differences are another network (reported below)
        if (key in adapted and key in expected and adapted[key].shape != expected[key]
                and adapted[key].shape[:1] + adapted[key].shape[2:] == expected[key][:1] + expected[key][2:]):
            try:
                adapted[key] = adapt_input_conv(in_chans, adapted[key], base_chans=base_chans)
            except NotImplementedError as err:
                raise DataError(path, f"cannot adapt {key} {tuple(adapted[key].shape)} to {in_chans} input "
                                f"channels ({err})", fix) from err
    check_state_dict_fits(path, adapted, expected, f"{backbone} with in_chans={in_chans}", fix)

    encoder = timm.create_model(timm_name, features_only=True, out_indices=out_indices, pretrained=True,
                                pretrained_cfg_overlay=dict(state_dict=state_dict), **model_kwargs)
    # timm keeps the override (a full copy of the weights) in the config; it is not needed after loading
    for cfg in (getattr(encoder, "pretrained_cfg", None), getattr(encoder, "default_cfg", None)):
        if isinstance(cfg, dict):
            cfg.pop("state_dict", None)
    _verify_loaded(encoder, adapted)
    return encoder


def _verify_loaded(encoder: nn.Module, state_dict: dict[str, Tensor]) -> None:
    """Every tensor of the features-only ``encoder`` must equal the file's. Its names are the model's with
    nested sequential names joined by '_' (``stages.0`` -> ``stages_0``), so names are compared with '.' as '_'."""
    by_flat_name = {k.replace(".", "_"): v for k, v in state_dict.items()}
    for name, tensor in encoder.state_dict().items():
        source = by_flat_name.get(name.replace(".", "_"))
        if source is None or source.shape != tensor.shape or not torch.equal(source.to(tensor.dtype), tensor):
            raise RuntimeError(f"timm did not load backbone tensor {name!r} from the checkpoint (timm version "
                               f"{timm.__version__}); refusing a partially pretrained backbone")
