"""The synthetic benchmark: what the synthesizer writes, our loaders read back (format round trip)."""

import numpy as np
import pytest

from evseg.data import Cityscapes, DsecSemantic
from evseg.data.classes import TRAIN19_TO_ESS11_LUT
from evseg.events import EventSlicer, load_rectify_map
from evseg.synth.cityscapes import write_cityscapes_split
from evseg.synth.dsec import DriveConfig, write_dsec_sequence

SENSOR, LABEL_HEIGHT = (36, 48), 33


@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    root = tmp_path_factory.mktemp("dsec")
    cfg = DriveConfig(sensor_size=SENSOR, label_height=LABEL_HEIGHT, duration_s=0.6, render_fps=200)
    counts = write_dsec_sequence(root / "train" / "synth_00_a", seed=5, cfg=cfg, progress=False)
    return root, cfg, counts


def test_dsec_sequence_round_trip(drive):
    root, cfg, counts = drive
    data = DsecSemantic(root, "train", ["synth_00_a"], sensor_size=SENSOR, label_height=LABEL_HEIGHT)
    seq = data.sequences["synth_00_a"]
    assert seq.layout == "raw" and len(seq.timestamps_us) == counts["labels"] == 12  # 0.6 s at 20 Hz
    np.testing.assert_array_equal(np.diff(seq.timestamps_us), 50_000)
    assert seq.timestamps_us[0] == cfg.t_offset_us + 50_000
    assert len(data) == 3 and data.ids == ["synth_00_a/000006", "synth_00_a/000008", "synth_00_a/000010"]
    for index in range(len(seq.timestamps_us)):
        label11 = seq.read_label(index)
        label19 = DsecSemantic(root, "train", ["synth_00_a"], num_classes=19).sequences["synth_00_a"].read_label(index)
        np.testing.assert_array_equal(label11, TRAIN19_TO_ESS11_LUT[label19])
        assert label11.shape == (LABEL_HEIGHT, SENSOR[1])
    with EventSlicer(seq.events_path) as slicer:
        assert slicer.num_events == counts["events"] > 1000
        assert slicer.t_offset == cfg.t_offset_us
        everything = slicer.get_events(cfg.t_offset_us, slicer.time_range_us[1] + 1)
        assert everything is not None and len(everything) == slicer.num_events
        assert everything.x.max() < SENSOR[1] and everything.y.max() < SENSOR[0]
        assert 0.2 < everything.p.mean() < 0.8
    rectify_map = load_rectify_map(seq.rectify_map_path, SENSOR)
    assert rectify_map[..., 0].min() < 0 and rectify_map[..., 0].max() > SENSOR[1] - 1  # corners fall outside
    x, y, t, p = data.events_in_window(0, 50_000)
    assert len(t) > 0 and np.all(t < data.timestamp_us(0))
    frames = sorted((seq.dir / "images/left/ev_inf").glob("*.png"))
    assert len(frames) == len(seq.timestamps_us)
    data.close()


def test_cityscapes_round_trip(tmp_path):
    write_cityscapes_split(tmp_path, "train", 4, (64, 32), seed=1)
    data = Cityscapes(tmp_path, "train", classes="cityscapes19")
    assert len(data) == 4
    labels = np.stack([data.label(i) for i in range(4)])
    assert data.image(0).shape == (32, 64, 3)
    assert np.isin(labels, [*range(19), 255]).all()
    assert (labels[:, -1, 32] == 255).all()  # the ego-vehicle hood at the bottom centre is ignored
    assert {0, 2, 10} <= set(np.unique(labels).tolist())  # road, building and sky are in every street


def test_same_seed_same_data(drive, tmp_path):
    root, cfg, _ = drive
    write_dsec_sequence(tmp_path / "train" / "synth_00_a", seed=5, cfg=cfg, progress=False)
    write_dsec_sequence(tmp_path / "train" / "other", seed=6, cfg=cfg, progress=False)
    with EventSlicer(root / "train/synth_00_a/events/left/events.h5") as a, \
            EventSlicer(tmp_path / "train/synth_00_a/events/left/events.h5") as b, \
            EventSlicer(tmp_path / "train/other/events/left/events.h5") as c:
        window = (cfg.t_offset_us, a.time_range_us[1] + 1)
        for got, want in zip(b.get_events(*window), a.get_events(*window)):
            np.testing.assert_array_equal(got, want)
        assert c.num_events != a.num_events
    for folder in ("19classes", "images/left/ev_inf"):
        for png in sorted((root / "train/synth_00_a" / folder).glob("*.png")):
            assert png.read_bytes() == (tmp_path / "train/synth_00_a" / folder / png.name).read_bytes()
