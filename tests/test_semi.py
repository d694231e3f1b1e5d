"""UniMatch (rule train_semi): losses against hand-computed values, the feature-perturbation path, the strong
views and CutMix, the batches, and resume through the shared training loop."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from evseg.adapt.augment import gaussian_blur
from evseg.adapt.data import InputSpec, SourceImages, TargetSamples
from evseg.adapt.optim import build_optimizer
from evseg.adapt.trainer import CHECKPOINT, METRICS, run_steps
from evseg.data.classes import IGNORE
from evseg.errors import DataError
from evseg.models import build_segmentor
from evseg.semi.data import SemiBatches, read_refined_labels, rescale
from evseg.semi.unimatch import (UniMatchStep, cutmix_targets, ohem_cross_entropy, perturbed_forward, unimatch_loss,
                                 unlabelled_loss)
from evseg.semi.views import StrongViews, cutmix_box
from evseg.synth.cityscapes import write_cityscapes_split
from tests.conftest import make_dsec_sequence

DSEC = {"num_classes": 11, "label_layout": "raw", "sensor_size": [40, 48], "label_height": 36,
        "ess": {"skip_first": 0, "stride": 1, "num_chunks": 2, "events_per_chunk": 200, "bins_per_chunk": 5,
                "official_truncation": False}}
INPUT = {"target": "event_tensor", "event_channels": [0, 4], "sum_event_channels": True,
         "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
AUG = {"jitter_p": 0.8, "brightness": 0.5, "contrast": 0.5, "saturation": 0.5, "hue": 0.25, "grayscale_p": 0.2,
       "blur_p": 0.5, "blur_sigma": [0.1, 2.0], "cutmix_p": 0.5}
SEMI = {"seed": 0, "max_iters": 4, "batch_size": 2, "crop_size": [32, 32], "scale_range": [0.5, 2.0],
        "source_weight": 0.0, "confidence_threshold": 0.5, "feature_dropout": 0.5, "ohem": {"enabled": True, "threshold": 0.7,
                                                                       "min_kept": 500},
        "strong_aug": AUG, "checkpoint_every": 2, "log_every": 1, "num_workers": 0, "device": "cpu",
        "optimizer": {"name": "sgd", "lr": 0.005, "momentum": 0.9, "weight_decay": 1e-4, "head_lr_mult": 1.0,
                      "warmup_iters": 0, "power": 0.9}}


def two_class_logits(p_class1: list[float]) -> torch.Tensor:
    """(1, 2, 1, N) logits whose softmax gives class 1 the probability p."""
    p = torch.tensor(p_class1, dtype=torch.float64)
    return torch.stack([torch.zeros_like(p), torch.log(p / (1 - p))])[None, :, None, :].float()


# ------------------------------------------------------------------------------------------------ losses


def test_total_loss_is_unimatch_composition():
    total = unimatch_loss(torch.tensor(1.0), torch.tensor(2.0), torch.tensor(3.0), torch.tensor(4.0))
    assert total.item() == pytest.approx((1 + 0.25 * 2 + 0.25 * 3 + 0.5 * 4) / 2)


def test_unlabelled_loss_keeps_confident_unpadded_pixels_and_divides_by_unpadded_count():
    logits = two_class_logits([0.75, 0.75, 0.75, 0.75])
    labels = torch.tensor([[[1, 0, 1, 0]]])
    confidence = torch.tensor([[[0.9, 0.95, 0.5, 0.99]]])
    padding = torch.tensor([[[False, False, False, True]]])
    loss = unlabelled_loss(logits, labels, confidence, padding, threshold=0.8)
    # pixels 0 and 1 are kept (pixel 2 is not confident, pixel 3 is padding); 3 unpadded pixels
    assert loss.item() == pytest.approx((-math.log(0.75) - math.log(0.25)) / 3, rel=1e-6)
    assert unlabelled_loss(logits, labels, confidence, padding, threshold=0.0).item() == pytest.approx(
        (-math.log(0.75) - math.log(0.25) - math.log(0.75)) / 3, rel=1e-6)
    assert unlabelled_loss(logits, labels, confidence, torch.ones_like(padding), 0.0).item() == 0.0


def test_ohem_keeps_the_hard_pixels():
    p = [0.9, 0.6, 0.3, 0.8, 0.5]
    logits = two_class_logits(p)
    labels = torch.tensor([[[1, 1, 1, 1, IGNORE]]])
    ce = {q: -math.log(q) for q in p}
    # min_kept 1: the cut is max(0.7, smallest) = 0.7 -> 0.6 and 0.3
    assert ohem_cross_entropy(logits, labels, 0.7, 1).item() == pytest.approx((ce[0.6] + ce[0.3]) / 2, rel=1e-6)
    # min_kept 3: the 3rd smallest labelled probability (0.8) is above 0.7 and becomes the cut
    assert ohem_cross_entropy(logits, labels, 0.7, 3).item() == pytest.approx(
        (ce[0.6] + ce[0.3] + ce[0.8]) / 3, rel=1e-6)
    # more to keep than labelled pixels: plain cross-entropy over the labelled ones
    assert ohem_cross_entropy(logits, labels, 0.7, 5).item() == pytest.approx(
        (ce[0.9] + ce[0.6] + ce[0.3] + ce[0.8]) / 4, rel=1e-6)


def test_cutmix_targets_take_the_partner_inside_the_box():
    box = torch.tensor([[[True, False], [False, True]]])
    own = (torch.zeros(1, 2, 2), torch.full((1, 2, 2), 0.5))
    partner = (torch.ones(1, 2, 2), torch.full((1, 2, 2), 0.9))
    label, confidence = cutmix_targets(box, own, partner)
    assert torch.equal(label, box.float()) and torch.equal(confidence, torch.where(box, 0.9, 0.5))


# ------------------------------------------------------------------------------------------------ feature perturbation


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return build_segmentor("mit_b0", 11, in_chans=1, embed_dim=16)


def test_perturbed_forward_drops_whole_channels_of_every_decoder_input():
    model = tiny_model().eval()  # batch norm with running statistics: each half can be recomputed alone
    x = torch.randn(2, 1, 32, 32)
    seen = []
    model.decode_head.register_forward_pre_hook(lambda module, args: seen.append([f.clone() for f in args[0]]))
    torch.manual_seed(3)
    with torch.no_grad():
        clean, perturbed = perturbed_forward(model, x, dropout=0.5)
        features = model.extract_features(x)
        expected_clean = model(x)
    inputs = seen[0]
    assert len(inputs) == 4
    dropped_share = []
    for f, both in zip(features, inputs):
        assert torch.equal(both[:2], f)
        kept = both[2:].abs().sum((2, 3)) > 0
        # a channel is either zeroed or scaled by 1 / (1 - p) as a whole
        assert torch.allclose(both[2:], f * kept[..., None, None] * 2.0)
        dropped_share.append(1 - kept.float().mean().item())
    assert 0.35 < float(np.mean(dropped_share)) < 0.65
    with torch.no_grad():
        expected_perturbed = model.decode_head([both[2:] for both in inputs])
    assert torch.allclose(clean, expected_clean, atol=1e-6)
    assert torch.allclose(perturbed, expected_perturbed, atol=1e-6)
    assert not torch.allclose(perturbed, clean)


# ------------------------------------------------------------------------------------------------ views


def test_cutmix_box_lies_inside_with_the_drawn_area_and_aspect():
    rng = np.random.default_rng(0)
    assert not cutmix_box(rng, (40, 60), p=0.0).any()
    for _ in range(50):
        box = cutmix_box(rng, (40, 60), p=1.0)
        rows, cols = np.nonzero(box)
        height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert box.sum() == height * width  # one filled rectangle
        assert 0.01 < box.sum() / box.size <= 0.4
        assert 0.2 < height / width < 1 / 0.2  # aspect 0.3..3.3 up to integer truncation


def test_strong_views_of_events_are_blur_only():
    crop = np.random.default_rng(0).normal(size=(1, 32, 32)).astype(np.float32)
    views = StrongViews.from_config(AUG, images=False)
    outcomes = set()
    for seed in range(20):
        view = views(crop, np.random.default_rng(seed))
        if np.array_equal(view, crop):
            outcomes.add("same")
            continue
        rng = np.random.default_rng(seed)  # re-draw the decisions, factors, order and sigma as the view does
        rng.random(3), rng.uniform(size=4), rng.permutation(4)
        sigma = rng.uniform(0.1, 2.0)
        assert np.allclose(view, gaussian_blur(torch.from_numpy(crop)[None], sigma)[0].numpy(), atol=1e-6)
        outcomes.add("blurred")
    assert outcomes == {"same", "blurred"}


def test_strong_views_of_gray_images_jitter_brightness_and_contrast():
    spec = InputSpec.from_config({**INPUT, "target": "reconstruction"})
    mean, std = spec.mean_std()
    image = np.random.default_rng(1).integers(0, 256, (32, 32)).astype(np.uint8)
    crop = spec.image(image)
    views = StrongViews.from_config({**AUG, "jitter_p": 1.0, "blur_p": 0.0}, images=True, mean=mean, std=std)
    view = views(crop, np.random.default_rng(5))
    intensities = view * std[0] + mean[0]
    assert intensities.min() >= -1e-6 and intensities.max() <= 1 + 1e-6
    # brightness and contrast are affine in the intensities before clamping: the view is a monotone map
    order = np.argsort(crop.ravel(), kind="stable")
    assert np.all(np.diff(view.ravel()[order]) >= -1e-6) and not np.allclose(view, crop)
    assert np.array_equal(view, views(crop, np.random.default_rng(5)))


# ------------------------------------------------------------------------------------------------ batches


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    root = tmp_path_factory.mktemp("semi_data")
    make_dsec_sequence(root / "dsec", "train", "seq_a", num_labels=6, sensor=(40, 48), label_height=36,
                       events_per_ms=40, seed=2)
    return TargetSamples(root / "dsec", "train", ["seq_a"], DSEC, InputSpec.from_config(INPUT))


def refined_labels(target):
    rng = np.random.default_rng(4)
    return {target.ids[i]: rng.choice(np.array([0, 1, 2, IGNORE], dtype=np.uint8), size=(36, 48))
            for i in (0, 2, 4)}


def batches(target, seed=0, source=None, **changes):
    cfg = {**SEMI, **changes}
    views = StrongViews.from_config(cfg["strong_aug"], images=False)
    return SemiBatches(target, refined_labels(target), [target.ids[i] for i in (1, 3, 5)], seed, cfg["batch_size"],
                       cfg["crop_size"], cfg["scale_range"], views, cfg["strong_aug"]["cutmix_p"], source=source)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("semi_source")
    write_cityscapes_split(root / "cityscapes", "train", 3, (64, 32), seed=1)
    return SourceImages(root / "cityscapes", "ess11", (64, 32), InputSpec.from_config(INPUT))


def test_rescale_sets_the_long_side_in_range():
    x = np.random.default_rng(0).normal(size=(2, 36, 48)).astype(np.float32)
    label = np.random.default_rng(1).integers(0, 3, (36, 48)).astype(np.uint8)
    for seed in range(10):
        y, lab = rescale(np.random.default_rng(seed), x, label, (0.5, 2.0))
        assert 24 <= y.shape[-1] <= 96 and y.shape[0] == 2 and lab.shape == y.shape[-2:]
        assert round(36 * y.shape[-1] / 48) == y.shape[-2]
        assert set(np.unique(lab)) <= {0, 1, 2}


def test_batches_are_a_function_of_seed_and_step(target):
    a = batches(target)
    first = a[3]
    assert set(first) == {"labeled", "label", "weak", "weak_padding", "strong1", "strong2", "box1", "box2",
                          "mix_weak", "mix_padding"}
    assert first["labeled"].shape == (2, 1, 32, 32) and first["label"].dtype == torch.int64
    assert first["weak_padding"].dtype == torch.bool and first["box1"].shape == (2, 32, 32)
    again = batches(target)[3]
    for key in first:
        assert torch.equal(first[key], again[key])
    assert not torch.equal(a[4]["weak"], first["weak"])
    assert not torch.equal(batches(target, seed=1)[3]["weak"], first["weak"])


def test_padding_is_marked_and_strong_views_take_the_partner_inside_the_box(target):
    # no rescale, a crop larger than the 36x48 samples: rows 36.. and columns 48.. are padding
    still = {**AUG, "jitter_p": 0.0, "blur_p": 0.0, "cutmix_p": 1.0}
    batch = batches(target, crop_size=[40, 56], scale_range=[1.0, 1.0], strong_aug=still)[0]
    padding = np.zeros((40, 56), dtype=bool)
    padding[36:], padding[:, 48:] = True, True
    for b in range(2):
        assert np.array_equal(batch["weak_padding"][b].numpy(), padding)
        assert np.array_equal(batch["mix_padding"][b].numpy(), padding)
        assert np.all(batch["label"][b].numpy()[padding] == IGNORE)
        assert np.all(batch["weak"][b].numpy()[:, padding] == 0)
        for view, box in (("strong1", "box1"), ("strong2", "box2")):
            inside = batch[box][b].numpy()
            assert inside.any()
            expected = np.where(inside, batch["mix_weak"][b].numpy(), batch["weak"][b].numpy())
            assert np.array_equal(batch[view][b].numpy(), expected)


def test_labelled_crops_pair_inputs_with_their_labels(target):
    """Unflipped, unscaled crops of the whole sample show the stored label at the input's position."""
    labels = refined_labels(target)
    batch = batches(target, crop_size=[36, 48], scale_range=[1.0, 1.0])[1]
    for b in range(2):
        x, label = batch["labeled"][b].numpy(), batch["label"][b].numpy()
        matches = [i for i in (0, 2, 4) for flip in (False, True)
                   if np.allclose(x, target.input(i)[..., ::-1] if flip else target.input(i))
                   and np.array_equal(label, labels[target.ids[i]][:, ::-1] if flip else labels[target.ids[i]])]
        assert len(matches) == 1


