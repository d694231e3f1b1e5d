"""Loading and saving E2VID / FireNet checkpoints in the official format (../shared/reference/e2vid_ecddp.md
§A.2): a dict with ``'arch'`` (class name), ``'model'`` (the constructor's config dict; older files keep
it under ``['config']['model']``) and ``'state_dict'``.

Files are read with ``torch.load(..., weights_only=True)``, so no pickled code is ever run; a file that
holds anything besides tensors, containers and plain values is refused with a :class:`DataError` that
says how to convert it. Weights are loaded with ``strict=True`` semantics (every key present, nothing
extra, every shape equal), with one exception: BatchNorm's ``num_batches_tracked`` may be missing (old
files; PyTorch fills it in for pre-0.4.1 module versions, and otherwise the freshly built counter is kept;
it plays no part in inference).
"""

from __future__ import annotations

import pickle
import re
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from evseg.errors import DataError
from evseg.recon.e2vid import E2VIDRecurrent
from evseg.recon.firenet import FireNet

__all__ = ["ARCHS", "E2VID_URL", "FIRENET_URL", "build_reconstruction_model", "load_reconstruction_model",
           "save_reconstruction_model"]

ARCHS: dict[str, type[nn.Module]] = {"E2VIDRecurrent": E2VIDRecurrent, "FireNet": FireNet}

E2VID_URL = "http://rpg.ifi.uzh.ch/data/E2VID/models/E2VID_lightweight.pth.tar"
FIRENET_URL = "https://drive.google.com/file/d/1nBCeIF_Us-rGhCjdU5q1Ch-yrFckjZPa/view"

_CONVERT_FIX = (
    "use the official file ({url}), or convert this one: in a trusted environment load it once with "
    "torch.load(path, weights_only=False) and save {{'arch': <str>, 'model': <config dict of plain "
    "types>, 'state_dict': <dict of tensors>}} with torch.save")


def _download_fix(path: Path) -> str:
    if "firenet" in path.name.lower():
        return (f"FireNet weights (firenet_1000.pth.tar) are only on Google Drive: download them by hand "
                f"from {FIRENET_URL} and place the file at {path}")
    return (f"download the E2VID weights: wget -O {path} {E2VID_URL} (FireNet weights must be fetched by "
            f"hand from {FIRENET_URL})")


def _official_url(arch) -> str:
    return FIRENET_URL if arch == "FireNet" else E2VID_URL


def build_reconstruction_model(arch: str, config: dict) -> nn.Module:
    """Instantiate ``arch`` ('E2VIDRecurrent' or 'FireNet') from its config dict (random weights)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown reconstruction arch {arch!r}; known: {sorted(ARCHS)}")
    return ARCHS[arch](config)


def load_reconstruction_model(path: str | Path, device: str | torch.device = "cpu"
                              ) -> tuple[nn.Module, dict]:
    """Load an official E2VID/FireNet checkpoint; returns ``(model in eval mode on device, config)``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "reconstruction checkpoint not found", _download_fix(path))
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        message = str(err)
        if "Weights only load failed" not in message:
            raise DataError(path, f"not a readable PyTorch checkpoint ({message.splitlines()[0]})",
                            "the file is corrupt or truncated; " + _download_fix(path)) from err
        found = re.search(r"Unsupported global: GLOBAL (\S+)", message)
        what = f" (it refers to {found.group(1)})" if found else ""
        raise DataError(path, f"not a plain official checkpoint: it holds pickled objects other than "
                        f"tensors, containers and plain values{what}, which this loader refuses to unpickle "
                        f"(torch.load(weights_only=True) never runs pickled code)",
                        _CONVERT_FIX.format(url=E2VID_URL)) from err
    except Exception as err:  # zip/EOF/garbage: torch raises many types here
        raise DataError(path, f"not a readable PyTorch checkpoint ({type(err).__name__}: {err})",
                        "the file is corrupt, truncated or not a torch.save file; "
                        + _download_fix(path)) from err

    fix = _CONVERT_FIX.format(url=E2VID_URL)
    if not isinstance(checkpoint, dict):
        raise DataError(path, f"checkpoint is a {type(checkpoint).__name__}, not a dict with 'arch', "
                        "'model' and 'state_dict'", fix)
    missing = [k for k in ("arch", "state_dict") if k not in checkpoint]
    if "model" in checkpoint:
        config = checkpoint["model"]
    elif isinstance(checkpoint.get("config"), dict) and "model" in checkpoint["config"]:
        config = checkpoint["config"]["model"]
    else:
        config = None
        missing.append("model (or config.model)")
    if missing:
        raise DataError(path, f"checkpoint lacks {', '.join(missing)} (top-level keys: "
                        f"{sorted(map(str, checkpoint))})", fix)
    arch = checkpoint["arch"]
    if arch not in ARCHS:
        raise DataError(path, f"unknown arch {arch!r}; this loader knows {sorted(ARCHS)}",
                        "use an official E2VID (E2VIDRecurrent) or FireNet checkpoint")
    if not isinstance(config, dict):
        raise DataError(path, f"the model config is a {type(config).__name__}, not a dict", fix)
    state_dict = checkpoint["state_dict"]
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor)
                                                   for v in state_dict.values()):
        raise DataError(path, "'state_dict' is not a dict of tensors", fix)

    try:
        model = build_reconstruction_model(arch, dict(config))
    except (ValueError, TypeError, KeyError) as err:
        raise DataError(path, f"the {arch} config {config!r} is not valid: {err}", fix) from err
    _load_strict(path, model, state_dict, arch)
    return model.to(device).eval(), dict(config)


def _load_strict(path: Path, model: nn.Module, state_dict: dict, arch: str) -> None:
    """``load_state_dict(strict=True)`` with a DataError listing what does not match."""
    expected = model.state_dict()
    shapes = [f"{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
              for k, v in state_dict.items() if k in expected and v.shape != expected[k].shape]
    if not shapes:
        # strict=False still applies BatchNorm's old-version handling (fills num_batches_tracked)
        result = model.load_state_dict(state_dict, strict=False)
        missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
        # a BN step counter only matters for training with momentum=None; its absence is tolerated
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    else:
        missing = [k for k in expected if k not in state_dict and not k.endswith("num_batches_tracked")]
        unexpected = [k for k in state_dict if k not in expected]
    if not (shapes or missing or unexpected):
        return
    parts = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                         ("shape mismatches", shapes)):
        if items:
            more = f" ... (+{len(items) - 5} more)" if len(items) > 5 else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:5])}{more}")
    raise DataError(path, f"state_dict does not match the {arch} built from its config; " + "; ".join(parts),
                    "the weights and the stored config disagree; re-download the official checkpoint "
                    f"({_official_url(arch)})")


def save_reconstruction_model(path: str | Path, model: nn.Module, arch: str, config: dict) -> Path:
    """Write ``{'arch', 'model', 'state_dict'}`` (CPU tensors) as the official checkpoints are laid out."""
    if arch not in ARCHS:
        raise ValueError(f"unknown reconstruction arch {arch!r}; known: {sorted(ARCHS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    source = model.state_dict()
    state_dict = OrderedDict((k, v.detach().cpu()) for k, v in source.items())
    state_dict._metadata = getattr(source, "_metadata", None)  # keeps module versions, as torch does
    if state_dict._metadata is None:
        del state_dict._metadata
    torch.save({"arch": arch, "model": dict(config), "state_dict": state_dict}, path)
    return path
