"""SCC's regions, their windows and the masked-stem region classifier."""

import numpy as np
import pytest
import torch

from evseg.refine.region_classifier import ClassifierTraining, MaskedStemClassifier, score_regions, train_classifier
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


def test_early_learning_separates_an_easy_task_and_scores_are_cross_entropies():
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
    region_losses, probabilities = score_regions(model, images, masks, labels, batch_size=10)
    np.testing.assert_allclose(region_losses, -np.log(probabilities[np.arange(64), labels]), rtol=1e-4, atol=1e-5)
    assert (probabilities.argmax(1) == labels).mean() > 0.9
