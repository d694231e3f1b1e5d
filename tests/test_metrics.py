"""Confusion-matrix metrics against brute-force counting written out here (pixel loops, per-class sets),
and the two published mIoU rules (reference dsec_ess_hplss.md §2.3, §3.4 item 7; cmda_daformer.md §2.8)."""

import math

import numpy as np
import pytest
import torch

from evseg.data.classes import CITYSCAPES_19
from evseg.metrics import ConfusionMatrix
from evseg.viz import confusion_picture

IGNORE = 255
TRUCK = CITYSCAPES_19.names.index("truck")


def brute_matrix(pairs, num_classes):
    """Count (label, prediction) pixel by pixel with Python loops."""
    m = [[0] * num_classes for _ in range(num_classes)]
    for pred, label in pairs:
        for p, g in zip(np.asarray(pred).ravel().tolist(), np.asarray(label).ravel().tolist()):
            if g != IGNORE:
                m[g][p] += 1
    return np.array(m)


def brute_iou(pairs, num_classes):
    """IoU per class from sets of pixel positions; None where the union is empty."""
    gt = [set() for _ in range(num_classes)]
    pr = [set() for _ in range(num_classes)]
    for k, (pred, label) in enumerate(pairs):
        for i, (p, g) in enumerate(zip(np.asarray(pred).ravel().tolist(), np.asarray(label).ravel().tolist())):
            if g != IGNORE:
                gt[g].add((k, i))
                pr[p].add((k, i))
    return [len(gt[c] & pr[c]) / len(gt[c] | pr[c]) if gt[c] | pr[c] else None for c in range(num_classes)]


def random_pairs(rng, num_classes, count=3, shape=(12, 17), absent=()):
    pairs = []
    for _ in range(count):
        label = rng.integers(0, num_classes, shape).astype(np.uint8)
        label[np.isin(label, absent)] = IGNORE
        label[rng.random(shape) < 0.2] = IGNORE
        pred = np.where(rng.random(shape) < 0.6, label, rng.integers(0, num_classes, shape)) % num_classes
        pred[np.isin(pred, absent)] = 0
        pairs.append((pred.astype(np.int64), label))
    return pairs


def accumulate(pairs, num_classes):
    cm = ConfusionMatrix(num_classes)
    for pred, label in pairs:
        cm.update(pred, label)
    return cm


def test_random_updates_match_brute_force():
    rng = np.random.default_rng(0)
    pairs = random_pairs(rng, 6, absent=(4,))  # class 4: never in ground truth nor prediction
    pairs[1][0][0, :3] = 5                     # a few extra predictions, whatever the label
    cm = accumulate(pairs, 6)
    expected = brute_matrix(pairs, 6)
    np.testing.assert_array_equal(cm.matrix, expected)
    assert cm.matrix.dtype == np.int64

    ious = brute_iou(pairs, 6)
    assert ious[4] is None
    np.testing.assert_allclose(cm.iou(), [np.nan if v is None else v for v in ious])
    present = [v for v in ious if v is not None]
    assert math.isclose(cm.mean_iou(), sum(present) / len(present))
    assert math.isclose(cm.mean_iou_absent_as_zero(), sum(v or 0.0 for v in ious) / 6)

    counted = [(p, g) for pred, label in pairs
               for p, g in zip(pred.ravel().tolist(), label.ravel().tolist()) if g != IGNORE]
    assert cm.matrix.sum() == len(counted)
    assert math.isclose(cm.pixel_accuracy(), sum(p == g for p, g in counted) / len(counted))
    recalls = []
    for c in range(6):
        hits = [p == c for p, g in counted if g == c]
        recalls.append(sum(hits) / len(hits) if hits else None)
    np.testing.assert_allclose(cm.class_accuracy(), [np.nan if v is None else v for v in recalls])
    assert math.isclose(cm.mean_class_accuracy(), np.mean([v for v in recalls if v is not None]))


def test_analytic_cases():
    label = np.array([[0, 0, 1, 1], [0, 0, 1, IGNORE]])
    perfect = ConfusionMatrix(4)
    perfect.update(np.where(label == IGNORE, 3, label), label)  # prediction at an ignored pixel is not counted
    assert perfect.mean_iou() == 1.0 and perfect.pixel_accuracy() == 1.0 and perfect.matrix.sum() == 7
    assert np.isnan(perfect.iou()[2:]).all()
    assert perfect.mean_iou_absent_as_zero() == 0.5  # ESS: classes 2 and 3 count as 0

    # class 2 is predicted once but never in the ground truth: IoU 0, counted. Class 3: absent from both.
    cm = ConfusionMatrix(4)
    cm.update(np.array([[0, 0, 1, 1], [0, 2, 1, 0]]), label)
    # class 0: TP 3 (GT 4, one predicted 2); class 1: TP 3, GT 3, predicted 3; class 2: TP 0, FP 1
    np.testing.assert_allclose(cm.iou(), [3 / 4, 3 / 3, 0.0, np.nan])
    assert math.isclose(cm.mean_iou(), (3 / 4 + 1 + 0) / 3)
    assert math.isclose(cm.mean_iou_absent_as_zero(), (3 / 4 + 1 + 0 + 0) / 4)
    np.testing.assert_allclose(cm.class_accuracy(), [3 / 4, 1, np.nan, np.nan])
    assert math.isclose(cm.pixel_accuracy(), 6 / 7)

    empty = ConfusionMatrix(3)
    empty.update(np.zeros((2, 2), np.uint8), np.full((2, 2), IGNORE, np.uint8))
    assert empty.matrix.sum() == 0 and math.isnan(empty.mean_iou()) and math.isnan(empty.pixel_accuracy())


