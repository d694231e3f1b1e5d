"""Pictures for people: event frames, label colours and captioned panels (uint8 RGB arrays)."""

from __future__ import annotations

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
