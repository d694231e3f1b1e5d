"""The L2 feature-alignment variants of the student study on CMDA (Giog97/CMDA; reference/cmda_daformer.md §3).

Every term is ``lambda * mean((a - b)^2)`` over all elements of two *last-stage* backbone maps (stride 32,
not pooled). "Target" features are those of the student's ClassMix-mixed pass, as released; "source" ones come
from the source pass. In the source-target terms the source side is detached (the gradient flows through the
mixed pass only) and the term joins the mixed loss; the source-only term keeps both sides and joins the source
loss.

Terms (config name: mixed/source side, feature -- other side, feature):

- ``rgb_events_source``: source image -- source events (both with gradient);
- ``fusion_st``: mixed fusion -- source fusion (detached);
- ``rgb_st``: mixed image -- source image (detached);
- ``events_rgbt``: mixed image -- source events (detached);
- ``events_st``: mixed events -- source events (detached).

The five studied variants (README order of the fork) are sets of terms, :data:`VARIANTS`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# term -> ((pass, output), (pass, output)); the second side is detached unless both sides are on the source
TERMS = {
    "rgb_events_source": (("source", "image"), ("source", "events")),
    "fusion_st": (("mixed", "fusion"), ("source", "fusion")),
    "rgb_st": (("mixed", "image"), ("source", "image")),
    "events_rgbt": (("mixed", "image"), ("source", "events")),
    "events_st": (("mixed", "events"), ("source", "events")),
}

VARIANTS = {
    "none": (),
    "rgb_events_source": ("rgb_events_source",),                    # 1. RGB_src vs EVENT_src
    "rgb_events_source+fusion_st": ("rgb_events_source", "fusion_st"),  # 2. + FUSION_src vs FUSION_tgt
    "fusion_st": ("fusion_st",),                                    # 3. FUSION_src vs FUSION_tgt only
    "rgb_st+events_rgbt": ("rgb_st", "events_rgbt"),                # 4. RGB st + EVENT_src vs RGB_tgt
    "rgb_st+events_st": ("rgb_st", "events_st"),                    # 5. RGB st + EVENT st (the fork's final)
}

# The released lambdas (fusion_st: 0.05 in one commit, 0.1 in the final config's commented block).
DEFAULT_LAMBDAS = {"rgb_events_source": 0.1, "fusion_st": 0.1, "rgb_st": 0.1, "events_rgbt": 0.05, "events_st": 0.05}


def variant_terms(variant: str) -> tuple[str, ...]:
    if variant not in VARIANTS:
        raise ValueError(f"unknown L2 variant {variant!r}; known: {sorted(VARIANTS)}")
    return VARIANTS[variant]


def _mse(a: Tensor, b: Tensor, name: str) -> Tensor:
    if a.shape != b.shape:
        raise ValueError(f"L2 term {name}: feature maps differ in shape, {tuple(a.shape)} and {tuple(b.shape)} "
                         "(source and mixed crops must have the same size)")
    return F.mse_loss(a.float(), b.float())


def source_terms(variant: str, lambdas: dict[str, float], source: dict[str, Tensor]) -> dict[str, Tensor]:
    """The variant's terms within the source pass: {term: weighted loss}. ``source``: {output: last-stage map}."""
    out = {}
    for name in variant_terms(variant):
        (pass_a, key_a), (pass_b, key_b) = TERMS[name]
        if pass_a == pass_b == "source":
            out[name] = lambdas[name] * _mse(source[key_a], source[key_b], name)
    return out


def mixed_terms(variant: str, lambdas: dict[str, float], mixed: dict[str, Tensor],
                source: dict[str, Tensor]) -> dict[str, Tensor]:
    """The variant's source-target terms: {term: weighted loss}, the source side detached."""
    out = {}
    for name in variant_terms(variant):
        (pass_a, key_a), (_, key_b) = TERMS[name]
        if pass_a == "mixed":
            out[name] = lambdas[name] * _mse(mixed[key_a], source[key_b].detach(), name)
    return out


def needs(variant: str) -> set[str]:
    """The source outputs whose last-stage maps the variant's mixed terms need after the source pass."""
    return {TERMS[name][1][1] for name in variant_terms(variant) if TERMS[name][0][0] == "mixed"}


def total(terms: dict[str, Tensor]) -> Tensor | float:
    return torch.stack(list(terms.values())).sum() if terms else 0.0
