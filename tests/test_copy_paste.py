"""SeCo's class-balanced copy-paste on UniMatch's labelled crops (evseg.semi.copy_paste)."""

from __future__ import annotations

import numpy as np
import pytest

from evseg.data.classes import CITYSCAPES_19, ESS_11, IGNORE
from evseg.semi.copy_paste import CopyPaste, seco_companions, seco_minority_classes

ROAD, CAR, POLE, SIGN, PERSON = (ESS_11.names.index(n) for n in ("road", "car", "pole", "traffic sign", "person"))
H, W = 6, 8
NO_PADDING = np.zeros((H, W), bool)
CFG = {"p": 1.0, "classes": ["car", "traffic sign"], "companions": "seco", "scale_range": [1.0, 1.0]}


def test_seco_lists_mapped_to_the_class_sets():
    assert seco_minority_classes(CITYSCAPES_19) == ["fence", "pole", "traffic light", "traffic sign", "rider", "truck",
                                                    "bus", "train", "motorcycle", "bicycle"]
    # ESS classes whose merged Cityscapes classes are all minority ones; not person (+ rider), car (+ trucks, bikes)
    assert seco_minority_classes(ESS_11) == ["fence", "pole", "traffic sign"]
    assert seco_companions(ESS_11) == {"traffic sign": ["pole"]}
    assert seco_companions(CITYSCAPES_19) == {"rider": ["bicycle", "motorcycle"], "traffic light": ["pole"],
                                              "traffic sign": ["pole"]}


def scene():
    """Recipient 'a' (all road), donor 'b' with a car block, donor 'c' with a sign on a pole, and a person."""
    labels = {name: np.full((H, W), ROAD, np.uint8) for name in "abc"}
    labels["b"][1:3, 0:3] = CAR
    labels["c"][0:2, 5:7] = SIGN
    labels["c"][2:6, 6] = POLE
    labels["c"][4:6, 1] = PERSON  # not a drawn class here, never pasted
    labels["c"][0, 0] = IGNORE
    inputs = {name: np.random.default_rng(k).normal(size=(2, H, W)).astype(np.float32) for k, name in enumerate("abc")}
    return inputs, labels


def expected(donor_x, donor_label, x, label, classes, flip):
    """Brute force: every donor pixel of ``classes`` replaces the recipient's (input and label)."""
    if flip:
        donor_x, donor_label = donor_x[..., ::-1], donor_label[:, ::-1]
    out_x, out_label = x.copy(), label.copy()
    for i in range(H):
        for j in range(W):
            if donor_label[i, j] in classes:
                out_x[:, i, j], out_label[i, j] = donor_x[:, i, j], donor_label[i, j]
    return out_x, out_label


def test_pastes_the_drawn_class_with_its_companions(tmp_path):
    inputs, labels = scene()
    paste = CopyPaste(inputs.__getitem__, labels, ESS_11, (H, W), CFG)
    assert paste.pool == {CAR: ["b"], SIGN: ["c"]} and paste.pasted == {CAR: [CAR], SIGN: [SIGN, POLE]}
    seen = set()
    for seed in range(40):
        x, label = paste(np.random.default_rng(seed), inputs["a"], labels["a"], NO_PADDING)
        donor = "b" if (label == CAR).any() else "c"
        classes = [CAR] if donor == "b" else [SIGN, POLE]
        candidates = [expected(inputs[donor], labels[donor], inputs["a"], labels["a"], classes, flip)
                      for flip in (False, True)]
        assert any(np.array_equal(x, ex) and np.array_equal(label, el) for ex, el in candidates)
        assert not (label == PERSON).any() and not (label == IGNORE).any()
        seen.add((donor, np.array_equal(label, candidates[1][1])))
    assert seen == {("b", False), ("b", True), ("c", False), ("c", True)}  # both classes, both flips


def test_padding_of_a_shrunk_donor_is_never_pasted():
    inputs, labels = scene()
    labels["b"][:] = CAR  # the whole donor is car; shrunk to 0.5, the rest of the crop is padding
    paste = CopyPaste(inputs.__getitem__, labels, ESS_11, (H, W), {**CFG, "classes": ["car"], "scale_range": [0.5, 0.5]})
    x, label = paste(np.random.default_rng(0), inputs["a"], labels["a"], NO_PADDING)
    assert (label == CAR).sum() == (H // 2) * (W // 2) and ((label == CAR) | (label == ROAD)).all()
    assert np.array_equal(x[:, label == ROAD], inputs["a"][:, label == ROAD])
    recipient_padding = np.zeros((H, W), bool)
    recipient_padding[H // 2:] = True  # the frame ends half-way down the crop: nothing is pasted below
    paste = CopyPaste(inputs.__getitem__, labels, ESS_11, (H, W), {**CFG, "classes": ["car"]})
    x, label = paste(np.random.default_rng(0), inputs["a"], labels["a"], recipient_padding)
    assert (label[:H // 2] == CAR).all() and np.array_equal(label[H // 2:], labels["a"][H // 2:])
    assert np.array_equal(x[:, H // 2:], inputs["a"][:, H // 2:])


def test_donor_larger_than_the_crop_keeps_input_and_label_aligned():
    """The donor's input encodes each pixel's position; a pasted label must be the class found there."""
    rows, cols = np.mgrid[0:3 * H, 0:3 * W]
    donor_label = np.where((rows + 2 * cols) % 5 == 0, CAR, ROAD).astype(np.uint8)
    inputs = {"a": np.zeros((2, H, W), np.float32), "b": np.stack([rows, cols]).astype(np.float32)}
    labels = {"a": np.full((H, W), ROAD, np.uint8), "b": donor_label}
    paste = CopyPaste(inputs.__getitem__, labels, ESS_11, (H, W), {**CFG, "classes": ["car"]})
    for seed in range(20):
        x, label = paste(np.random.default_rng(seed), inputs["a"], labels["a"], NO_PADDING)
        pasted = label == CAR
        assert pasted.any()
        r, c = x[0][pasted].astype(int), x[1][pasted].astype(int)
        assert (donor_label[r, c] == CAR).all()


def test_probability_pool_and_bad_names():
    inputs, labels = scene()
    never = CopyPaste(inputs.__getitem__, labels, ESS_11, (H, W), {**CFG, "p": 0.0})
    x, label = never(np.random.default_rng(0), inputs["a"], labels["a"], NO_PADDING)
    assert x is inputs["a"] and label is labels["a"]
    rate = CopyPaste(inputs.__getitem__, labels, ESS_11, (H, W), {**CFG, "p": 0.3})
    changed = [not np.array_equal(rate(np.random.default_rng(s), inputs["a"], labels["a"], NO_PADDING)[1], labels["a"])
               for s in range(2000)]
    assert np.mean(changed) == pytest.approx(0.3, abs=0.035)  # 3.5 sigma of a binomial(2000, 0.3) share
    absent = CopyPaste(inputs.__getitem__, labels, ESS_11, (H, W), {**CFG, "classes": ["fence", "car"]})
    assert list(absent.pool) == [CAR]  # a class no labelled sample holds is never drawn
    with pytest.raises(ValueError, match=r"does not have: \['lorry'\]"):
        CopyPaste(inputs.__getitem__, labels, ESS_11, (H, W), {**CFG, "classes": ["lorry"]})
    with pytest.raises(ValueError, match="must be \\[low, high\\]"):
        CopyPaste(inputs.__getitem__, labels, ESS_11, (H, W), {**CFG, "scale_range": [1.25, 0.75]})
