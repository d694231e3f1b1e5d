"""Unlabelled event windows for pre-training, and the multi-crop batches ECDDP trains on.

Any DSEC-format ``events.h5`` (``events/{x,y,t,p}``, ``ms_to_idx``, ``t_offset``) is a recording: the
synthetic drives of the ``simulated`` split, or every ``events.h5`` below the folders a user lists (DSEC's
``<seq>/events/left/``, E-TartanAir converted to that format). With ``rectify``, the ``rectify_map.h5``
beside each file undistorts the events, as for DSEC-Semantic.

A window is the ``num_chunks * events_per_chunk`` events before a random event, turned into the *same*
network input the segmentation rules feed (``train.input`` of the ESS tensor: evseg.adapt.data.InputSpec),
so that the pre-trained patch embedding fits the fine-tuned network as it is (README, fidelity: ECDDP
pre-trains on a 6-bin voxel grid and re-initialises the patch embedding for fine-tuning).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from evseg.adapt.data import InputSpec
from evseg.errors import DataError
from evseg.events import EventSlicer, ess_event_tensor, load_rectify_map, rectify_events
from evseg.pretrain.crops import apply_grid, draw_masks, random_resized_box

__all__ = ["EventRecordings", "PretrainBatches", "find_event_files"]

EVENTS_FILE = "events.h5"


def find_event_files(folders: list[str | Path]) -> list[Path]:
    """Every ``events.h5`` below each folder (or the file itself), sorted; a folder without one is an error."""
    files: list[Path] = []
    for folder in map(Path, folders):
        if folder.is_file() and folder.name == EVENTS_FILE:
            found = [folder]
        elif folder.is_dir():
            found = sorted(folder.rglob(EVENTS_FILE))
        else:
            raise DataError(folder, "does not exist", "list folders of DSEC-format recordings (or events.h5 files) "
                            "in pretrain.data.folders")
        if not found:
            raise DataError(folder, f"holds no {EVENTS_FILE}", "pre-training reads DSEC-format event files "
                            "(events/{x,y,t,p}, ms_to_idx, t_offset), e.g. <seq>/events/left/events.h5")
        files += found
    return files


class EventRecordings:
    """Event windows of a list of recordings, as network inputs (float32 (C, crop_height, width)).

    Files are opened per process (loader workers must not share HDF5 handles), on first use.
    """

    def __init__(self, files: list[Path], sensor_size: tuple[int, int], crop_height: int, ess: dict,
                 spec: InputSpec, rectify: bool):
        self.files, self.sensor_size, self.crop_height = [Path(f) for f in files], tuple(sensor_size), crop_height
        self.ess, self.spec, self.rectify = ess, spec, rectify
        self.window = ess["num_chunks"] * ess["events_per_chunk"]
        self._slicers: dict[int, EventSlicer] = {}
        self._maps: dict[int, np.ndarray] = {}
        self._pid = os.getpid()
        counts = []
        for i in range(len(self.files)):  # every file opened once here, so that a bad one fails at the start
            counts.append(self._slicer(i).num_events)
            if rectify:
                self._rectify_map(i)
        self.close()
        usable = np.maximum(np.asarray(counts, dtype=np.int64) - self.window, 0)
        if not usable.any():
            raise DataError(self.files[0].parent, f"no recording holds more than one window of {self.window} "
                            f"events ({len(self.files)} files, at most {max(counts)} events)",
                            "pre-train on longer recordings, or lower dsec.ess.events_per_chunk")
        self.counts = np.asarray(counts, dtype=np.int64)
        # a window ends at a uniformly drawn event of all recordings (past each file's first window)
        self.weights = usable / usable.sum()

    def __len__(self) -> int:
        return len(self.files)

    def __getstate__(self):
        return {**self.__dict__, "_slicers": {}, "_pid": None}

    def _slicer(self, i: int) -> EventSlicer:
        if self._pid != os.getpid():
            self._slicers, self._pid = {}, os.getpid()
        if i not in self._slicers:
            self._slicers[i] = EventSlicer(self.files[i])
        return self._slicers[i]

    def _rectify_map(self, i: int) -> np.ndarray:
        if i not in self._maps:
            path = self.files[i].parent / "rectify_map.h5"
            if not path.is_file():
                raise DataError(path, f"is missing: pretrain.data.rectify needs the rectification map beside "
                                f"{self.files[i].name}", "put the recording's rectify_map.h5 there, or set "
                                "pretrain.data.rectify: false for recordings that are already undistorted")
            self._maps[i] = load_rectify_map(path, self.sensor_size)
        return self._maps[i]

    def draw(self, rng: np.random.Generator) -> tuple[int, int]:
        """A random window: (file index, index of the event after its end)."""
        i = int(rng.choice(len(self.files), p=self.weights))
        return i, int(rng.integers(self.window, self.counts[i] + 1))

    def input(self, file: int, end: int) -> np.ndarray:
        """The network input of the window of ``window`` events ending before event ``end`` of ``file``.

        Only the ESS chunks that hold the kept channels are read and binned: chunk c of the window is its
        events [c * events_per_chunk, (c + 1) * events_per_chunk), whichever chunks are around it.
        """
        ess, (first, last) = self.ess, self.spec.event_channels
        bins, per_chunk = ess["bins_per_chunk"], ess["events_per_chunk"]
        chunk0, chunk1 = first // bins, -(-last // bins)
        start = end - self.window + chunk0 * per_chunk
        events = self._slicer(file).get_events_by_index(start, start + (chunk1 - chunk0) * per_chunk)
        x, y = events.x, events.y
        height, width = self.sensor_size
        if self.rectify:
            try:
                x, y = rectify_events(x, y, self._rectify_map(file))
            except ValueError as err:
                raise DataError(self.files[file], f"its events do not fit the rectification map: {err}",
                                "set dsec.sensor_size to this camera's resolution") from err
        elif x.size and (int(x.max()) >= width or int(y.max()) >= height):
            raise DataError(self.files[file], f"holds events at x up to {int(x.max())}, y up to {int(y.max())}, "
                            f"outside the {width}x{height} sensor of dsec.sensor_size",
                            "set dsec.sensor_size to this camera's resolution (height, width)")
        tensor = ess_event_tensor(x, y, events.t, events.p, height, width, self.crop_height, chunk1 - chunk0,
                                  bins, ess["official_truncation"])[first - chunk0 * bins: last - chunk0 * bins]
        tensor = tensor.sum(0, keepdims=True) if self.spec.sum_event_channels else tensor
        return self.spec.target_input(tensor)

    def close(self) -> None:
        for slicer in self._slicers.values():
            slicer.close()
        self._slicers.clear()


class PretrainBatches(torch.utils.data.Dataset):
    """Item ``step`` is the whole batch of that step, drawn from ``default_rng([seed, step])`` (so a resumed
    run sees the batches of an uninterrupted one). Keys, B samples first:

    - ``full`` (B, C, h, w): the whole crop, which the teacher clusters into contexts;
    - ``global`` (B, G, C, g, g) and ``global_grid`` (B, G, g/s, g/s, 2): the global crops and where their
      tokens lie in the whole crop (``CropBox.grid``; s is the token stride);
    - ``local`` (B, L, C, l, l): the local crops;
    - ``masks`` (B, G, (g/s)^2) bool: iBOT's masked tokens of the global crops.
    """

    def __init__(self, recordings: EventRecordings, seed: int, batch_size: int, crops: dict, masks: dict,
                 token_stride: int):
        self.recordings, self.seed, self.batch_size = recordings, seed, batch_size
        self.crops, self.masks, self.stride = crops, masks, token_stride
        frame = (recordings.crop_height, recordings.sensor_size[1])
        full = tuple(crops["full"])
        if full[0] > frame[0] or full[1] > frame[1]:
            raise ValueError(f"pretrain.crops.full {list(full)} exceeds the {frame[0]}x{frame[1]} event frame")
        sizes = {"full": full, "global": (crops["global"]["size"],) * 2, "local": (crops["local"]["size"],) * 2}
        for name, size in sizes.items():
            if size[0] % token_stride or size[1] % token_stride:
                raise ValueError(f"pretrain.crops.{name} {list(size)} is not a multiple of the token stride "
                                 f"{token_stride} (pretrain.token_level): the tokens would not tile the crop")

    def __len__(self) -> int:
        return 2**62  # indexed by step; the loader's sampler says which steps

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, step])
        crops = self.crops
        full_size = tuple(crops["full"])
        glob, local = crops["global"], crops["local"]
        g_tokens = (glob["size"] // self.stride,) * 2
        out: dict[str, list] = {"full": [], "global": [], "global_grid": [], "local": []}
        for _ in range(self.batch_size):
            frame = torch.from_numpy(self.recordings.input(*self.recordings.draw(rng)))
            top = int(rng.integers(0, frame.shape[1] - full_size[0] + 1))
            left = int(rng.integers(0, frame.shape[2] - full_size[1] + 1))
            full = frame[:, top: top + full_size[0], left: left + full_size[1]]
            out["full"].append(full)
            views, grids = [], []
            for _ in range(glob["number"]):
                box = random_resized_box(rng, full_size, tuple(glob["scale"]), flip=crops["flip"])
                views.append(apply_grid(full, box.grid((glob["size"],) * 2, full_size)))
                grids.append(box.grid(g_tokens, full_size))
            out["global"].append(torch.stack(views))
            out["global_grid"].append(torch.stack(grids))
            views = [apply_grid(full, random_resized_box(rng, full_size, tuple(local["scale"]), flip=crops["flip"])
                                .grid((local["size"],) * 2, full_size)) for _ in range(local["number"])]
            out["local"].append(torch.stack(views) if views else full.new_zeros((0, len(full), *(local["size"],) * 2)))
        batch = {key: torch.stack(values) for key, values in out.items()}
        masks = draw_masks(rng, self.batch_size * glob["number"], g_tokens, self.masks["probability"],
                           tuple(self.masks["ratio"]))
        batch["masks"] = torch.from_numpy(masks).view(self.batch_size, glob["number"], -1)
        return batch
