"""Building a reconstruction method from the ``reconstruct`` config section."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from evseg.errors import DataError
from evseg.recon.highpass import HighPassConfig, HighPassFilter
from evseg.recon.stream import NetworkReconstructor

ARCH_OF_METHOD = {"e2vid": "E2VIDRecurrent", "firenet": "FireNet"}


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: the GPU if there is one (under data parallelism, this process's GPU), else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.index is not None and int(os.environ.get("WORLD_SIZE", 1)) > 1:
        raise ValueError(f"device {name!r} would put every data-parallel process on one GPU: use 'auto' or 'cuda' "
                         "(each process then takes its own)")
    return device


def build_reconstructor(cfg: dict, height: int, width: int, checkpoint: str | Path | None = None,
                        streams: int = 1):
    """A reconstructor with ``reset``, ``update`` and ``frame`` for a rectified frame of (height, width).

    Networks carry ``streams`` independent states (sequences batched together); the high-pass filter
    handles one sequence at a time (it is reset between sequences)."""
    method = cfg["method"]
    if method == "highpass":
        return HighPassFilter(height, width, HighPassConfig(**cfg["highpass"]))
    from evseg.recon.checkpoint import load_reconstruction_model

    device = pick_device(cfg["device"])
    model, model_cfg = load_reconstruction_model(checkpoint, device=device)
    arch = type(model).__name__
    if arch != ARCH_OF_METHOD[method]:
        raise DataError(checkpoint, f"holds a {arch} model but reconstruct.method is {method!r}",
                        f"set reconstruct.method to the checkpoint's model, or point reconstruct.checkpoint at a "
                        f"{ARCH_OF_METHOD[method]} checkpoint")
    # Inputs are padded as the reference pipeline pads them: E2VID to a multiple of 2**num_encoders, FireNet
    # to 16 (BaseE2VID's default num_encoders), which keeps frames equal to the reference's near the border.
    return NetworkReconstructor(model, model_cfg["num_bins"], height, width, model.pad_multiple, device,
                                unsharp=cfg["unsharp"], auto_hdr=cfg["auto_hdr"], squash=method == "firenet",
                                streams=streams)
