"""Pictures for people: event frames, label colours and captioned panels (uint8 RGB arrays)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np


def event_frame(x, y, p, height: int, width: int) -> np.ndarray:
    """Events drawn on white: pixels with more positive events red, more negative blue."""
    xi, yi = np.rint(np.asarray(x, np.float64)).astype(np.int64), np.rint(np.asarray(y, np.float64)).astype(np.int64)
    inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
    balance = np.zeros((height, width), np.float32)
    np.add.at(balance, (yi[inside], xi[inside]), np.where(np.asarray(p)[inside] > 0, 1.0, -1.0))
    image = np.full((height, width, 3), 255, np.uint8)
    image[balance > 0] = (220, 40, 40)
    image[balance < 0] = (40, 70, 220)
    return image


def signed_map(values: np.ndarray) -> np.ndarray:
    """A signed 2-D array as red (positive) / blue (negative) on white, scaled to its 99th percentile."""
    scale = max(float(np.percentile(np.abs(values), 99)), 1e-6)
    v = np.clip(values / scale, -1, 1)[..., None]
    red, blue, white = np.array([220, 40, 40]), np.array([40, 70, 220]), np.array([255, 255, 255])
    return np.where(v > 0, white + v * (red - white), white - v * (blue - white)).astype(np.uint8)


def gray(image: np.ndarray) -> np.ndarray:
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image


def placeholder(height: int, width: int, text: str) -> np.ndarray:
    tile = np.full((height, width, 3), 200, np.uint8)
    cv2.putText(tile, text, (4, height // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (60, 60, 60), 1, cv2.LINE_AA)
    return tile


def panel(rows: list[list[np.ndarray]], column_titles: list[str], scale: int = 2) -> np.ndarray:
    """A grid of equally sized RGB tiles with a title row, each tile enlarged ``scale`` times."""
    height, width = rows[0][0].shape[:2]
    tiles = [[cv2.resize(t, (width * scale, height * scale), interpolation=cv2.INTER_NEAREST) for t in row]
             for row in rows]
    header = np.full((22, width * scale * len(column_titles), 3), 255, np.uint8)
    for i, title in enumerate(column_titles):
        cv2.putText(header, title, (i * width * scale + 4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return np.vstack([header] + [np.hstack(row) for row in tiles])


def save_rgb(path: str | Path, image: np.ndarray) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")



def confusion_picture(matrix: np.ndarray, names: Sequence[str], title: str = "") -> np.ndarray:
    """The row-normalised confusion matrix (rows = ground truth) with class names and a percentage per cell.

    Rows without ground-truth pixels are grey. Drawn with matplotlib's Agg canvas directly (not pyplot), so it
    neither switches the caller's backend nor leaves a figure open.
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matrix = np.asarray(matrix, np.float64)
    n = len(names)
    if matrix.shape != (n, n):
        raise ValueError(f"confusion matrix of shape {matrix.shape} for {n} class names")
    rows = matrix.sum(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(rows > 0, matrix / rows, np.nan)

    size = 2.5 + 0.42 * n
    fig = Figure(figsize=(size, size), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    cmap = colormaps["Blues"].with_extremes(bad=(0.85, 0.85, 0.85))
    ax.imshow(np.ma.masked_invalid(share), cmap=cmap, vmin=0, vmax=1)
    font = max(6, 11 - n // 4)
    for g in range(n):
        for p in range(n):
            if not np.isnan(share[g, p]):
                ax.text(p, g, f"{100 * share[g, p]:.0f}", ha="center", va="center", fontsize=font,
                        color="white" if share[g, p] > 0.5 else "black")
    ax.set_xticks(range(n), names, rotation=90, fontsize=font + 1)
    ax.set_yticks(range(n), names, fontsize=font + 1)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.set_title(title or "confusion matrix (% of each ground-truth row)")
    fig.tight_layout()
    canvas.draw()
    image = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    fig.clear()
    return image
