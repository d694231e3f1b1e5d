"""SCC's regions, their windows and the masked-stem region classifier."""

import numpy as np
import pytest
import torch

from evseg.refine.noise import region_outcomes
from evseg.refine.region_classifier import (ClassifierTraining, MaskedStemClassifier, recompute_batch_norm,
                                           region_probabilities, score_regions, train_classifier)
from evseg.refine.regions import connected_regions, paint_regions, region_window, window_box


def test_regions_are_the_8_connected_components_of_each_class():
    label = np.full((8, 10), 255, np.uint8)
    label[0:2, 0:2] = 3
    label[2, 2] = 3          # touches the first block diagonally: same region
    label[5:7, 5:9] = 3      # a second region of class 3
    label[0:3, 6:9] = 1
    regions = connected_regions(label, sample=7)
    assert sorted((r.cls, int(r.crop.sum())) for r in regions) == [(1, 9), (3, 5), (3, 8)]
    assert all(r.sample == 7 for r in regions)
    np.testing.assert_array_equal(paint_regions(label.shape, regions, np.array([r.cls for r in regions])), label)
    dropped = paint_regions(label.shape, regions, np.array([-1] + [r.cls for r in regions[1:]]))
    assert (dropped[regions[0].mask(label.shape)] == 255).all()


@pytest.mark.parametrize("box, expected", [
    ((10, 20, 14, 30), (4, 9, 20, 41)),      # small box: a 16x32 window centred on it
    ((0, 0, 4, 4), (0, 0, 16, 32)),          # at the corner: shifted inside
    ((10, 10, 50, 20), (10, 0, 50, 80)),     # tall box: the window grows at 1:2 to hold it (40x80)
    ((0, 0, 60, 100), (0, 0, 60, 100)),      # larger than the image: cut to it
])
def test_window_box(box, expected):
    assert window_box(box, (60, 100), (16, 32)) == expected


def test_region_window_cuts_image_and_mask_together():
    image = np.arange(60 * 100, dtype=np.int64).reshape(60, 100) % 251
    image = image.astype(np.uint8)
    label = np.full((60, 100), 255, np.uint8)
    label[10:14, 20:30] = 2
    region = connected_regions(label)[0]
    crop, mask = region_window(image, region, (16, 32))  # the window is 16x32 already: no resize
    np.testing.assert_array_equal(crop, image[4:20, 9:41])
    np.testing.assert_array_equal(mask, label[4:20, 9:41] == 2)


def test_the_mask_hides_the_image_far_from_the_region():
    torch.manual_seed(0)
    model = MaskedStemClassifier("resnet18", num_classes=4).eval()
    image = torch.rand(1, 1, 64, 64)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 24:40, 24:40] = 1
    changed = image.clone()
    changed[..., :, :12] = torch.rand(64, 12)  # 12+ pixels from the region: outside the stem's 7x7 reach
    with torch.no_grad():
        torch.testing.assert_close(model(image, mask), model(changed, mask))
        assert not torch.allclose(model(image, mask), model(image, torch.ones_like(mask)))
    with pytest.raises(ValueError, match="no module 'stem'"):
        MaskedStemClassifier("resnet18", 4, stem_module="stem")


@pytest.mark.parametrize("threads", [1, 2])
def test_early_learning_separates_an_easy_task_and_scores_are_cross_entropies(threads):
    # Seeded. Scored with the running BatchNorm averages of 40 steps, this task gave accuracy 1.0 with one
    # thread and 0.42 with two (float order tipped the lagging statistics); precise BN gives 1.0 with both.
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        check_early_learning()
    finally:
        torch.set_num_threads(before)


def check_early_learning():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 64)
    masks = np.zeros((64, 16, 32), bool)
    masks[:, 4:12, 8:24] = True
    images = np.where(masks, np.where(labels[:, None, None] == 1, 220, 40), 128).astype(np.uint8)
    images = np.clip(images + rng.normal(0, 10, images.shape), 0, 255).astype(np.uint8)
    torch.manual_seed(0)
    model = MaskedStemClassifier("resnet18", num_classes=3)
    losses = train_classifier(model, images, masks, labels, ClassifierTraining(iterations=40, batch_size=16),
                              progress=False)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    recompute_batch_norm(model, images, masks, batch_size=16)
    region_losses, probabilities = score_regions(model, images, masks, labels, batch_size=10)
    np.testing.assert_allclose(region_losses, -np.log(probabilities[np.arange(64), labels]), rtol=1e-4, atol=1e-5)
    assert (probabilities.argmax(1) == labels).mean() > 0.9


def test_region_outcomes_count_regions_and_pixels_per_class():
    names = ["road", "car", "sky"]
    labels = np.array([0, 0, 0, 1, 1, 2])
    new = np.array([0, -1, 1, 1, 0, 2])
    pixels = np.array([100, 5, 7, 20, 3, 50])
    table = region_outcomes(labels, new, pixels, names)
    assert table == {
        "road": {"regions_kept": 1, "regions_relabelled": 1, "regions_dropped": 1,
                 "pixels_kept": 100, "pixels_relabelled": 7, "pixels_dropped": 5},
        "car": {"regions_kept": 1, "regions_relabelled": 1, "regions_dropped": 0,
                "pixels_kept": 20, "pixels_relabelled": 3, "pixels_dropped": 0},
        "sky": {"regions_kept": 1, "regions_relabelled": 0, "regions_dropped": 0,
                "pixels_kept": 50, "pixels_relabelled": 0, "pixels_dropped": 0}}
    with pytest.raises(ValueError, match="one shape"):
        region_outcomes(labels, new[:3], pixels, names)


def test_class_balanced_draws_give_every_class_the_same_share():
    labels = np.array([0] * 90 + [1] * 9 + [2])
    p = region_probabilities(labels)
    assert p.sum() == pytest.approx(1)
    for cls in range(3):
        assert p[labels == cls].sum() == pytest.approx(1 / 3)
        assert np.ptp(p[labels == cls]) == 0


def test_precise_bn_makes_the_running_statistics_the_average_over_the_regions():
    torch.manual_seed(0)
    model = MaskedStemClassifier("resnet18", 3)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(12, 16, 32), dtype=np.uint8)
    masks = rng.random((12, 16, 32)) < 0.5
    bn = model.net.bn1
    bn.running_mean.fill_(5.0)  # a stale running average
    recompute_batch_norm(model, images, masks, batch_size=4)
    assert not model.training and bn.momentum == 0.1
    # expected: the mean over the 3 batches of each batch's channel means of the stem's conv output
    batch_means, batch_vars = [], []
    for start in range(0, 12, 4):
        x = torch.from_numpy(images[start:start + 4]).float().div(255).unsqueeze(1)
        with torch.no_grad():
            out = model.net.conv1(x)
        batch_means.append(out.mean((0, 2, 3)))
        batch_vars.append(out.transpose(0, 1).flatten(1).var(1, unbiased=True))
    torch.testing.assert_close(bn.running_mean, torch.stack(batch_means).mean(0), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn.running_var, torch.stack(batch_vars).mean(0), rtol=1e-4, atol=1e-5)
    assert bn.num_batches_tracked == 3
