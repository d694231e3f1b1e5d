"""Training a SAM on rendered segments (evseg.refine.sam_training): segments, prompts, the loss, and the round
trip through the official loader into the automatic mask generator and batched prompts."""

import numpy as np
import pytest
import torch

from evseg.refine.sam import SamMasks, SamSpec, build_sam, load_sam
from evseg.refine.sam_training import (PROMPT_KINDS, SamTraining, SegmentImages, draw_prompts, mask_losses,
                                       sam_loss, segment_map, train_sam)
from tests.test_psa import brute_components  # brute-force 8-connected flood fill

TINY = SamSpec(32, 2, 2, (1,), image_size=48, patch_size=8, window_size=3, prompt_embed_dim=32, decoder_mlp_dim=64,
               decoder_num_heads=2, iou_head_hidden_dim=32)


def test_segment_map_is_the_same_class_8_connected_components():
    rng = np.random.default_rng(3)
    label = rng.choice(np.array([0, 1, 2, 255], np.uint8), size=(12, 15), p=[0.4, 0.3, 0.2, 0.1])
    segments = segment_map(label)
    assert (segments[label == 255] == 0).all()
    expected = sorted(sorted(zip(*np.nonzero(component))) for cls in (0, 1, 2)
                      for component in brute_components(label == cls))
    got = sorted(sorted(zip(*np.nonzero(segments == k))) for k in range(1, segments.max() + 1))
    assert got == expected


def test_prompts_lie_on_their_segment_and_large_segments_are_drawn_more_often():
    segments = np.zeros((30, 40), np.int32)
    segments[5:15, 10:30] = 1   # 200 pixels
    segments[20:28, 2:8] = 2    # 48 pixels
    rng = np.random.default_rng(0)
    for kind in PROMPT_KINDS:
        prompts = draw_prompts(segments, np.array([1, 2]), 400, kind, rng, box_noise_max=3.0,
                               weights=np.sqrt([200.0, 48.0]))
        picked = np.array([segments[p["target"]][0] for p in prompts])
        # drawn in proportion to sqrt(area): 200 px against 48 px gives 67 % for the larger one
        assert abs((picked == 1).mean() - np.sqrt(200) / (np.sqrt(200) + np.sqrt(48))) < 0.07
        for p in prompts:
            ys, xs = np.nonzero(p["target"])
            assert len(np.unique(segments[p["target"]])) == 1
            for x, y in p["points"].astype(int):
                assert p["target"][y, x]
            assert len(p["points"]) == {"point": 1, "box": 0, "box+point": 1, "box+2points": 2}[kind]
            if kind == "point":
                assert p["box"] is None
            else:
                exact = np.array([xs.min(), ys.min(), xs.max(), ys.max()])
                assert np.abs(p["box"] - exact).max() <= 3.0
                assert (p["box"] >= 0).all() and (p["box"][[0, 2]] <= 39).all() and (p["box"][[1, 3]] <= 29).all()


def test_mask_losses_match_their_formulas():
    rng = np.random.default_rng(1)
    logits = torch.as_tensor(rng.normal(0, 2, size=(2, 3, 5, 6)), dtype=torch.float32)
    target = torch.as_tensor(rng.random((2, 1, 5, 6)) < 0.4, dtype=torch.float32)
    focal, dice, iou = mask_losses(logits, target)  # no class weighting by default
    z, t = logits.double().numpy(), np.broadcast_to(target.numpy(), logits.shape).astype(np.float64)
    p = 1 / (1 + np.exp(-z))
    p_t = p * t + (1 - p) * (1 - t)
    ce = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    np.testing.assert_allclose(focal.numpy(), ((1 - p_t) ** 2 * ce).mean((2, 3)), rtol=1e-5)
    alpha_t = 0.25 * t + 0.75 * (1 - t)
    np.testing.assert_allclose(mask_losses(logits, target, focal_alpha=0.25)[0].numpy(),
                               (alpha_t * (1 - p_t) ** 2 * ce).mean((2, 3)), rtol=1e-5)
    np.testing.assert_allclose(dice.numpy(), 1 - (2 * (p * t).sum((2, 3)) + 1) / (p.sum((2, 3)) + t.sum((2, 3)) + 1),
                               rtol=1e-5)
    predicted = z > 0
    expected_iou = (predicted & (t > 0)).sum((2, 3)) / np.maximum((predicted | (t > 0)).sum((2, 3)), 1)
    np.testing.assert_allclose(iou.numpy(), expected_iou, rtol=1e-6)


