"""The picture of what pre-training learned: per event window, the teacher's contexts (its k-means clusters)
and the cosine similarity of every patch to one query patch, for the teacher, the student and the network at
its random initialisation (in a short run the EMA teacher still lags far behind the student)."""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from evseg.pretrain.context import cosine_kmeans
from evseg.pretrain.model import ECDDPNet
from evseg.viz import panel, signed_map

__all__ = ["similarity_panel"]


def _palette(count: int) -> np.ndarray:
    hues = (np.arange(count) * 180 // max(count, 1)).astype(np.uint8)
    hsv = np.stack([hues, np.full(count, 200, np.uint8), np.full(count, 230, np.uint8)], -1)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]


def _heat(values: np.ndarray, size: tuple[int, int], query: tuple[int, int]) -> np.ndarray:
    """Cosine similarities in [-1, 1] as a colour map at ``size`` (h, w), the query patch outlined."""
    scaled = np.clip((values + 1.0) * 127.5, 0, 255).astype(np.uint8)
    tile = cv2.applyColorMap(cv2.resize(scaled, size[::-1], interpolation=cv2.INTER_NEAREST), cv2.COLORMAP_VIRIDIS)
    tile = cv2.cvtColor(tile, cv2.COLOR_BGR2RGB)
    ph, pw = size[0] // values.shape[0], size[1] // values.shape[1]
    cv2.rectangle(tile, (query[1] * pw, query[0] * ph), ((query[1] + 1) * pw - 1, (query[0] + 1) * ph - 1),
                  (255, 255, 255), 1)
    return tile


@torch.no_grad()
def similarity_panel(networks: dict[str, ECDDPNet], frames: list[Tensor], clusters: int, iterations: int,
                     seed: int = 0) -> np.ndarray:
    """One row per event input (C, H, W): the events (channel sum), the first network's contexts, and the
    similarity to the busiest patch for each of ``networks`` (name -> network, the teacher first)."""
    rows = []
    for frame in frames:
        size = tuple(frame.shape[-2:])
        outputs = [net.eval().tokens(frame[None].float()) for net in networks.values()]
        tokens, grid = outputs[0][0][0], outputs[0][1]
        activity = F.adaptive_avg_pool2d(frame.abs().sum(0, keepdim=True)[None], grid)[0, 0]
        query = divmod(int(activity.argmax()), grid[1])
        generator = torch.Generator().manual_seed(seed)
        assignment = cosine_kmeans(tokens[None], clusters, iterations, generator)[0].view(grid).numpy()
        contexts = cv2.resize(_palette(clusters)[assignment], size[::-1], interpolation=cv2.INTER_NEAREST)
        similarity = []
        for out, _ in outputs:
            t = F.normalize(out[0].float(), dim=-1)
            similarity.append(_heat((t @ t[query[0] * grid[1] + query[1]]).view(grid).numpy(), size, query))
        rows.append([signed_map(frame.sum(0).numpy()), contexts, *similarity])
    names = list(networks)
    return panel(rows, ["events", f"contexts: {names[0]}", *(f"similarity: {name}" for name in names)])
