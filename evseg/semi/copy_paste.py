"""SeCo's class-balanced copy-paste on the labelled crops of UniMatch (reference/seco_unimatch.md §3.3, the
"rand_mixer" of the SeCo author's UniMatch variant).

With probability ``p`` a labelled crop receives the pixels of one minority class from another labelled sample:
the class is drawn uniformly from the list, the donor uniformly from the labelled samples whose refined label
holds that class; the donor is rescaled by a factor in ``scale_range``, randomly cropped to the crop size and
flipped, and its pixels of the class (and of the class's companions, e.g. the pole under a traffic sign) are
pasted, input and label together.

SeCo's minority list is given in Cityscapes train ids, [4, 5, 6, 7, 12, 14, 15, 16, 17, 18] (fence, pole,
traffic light, traffic sign, rider, truck, bus, train, motorcycle, bicycle); car and person are left out as
frequent. On the 11 ESS classes a class is a minority class when every Cityscapes class it merges is one:
fence, pole and traffic sign (light and sign). Person (with rider) and car (with trucks, buses and bikes) stay
out, being mostly the frequent classes SeCo leaves out.
"""

from __future__ import annotations

import numpy as np

from evseg.data.classes import CITYSCAPES_19, ESS_11, TRAIN19_TO_ESS11, ClassSet
from evseg.semi.data import random_crop_flip, rescale

SECO_MINORITY_19 = (4, 5, 6, 7, 12, 14, 15, 16, 17, 18)
# "also pasted: rider with bicycle/motorcycle, and pole under light/sign" (seco 3.3), as class names
SECO_COMPANIONS = {"rider": ("bicycle", "motorcycle"), "traffic light": ("pole",), "traffic sign": ("pole",)}


def seco_minority_classes(classes: ClassSet) -> list[str]:
    """SeCo's minority list in ``classes``' names."""
    if classes is CITYSCAPES_19:
        return [classes.names[i] for i in SECO_MINORITY_19]
    if classes is ESS_11:  # an ESS class is a minority class when every Cityscapes class it merges is one
        merged = {ess: [i for i, e in TRAIN19_TO_ESS11.items() if e == ess] for ess in set(TRAIN19_TO_ESS11.values())}
        return [classes.names[e] for e in sorted(merged) if set(merged[e]) <= set(SECO_MINORITY_19)]
    raise ValueError(f"SeCo's minority classes are only mapped for {CITYSCAPES_19.name} and {ESS_11.name}: "
                     f"give semi.copy_paste.classes as names of {classes.name}")


def seco_companions(classes: ClassSet) -> dict[str, list[str]]:
    """SeCo's companions restricted to ``classes`` (on the 11 ESS classes: the pole under a traffic sign)."""
    names = set(classes.names)
    return {name: [c for c in also if c in names and c != name] for name, also in SECO_COMPANIONS.items()
            if name in names and any(c in names and c != name for c in also)}


class CopyPaste:
    """Pastes minority-class pixels of labelled donors onto labelled crops (see the module docstring)."""

    def __init__(self, inputs, labels: dict[str, np.ndarray], classes: ClassSet, crop: tuple[int, int], cfg: dict):
        """``inputs``: sample id -> input (C, H, W) for the ids of ``labels`` (read on demand); ``cfg``: p,
        classes ("seco" or a list of names), companions ("seco" or {name: [names]}), scale_range."""
        self.inputs, self.labels, self.crop, self.p = inputs, labels, tuple(crop), float(cfg["p"])
        self.scale_range = tuple(cfg["scale_range"])
        if self.scale_range[0] > self.scale_range[1]:
            raise ValueError(f"semi.copy_paste.scale_range {list(self.scale_range)} must be [low, high]")
        names = seco_minority_classes(classes) if cfg["classes"] == "seco" else list(cfg["classes"])
        companions = seco_companions(classes) if cfg["companions"] == "seco" else dict(cfg["companions"])
        unknown = sorted({*names, *companions, *(c for also in companions.values() for c in also)}
                         - set(classes.names))
        if unknown:
            raise ValueError(f"semi.copy_paste names classes that {classes.name} does not have: {unknown}; "
                             f"its classes are {list(classes.names)}")
        index = {name: i for i, name in enumerate(classes.names)}
        self.pasted = {index[n]: [index[n], *(index[c] for c in companions.get(n, ()))] for n in names}
        # the donor pool: which labelled samples hold each class (SeCo's class -> file pickle)
        self.pool = {c: sorted(i for i, label in labels.items() if (label == c).any()) for c in self.pasted}
        self.pool = {c: ids for c, ids in self.pool.items() if ids}

    def __call__(self, rng: np.random.Generator, x: np.ndarray, label: np.ndarray,
                 padding: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The crop ``x`` (C, h, w) and its ``label`` (h, w) with one class pasted in (probability p), never onto
        the crop's ``padding`` (h, w) bool: the frame ends there (DSEC frames are smaller than the crops)."""
        if not self.pool or rng.random() >= self.p:
            return x, label
        classes = sorted(self.pool)
        cls = classes[int(rng.integers(len(classes)))]
        donor = self.pool[cls][int(rng.integers(len(self.pool[cls])))]
        donor_x, donor_label = rescale(rng, self.inputs(donor), self.labels[donor], self.scale_range)
        donor_x, donor_label, _ = random_crop_flip(rng, donor_x, donor_label, self.crop)
        mask = np.isin(donor_label, self.pasted[cls]) & ~padding
        return np.where(mask, donor_x, x), np.where(mask, donor_label, label).astype(label.dtype)
