"""CMDA's data, step and model file: aligned crops, the losses and where they flow, resume, the generator file."""

from __future__ import annotations

import copy
import shutil

import cv2
import numpy as np
import pytest
import torch

from evseg.adapt.optim import build_optimizer
from evseg.adapt.trainer import run_steps, to_training_device
from evseg.cmda.data import CMDABatches, MotionSource, NightFrames, image_spec
from evseg.cmda.inputs import SOURCE_CONTENT, TARGET_CONTENT, as_uint8, motion_extractor
from evseg.cmda.model import build_fusion_segmentor, load_model_file, save_model_file
from evseg.cmda.style import ResnetGenerator, load_style_generator, stylize
from evseg.cmda.trainer import CMDAStep
from evseg.errors import DataError
from evseg.synth.cityscapes import write_cityscapes_split
from tests.test_dsec_night import make_night_sequence

SENSOR = (40, 48)
MOTION = {"log_offset": 50.0, "threshold": 0.1, "clip": 0.8}
CMDA = {"loss_weights": {"fusion": 0.5, "image": 0.5, "events": 0.25, "isr": 0.25}, "teacher_isr_p": 0.5,
        "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
        "content": {"source": SOURCE_CONTENT, "target": TARGET_CONTENT},
        "l2": {"variant": "none", "lambdas": {"rgb_events_source": 0.1, "fusion_st": 0.1, "rgb_st": 0.1,
                                               "events_rgbt": 0.05, "events_st": 0.05}}}
UDA = {"ema_alpha": 0.999, "start_iter": 1, "pseudo_threshold": 0.968, "pseudo_weighting": True,
       "pseudo_ignore_top": 0, "pseudo_ignore_bottom": 0,
       "strong_aug": {"color_jitter_p": 0.2, "color_jitter_s": 0.2, "gray_jitter": True, "blur": True}}
TRAIN = {"seed": 0, "max_iters": 4, "checkpoint_every": 2, "log_every": 1, "num_workers": 0,
         "optimizer": {"lr": 6e-4, "weight_decay": 0.01, "betas": [0.9, 0.999], "head_lr_mult": 10.0,
                       "warmup_iters": 2, "warmup_ratio": 1e-6, "power": 1.0}}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmda_data")
    write_cityscapes_split(root / "cityscapes", "train", 4, (64, 32), seed=1, previous_frames=True)
    make_night_sequence(root / "night", "seq", 14, labelled=[2, 4], sensor=SENSOR)
    spec = image_spec()
    source = MotionSource(root / "cityscapes", "cityscapes19", (64, 32), spec, MOTION, SOURCE_CONTENT)
    target = NightFrames(root / "night", "train", {"seq": 18}, SENSOR, 36, spec, 2000.0, TARGET_CONTENT)
    test = NightFrames(root / "night", "test", {"seq": 18}, SENSOR, 36, spec, 2000.0, TARGET_CONTENT)
    return root, source, target, test


def batches(data, seed=0, adapt=True):
    _, source, target, _ = data
    return CMDABatches(source, seed, 2, (32, 32), 0.75, target if adapt else None, (24, 24))


def test_source_motion_map_is_the_released_ic1(data, tmp_path):
    root, source, _, _ = data
    frame = source.data.image(0, grayscale=False)
    previous = source.data.previous_frame(0)
    expected = as_uint8(motion_extractor(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY),
                                         cv2.cvtColor(previous, cv2.COLOR_RGB2GRAY), **MOTION))
    np.testing.assert_allclose(source.motion(0), expected.astype(np.float32) / 255 * 2 - 1, atol=1e-6)
    assert np.abs(source.motion(0)).max() > 0.5  # the ego car moved between frames 18 and 19
    shutil.copytree(root / "cityscapes", tmp_path / "cityscapes")
    missing = source.data.image_paths[1].name.replace("_000019_", "_000018_")
    (tmp_path / "cityscapes/leftImg8bit_sequence/train" / source.data.image_paths[1].parent.name / missing).unlink()
    with pytest.raises(DataError, match="leftImg8bit_sequence_trainvaltest.zip"):
        MotionSource(tmp_path / "cityscapes", "cityscapes19", (64, 32), image_spec(), MOTION).motion(1)
    cv2.imwrite(str(tmp_path / "cityscapes/leftImg8bit_sequence/train" / source.data.image_paths[1].parent.name
                    / missing), np.zeros((16, 64, 3), np.uint8))
    with pytest.raises(DataError, match="is 64x16 pixels, but .* is 64x32"):
        MotionSource(tmp_path / "cityscapes", "cityscapes19", (64, 32), image_spec(), MOTION).motion(1)