def test_refined_labels_are_read_and_checked(tmp_path):
    folder = tmp_path / "seq_a"
    folder.mkdir()
    cv2.imwrite(str(folder / "000002.png"), np.full((36, 48), 3, np.uint8))
    labels = read_refined_labels({"seq_a": folder}, ["seq_a/000002"], (36, 48))
    assert np.all(labels["seq_a/000002"] == 3)
    with pytest.raises(DataError, match="000004.png.*missing"):
        read_refined_labels({"seq_a": folder}, ["seq_a/000004"], (36, 48))
    with pytest.raises(DataError, match="is uint8 48x36, expected a uint8 48x40 PNG"):
        read_refined_labels({"seq_a": folder}, ["seq_a/000002"], (40, 48))


def test_split_ids_must_be_target_samples(target):
    views = StrongViews.from_config(AUG, images=False)
    with pytest.raises(ValueError, match="not target training samples"):
        SemiBatches(target, refined_labels(target), ["seq_b/000001"], 0, 2, (32, 32), (0.5, 2.0), views)
    with pytest.raises(ValueError, match="labelled and unlabelled"):
        SemiBatches(target, refined_labels(target), [], 0, 2, (32, 32), (0.5, 2.0), views)


# ------------------------------------------------------------------------------------------------ step and loop


