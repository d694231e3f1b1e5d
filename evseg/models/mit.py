"""SegFormer's Mix Transformer (MiT) backbones as timm ``pvt_v2`` models (../shared/reference/cmda_daformer.md §5).

``mit_b0`` ... ``mit_b5`` and timm's ``pvt_v2_b0`` ... ``pvt_v2_b5`` are the same network; only the MLP ratio of
b0-b4 (MiT: 4 everywhere, timm default (8, 8, 4, 4)), the default drop-path rate (MiT 0.1, timm 0.0) and the
parameter names differ. :func:`read_mit_checkpoint` reads an official ImageNet file (``mit_b*.pth``) and renames
it to timm's names; :func:`check_state_dict_fits` turns any key or shape mismatch into a :class:`DataError`
that says which variant the file looks like.

Files are read with ``torch.load(..., weights_only=True)``, so no pickled code is ever run.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from evseg.errors import DataError

__all__ = ["ECDDP_BACKBONES", "MIT_TO_TIMM", "MIT_SPECS", "SEGFORMER_URL", "check_state_dict_fits",
           "guess_mit_variant", "load_state_dict_file", "mit_timm_kwargs", "mit_to_timm_key", "read_mit_checkpoint",
           "select_backbone_weights"]

MIT_TO_TIMM = {f"mit_b{i}": f"pvt_v2_b{i}" for i in range(6)}

# (depths, stage-1 width) per variant: enough to tell every variant apart from a state dict
MIT_SPECS: dict[str, tuple[tuple[int, ...], int]] = {
    "mit_b0": ((2, 2, 2, 2), 32), "mit_b1": ((2, 2, 2, 2), 64), "mit_b2": ((3, 4, 6, 3), 64),
    "mit_b3": ((3, 4, 18, 3), 64), "mit_b4": ((3, 8, 27, 3), 64), "mit_b5": ((3, 6, 40, 3), 64),
}

SEGFORMER_URL = "https://github.com/NVlabs/SegFormer"
ECDDP_BACKBONES = ("teacher.backbone.", "student.backbone.")  # in the order they are looked for

_MIT_FIX = (f"use an official SegFormer backbone file: the 'ImageNet-1K pretrained' mit_b*.pth (mit_b0.pth ... "
            f"mit_b5.pth) linked from {SEGFORMER_URL} (a plain state dict with keys such as "
            f"'patch_embed1.proj.weight' and 'block1.0.attn.q.weight'); timm pvt_v2-named state dicts are also "
            f"accepted")

_BLOCK_PARTS = r"(norm1|norm2|attn\.(q|kv|proj|sr|norm)|mlp\.(fc1|fc2|{dw}))\.(weight|bias)"
_TIMM_KEY = re.compile(r"(patch_embed|stages\.[0-3]\.downsample)\.(proj|norm)\.(weight|bias)"
                       r"|stages\.[0-3]\.blocks\.\d+\." + _BLOCK_PARTS.format(dw=r"dwconv")
                       + r"|stages\.[0-3]\.norm\.(weight|bias)")
_MIT_PATCH = re.compile(r"patch_embed([1-4])\.((proj|norm)\.(weight|bias))")
_MIT_BLOCK = re.compile(r"block([1-4])\.(\d+)\.(" + _BLOCK_PARTS.format(dw=r"dwconv\.dwconv") + ")")
_MIT_NORM = re.compile(r"norm([1-4])\.((weight|bias))")
_HEAD = re.compile(r"head\.(weight|bias)")  # the 1000-class ImageNet classifier


def mit_timm_kwargs(name: str, drop_path_rate: float = 0.1) -> dict:
    """timm ``create_model`` kwargs that make ``MIT_TO_TIMM[name]`` the MiT network."""
    if name not in MIT_TO_TIMM:
        raise ValueError(f"unknown MiT variant {name!r}; known: {sorted(MIT_TO_TIMM)}")
    # MiT uses MLP ratio 4 in every stage (timm's pvt_v2_b0..b4 default to 8, 8, 4, 4)
    return dict(mlp_ratios=(4, 4, 4, 4), drop_path_rate=drop_path_rate)


def mit_to_timm_key(key: str) -> str | None:
    """The timm ``pvt_v2`` name of an official MiT (or already timm) parameter name; None for anything else."""
    if _TIMM_KEY.fullmatch(key) or _HEAD.fullmatch(key):
        return key
    if m := _MIT_PATCH.fullmatch(key):
        stage = int(m.group(1)) - 1
        return f"patch_embed.{m.group(2)}" if stage == 0 else f"stages.{stage}.downsample.{m.group(2)}"
    if m := _MIT_BLOCK.fullmatch(key):
        part = m.group(3).replace("mlp.dwconv.dwconv.", "mlp.dwconv.")  # MiT wraps the conv in a DWConv module
        return f"stages.{int(m.group(1)) - 1}.blocks.{m.group(2)}.{part}"
    if m := _MIT_NORM.fullmatch(key):
        return f"stages.{int(m.group(1)) - 1}.norm.{m.group(2)}"
    return None


def load_state_dict_file(path: str | Path, fix: str) -> dict[str, Tensor]:
    """Read a state dict (plain, or under ``'state_dict'`` / ``'model'``) with ``weights_only=True``;
    non-tensor entries are returned too, so that the caller can report them."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "checkpoint not found", fix)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if found:  # a real checkpoint, but with pickled objects that weights_only=True will not run
            raise DataError(path, f"not a plain state dict: it holds pickled objects ({found.group(1)}) that "
                            f"torch.load(weights_only=True) refuses to unpickle",
                            "in a trusted environment load it with weights_only=False and save only the state "
                            "dict (a dict of tensors) with torch.save; or " + fix) from err
        raise DataError(path, "not a readable PyTorch checkpoint (the unpickler rejected its contents)",
                        "the file is corrupt, truncated or not a checkpoint; " + fix) from err
    except Exception as err:  # zip/EOF/garbage: torch raises many types here
        raise DataError(path, f"not a readable PyTorch checkpoint ({type(err).__name__}: {err})",
                        "the file is corrupt, truncated or not a checkpoint; " + fix) from err
    if isinstance(checkpoint, Mapping):
        for wrapper in ("state_dict", "model"):
            if isinstance(checkpoint.get(wrapper), Mapping):
                checkpoint = checkpoint[wrapper]
                break
    if not isinstance(checkpoint, Mapping) or not any(isinstance(v, Tensor) for v in checkpoint.values()):
        what = f"a {type(checkpoint).__name__}" if not isinstance(checkpoint, Mapping) else \
            f"a dict without tensors (keys: {_preview(checkpoint)})"
        raise DataError(path, f"holds no state dict: found {what}", fix)
    return select_backbone_weights({str(k): v for k, v in checkpoint.items()})


