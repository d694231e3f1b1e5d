"""FireNet (Scheerlinck et al., WACV 2020): a 38k-parameter recurrent network for event-to-video.

Written from the description in ../shared/reference/e2vid_ecddp.md §A.3 (``UNetFire`` of the
``cedric/firenet`` branch; no code copied). Module tree and state_dict names:

    FireNet
    └── net: UNetFire
        ├── head: RecurrentConvLayer             conv 3x3 num_bins->C + ReLU (``conv.conv2d``), ConvGRU
        ├── resblocks.0: RecurrentResidualLayer  ResidualBlock(C) (``conv.conv1/conv2``), ConvGRU
        ├── resblocks.1: ResidualBlock           (``conv1/conv2``)
        └── pred: ConvLayer                      1x1 C->1 with bias, no activation

With ``num_bins=5, base_num_channels=16, kernel_size=3, recurrent_block_type='convgru',
num_residual_blocks=2, recurrent_blocks={'resblock': [0]}`` and no norm it has 37,777 parameters.

The prediction is NOT squashed: FireNet has no final activation (E2VID has a sigmoid), so the output can
leave [0, 1]. Clamping for display is left to the caller (``NetworkReconstructor(squash=True)`` in
``evseg.recon.stream`` does it).

There is no down-sampling, so any H, W work. ``pad_multiple`` still gives ``2**num_encoders`` (16 by the
reference ``BaseE2VID`` default), the size the reference pipeline pads FireNet inputs to; pad to it to
reproduce reference outputs near the border exactly.

The variant in event_cnn_minimal's ``legacy.py`` adds the head features before ``pred``; which variant the
released ``firenet_1000.pth.tar`` was trained as is unconfirmed. The config key ``pred_head_skip`` (not an
official key, default False = the ``cedric/firenet`` variant described in §A.3) switches to it; the
state_dict is the same either way.
"""

from __future__ import annotations

import torch
from torch import nn

from evseg.recon.e2vid import (ConvLayer, RecurrentConvLayer, ResidualBlock, make_recurrent_block,
                               recurrent_output)

__all__ = ["RecurrentResidualLayer", "UNetFire", "FireNet", "FIRENET_CONFIG", "FIRENET_DEFAULTS"]

FIRENET_DEFAULTS = {
    "base_num_channels": 16,
    "kernel_size": 3,
    "recurrent_block_type": "convgru",
    "num_residual_blocks": 2,
    "recurrent_blocks": {"resblock": [0]},
    "norm": None,
    "num_encoders": 4,  # unused by the network; only sets the reference padding multiple
    "pred_head_skip": False,
}

FIRENET_CONFIG = {
    "num_bins": 5,
    "base_num_channels": 16,
    "kernel_size": 3,
    "recurrent_block_type": "convgru",
    "num_residual_blocks": 2,
    "recurrent_blocks": {"resblock": [0]},
}


class RecurrentResidualLayer(nn.Module):
    """A ResidualBlock (``conv``) followed by a recurrent block (``recurrent_block``)."""

    def __init__(self, in_channels: int, out_channels: int, recurrent_block_type: str = "convgru",
                 norm: str | None = None):
        super().__init__()
        self.conv = ResidualBlock(in_channels, out_channels, norm=norm)
        self.recurrent_block = make_recurrent_block(recurrent_block_type, out_channels, out_channels, 3)

    def forward(self, x: torch.Tensor, prev_state=None):
        x = self.conv(x)
        state = self.recurrent_block(x, prev_state)
        return recurrent_output(state), state


class UNetFire(nn.Module):
    """Full-resolution recurrent net: recurrent head, residual blocks (some recurrent), 1x1 prediction."""

    def __init__(self, num_input_channels: int, num_output_channels: int = 1,
                 recurrent_block_type: str = "convgru", base_num_channels: int = 16,
                 num_residual_blocks: int = 2, norm: str | None = None, kernel_size: int = 3,
                 recurrent_blocks: dict | None = None, pred_head_skip: bool = False):
        super().__init__()
        recurrent_blocks = {"resblock": [0]} if recurrent_blocks is None else recurrent_blocks
        c = base_num_channels
        self.recurrent_resblocks = sorted(int(i) for i in recurrent_blocks.get("resblock", []))
        if any(i < 0 or i >= num_residual_blocks for i in self.recurrent_resblocks):
            raise ValueError(f"recurrent_blocks['resblock'] = {self.recurrent_resblocks} out of range for "
                             f"{num_residual_blocks} residual blocks")
        self.pred_head_skip = pred_head_skip
        self.head = RecurrentConvLayer(num_input_channels, c, kernel_size=kernel_size,
                                       padding=kernel_size // 2,
                                       recurrent_block_type=recurrent_block_type, norm=norm)
        self.resblocks = nn.ModuleList(
            RecurrentResidualLayer(c, c, recurrent_block_type, norm) if i in self.recurrent_resblocks
            else ResidualBlock(c, c, norm=norm)
            for i in range(num_residual_blocks))
        self.pred = ConvLayer(c, num_output_channels, kernel_size=1, activation=None, norm=None)
        self.num_recurrent_units = 1 + len(self.recurrent_resblocks)

    def forward(self, x: torch.Tensor, prev_states: list | None = None):
        if prev_states is None:
            prev_states = [None] * self.num_recurrent_units
        elif len(prev_states) != self.num_recurrent_units:
            raise ValueError(f"expected {self.num_recurrent_units} recurrent states, got {len(prev_states)}")
        x, state = self.head(x, prev_states[0])
        head = x
        states = [state]
        for resblock in self.resblocks:
            if isinstance(resblock, RecurrentResidualLayer):
                x, state = resblock(x, prev_states[len(states)])
                states.append(state)
            else:
                x = resblock(x)
        if self.pred_head_skip:
            x = x + head
        return self.pred(x), states


class FireNet(nn.Module):
    """Wrapper with the official config-dict constructor; its only child is ``net``.

    ``forward(voxel (N, num_bins, H, W), states | None) -> (image (N, 1, H, W), new_states)``; the image is
    not squashed to [0, 1] (see the module docstring).
    """

    def __init__(self, config: dict):
        super().__init__()
        if "num_bins" not in config:
            raise ValueError("FireNet config needs 'num_bins' (the number of voxel-grid bins)")
        cfg = {**FIRENET_DEFAULTS, **config}
        self.num_bins = int(cfg["num_bins"])
        self.pad_multiple = 2 ** int(cfg["num_encoders"])
        self.net = UNetFire(
            num_input_channels=self.num_bins, num_output_channels=1,
            recurrent_block_type=cfg["recurrent_block_type"],
            base_num_channels=int(cfg["base_num_channels"]),
            num_residual_blocks=int(cfg["num_residual_blocks"]), norm=cfg["norm"],
            kernel_size=int(cfg["kernel_size"]), recurrent_blocks=cfg["recurrent_blocks"],
            pred_head_skip=bool(cfg["pred_head_skip"]))

    def forward(self, voxel: torch.Tensor, states: list | None = None):
        if voxel.dim() != 4 or voxel.shape[1] != self.num_bins:
            raise ValueError(f"expected a voxel grid (N, {self.num_bins}, H, W), got {tuple(voxel.shape)}")
        return self.net(voxel, states)