def test_batches_keep_modalities_aligned(data):
    a = batches(data)[3]
    assert set(a) == {"source", "source_label", "source_events", "source_isr", "target", "target_events",
                      "target_isr"}
    assert a["source"].shape == (2, 3, 32, 32) and a["target"].shape == (2, 3, 32, 32)
    assert a["source_events"].shape == a["target_events"].shape == a["target_isr"].shape == (2, 1, 32, 32)
    for key, value in batches(data)[3].items():
        assert torch.equal(value, a[key])  # a function of (seed, step)
    assert not torch.equal(batches(data)[4]["target"], a["target"])
    # the source motion crop is the crop of the cached motion map at the image's crop: find it by brute force
    _, source, _, _ = data
    rng = np.random.default_rng([0, 3])
    i = int(rng.integers(len(source)))
    top, left, flip = source.crop_box(rng, i, (32, 32), 0.75)
    window = source.motion(i)[top: top + 32, left: left + 32]
    np.testing.assert_array_equal(a["source_events"][0, 0].numpy(), window[:, ::-1] if flip else window)


def test_test_sample_is_the_whole_frame_cut_to_eval_height(data):
    _, _, _, test = data
    sample = test.test_sample(1)
    assert sample["image"].shape == (3, 36, 48) and sample["events"].shape == (1, 36, 48)
    assert sample["label"].shape == (36, 48) and (sample["label"] == 4).all()
    full = test.event_image(1)
    np.testing.assert_array_equal(sample["events"][0], full[:36])


def make_step(events=True, adapt=True, variant="none", device=torch.device("cpu")):
    torch.manual_seed(0)
    student = build_fusion_segmentor("mit_b0", 19, events=events, embed_dim=16)
    to_training_device(student, device)
    cfg = {**TRAIN, "adapt": adapt, "uda": UDA, "cmda": {**CMDA, "l2": {**CMDA["l2"], "variant": variant}}}
    return CMDAStep(student, cfg, device)


@pytest.mark.parametrize("events,adapt,variant", [(True, True, "rgb_st+events_st"), (False, True, "none"),
                                                  (True, False, "rgb_events_source")])
def test_step_losses_and_gradients(data, events, adapt, variant):
    step = make_step(events, adapt, variant)
    batch = batches(data, adapt=adapt)[1]
    logs = step(1, batch)
    outputs = ("image", "fusion", "events", "isr") if events else ("image",)
    passes = ("source", "mix") if adapt else ("source",)
    expected = {f"loss_{p}" for p in passes} | {f"loss_{p}_{k}" for p in passes for k in outputs}
    if adapt:
        expected.add("pseudo_weight")
    if variant == "rgb_st+events_st":
        expected |= {"l2_rgb_st", "l2_events_st"}
    if variant == "rgb_events_source":
        expected |= {"l2_rgb_events_source"}
    assert set(logs) == expected
    total = sum(CMDA["loss_weights"][k] * logs[f"loss_source_{k}"] for k in CMDA["loss_weights"]) if events \
        else logs["loss_source_image"]
    assert logs["loss_source"].item() == pytest.approx(float(total), rel=1e-5)
    assert all(torch.isfinite(v) for v in logs.values())
    student = step.student
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.image_backbone.parameters())
    if events:
        for part in (student.event_backbone, student.fusion):
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    if not adapt:
        assert step.teacher is None


