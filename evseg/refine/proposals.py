"""Region proposals for PSA: SAM, or superpixels when no SAM weights are at hand, behind one interface.

A backend answers two questions about one image, in this order: ``stuff(image)`` gives the masks that stuff
classes vote on, and ``things(image, prompts)`` gives one mask per thing prompt. :func:`refine_label` runs
SeCo's aggregation with either.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evseg.refine.psa import aggregate, purity_entropy, thing_prompts
from evseg.refine.superpixels import prompt_mask, segment_masks, superpixels


class SamProposals:
    def __init__(self, sam, **amg_overrides):
        from evseg.refine.sam import SamMasks

        self.masks = SamMasks(sam, **amg_overrides)

    def stuff(self, image: np.ndarray) -> list[np.ndarray]:
        self.masks.set_image(image)
        return self.masks.automatic()

    def things(self, image: np.ndarray, prompts: list) -> list[np.ndarray]:
        if not prompts:
            return []
        return self.masks.prompted([p.box for p in prompts], [p.points for p in prompts])


class SuperpixelProposals:
    def __init__(self, method: str = "felzenszwalb", min_cover: float = 0.5, **params):
        self.method, self.min_cover, self.params = method, min_cover, params
        self.segments = None

    def stuff(self, image: np.ndarray) -> list[np.ndarray]:
        self.segments = superpixels(image, self.method, **self.params)
        return segment_masks(self.segments)

    def things(self, image: np.ndarray, prompts: list) -> list[np.ndarray]:
        return [prompt_mask(self.segments, p.component, p.box, p.points, self.min_cover) for p in prompts]


@dataclass
class PsaSettings:
    stuff_classes: tuple[int, ...]
    thing_classes: tuple[int, ...]
    num_classes: int
    stuff_threshold: float = 0.2
    unclip_ratio: float = 1.25
    min_class_pixels: int = 10
    min_component_pixels: int = 10
    purity_radius: int = 8
    keep_unassigned: bool = False


def refine_label(label: np.ndarray, image: np.ndarray, proposals, settings: PsaSettings) -> tuple[np.ndarray, dict]:
    """SeCo's PSA of one pixel pseudo-label with ``proposals``: (refined uint8 label, region counts)."""
    if image.shape[:2] != label.shape:
        raise ValueError(f"image {image.shape[:2]} and pseudo-label {label.shape} differ in size")
    stuff_masks = proposals.stuff(image)
    entropy = purity_entropy(label, settings.num_classes, settings.purity_radius)
    prompts = thing_prompts(label, settings.thing_classes, entropy, settings.unclip_ratio,
                            settings.min_class_pixels, settings.min_component_pixels)
    masks = proposals.things(image, prompts)
    refined = aggregate(label, stuff_masks, [(p.cls, m) for p, m in zip(prompts, masks)], settings.stuff_classes,
                        settings.stuff_threshold, settings.keep_unassigned)
    return refined, {"stuff_proposals": len(stuff_masks), "thing_prompts": len(prompts)}