def test_step_logs_the_composed_loss_and_all_pixels_can_be_ignored(target):
    batch = batches(target)[0]
    model = tiny_model().train()
    logs = UniMatchStep(model, SEMI, torch.device("cpu"))(0, batch)
    expected = unimatch_loss(logs["loss_labeled"], logs["loss_strong1"], logs["loss_strong2"],
                             logs["loss_feature_perturbation"])
    assert logs["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert all(p.grad is not None for p in model.decode_head.parameters())
    model.zero_grad()
    unreachable = UniMatchStep(model, {**SEMI, "confidence_threshold": 1.01}, torch.device("cpu"))(0, batch)
    assert unreachable["loss_strong1"] == 0 and unreachable["loss_feature_perturbation"] == 0
    assert unreachable["confident_share"] == 0
    assert unreachable["loss"].item() == pytest.approx(unreachable["loss_labeled"].item() / 2, rel=1e-6)


def test_source_crops_come_last_and_leave_the_target_draws_unchanged(target, source):
    plain, with_source = batches(target)[2], batches(target, source=source)[2]
    assert set(with_source) == set(plain) | {"source", "source_label"}
    for key in plain:
        assert torch.equal(plain[key], with_source[key]), key
    assert with_source["source"].shape == (2, 1, 32, 32) and with_source["source_label"].dtype == torch.int64
    # each crop is a window of one of the source images, with its label at the same place
    for b in range(2):
        x, label = with_source["source"][b, 0].numpy(), with_source["source_label"][b].numpy()
        found = False
        for i in range(len(source)):
            image, full = source.get(i)
            image = source.spec.image(image)[0]
            for flip in (False, True):
                img, lab = (image[:, ::-1], full[:, ::-1]) if flip else (image, full)
                for top in range(img.shape[0] - 31):
                    for left in range(img.shape[1] - 31):
                        if (np.allclose(img[top:top + 32, left:left + 32], x)
                                and np.array_equal(lab[top:top + 32, left:left + 32], label)):
                            found = True
        assert found


def test_step_adds_the_weighted_source_cross_entropy(target, source):
    batch = batches(target, source=source)[0]
    model = tiny_model().eval()  # no drop path, running statistics: the source forward can be repeated
    logs = UniMatchStep(model, {**SEMI, "source_weight": 0.5}, torch.device("cpu"))(0, batch)
    expected = unimatch_loss(logs["loss_labeled"], logs["loss_strong1"], logs["loss_strong2"],
                             logs["loss_feature_perturbation"]) + 0.5 * logs["loss_source"]
    assert logs["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    # the source term is the mean cross-entropy over all source pixels, computed here by hand
    with torch.no_grad():
        logits = torch.nn.functional.interpolate(model(batch["source"]), size=(32, 32), mode="bilinear",
                                                 align_corners=False)
        by_hand = torch.nn.functional.cross_entropy(logits, batch["source_label"], ignore_index=IGNORE,
                                                    reduction="none").mean()
    assert logs["loss_source"].item() == pytest.approx(by_hand.item(), rel=1e-4)


def train_semi(target, state_dir, stop_after=None):
    model = tiny_model().train()
    torch.manual_seed(SEMI["seed"])
    step = UniMatchStep(model, SEMI, torch.device("cpu"))
    optimizer, scheduler = build_optimizer(model, {**SEMI["optimizer"], "max_iters": SEMI["max_iters"]})
    run_steps(step, batches(target), optimizer, scheduler, SEMI, state_dir, stop_after)
    return model


def test_killed_semi_run_resumes_to_the_same_weights(target, tmp_path):
    """4 steps in one go vs 3 steps, a kill (checkpoints every 2) and a rerun: dropout and the feature
    perturbation draw from the saved RNG state, the batches from (seed, step)."""
    whole = train_semi(target, tmp_path / "whole")
    train_semi(target, tmp_path / "killed", stop_after=3)
    assert torch.load(tmp_path / "killed" / CHECKPOINT, weights_only=False)["step"] == 2
    resumed = train_semi(target, tmp_path / "killed")
    for (name, x), (_, y) in zip(whole.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(x, y), name
    initial = tiny_model().state_dict()
    assert any(not torch.equal(x, initial[k]) for k, x in whole.state_dict().items() if x.is_floating_point())
    header = (tmp_path / "killed" / METRICS).read_text().splitlines()[0].split(",")
    for key in ("loss", "loss_labeled", "loss_strong1", "loss_strong2", "loss_feature_perturbation",
                "confident_share", "lr_head", "lr_decay"):
        assert key in header


def test_sgd_decays_every_parameter_and_adamw_spares_norms():
    model = tiny_model()
    sgd, _ = build_optimizer(model, {"name": "sgd", "lr": 0.005, "weight_decay": 1e-4, "head_lr_mult": 1.0,
                                     "max_iters": 10, "warmup_iters": 0})
    assert isinstance(sgd, torch.optim.SGD) and {g["name"] for g in sgd.param_groups} == {"head", "decay"}
    assert all(g["weight_decay"] == 1e-4 and g["momentum"] == 0.9 for g in sgd.param_groups)
    adamw, _ = build_optimizer(model, {"max_iters": 10})
    assert {g["name"] for g in adamw.param_groups} == {"head", "no_decay", "decay"}
    with pytest.raises(ValueError, match="adamw' or 'sgd"):
        build_optimizer(model, {"name": "adam", "max_iters": 10})

