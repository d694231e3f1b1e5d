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
    """E2VID or FireNet, run recurrently on the voxel grids of successive event windows.

    It can carry several independent streams (``streams``; one per sequence): ``update_many`` runs the
    windows of several streams as one batch, which is how sequences share a GPU. In eval mode every batch
    element is computed independently, so batching does not change the frames.
    """

    def __init__(self, model: torch.nn.Module, num_bins: int, height: int, width: int, multiple: int,
                 device: str | torch.device = "cpu", unsharp: bool = True, auto_hdr: bool = False,
                 squash: bool = False, streams: int = 1):
        self.model = model.eval().to(device)
        self.num_bins, self.height, self.width, self.multiple = num_bins, height, width, multiple
        self.device = torch.device(device)
        self.unsharp, self.squash = unsharp, squash
        self.rescalers = [IntensityRescaler(auto_hdr=auto_hdr) for _ in range(streams)]
        self.states: list = [None] * streams
        self.images: list = [None] * streams
        self.reset()

    def reset(self, stream: int | None = None) -> None:
        for s in range(len(self.states)) if stream is None else [stream]:
            self.states[s] = None
            self.images[s] = np.full((self.height, self.width), 0.5, np.float32)  # nothing seen yet: mid-grey
            self.rescalers[s].reset()

    def update(self, x, y, t, p, stream: int = 0) -> None:
        self.update_many({stream: (x, y, t, p)})

    @torch.inference_mode()
    def update_many(self, windows: dict) -> None:
        """Feed one window of events to each of several streams, ``{stream: (x, y, t, p)}``, in one batch."""
        windows = {s: w for s, w in windows.items() if len(w[2])}
        # Streams that have no state yet start from zeros inside the model: batch them separately.
        for group in ([s for s in windows if self.states[s] is not None], [s for s in windows if self.states[s] is None]):
            if group:
                self._forward(group, [windows[s] for s in group])

    def _forward(self, streams: list, windows: list) -> None:
        grids = [e2vid_normalize(voxel_grid(*w, self.num_bins, self.height, self.width)) for w in windows]
        voxel = torch.from_numpy(np.stack(grids)).to(self.device)
        padded, crop = pad_to_multiple(voxel, self.multiple)
        states = None if self.states[streams[0]] is None else _cat_states([self.states[s] for s in streams])
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            images, states = self.model(padded, states)
        images = crop_back(images, crop)[:, 0].float()
        if self.squash:  # FireNet's prediction has no final activation
            images = images.clamp(0.0, 1.0)
        for k, (s, image) in enumerate(zip(streams, images.cpu().numpy())):
            self.images[s] = image
            self.states[s] = _take_state(states, k)

    def frame(self, t_us: int, stream: int = 0) -> np.ndarray:
        image = unsharp_mask(self.images[stream]) if self.unsharp else self.images[stream]
        return self.rescalers[stream](image)


def _cat_states(per_stream: list):
    """Join the recurrent states of several streams (nested lists/tuples of tensors) along the batch."""
    first = per_stream[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(per_stream)
    return type(first)(_cat_states([s[i] for s in per_stream]) for i in range(len(first)))


def _take_state(states, k: int):
    """Batch element ``k`` of a nested state, keeping a batch dimension of 1."""
    if isinstance(states, torch.Tensor):
        return states[k : k + 1]
    return type(states)(_take_state(s, k) for s in states)


def stream_items(slicer: EventSlicer, rectify_map: np.ndarray, output_times_us, events_per_window: int):
    """The steps of one streaming pass: ``("window", (x, y, t, p))`` to feed, and ``("output", k, t_us,
    events since the previous output)`` once every event before output ``k`` has been fed."""
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
            full, pending = _split_full_windows(pending, events_per_window)
            for window in full:
                yield "window", window
        if pending:  # cut the window in progress at the output time
            yield "window", tuple(np.concatenate(a) for a in zip(*pending))
            pending = []
        yield "output", k, t_out, count
        t_prev = t_out


def stream_frames(slicer: EventSlicer, rectify_map: np.ndarray, output_times_us, reconstructor,
                  events_per_window: int) -> Iterator[tuple[int, np.ndarray, int]]:
    """Yield ``(k, frame, events since the previous output)`` at every output time, in one pass."""
    reconstructor.reset()
    for item in stream_items(slicer, rectify_map, output_times_us, events_per_window):
        if item[0] == "window":
            reconstructor.update(*item[1])
        else:
            _, k, t_out, count = item
            yield k, reconstructor.frame(t_out), count


def stream_frames_batched(sources: list, reconstructor: NetworkReconstructor,
                          events_per_window: int) -> Iterator[tuple[int, int, np.ndarray, int]]:
    """``stream_frames`` for several sequences at once, ``sources = [(slicer, rectify_map, output_times)]``,
    one stream each: every step feeds the next window of every unfinished sequence as one batch. Yields
    ``(source index, k, frame, events since the previous output)``."""
    reconstructor.reset()
    items = [stream_items(slicer, rmap, times, events_per_window) for slicer, rmap, times in sources]
    active = list(range(len(sources)))
    while active:
        windows = {}
        for s in list(active):
            for item in items[s]:  # advance this sequence to its next window, emitting outputs on the way
                if item[0] == "window":
                    windows[s] = item[1]
                    break
                _, k, t_out, count = item
                yield s, k, reconstructor.frame(t_out, stream=s), count
            else:
                active.remove(s)
        reconstructor.update_many(windows)


def _split_full_windows(pending: list, size: int) -> tuple[list, list]:
    """Cut the pending event arrays into complete windows of ``size`` events and the rest."""
    total = sum(len(chunk[2]) for chunk in pending)
    if total < size:
        return [], pending
    x, y, t, p = (np.concatenate(a) for a in zip(*pending))
    full = (total // size) * size
    windows = [(x[a : a + size], y[a : a + size], t[a : a + size], p[a : a + size]) for a in range(0, full, size)]
    return windows, ([(x[full:], y[full:], t[full:], p[full:])] if full < total else [])


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
