"""Training data and loop: per-step batches, the hybrid subset, and bit-exact resume after a kill."""

from __future__ import annotations

import copy

import cv2
import numpy as np
import pytest
import torch

from evseg.adapt.data import (InputSpec, SourceImages, StepBatches, TargetSamples, crop_pad, hybrid_subset,
                              random_crop_box, resize_keep_ratio)
from evseg.adapt.inference import load_model_file, predict, save_model_file
from evseg.adapt.trainer import CHECKPOINT, METRICS, train
from evseg.models import build_segmentor
from evseg.synth.cityscapes import write_cityscapes_split
from tests.conftest import make_dsec_sequence

DSEC = {"num_classes": 11, "label_layout": "raw", "sensor_size": [40, 48], "label_height": 36,
        "ess": {"skip_first": 0, "stride": 1, "num_chunks": 2, "events_per_chunk": 200, "bins_per_chunk": 5,
                "official_truncation": False}}
INPUT = {"target": "event_tensor", "event_channels": [0, 4], "sum_event_channels": True,
         "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
UDA = {"ema_alpha": 0.999, "start_iter": 1, "pseudo_threshold": 0.968, "pseudo_weighting": True,
       "pseudo_ignore_top": 1, "pseudo_ignore_bottom": 1,
       "strong_aug": {"color_jitter_p": 0.2, "color_jitter_s": 0.2, "gray_jitter": True, "blur": True},
       "rcs": {"enabled": False, "temperature": 0.01, "min_pixels": 3000, "min_crop_ratio": 0.5},
       "feature_distance": {"weight": 0.005, "thing_classes": [3, 8, 10], "min_ratio": 0.75},
       "hybrid": {"enabled": True, "weight": 1.0, "spa_weight": 1.0, "spa_momentum": 0.999}}
TRAIN = {"seed": 0, "max_iters": 6, "batch_size": 2, "crop_size": [32, 32], "cat_max_ratio": 0.75,
         "checkpoint_every": 2, "log_every": 1, "num_workers": 0, "device": "cpu", "input": INPUT,
         "optimizer": {"lr": 6e-4, "weight_decay": 0.01, "betas": [0.9, 0.999], "head_lr_mult": 10.0,
                       "warmup_iters": 2, "warmup_ratio": 1e-6, "power": 1.0}}


def write_datasets(root):
    write_cityscapes_split(root / "cityscapes", "train", 4, (64, 32), seed=1)
    make_dsec_sequence(root / "dsec", "train", "seq_a", num_labels=5, sensor=(40, 48), label_height=36,
                       events_per_ms=40, seed=2)
    recon = root / "reconstruct/train/seq_a"
    recon.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i in range(5):
        cv2.imwrite(str(recon / f"{i:06d}.png"), rng.integers(0, 255, (36, 48), dtype=np.uint8))


def source_and_target(root):
    spec = InputSpec.from_config(INPUT)
    source = SourceImages(root / "cityscapes", "ess11", (64, 32), spec)
    target = TargetSamples(root / "dsec", "train", ["seq_a"], DSEC, spec, root / "reconstruct")
    return root, source, target


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_data")
    write_datasets(root)
    return source_and_target(root)


def batches_of(datasets, seed=0, adapt=True):
    _, source, target = datasets
    return StepBatches(source, seed, 2, (32, 32), 0.75, target if adapt else None, [1, 3] if adapt else None)


# ------------------------------------------------------------------------------------------------ data


def test_batches_are_a_function_of_seed_and_step(datasets):
    a, b = batches_of(datasets), batches_of(datasets)
    first = a[5]
    assert set(first) == {"source", "source_label", "target", "hybrid", "hybrid_image"}
    assert first["source"].shape == (2, 1, 32, 32) and first["source_label"].dtype == torch.int64
    assert first["target"].shape == (2, 1, 32, 32) and first["hybrid_image"].shape == (2, 1, 32, 32)
    for key in first:
        assert torch.equal(first[key], b[5][key])  # another instance, same step
    assert not torch.equal(a[6]["source"], first["source"])
    assert not torch.equal(batches_of(datasets, seed=1)[5]["source"], first["source"])
    loader = torch.utils.data.DataLoader(a, batch_size=None, sampler=range(4, 7), num_workers=1)
    through_worker = list(loader)[1]  # another process, opening the HDF5 files itself
    for key in first:
        assert torch.equal(through_worker[key], first[key])


def test_target_input_is_the_summed_ess_channels(datasets):
    _, _, target = datasets
    full = target.data.ess_tensor(2, 2, 200, 5)
    assert np.allclose(target.input(2), full[0:4].sum(0, keepdims=True))
    voxel = TargetSamples(target.args["root"], "train", ["seq_a"], DSEC,
                          InputSpec.from_config({**INPUT, "sum_event_channels": False}))
    assert voxel.spec.channels == 4 and np.allclose(voxel.input(2), full[0:4])


def test_crop_pad_and_flip():
    array = np.arange(5 * 6).reshape(5, 6)
    out = crop_pad(array, 3, 2, (4, 3), flip=True, fill=-1)
    expected = np.full((4, 3), -1)
    expected[:2] = array[3:5, 2:5][:, ::-1]
    assert np.array_equal(out, expected)


def test_cat_max_ratio_redraws_crops_dominated_by_one_class():
    label = np.zeros((40, 40), np.uint8)
    label[:, 30:] = 1
    # A 10-wide crop at column L shows L - 20 columns of class 1; both classes stay under 75 % for L in
    # [23, 27]: 5 of the 31 positions. Up to 10 draws: accepted with probability 1 - (26/31)^10.
    rng = np.random.default_rng(0)
    lefts = np.array([random_crop_box(rng, label.shape, (10, 10), label, cat_max_ratio=0.75)[1] for _ in range(2000)])
    accepted = ((lefts >= 23) & (lefts <= 27)).mean()
    assert abs(accepted - (1 - (26 / 31) ** 10)) < 0.03
    plain = np.array([random_crop_box(rng, label.shape, (10, 10))[1] for _ in range(2000)])
    assert abs(((plain >= 23) & (plain <= 27)).mean() - 5 / 31) < 0.03


def test_resize_keeps_the_ratio():
    image, label = np.zeros((1024, 2048), np.uint8), np.zeros((1024, 2048), np.uint8)
    resized, _ = resize_keep_ratio(image, label, (1024, 512))
    assert resized.shape == (512, 1024)
    resized, _ = resize_keep_ratio(np.zeros((720, 1280), np.uint8), np.zeros((720, 1280), np.uint8), (1024, 512))
    assert resized.shape == (512, round(1280 * 512 / 720))


def test_hybrid_subset_is_seeded_distinct_and_sized():
    ids = [f"seq/{i:06d}" for i in range(1000)]
    chosen = hybrid_subset(ids, 1 / 16, seed=4)
    assert len(chosen) == len(set(chosen)) == 62 and chosen == sorted(chosen)
    assert chosen == hybrid_subset(ids, 1 / 16, seed=4) and chosen != hybrid_subset(ids, 1 / 16, seed=5)
    assert len(hybrid_subset(ids[:5], 1 / 16, seed=0)) == 1


# ------------------------------------------------------------------------------------------------ loop


def config(adapt=True, **changes):
    return {**TRAIN, **changes, "adapt": adapt, "uda": UDA}


def fresh_model(seed=0):
    torch.manual_seed(seed)
    return build_segmentor("mit_b0", 11, in_chans=1, embed_dim=16)


def test_killed_run_resumes_to_the_same_weights(datasets, tmp_path):
    """6 steps in one go vs 3 steps, a kill (the step-3 state is lost: checkpoints every 2), and a rerun."""
    whole = train(fresh_model(), batches_of(datasets), config(), 11, tmp_path / "whole", torch.device("cpu"))
    train(fresh_model(), batches_of(datasets), config(), 11, tmp_path / "killed", torch.device("cpu"), stop_after=3)
    assert torch.load(tmp_path / "killed" / CHECKPOINT, weights_only=False)["step"] == 2
    resumed = train(fresh_model(), batches_of(datasets), config(), 11, tmp_path / "killed", torch.device("cpu"))
    for a, b in [(whole.student, resumed.student), (whole.teacher.teacher, resumed.teacher.teacher)]:
        for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
            assert torch.equal(x, y), name
    assert torch.equal(whole.prior.value, resumed.prior.value)
    metrics = (tmp_path / "killed" / METRICS).read_text().splitlines()
    steps = [int(float(line.split(",")[0])) for line in metrics[1:]]
    assert steps == [1, 2, 3, 4, 5, 6]  # the lost step-3 row was dropped and written again
    header = metrics[0].split(",")
    for key in ("loss_source", "loss_feature_distance", "loss_mix", "loss_hybrid", "loss_spa", "pseudo_weight"):
        assert key in header


def test_a_checkpoint_of_another_config_is_not_resumed(datasets, tmp_path):
    train(fresh_model(), batches_of(datasets), config(max_iters=2), 11, tmp_path, torch.device("cpu"))
    other = config(max_iters=2, optimizer={**TRAIN["optimizer"], "lr": 1e-3})
    reference = train(fresh_model(), batches_of(datasets), other, 11, tmp_path / "fresh", torch.device("cpu"))
    rerun = train(fresh_model(), batches_of(datasets), other, 11, tmp_path, torch.device("cpu"))
    for x, y in zip(reference.student.state_dict().values(), rerun.student.state_dict().values()):
        assert torch.equal(x, y)


def test_training_changes_the_weights_and_source_only_has_no_target_losses(datasets, tmp_path):
    model = fresh_model()
    before = copy.deepcopy(model.state_dict())
    step = train(model, batches_of(datasets, adapt=False), config(adapt=False, max_iters=3), 11, tmp_path,
                 torch.device("cpu"))
    assert step.teacher is None
    changed = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert len(changed) > 0.9 * sum(v.is_floating_point() for v in before.values())
    header = (tmp_path / METRICS).read_text().splitlines()[0]
    assert "loss_source" in header and "loss_mix" not in header


def test_model_file_round_trip_and_prediction(datasets, tmp_path):
    _, source, target = datasets
    model = fresh_model().eval()
    teacher = fresh_model(1).eval()
    save_model_file(tmp_path / "model.pt", model, teacher, {"backbone": "mit_b0", "drop_path_rate": 0.1,
                                                            "embed_dim": 16}, source.spec, "ess11", 11, 7)
    loaded, spec, meta = load_model_file(tmp_path / "model.pt", which="teacher")
    assert spec == source.spec and meta["step"] == 7
    x = torch.from_numpy(target.input(0))[None]
    with torch.no_grad():
        assert torch.equal(loaded.predict(x), teacher.predict(x))
    results = list(predict(loaded, target, torch.device("cpu"), batch_size=2))
    assert [i for i, _, _ in results] == list(range(len(target)))
    i, label, probability = results[3]
    with torch.no_grad():
        expected = teacher.predict(torch.from_numpy(target.input(3))[None]).softmax(1)[0]
    assert label.shape == (36, 48) and np.array_equal(label, expected.argmax(0).numpy())
    assert np.allclose(probability, expected.max(0).values.numpy(), atol=1e-6)


def test_model_file_errors(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a model file written by evseg"):
        load_model_file(tmp_path / "other.pt")
