"""The labelled / unlabelled split of the target training samples before UniMatch (reference/seco_unimatch.md §3.2).

SeCo's author ranks the images by the number of labelled (non-255) pixels of their refined pseudo-labels and
makes the top half the labelled set. Here the ranking is by the labelled share (the same order when all labels
have one size), ties go to the sample id, and the top ``floor(fraction x N + 1/2)`` samples (rounding halves up) are labelled.
"""

from __future__ import annotations

import math

import numpy as np


def rank_split(ids: list[str], labelled_shares: np.ndarray, fraction: float = 0.5) -> tuple[list[str], list[str]]:
    """(labelled ids, unlabelled ids), each in ranking order (most labelled pixels first)."""
    if len(ids) != len(labelled_shares):
        raise ValueError(f"{len(ids)} ids but {len(labelled_shares)} labelled shares")
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
    order = sorted(range(len(ids)), key=lambda i: (-float(labelled_shares[i]), ids[i]))
    count = math.floor(fraction * len(ids) + 0.5)
    ranked = [ids[i] for i in order]
    return ranked[:count], ranked[count:]
