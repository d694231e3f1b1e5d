"""E2VID (Rebecq et al., 2019): the recurrent U-Net that turns event voxel grids into intensity images.

Written from the architecture description in ../shared/reference/e2vid_ecddp.md §A.2-A.3 (no code from
the original repository). The module tree and parameter names are those of the official checkpoint
``E2VID_lightweight.pth.tar``, so its ``state_dict`` loads with ``strict=True``:

    E2VIDRecurrent
    └── unetrecurrent: UNetRecurrent
        ├── head: ConvLayer                      5x5, stride 1, ReLU, no norm, with bias
        ├── encoders.i: RecurrentConvLayer       conv 5x5 stride 2 (+norm, ReLU) -> ConvLSTM/ConvGRU
        ├── resblocks.j: ResidualBlock           conv3x3-norm-ReLU-conv3x3-norm, + input, ReLU
        ├── decoders.k: TransposedConvLayer      (or UpsampleConvLayer) 5x5, x2, norm, ReLU
        └── pred: ConvLayer                      1x1 -> 1 channel, norm, no activation; then sigmoid

With the lightweight config (``num_bins=5, skip_type='sum', recurrent_block_type='convlstm',
num_encoders=3, base_num_channels=32, num_residual_blocks=2, use_upsample_conv=False, norm='BN'``) it has
74 state_dict entries and 10,712,098 parameters.

Convolutions followed by batch norm have no bias, as in the checkpoint. Things the reference description
does not pin down, chosen here and irrelevant to loading the official weights: BatchNorm momentum (PyTorch
default), instance norm (``norm='IN'``: ``InstanceNorm2d(track_running_stats=True)``, not checked against
the reference), bilinear up-sampling with ``align_corners=False`` for ``use_upsample_conv=True``.

The network needs H and W to be multiples of ``2**num_encoders``; :func:`pad_to_multiple` and
:func:`crop_back` do the reference padding (reflection, centred, extra pixel on top/left, §A.5).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ConvLayer", "TransposedConvLayer", "UpsampleConvLayer", "ResidualBlock", "ConvLSTM", "ConvGRU",
    "RecurrentConvLayer", "UNetRecurrent", "E2VIDRecurrent", "E2VID_LIGHTWEIGHT_CONFIG",
    "E2VID_DEFAULTS", "pad_to_multiple", "crop_back",
]

# Defaults of the reference ``BaseE2VID`` for keys missing from the config (§A.3).
E2VID_DEFAULTS = {
    "skip_type": "sum",
    "num_encoders": 4,
    "base_num_channels": 32,
    "num_residual_blocks": 2,
    "norm": None,
    "use_upsample_conv": True,
    "recurrent_block_type": "convlstm",
}

# Config of the official E2VID_lightweight.pth.tar (§A.2).
E2VID_LIGHTWEIGHT_CONFIG = {
    "num_bins": 5,
    "skip_type": "sum",
    "recurrent_block_type": "convlstm",
    "num_encoders": 3,
    "base_num_channels": 32,
    "num_residual_blocks": 2,
    "use_upsample_conv": False,
    "norm": "BN",
}

_NORMS = (None, "BN", "IN")


# ------------------------------------------------------------------------------------------------------
# Building blocks
# ------------------------------------------------------------------------------------------------------

def _check_norm(norm):
    if norm not in _NORMS:
        raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}")


def _make_norm(norm: str | None, channels: int) -> nn.Module | None:
    _check_norm(norm)
    if norm == "BN":
        return nn.BatchNorm2d(channels)
    if norm == "IN":
        return nn.InstanceNorm2d(channels, track_running_stats=True)
    return None


def _make_activation(name: str | None):
    if name is None:
        return None
    if name == "relu":
        return torch.relu
    if name == "sigmoid":
        return torch.sigmoid
    if name == "tanh":
        return torch.tanh
    raise ValueError(f"unknown activation {name!r}")


def _norm_then_activation(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The tail shared by the conv layers: the optional ``norm_layer``, then the optional activation."""
    if layer.norm_layer is not None:
        x = layer.norm_layer(x)
    if layer.activation is not None:
        x = layer.activation(x)
    return x