def test_resume_reaches_the_same_weights(data, tmp_path):
    def run(state_dir, stop_after=None):
        step = make_step(variant="fusion_st")
        optimizer, scheduler = build_optimizer(step.student, {**TRAIN["optimizer"], "max_iters": 4})
        cfg = {**TRAIN, "adapt": True, "uda": UDA, "cmda": CMDA}
        run_steps(step, batches(data), optimizer, scheduler, cfg, state_dir, stop_after)
        return step

    straight = run(tmp_path / "a")
    run(tmp_path / "b", stop_after=2)
    resumed = run(tmp_path / "b")
    for (name, a), b in zip(straight.student.state_dict().items(), resumed.student.state_dict().values()):
        assert torch.equal(a, b), name
    for a, b in zip(straight.teacher.teacher.state_dict().values(), resumed.teacher.teacher.state_dict().values()):
        assert torch.equal(a, b)


def test_model_file_round_trip(tmp_path, data):
    step = make_step()
    path = tmp_path / "model.pt"
    save_model_file(path, step.student, step.teacher.teacher, {"backbone": "mit_b0", "drop_path_rate": 0.1,
                                                               "embed_dim": 16}, {}, 19, 4)
    model, meta = load_model_file(path)
    assert meta["model"]["events"] and not model.training
    x = torch.randn(1, 3, 32, 32)
    step.student.eval()
    torch.testing.assert_close(model(x, x)["fusion"], step.student(x, x)["fusion"])
    with pytest.raises(DataError, match="train_cmda"):
        torch.save({"format": "evseg-segmentor-1"}, tmp_path / "other.pt")
        load_model_file(tmp_path / "other.pt")


def test_style_generator_loads_the_released_layout(tmp_path):
    torch.manual_seed(0)
    reference = ResnetGenerator().eval()
    state = reference.state_dict()
    # the released file's names (pix2pix "model.<index>" layout), and torch<0.4 instance-norm leftovers
    assert "model.1.weight" in state and "model.10.conv_block.5.weight" in state and "model.26.bias" in state
    assert len(state) == 2 * (3 + 2 * 9 + 3)
    legacy = {**state, "model.2.running_mean": torch.zeros(64), "model.2.running_var": torch.ones(64)}
    torch.save(legacy, tmp_path / "cityscapes_ICD_to_dsec_EN.pth")
    generator = load_style_generator(tmp_path / "cityscapes_ICD_to_dsec_EN.pth")
    x = torch.rand(2, 1, 16, 20) * 2 - 1
    out = stylize(generator, x)
    assert out.shape == (2, 3, 16, 20) and out.abs().max() <= 1
    torch.testing.assert_close(out[:, :1], reference(x))
    assert not any(p.requires_grad for p in generator.parameters())
    assert torch.equal(stylize(None, x), x.expand(-1, 3, -1, -1))
    with pytest.raises(ValueError, match="divisible by 4"):
        generator(torch.zeros(1, 1, 18, 20))
    torch.save({k: v for k, v in state.items() if k != "model.26.bias"}, tmp_path / "bad.pth")
    with pytest.raises(DataError, match="missing: \\['model.26.bias'\\]"):
        load_style_generator(tmp_path / "bad.pth")
    torch.save(ResnetGenerator(in_channels=3).state_dict(), tmp_path / "rgb.pth")
    with pytest.raises(DataError, match="wrong shape"):
        load_style_generator(tmp_path / "rgb.pth")


def test_night_loader_copes_with_workers(data):
    """The dataset opens its files per process: a pickled copy (a loader worker) reads the same samples."""
    _, _, target, _ = data
    clone = copy.deepcopy(target)
    np.testing.assert_array_equal(clone.event_image(0), target.event_image(0))
