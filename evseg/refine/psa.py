"""SeCo's pixel semantic aggregation, PSA (reference/seco_unimatch.md §1.3): turn sparse, speckled pixel
pseudo-labels into region labels with the help of class-agnostic masks (SAM in SeCo).

Stuff classes: every automatic mask (in the generator's output order) takes the stuff class that labels more than
20 % of its labelled pixels, and is painted whole. Thing classes: every 8-connected component of a thing class
becomes a prompt (a box grown from its minimum-area rectangle, and 1-2 low-entropy points), and the mask the prompt
gives is painted over the stuff. Pixels that no accepted region covers are ignored (SeCo) or keep their pixel label
(SeCoV2). This module holds everything but the mask generator itself, so that a SAM or a superpixel backend can
supply the masks; it follows the released code where the paper differs (§1.3 "Paper vs. code differences").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from evseg.data.classes import CLASS_SETS, IGNORE

# Which classes prompt SAM (things) and which vote on the automatic masks (stuff). SeCo's released code prompts
# every object class; SeCoV2 prompts only pole, traffic light and traffic sign, and lets every other class vote.
# Pole, traffic light and traffic sign count as things in both.
THING_CLASSES: dict[str, dict[str, tuple[int, ...]]] = {
    "seco": {
        "cityscapes19": (5, 6, 7, 11, 12, 13, 14, 15, 16, 17, 18),
        "ess11": (3, 4, 8, 10),  # person, pole, car, traffic sign
    },
    "secov2": {
        "cityscapes19": (5, 6, 7),
        "ess11": (4, 10),  # pole, traffic sign (ESS's 11 classes have no traffic light)
    },
}


def class_partition(class_set: str, num_classes: int,
                    partition: str = "seco") -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(stuff, things) class ids of ``class_set`` under ``partition`` (seco or secov2); stuff is every class that
    is not a thing."""
    if partition not in THING_CLASSES:
        raise ValueError(f"unknown PSA partition {partition!r}; known: {sorted(THING_CLASSES)}")
    if class_set not in THING_CLASSES[partition]:
        raise ValueError(f"no thing classes for class set {class_set!r}; known: {sorted(THING_CLASSES[partition])}")
    expected = CLASS_SETS[class_set].num_classes
    if num_classes != expected:
        raise ValueError(f"class set {class_set!r} has {expected} classes, not {num_classes}")
    things = THING_CLASSES[partition][class_set]
    return tuple(c for c in range(num_classes) if c not in things), things


def stuff_vote(masks: Iterable[np.ndarray], label: np.ndarray, stuff_classes: Sequence[int],
               threshold: float = 0.2) -> np.ndarray:
    """uint8 canvas (255 where no mask was accepted) from the stuff vote of each mask, in order.

    The fraction of a stuff class is taken over the mask's labelled (non-ignore) pixels, thing-labelled ones
    included, and must be strictly above ``threshold``. The whole mask is painted, its ignored pixels too; later
    masks overwrite earlier ones; masks without a labelled pixel are skipped. Ties go to the lowest class id.
    """
    label = np.asarray(label)
    stuff = np.array(sorted(stuff_classes), dtype=np.int64)  # sorted, so argmax's first maximum is the lowest id
    canvas = np.full(label.shape, IGNORE, dtype=np.uint8)
    for mask in masks:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != label.shape:
            raise ValueError(f"mask of shape {mask.shape} for a label of shape {label.shape}")
        inside = label[mask]
        inside = inside[inside != IGNORE]
        if inside.size == 0 or stuff.size == 0:
            continue
        fractions = np.bincount(inside, minlength=256)[stuff] / inside.size
        best = int(np.argmax(fractions))
        if fractions[best] > threshold:
            canvas[mask] = stuff[best]
    return canvas


def purity_entropy(label: np.ndarray, num_classes: int, radius: int = 8) -> np.ndarray:
    """float32 (H, W) entropy (natural log) of the class histogram in the (2r+1)^2 window around each pixel.

    Ignore is one more class; pixels outside the image count for nothing (zero padding). Low entropy means a
    homogeneous neighbourhood.
    """
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"label must be (H, W), got shape {label.shape}")
    bad = (label >= num_classes) & (label != IGNORE)
    if bad.any():
        ids = np.unique(label[bad]).tolist()[:10]
        raise ValueError(f"label holds ids {ids} outside 0..{num_classes - 1} and {IGNORE}")
    channel = np.where(label == IGNORE, num_classes, label)
    size = (2 * radius + 1, 2 * radius + 1)
    counts = np.stack([cv2.boxFilter((channel == c).astype(np.float32), -1, size, normalize=False,
                                     borderType=cv2.BORDER_CONSTANT) for c in range(num_classes + 1)])
    p = counts / counts.sum(0)  # the centre pixel is in its own window, so the sum is >= 1
    log_p = np.zeros_like(p)
    np.log(p, out=log_p, where=p > 0)
    return -(p * log_p).sum(0).astype(np.float32)


def thing_components(label: np.ndarray, thing_classes: Sequence[int], min_class_pixels: int = 10,
                     min_component_pixels: int = 10) -> list[tuple[int, np.ndarray]]:
    """(class, boolean mask) of every 8-connected component with >= ``min_component_pixels`` pixels, for each thing
    class with > ``min_class_pixels`` pixels; class ids ascending, then components in row-major order of their
    first pixel."""
    label = np.asarray(label)
    result = []
    for c in sorted(thing_classes):
        mask = label == c
        if mask.sum() <= min_class_pixels:
            continue
        _, components = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        # OpenCV's block-based labelling does not number components in raster order; skimage.measure.label (the
        # released code) numbers them by their first pixel, so order them that way.
        ids, first = np.unique(components.ravel(), return_index=True)
        for k in ids[np.argsort(first)]:
            component = components == k
            if k != 0 and component.sum() >= min_component_pixels:
                result.append((c, component))
    return result