def shapes_scene(rng: np.random.Generator, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """A gray image of two or three flat rectangles on a flat background, and its label."""
    label = np.zeros((size, size), np.uint8)
    image = np.full((size, size), 60, np.uint8)
    for k in range(1, rng.integers(2, 4) + 1):
        y0, x0 = rng.integers(0, size - 16, size=2)
        h, w = rng.integers(8, 16, size=2)
        label[y0:y0 + h, x0:x0 + w] = k
        image[y0:y0 + h, x0:x0 + w] = 60 + 60 * k
    return image, label


def test_a_trained_sam_round_trips_through_the_official_loader(tmp_path):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    scenes = [shapes_scene(rng) for _ in range(12)]
    data = SegmentImages([s[0] for s in scenes], [s[1] for s in scenes], TINY.image_size, min_pixels=10)
    sam = build_sam(TINY)
    cfg = SamTraining(iterations=100, batch_size=2, prompts_per_image=4, lr=3e-3, warmup_iters=5, seed=0)
    history = train_sam(sam, data, cfg, progress=False)
    assert len(history) == 100 and all(np.isfinite(h["loss"]) for h in history)
    # it learns (seed 0, 1 or 2 threads: loss 2.5 -> 1.2, IoU of the best output 0.08 -> 0.26)
    mean = {key: [np.mean([h[key] for h in history[:10]]), np.mean([h[key] for h in history[-10:]])]
            for key in ("loss", "iou")}
    assert mean["loss"][1] < 0.7 * mean["loss"][0] and mean["iou"][1] > mean["iou"][0] + 0.1, mean

    path = tmp_path / "sam_tiny.pth"
    torch.save(sam.eval().state_dict(), path)
    loaded = load_sam(path, TINY)
    for name, value in sam.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name]), name
    # the PSA side runs unchanged on it: automatic masks (a grid coarse enough for 48 pixels, no filtering)
    # and batched box + point prompts
    image, label = scenes[0]
    masks = SamMasks(loaded, points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    masks.set_image(image)
    automatic = masks.automatic()
    assert automatic and all(m.shape == image.shape and m.dtype == bool for m in automatic)
    ys, xs = np.nonzero(label == 1)
    box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float64)
    prompted = masks.prompted([box, box], [np.array([[xs.mean(), ys.mean()]]), np.zeros((0, 2))])
    assert [m.shape for m in prompted] == [image.shape] * 2


def test_bad_training_data_is_refused():
    with pytest.raises(ValueError, match="as many labels as images"):
        SegmentImages([np.zeros((8, 8), np.uint8)], [], 48, 10)
    with pytest.raises(ValueError, match="no segment of 10 pixels.*min_segment_pixels"):
        SegmentImages([np.zeros((8, 8), np.uint8)], [np.full((8, 8), 255, np.uint8)], 48, 10)


def test_a_gray_frame_and_the_same_frame_as_rgb_give_the_same_loss():
    """SAM takes RGB; a gray frame is its three equal channels, so training on either is the same."""
    image, label = shapes_scene(np.random.default_rng(3))
    gray = SegmentImages([image], [label], TINY.image_size, min_pixels=10)
    rgb = SegmentImages([np.repeat(image[..., None], 3, axis=2)], [label], TINY.image_size, min_pixels=10)
    torch.manual_seed(0)
    sam = build_sam(TINY)
    losses = [sam_loss(sam, data, np.array([0]), np.random.default_rng(5), SamTraining())[0]
              for data in (gray, rgb)]
    assert losses[0].item() == pytest.approx(losses[1].item(), rel=1e-6)
    with pytest.raises(ValueError, match=r"an image of \(48, 40\) has a label of \(48, 48\)"):
        SegmentImages([np.zeros((48, 40, 3), np.uint8)], [label], TINY.image_size, min_pixels=10)