@pytest.mark.parametrize("predict_truck", [True, False])
def test_18_of_19_classes(predict_truck):
    rng = np.random.default_rng(1)
    pairs = random_pairs(rng, 19, count=2, shape=(20, 24), absent=(TRUCK,))
    if predict_truck:
        pred, label = pairs[0]
        pred[np.unravel_index(np.flatnonzero(label != IGNORE)[0], label.shape)] = TRUCK  # a counted pixel
    cm = accumulate(pairs, 19)
    ious = brute_iou(pairs, 19)
    eighteen = [c for c in range(19) if c != TRUCK]
    assert all(ious[c] is not None for c in eighteen)
    explicit = sum(ious[c] for c in eighteen) / 18
    assert math.isclose(cm.mean_iou(eighteen), explicit)
    if predict_truck:  # IoU(truck) = 0 drags the 19-class nanmean down by exactly 18/19
        assert ious[TRUCK] == 0.0
        assert not math.isclose(cm.mean_iou(), explicit)
        assert math.isclose(cm.mean_iou() * 19 / 18, explicit)
    else:  # truck is NaN: the 19-class nanmean is already the 18-class mean, rescaling would be wrong
        assert ious[TRUCK] is None
        assert math.isclose(cm.mean_iou(), explicit)
    summary = cm.summary(CITYSCAPES_19.names, classes=eighteen)
    assert math.isclose(summary["miou"], explicit)


def test_out_of_range_and_bad_input_raise():
    cm = ConfusionMatrix(19)
    ok = np.zeros((2, 3), np.int64)
    with pytest.raises(ValueError, match=r"prediction holds values \[19\]"):
        cm.update(np.full((2, 3), 19), ok)
    with pytest.raises(ValueError, match=r"prediction holds values \[-1\]"):
        cm.update(np.full((2, 3), -1, np.int8), ok)
    with pytest.raises(ValueError, match=r"label holds values \[20, 254\]"):
        cm.update(ok, np.array([[0, 20, 254], [IGNORE, 1, 2]], np.uint8))
    with pytest.raises(ValueError, match="shape"):
        cm.update(ok, np.zeros((3, 2), np.int64))
    with pytest.raises(ValueError, match="dtype float"):
        cm.update(ok.astype(np.float32), ok)
    with pytest.raises(ValueError, match="classes"):
        cm.mean_iou([0, 19])
    assert cm.matrix.sum() == 0  # failed updates leave no trace


def test_torch_and_numpy_give_the_same_matrix():
    rng = np.random.default_rng(2)
    pairs = random_pairs(rng, 11, count=2)
    from_numpy = accumulate(pairs, 11)
    from_torch = ConfusionMatrix(11)
    for pred, label in pairs:
        from_torch.update(torch.from_numpy(pred), torch.from_numpy(label.astype(np.int64)))
    batch = ConfusionMatrix(11)  # a (B, H, W) batch in one call, uint8 torch labels
    batch.update(torch.from_numpy(np.stack([p for p, _ in pairs])), torch.from_numpy(np.stack([g for _, g in pairs])))
    np.testing.assert_array_equal(from_torch.matrix, from_numpy.matrix)
    np.testing.assert_array_equal(batch.matrix, from_numpy.matrix)


def test_merge_save_load_and_summary(tmp_path):
    rng = np.random.default_rng(3)
    pairs = random_pairs(rng, 5, count=4)
    whole = accumulate(pairs, 5)
    first, second = accumulate(pairs[:1], 5), accumulate(pairs[1:3], 5)
    first.merge(second)
    first += accumulate(pairs[3:], 5)
    np.testing.assert_array_equal(first.matrix, whole.matrix)
    with pytest.raises(ValueError, match="merge"):
        first.merge(ConfusionMatrix(4))

    whole.save(tmp_path / "cm.npy")
    np.testing.assert_array_equal(ConfusionMatrix.load(tmp_path / "cm.npy").matrix, whole.matrix)

    names = ["a", "b", "c", "d", "e"]
    s = whole.summary(names)
    assert set(s) == {"miou", "miou_absent_as_zero", "pixel_accuracy", "mean_class_accuracy", "num_pixels",
                      "per_class"}
    assert s["num_pixels"] == whole.matrix.sum() and math.isclose(s["miou"], whole.mean_iou())
    assert [row["class"] for row in s["per_class"]] == names
    assert s["per_class"][2]["gt_pixels"] == whole.matrix[2].sum()
    assert s["per_class"][2]["predicted_pixels"] == whole.matrix[:, 2].sum()
    assert math.isclose(s["per_class"][2]["iou"], whole.iou()[2])
    with pytest.raises(ValueError, match="class names"):
        whole.summary(names[:4])


def test_confusion_picture():
    matrix = np.array([[50, 5, 0], [10, 40, 0], [0, 0, 0]])  # last class: no ground truth (grey row)
    image = confusion_picture(matrix, ["road", "car", "truck"], title="test")
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    assert image.shape[0] > 100 and image.shape[1] > 100 and image.min() < 100  # something was drawn
    with pytest.raises(ValueError):
        confusion_picture(matrix, ["road", "car"])