def box_prompt(component: np.ndarray, unclip_ratio: float = 1.25) -> np.ndarray:
    """float32 [x0, y0, x1, y1] box prompt (SAM's XYXY pixels): the component's minimum-area rotated rectangle,
    grown by d = area * unclip_ratio / perimeter (DBNet's "unclip"), then clipped to the image.

    A degenerate rectangle (pixel centres on a line or a point: zero area, or zero perimeter) is grown by d = 0, so
    it still gives a valid box (the released code would offset an empty polygon).
    """
    component = np.asarray(component, dtype=bool)
    contours, _ = cv2.findContours(component.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        raise ValueError("empty component")
    contour = sorted(contours, key=cv2.contourArea, reverse=True)[0]  # a tuple in recent OpenCV: no .sort()
    rect = cv2.minAreaRect(contour)
    corners = cv2.boxPoints(rect)
    # The rectangle runs through pixel centres, so a w x h block of pixels gives sides (w-1) x (h-1).
    width, height = rect[1]
    perimeter = 2 * (width + height)
    d = width * height * unclip_ratio / perimeter if perimeter > 0 else 0.0
    # The released code offsets the rectangle with pyclipper's round joins: the result is the Minkowski sum of the
    # rectangle and a disk of radius d. Support functions add under Minkowski sums and a disk's is d in every
    # direction, so the sum's extent along +-x and +-y is the rectangle's plus d: its axis-aligned box is the
    # rectangle's box grown by exactly d on every side. (pyclipper rounds to integers and draws arcs as chords,
    # so its box can differ by under a pixel.)
    h, w = component.shape
    x0, y0 = corners.min(0) - d
    x1, y1 = corners.max(0) + d
    return np.array([np.clip(x0, 0, w - 1), np.clip(y0, 0, h - 1), np.clip(x1, 0, w - 1), np.clip(y1, 0, h - 1)],
                    dtype=np.float32)


def point_prompts(component: np.ndarray, entropy: np.ndarray) -> np.ndarray:
    """int (K, 2) positive (x, y) points: the lowest-entropy pixel (first on ties) of each chunk of N // 2 of the
    component's N pixels, walked in row-major order.

    The chunks start at ``range(0, N - step, step)``, as the released code: one point when N is even, two when N is
    odd, and the last pixel of an odd N is never a candidate. The paper instead describes the component's
    "geometric center" as the point prompt.
    """
    ys, xs = np.nonzero(np.asarray(component, dtype=bool))
    n = len(ys)
    if n < 2:
        raise ValueError(f"a component needs at least 2 pixels for point prompts, got {n}")
    step = n // 2
    values = np.asarray(entropy)[ys, xs]
    points = []
    for start in range(0, n - step, step):
        i = start + int(np.argmin(values[start:start + step]))
        points.append((xs[i], ys[i]))
    return np.array(points, dtype=np.int64)


@dataclass
class ThingPrompt:
    """One thing component and the SAM prompts made from it: box [x0, y0, x1, y1] and (K, 2) (x, y) points."""

    cls: int
    component: np.ndarray
    box: np.ndarray
    points: np.ndarray


def thing_prompts(label: np.ndarray, thing_classes: Sequence[int], entropy: np.ndarray, unclip_ratio: float = 1.25,
                  min_class_pixels: int = 10, min_component_pixels: int = 10) -> list[ThingPrompt]:
    """A box and point prompts for every thing component (``thing_components`` order); ``entropy`` is
    ``purity_entropy`` of the label."""
    return [ThingPrompt(c, comp, box_prompt(comp, unclip_ratio), point_prompts(comp, entropy))
            for c, comp in thing_components(label, thing_classes, min_class_pixels, min_component_pixels)]


def paint_things(canvas: np.ndarray, prompts_and_masks: Iterable[tuple[int, np.ndarray]]) -> np.ndarray:
    """A copy of ``canvas`` with each (class, boolean mask) painted in order: later masks win, things beat stuff."""
    canvas = np.array(canvas, copy=True)
    for c, mask in prompts_and_masks:
        canvas[np.asarray(mask, dtype=bool)] = c
    return canvas


def aggregate(label: np.ndarray, stuff_masks: Iterable[np.ndarray], thing_results: Iterable[tuple[int, np.ndarray]],
              stuff_classes: Sequence[int], threshold: float = 0.2, keep_unassigned: bool = False) -> np.ndarray:
    """The PSA label (uint8): the stuff vote of ``stuff_masks``, then the thing masks painted over it.

    Pixels outside every accepted region are 255 (SeCo), or keep their pixel pseudo-label with
    ``keep_unassigned`` (SeCoV2 starts from a copy of the pixel label).
    """
    label = np.asarray(label)
    canvas = stuff_vote(stuff_masks, label, stuff_classes, threshold)
    if keep_unassigned:
        # Accepted stuff regions never hold 255, so 255 marks exactly the pixels no region took.
        canvas = np.where(canvas == IGNORE, label, canvas).astype(np.uint8)
    return paint_things(canvas, thing_results).astype(np.uint8)
