"""CMDA's frozen day→night style generator (reference/cmda_daformer.md §2.1): the Motion-Extractor's day map in,
an event-like night map out.

The network is the pix2pix/CycleGAN "ResnetGenerator" with 9 residual blocks (ngf 64, 1 channel in and out,
instance norm without affine parameters, reflection padding, tanh output). Modules are laid out in one
``model`` sequence with the indices of that design, so that the released ``cityscapes_ICD_to_dsec_EN.pth`` (a
plain state dict: ``model.1.weight``, ``model.10.conv_block.1.weight``, ...) loads strictly.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from evseg.errors import DataError
from evseg.models.mit import load_state_dict_file

RELEASED_FILE = "cityscapes_ICD_to_dsec_EN.pth"


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResidualBlock(nn.Module):
    """x + [pad, conv3x3, norm, ReLU, pad, conv3x3, norm](x)."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv_block = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), _norm(dim), nn.ReLU(True),
                                        nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), _norm(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """7x7 stem, two stride-2 downsamplings, ``blocks`` residual blocks at 4·ngf channels, two transposed-conv
    upsamplings, 7x7 output conv and tanh. Input height and width must be multiples of 4."""

    def __init__(self, in_channels: int = 1, out_channels: int = 1, ngf: int = 64, blocks: int = 9):
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7), _norm(ngf), nn.ReLU(True)]
        for mult in (1, 2):
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1), _norm(ngf * mult * 2),
                       nn.ReLU(True)]
        layers += [ResidualBlock(ngf * 4) for _ in range(blocks)]
        for mult in (4, 2):
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1),
                       _norm(ngf * mult // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2] % 4 or x.shape[-1] % 4:
            raise ValueError(f"the style generator needs a height and width divisible by 4, got {tuple(x.shape[-2:])}; "
                             "choose a crop size that is")
        return self.model(x)


def load_style_generator(path: str | Path) -> ResnetGenerator:
    """The released generator file as a frozen network in eval mode. Old files may hold instance-norm running
    statistics (written by torch < 0.4); they are unused (``track_running_stats=False``) and dropped."""
    path = Path(path)
    fix = (f"use CMDA's {RELEASED_FILE} (Google Drive link in the CMDA README), a plain state dict of the "
           "1-channel resnet_9blocks generator")
    state = load_state_dict_file(path, fix)
    state = {k.removeprefix("module."): v for k, v in state.items()
             if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    generator = ResnetGenerator()
    expected = generator.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        details = "; ".join(f"{what}: {keys[:3]}" for what, keys in
                            (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys)
        raise DataError(path, f"is not the 1-channel 9-block ResnetGenerator ({details})", fix)
    generator.load_state_dict(state)
    return generator.eval().requires_grad_(False)


@torch.no_grad()
def stylize(generator: nn.Module | None, motion: Tensor) -> Tensor:
    """The source's event input: the (B, 1, H, W) Motion-Extractor map through the generator (when there is
    one), repeated to 3 channels."""
    if generator is not None:
        motion = generator(motion.float()).to(motion.dtype)
    return motion.expand(-1, 3, -1, -1)