class ConvLayer(nn.Module):
    """Conv2d (``conv2d``), optional norm (``norm_layer``), optional activation. No bias with BN."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, activation: str | None = "relu", norm: str | None = None):
        super().__init__()
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                                bias=norm != "BN")
        self.norm_layer = _make_norm(norm, out_channels)
        self.activation = _make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _norm_then_activation(self, self.conv2d(x))


class TransposedConvLayer(nn.Module):
    """x2 up-sampling by ConvTranspose2d (stride 2, output_padding 1; ``transposed_conv2d``), norm, act."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0,
                 activation: str | None = "relu", norm: str | None = None):
        super().__init__()
        self.transposed_conv2d = nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride=2,
                                                    padding=padding, output_padding=1,
                                                    bias=norm != "BN")
        self.norm_layer = _make_norm(norm, out_channels)
        self.activation = _make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _norm_then_activation(self, self.transposed_conv2d(x))


class UpsampleConvLayer(nn.Module):
    """Bilinear x2 up-sampling, then a stride-1 conv (``conv2d``), norm, activation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0,
                 activation: str | None = "relu", norm: str | None = None):
        super().__init__()
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, 1, padding, bias=norm != "BN")
        self.norm_layer = _make_norm(norm, out_channels)
        self.activation = _make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return _norm_then_activation(self, self.conv2d(x))


class ResidualBlock(nn.Module):
    """conv3x3 -> norm -> ReLU -> conv3x3 -> norm, add the input, ReLU.

    Children ``conv1``, ``bn1``, ``conv2``, ``bn2`` (no bias with BN)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, norm: str | None = None):
        super().__init__()
        if stride != 1 or in_channels != out_channels:
            raise ValueError("ResidualBlock without a downsample branch needs stride 1 and equal channels")
        bias = norm != "BN"
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=bias)
        self.bn1 = _make_norm(norm, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=bias)
        self.bn2 = _make_norm(norm, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        if self.bn1 is not None:
            out = self.bn1(out)
        out = torch.relu(out)
        out = self.conv2(out)
        if self.bn2 is not None:
            out = self.bn2(out)
        return torch.relu(out + x)


class ConvLSTM(nn.Module):
    """Convolutional LSTM cell. One conv (``Gates``) over cat[x, h] gives the gates in the order
    input, forget, output, cell; c' = f*c + i*g, h' = o*tanh(c'). The state is the tuple (h, c)."""

    def __init__(self, input_size: int, hidden_size: int, kernel_size: int = 3):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.Gates = nn.Conv2d(input_size + hidden_size, 4 * hidden_size, kernel_size,
                               padding=kernel_size // 2)

    def forward(self, x: torch.Tensor, prev_state: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        if prev_state is None:
            shape = (x.shape[0], self.hidden_size, *x.shape[2:])
            prev_state = (x.new_zeros(shape), x.new_zeros(shape))
        h_prev, c_prev = prev_state
        gates = self.Gates(torch.cat([x, h_prev], dim=1))
        i, f, o, g = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class ConvGRU(nn.Module):
    """Convolutional GRU cell (``reset_gate``, ``update_gate``, ``out_gate``; orthogonal init, zero bias):
    z = s(Wz[x,h]), r = s(Wr[x,h]), h~ = tanh(Wo[x, r*h]), h' = h*(1-z) + h~*z. The state is h."""

    def __init__(self, input_size: int, hidden_size: int, kernel_size: int = 3):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        padding = kernel_size // 2
        self.reset_gate = nn.Conv2d(input_size + hidden_size, hidden_size, kernel_size, padding=padding)
        self.update_gate = nn.Conv2d(input_size + hidden_size, hidden_size, kernel_size, padding=padding)
        self.out_gate = nn.Conv2d(input_size + hidden_size, hidden_size, kernel_size, padding=padding)
        for conv in (self.reset_gate, self.update_gate, self.out_gate):
            nn.init.orthogonal_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor, prev_state: torch.Tensor | None = None) -> torch.Tensor:
        if prev_state is None:
            prev_state = x.new_zeros((x.shape[0], self.hidden_size, *x.shape[2:]))
        stacked = torch.cat([x, prev_state], dim=1)
        z = torch.sigmoid(self.update_gate(stacked))
        r = torch.sigmoid(self.reset_gate(stacked))
        candidate = torch.tanh(self.out_gate(torch.cat([x, prev_state * r], dim=1)))
        return prev_state * (1 - z) + candidate * z


def make_recurrent_block(kind: str, input_size: int, hidden_size: int, kernel_size: int = 3) -> nn.Module:
    if kind == "convlstm":
        return ConvLSTM(input_size, hidden_size, kernel_size)
    if kind == "convgru":
        return ConvGRU(input_size, hidden_size, kernel_size)
    raise ValueError(f"recurrent_block_type must be 'convlstm' or 'convgru', got {kind!r}")


def recurrent_output(state):
    """The feature map a recurrent block passes on: h of an LSTM (h, c) state, the GRU state itself."""
    return state[0] if isinstance(state, tuple) else state


class RecurrentConvLayer(nn.Module):
    """ConvLayer (``conv``) then a ConvLSTM/ConvGRU (``recurrent_block``) with hidden size = out channels.
    Returns (features, new_state)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int = 0, recurrent_block_type: str = "convlstm", activation: str | None = "relu",
                 norm: str | None = None):
        super().__init__()
        self.conv = ConvLayer(in_channels, out_channels, kernel_size, stride, padding, activation, norm)
        self.recurrent_block = make_recurrent_block(recurrent_block_type, out_channels, out_channels, 3)

    def forward(self, x: torch.Tensor, prev_state=None):
        x = self.conv(x)
        state = self.recurrent_block(x, prev_state)
        return recurrent_output(state), state


# ------------------------------------------------------------------------------------------------------
# The U-Net
# ------------------------------------------------------------------------------------------------------

def _skip(kind: str, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    return x + skip if kind == "sum" else torch.cat([x, skip], dim=1)


class UNetRecurrent(nn.Module):
    """Recurrent U-Net: head, ``num_encoders`` recurrent stride-2 encoders, residual blocks at the
    bottleneck, decoders with skip connections (sum or concat), 1x1 prediction + final activation."""

    def __init__(self, num_input_channels: int, num_output_channels: int = 1, skip_type: str = "sum",
                 recurrent_block_type: str = "convlstm", activation: str | None = "sigmoid",
                 num_encoders: int = 4, base_num_channels: int = 32, num_residual_blocks: int = 2,
                 norm: str | None = None, use_upsample_conv: bool = True):
        super().__init__()
        if skip_type not in ("sum", "concat"):
            raise ValueError(f"skip_type must be 'sum' or 'concat', got {skip_type!r}")
        if num_encoders < 1:
            raise ValueError(f"num_encoders must be >= 1, got {num_encoders}")
        _check_norm(norm)
        self.skip_type = skip_type
        self.num_encoders = num_encoders
        self.activation = _make_activation(activation)
        skip_factor = 2 if skip_type == "concat" else 1
        c = base_num_channels

        self.head = ConvLayer(num_input_channels, c, kernel_size=5, stride=1, padding=2)
        self.encoders = nn.ModuleList(
            RecurrentConvLayer(c * 2**i, c * 2 ** (i + 1), kernel_size=5, stride=2, padding=2,
                               recurrent_block_type=recurrent_block_type, norm=norm)
            for i in range(num_encoders))
        bottleneck = c * 2**num_encoders
        self.resblocks = nn.ModuleList(ResidualBlock(bottleneck, bottleneck, norm=norm)
                                       for _ in range(num_residual_blocks))
        decoder_cls = UpsampleConvLayer if use_upsample_conv else TransposedConvLayer
        self.decoders = nn.ModuleList(
            decoder_cls(skip_factor * c * 2 ** (i + 1), c * 2**i, kernel_size=5, padding=2, norm=norm)
            for i in reversed(range(num_encoders)))
        self.pred = ConvLayer(skip_factor * c, num_output_channels, kernel_size=1, activation=None,
                              norm=norm)

    def forward(self, x: torch.Tensor, prev_states: list | None = None):
        multiple = 2**self.num_encoders
        if x.shape[-2] % multiple or x.shape[-1] % multiple:
            raise ValueError(f"input height and width must be multiples of 2**num_encoders = {multiple}, "
                             f"got {tuple(x.shape[-2:])}; pad with pad_to_multiple(x, {multiple}) first")
        if prev_states is None:
            prev_states = [None] * self.num_encoders
        elif len(prev_states) != self.num_encoders:
            raise ValueError(f"expected {self.num_encoders} recurrent states, got {len(prev_states)}")

        x = self.head(x)
        head = x
        blocks, states = [], []
        for encoder, prev in zip(self.encoders, prev_states):
            x, state = encoder(x, prev)
            blocks.append(x)
            states.append(state)
        for resblock in self.resblocks:
            x = resblock(x)
        for decoder, skip in zip(self.decoders, reversed(blocks)):
            x = decoder(_skip(self.skip_type, x, skip))
        x = self.pred(_skip(self.skip_type, x, head))
        if self.activation is not None:
            x = self.activation(x)
        return x, states


class E2VIDRecurrent(nn.Module):
    """Wrapper with the official config-dict constructor; its only child is ``unetrecurrent``.

    ``forward(voxel (N, num_bins, H, W), states | None) -> (image (N, 1, H, W) in [0, 1], new_states)``.
    Pass ``states=None`` to start from zero state (a reset); feed the returned list back on the next
    window to keep the recurrence. H and W must be multiples of ``pad_multiple``.
    """

    def __init__(self, config: dict):
        super().__init__()
        if "num_bins" not in config:
            raise ValueError("E2VID config needs 'num_bins' (the number of voxel-grid bins)")
        cfg = {**E2VID_DEFAULTS, **config}
        self.num_bins = int(cfg["num_bins"])
        self.num_encoders = int(cfg["num_encoders"])
        self.pad_multiple = 2**self.num_encoders
        self.unetrecurrent = UNetRecurrent(
            num_input_channels=self.num_bins, num_output_channels=1, skip_type=cfg["skip_type"],
            recurrent_block_type=cfg["recurrent_block_type"], activation="sigmoid",
            num_encoders=self.num_encoders, base_num_channels=int(cfg["base_num_channels"]),
            num_residual_blocks=int(cfg["num_residual_blocks"]), norm=cfg["norm"],
            use_upsample_conv=bool(cfg["use_upsample_conv"]))

    def forward(self, voxel: torch.Tensor, states: list | None = None):
        if voxel.dim() != 4 or voxel.shape[1] != self.num_bins:
            raise ValueError(f"expected a voxel grid (N, {self.num_bins}, H, W), got {tuple(voxel.shape)}")
        return self.unetrecurrent(voxel, states)


# ------------------------------------------------------------------------------------------------------
# Padding as in the reference inference (CropParameters + ReflectionPad2d, §A.5)
# ------------------------------------------------------------------------------------------------------

def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Reflection-pad the last two dims of ``x`` up to the smallest multiples of ``multiple``.

    The padding is centred with the odd pixel on top/left: top = ceil(p/2), bottom = floor(p/2) (same for
    left/right). Returns ``(padded, crop)`` with ``crop = (top, bottom, left, right)`` for
    :func:`crop_back`. Reflection needs each pad to be smaller than the side it pads.
    """
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    h, w = x.shape[-2:]
    ph = math.ceil(h / multiple) * multiple - h
    pw = math.ceil(w / multiple) * multiple - w
    top, bottom = (ph + 1) // 2, ph // 2
    left, right = (pw + 1) // 2, pw // 2
    crop = (top, bottom, left, right)
    if ph == 0 and pw == 0:
        return x, crop
    if top >= h or left >= w:
        raise ValueError(f"input {h}x{w} is too small to reflection-pad to a multiple of {multiple}")
    return F.pad(x, (left, right, top, bottom), mode="reflect"), crop


def crop_back(x: torch.Tensor, crop: tuple[int, int, int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple` on the last two dims (the network output keeps the padded size)."""
    top, bottom, left, right = crop
    h, w = x.shape[-2:]
    return x[..., top : h - bottom, left : w - right]
