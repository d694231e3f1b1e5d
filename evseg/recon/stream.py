"""Driving a reconstruction method over a DSEC sequence: streaming, or one reset window per sample.

Every method has the same small interface (``reset()``, ``update(x, y, t, p)`` with rectified, time-sorted
events, ``frame(t_us)`` giving a float image in [0, 1] in the rectified frame), so the two modes below
work for the high-pass filter, E2VID and FireNet alike:

- ``stream``: one pass through the sequence, keeping the recurrent state; the events are fed in windows
  of a fixed number of events (E2VID's fixed-size event windows), and the window in progress is cut at
  every output time, so each frame has seen every event before its timestamp.
- ``per_sample``: the ESS protocol (what ESS, and so HPL-ESS's event tensors, feed E2VID): the state is
  reset, then the ``num_chunks`` equal-count chunks of the last ``num_chunks x events_per_chunk`` events
  before the label time are fed oldest first.

Networks see the DSEC trilinear voxel grid of each window built on rectified coordinates, normalised as
E2VID's ``EventPreprocessor`` does; ESS feeds E2VID the same way, so frames align with the labels.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch

from evseg.errors import DataError
from evseg.events import EventSlicer, e2vid_normalize, rectify_events, voxel_grid
from evseg.recon.e2vid import crop_back, pad_to_multiple
from evseg.recon.postprocess import IntensityRescaler, unsharp_mask

READ_BLOCK_US = 50_000  # events are read 50 ms at a time, whatever the gap between outputs


class NetworkReconstructor:
    """E2VID or FireNet, run recurrently on the voxel grids of successive event windows."""

    def __init__(self, model: torch.nn.Module, num_bins: int, height: int, width: int, multiple: int,
                 device: str | torch.device = "cpu", unsharp: bool = True, auto_hdr: bool = False,
                 squash: bool = False):
        self.model = model.eval().to(device)
        self.num_bins, self.height, self.width, self.multiple = num_bins, height, width, multiple
        self.device = torch.device(device)
        self.unsharp, self.squash = unsharp, squash
        self.rescale = IntensityRescaler(auto_hdr=auto_hdr)
        self.reset()

    def reset(self) -> None:
        self.states = None
        self.image = np.full((self.height, self.width), 0.5, np.float32)  # nothing seen yet: mid-grey
        self.rescale.reset()

    @torch.inference_mode()
    def update(self, x, y, t, p) -> None:
        if len(t) == 0:
            return
        grid = e2vid_normalize(voxel_grid(x, y, t, p, self.num_bins, self.height, self.width))
        voxel = torch.from_numpy(grid)[None].to(self.device)
        padded, crop = pad_to_multiple(voxel, self.multiple)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            image, self.states = self.model(padded, self.states)
        image = crop_back(image, crop)[0, 0].float()
        if self.squash:  # FireNet's prediction has no final activation
            image = image.clamp(0.0, 1.0)
        self.image = image.cpu().numpy()

    def frame(self, t_us: int) -> np.ndarray:
        image = unsharp_mask(self.image) if self.unsharp else self.image
        return self.rescale(image)


def stream_frames(slicer: EventSlicer, rectify_map: np.ndarray, output_times_us, reconstructor,
                  events_per_window: int) -> Iterator[tuple[int, np.ndarray, int]]:
    """Yield ``(k, frame, events since the previous output)`` at every output time, in one pass."""
    reconstructor.reset()
    t_prev = slicer.time_range_us[0]
    pending = []  # events of the window in progress, as (x, y, t, p) arrays
    for k, t_out in enumerate(output_times_us):
        if t_out < t_prev:
            raise ValueError("output times must be increasing")
        count = 0
        for a in range(t_prev, t_out, READ_BLOCK_US):
            events = slicer.get_events(a, min(a + READ_BLOCK_US, t_out))
            if events is None:
                raise DataError(slicer.path, f"events up to {t_out} µs (image clock) are not covered by "
                                "ms_to_idx", "check that the output times belong to this recording")
            x, y = rectify_events(events.x, events.y, rectify_map)
            pending.append((x, y, events.t, events.p))
            count += len(events)
            pending = _feed_full_windows(reconstructor, pending, events_per_window)
        if pending:  # cut the window in progress at the output time
            reconstructor.update(*(np.concatenate(a) for a in zip(*pending)))
            pending = []
        yield k, reconstructor.frame(t_out), count
        t_prev = t_out


def _feed_full_windows(reconstructor, pending: list, size: int) -> list:
    """Feed every complete window of ``size`` events; return the rest."""
    total = sum(len(chunk[2]) for chunk in pending)
    if total < size:
        return pending
    x, y, t, p = (np.concatenate(a) for a in zip(*pending))
    full = (total // size) * size
    for start in range(0, full, size):
        reconstructor.update(x[start : start + size], y[start : start + size], t[start : start + size],
                             p[start : start + size])
    return [(x[full:], y[full:], t[full:], p[full:])] if full < total else []


def per_sample_frame(x, y, t, p, t_us: int, reconstructor, num_chunks: int) -> np.ndarray:
    """ESS protocol: reset, feed ``num_chunks`` equal-count chunks (oldest first), read the frame."""
    reconstructor.reset()
    per_chunk = len(t) // num_chunks
    for chunk in range(num_chunks):
        s = slice(chunk * per_chunk, (chunk + 1) * per_chunk)
        reconstructor.update(x[s], y[s], t[s], p[s])
    return reconstructor.frame(t_us)


def window_size(events_per_pixel: float, height: int, width: int) -> int:
    """E2VID's default window: ``events_per_pixel`` (0.35) events per pixel."""
    return max(1, math.floor(events_per_pixel * height * width))
