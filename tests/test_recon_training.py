"""Training E2VID on simulated drives: the windows it learns from, the loss, the clip crops, learning."""

import math
import shutil

import cv2
import numpy as np
import pytest
import torch

from evseg.data.dsec import read_timestamps
from evseg.errors import DataError
from evseg.events import EventSlicer
from evseg.recon.checkpoint import load_reconstruction_model, save_reconstruction_model
from evseg.recon.e2vid import E2VIDRecurrent
from evseg.recon.training import Drive, TrainingConfig, clip_loss, draw_clips, load_drive, train_reconstruction
from evseg.synth.dsec import DriveConfig, write_dsec_sequence

SENSOR = (32, 40)
MODEL = {"num_bins": 3, "base_num_channels": 4, "num_encoders": 2, "num_residual_blocks": 1, "norm": None,
         "use_upsample_conv": False, "skip_type": "sum", "recurrent_block_type": "convlstm"}


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    root = tmp_path_factory.mktemp("simulated")
    cfg = DriveConfig(sensor_size=SENSOR, label_height=30, duration_s=0.6, render_fps=200)
    write_dsec_sequence(root / "sim_00", seed=5, cfg=cfg, progress=False)
    return root / "sim_00"


def test_drive_windows_are_the_streaming_windows_cut_at_every_frame(sequence):
    size = 150
    drive = load_drive(sequence, 3, SENSOR, size)
    times = read_timestamps(sequence / "images/timestamps.txt")
    with EventSlicer(sequence / "events/left/events.h5") as slicer:
        starts = [slicer.time_range_us[0], *times[:-1]]
        counts = [len(slicer.get_events(a, b)) for a, b in zip(starts, times)]
    # the window in progress is cut at each frame time, so an interval of n events gives ceil(n / size) windows
    assert len(drive.voxels) == sum(math.ceil(n / size) for n in counts)
    supervised = drive.frame_after[drive.frame_after >= 0]
    assert list(supervised) == [k for k, n in enumerate(counts) if sum(counts[: k + 1]) > 0]
    windows_up_to = np.cumsum([math.ceil(n / size) for n in counts])
    assert all(drive.frame_after[w - 1] == k for k, w in enumerate(windows_up_to) if counts[k])
    first = cv2.imread(str(sequence / "images/left/ev_inf/000000.png"), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_allclose(drive.frames[0].numpy(), first / 255, atol=1e-6)
    assert drive.voxels.shape[1:] == (3, *SENSOR) and drive.voxels.dtype == torch.float16


def test_clip_loss_is_the_mean_l1_over_supervised_windows_after_warmup():
    torch.manual_seed(0)
    model = E2VIDRecurrent(MODEL).eval()
    voxels = torch.randn(2, 4, 3, 16, 16)
    targets = torch.rand(2, 4, 16, 16)
    has_target = torch.tensor([[True, True, False, True], [False, True, True, False]])
    brute = []
    for b in range(2):  # each clip on its own, from a zero state
        state = None
        for j in range(4):
            image, state = model(voxels[b : b + 1, j], state)
            if j >= 1 and has_target[b, j]:
                brute.append((image[0, 0] - targets[b, j]).abs().mean())
    expected = torch.stack(brute).mean()
    torch.testing.assert_close(clip_loss(model, voxels, targets, has_target, warmup=1), expected)


def test_clips_crop_voxels_and_frames_at_the_same_place():
    rows, cols = torch.meshgrid(torch.arange(24.0), torch.arange(32.0), indexing="ij")
    position = rows * 32 + cols
    windows, frames = 12, 5
    voxels = (position + 1000 * torch.arange(windows)[:, None, None]).unsqueeze(1).repeat(1, 2, 1, 1)
    frame_after = np.full(windows, -1)
    frame_after[[2, 5, 7, 9, 11]] = range(frames)
    drive = Drive("coded", voxels, frame_after,
                  position + 1000 * torch.arange(frames)[:, None, None].float())
    voxels, targets, has_target = draw_clips([drive], np.random.default_rng(1), 6, 4, crop_size=(8, 16))
    assert voxels.shape == (6, 4, 2, 8, 16) and targets.shape == (6, 4, 8, 16)
    for b in range(6):
        window_ids = (voxels[b, :, 0, 0, 0] // 1000).long()
        assert torch.all(torch.diff(window_ids) == 1)  # consecutive windows
        crop = voxels[b, 0, 0] - 1000 * window_ids[0]
        for j in range(4):
            assert bool(has_target[b, j]) == (frame_after[window_ids[j]] >= 0)
            if has_target[b, j]:
                torch.testing.assert_close(targets[b, j] - 1000 * frame_after[window_ids[j]], crop)


def test_training_lowers_the_loss_and_writes_an_official_checkpoint(sequence, tmp_path):
    drive = load_drive(sequence, 3, SENSOR, 150)
    cfg = TrainingConfig(iterations=60, batch_size=2, clip_windows=4, warmup_windows=1, lr=3e-3,
                         crop_size=(16, 24), seed=0)
    model, losses = train_reconstruction([drive], MODEL, cfg, progress=False)
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])
    again, losses_again = train_reconstruction([drive], MODEL, cfg, progress=False)
    assert losses_again == losses  # the seed fixes the run
    path = save_reconstruction_model(tmp_path / "e2vid.pth.tar", model, "E2VIDRecurrent", MODEL)
    loaded, config = load_reconstruction_model(path)
    assert config == MODEL
    voxel = drive.voxels[:1].float()
    torch.testing.assert_close(loaded(voxel)[0], model(voxel)[0])


def test_drives_that_cannot_train_are_refused(sequence, tmp_path):
    drive = load_drive(sequence, 3, SENSOR, 150)
    with pytest.raises(ValueError, match="fewer than clip_windows"):
        train_reconstruction([drive], MODEL, TrainingConfig(clip_windows=len(drive.voxels) + 1), progress=False)
    bare = tmp_path / "bare"
    shutil.copytree(sequence, bare)
    shutil.rmtree(bare / "images/left/ev_inf")
    with pytest.raises(DataError, match="holds no ground-truth frames"):
        load_drive(bare, 3, SENSOR, 150)