def select_backbone_weights(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """The backbone of a self-supervised checkpoint (a key filter like timm's ``checkpoint_filter_fn``): of an
    ECDDP file (``student.*`` and ``teacher.*``), the teacher's backbone without its prefix, as ECDDP's
    fine-tuning loads it (``load_teacher``); the student's when there is no teacher. Other files unchanged."""
    for prefix in ECDDP_BACKBONES:
        selected = {k.removeprefix(prefix): v for k, v in state_dict.items() if k.startswith(prefix)}
        if selected:
            return selected
    return state_dict


def read_mit_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """Read an official SegFormer MiT ImageNet file as a timm ``pvt_v2`` state dict, without ``head.*``."""
    state_dict = load_state_dict_file(path, _MIT_FIX)
    junk = [k for k, v in state_dict.items() if not isinstance(v, Tensor) or mit_to_timm_key(k) is None]
    if junk:
        hint = ""
        if any(k.startswith(("backbone.", "decode_head.", "module.")) for k in junk):
            hint = " (prefixed names: this looks like a whole segmentor or a wrapped model, not a backbone file)"
        raise DataError(path, f"{len(junk)} of {len(state_dict)} entries are neither MiT nor timm pvt_v2 "
                        f"parameters{hint}, e.g. {_preview(junk)}", _MIT_FIX)
    converted: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        new = mit_to_timm_key(key)
        if new in converted:
            raise DataError(path, f"holds {new!r} twice (under MiT and under timm names)", _MIT_FIX)
        converted[new] = value
    return {k: v for k, v in converted.items() if not _HEAD.fullmatch(k)}


def guess_mit_variant(state_dict: Mapping[str, Tensor]) -> str | None:
    """Which MiT variant a timm-named state dict looks like, e.g. ``'mit_b2'``; a short description if it is
    pvt_v2-shaped but no MiT; None if it is not pvt_v2-shaped at all."""
    depths = [0, 0, 0, 0]
    for key in state_dict:
        if m := re.match(r"stages\.([0-3])\.blocks\.(\d+)\.", key):
            depths[int(m.group(1))] = max(depths[int(m.group(1))], int(m.group(2)) + 1)
    stem = state_dict.get("patch_embed.proj.weight")
    if stem is None or not all(depths):
        return None
    fc1 = state_dict.get("stages.0.blocks.0.mlp.fc1.weight")
    for name, (spec_depths, width) in MIT_SPECS.items():
        if tuple(depths) == spec_depths and stem.shape[0] == width:
            if fc1 is not None and fc1.shape[0] != 4 * width:
                return f"{name}-sized PVTv2 with MLP ratio {fc1.shape[0] // width} (a PVTv2 file, not MiT)"
            return name
    return f"no MiT variant (depths {tuple(depths)}, stage-1 width {stem.shape[0]})"


def check_state_dict_fits(path: str | Path, state_dict: Mapping[str, Tensor], expected: Mapping[str, torch.Size],
                          target: str, fix: str) -> None:
    """Raise a :class:`DataError` unless ``state_dict`` has exactly the keys and shapes in ``expected``."""
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(expected[k])}" for k in expected
             if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k])]
    if not (missing or unexpected or wrong):
        return
    parts = [f"{len(items)} {label} (e.g. {_preview(items)})" for label, items in
             (("missing", missing), ("unexpected", unexpected), ("with the wrong shape (file vs model)", wrong))
             if items]
    guess = guess_mit_variant(state_dict)
    looks = f"; the file looks like {guess}" if guess else ""
    raise DataError(path, f"does not fit {target}: parameters " + ", ".join(parts) + looks, fix)


def _preview(items, n: int = 3) -> str:
    items = list(items)
    shown = ", ".join(repr(i) if not isinstance(i, str) or " " not in i else i for i in items[:n])
    return shown + (f", ... ({len(items) - n} more)" if len(items) > n else "")
