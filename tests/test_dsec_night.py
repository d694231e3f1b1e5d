"""DSEC Night-Semantic: the released split rule, the event window of a sample, and bad input."""

import cv2
import numpy as np
import pytest

from evseg.cmda.inputs import event_image
from evseg.data.dsec_night import EXPECTED_COUNTS, TRAIN_START, DsecNight, split_frames
from evseg.errors import DataError
from evseg.events.writer import write_events_h5, write_rectify_map
from tests.conftest import T_OFFSET

SENSOR = (12, 16)
FRAME_US = 50_000


def make_night_sequence(root, name, num_frames, labelled, warped=None, sensor=SENSOR, seed=0, events_from_us=0):
    """A tiny Night-Semantic sequence: frames every 50 ms from 100 ms on, events throughout (from
    ``events_from_us``), warp images of ``warped`` (default all) frames and labels of ``labelled`` frames."""
    rng = np.random.default_rng(seed)
    seq = root / name
    height, width = sensor
    stamps = 100_000 + FRAME_US * np.arange(num_frames)
    end = stamps[-1] + 10_000
    n = int((end - events_from_us) / 1000 * 3)
    t = np.sort(rng.integers(events_from_us, end, n))
    write_events_h5(seq / "events/left/events.h5", rng.integers(0, width, n), rng.integers(0, height, n), t,
                    rng.integers(0, 2, n), T_OFFSET)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    write_rectify_map(seq / "events/left/rectify_map.h5", np.stack([xx + 0.25, yy - 0.5], -1))
    (seq / "images").mkdir(parents=True)
    (seq / "images/timestamps.txt").write_text("".join(f"{T_OFFSET + s}\n" for s in stamps))
    (seq / "warp_images").mkdir()
    (seq / "labels").mkdir()
    for f in range(num_frames) if warped is None else warped:
        cv2.imwrite(str(seq / f"warp_images/{f:06d}.png"), np.full((height, width, 3), (10, 20, f % 256), np.uint8))
    for f in labelled:
        cv2.imwrite(str(seq / f"labels/{name}_{f:06d}_grey_gtFine_labelTrainIds.png"),
                    np.full((height, width), f % 19, np.uint8))
    return seq, t + T_OFFSET


def test_split_rule_reproduces_the_released_lists():
    """09_a's released training list runs from frame 798 to 1812, every second frame: 508 samples; every
    sequence's list starts at N - 12."""
    frames = split_frames(list(range(1813)), [], TRAIN_START["zurich_city_09_a"], "train")
    assert len(frames) == 508 and frames[:3] == [798, 800, 802] and frames[-1] == 1812
    first = {name: split_frames(list(range(2000)), [], n, "train")[0] for name, n in TRAIN_START.items()}
    assert first == {"zurich_city_09_a": 798, "zurich_city_09_b": 150, "zurich_city_09_c": 582,
                     "zurich_city_09_d": 744, "zurich_city_09_e": 366}
    assert EXPECTED_COUNTS == {"train": 1692, "test": 150}
    # test: the labelled frames from frame 2 on, whatever the warp images
    assert split_frames([], [0, 1, 2, 20, 38], 810, "test") == [2, 20, 38]


def test_split_on_a_hand_made_sequence(tmp_path):
    # N = 14: train from frame 2 on every second frame with a warp image; frame 9 has none, 10 is odd-offset-free
    make_night_sequence(tmp_path, "seq", 20, labelled=[0, 2, 5], warped=[0, 1, 2, 3, 4, 5, 6, 8, 10, 11, 12, 14, 19])
    test = DsecNight(tmp_path, "test", {"seq": 14}, sensor_size=SENSOR)
    train = DsecNight(tmp_path, "train", {"seq": 14}, sensor_size=SENSOR)
    assert test.ids == ["seq/000002", "seq/000005"]  # frame 0 is never listed
    assert train.ids == ["seq/000002", "seq/000004", "seq/000006", "seq/000008", "seq/000010", "seq/000012",
                         "seq/000014"]
    late = DsecNight(tmp_path, "train", {"seq": 22}, sensor_size=SENSOR)  # starts at frame 10
    assert late.ids == ["seq/000010", "seq/000012", "seq/000014"]
    assert test.label(1).shape == SENSOR and (test.label(1) == 5).all()
    assert test.image(0).shape == (*SENSOR, 3) and tuple(test.image(0)[0, 0]) == (2, 20, 10)  # RGB order


def test_event_window_is_the_inter_frame_interval(tmp_path):
    _, t = make_night_sequence(tmp_path, "seq", 8, labelled=[3, 6])
    data = DsecNight(tmp_path, "test", {"seq": 100}, sensor_size=SENSOR)
    start, end = data.window_us(1)
    assert (start, end) == (T_OFFSET + 100_000 + 5 * FRAME_US, T_OFFSET + 100_000 + 6 * FRAME_US)
    x, y, ts, p = data.events(1)
    assert len(ts) == ((t >= start) & (t < end)).sum() > 0
    assert ts.min() >= start and ts.max() < end
    np.testing.assert_allclose(x % 1, 0.25)  # rectified through the map
    np.testing.assert_allclose(y % 1, 0.5)
    image = event_image(x, y, ts, p, *SENSOR)
    assert image.shape == SENSOR and -1 <= image.min() < 0 < image.max() <= 1
    data.close()


def test_bad_inputs_name_the_file(tmp_path):
    seq, _ = make_night_sequence(tmp_path, "seq", 8, labelled=[3, 6], warped=[0, 1, 2, 3, 4, 5, 7])
    with pytest.raises(DataError, match="frame 6 is labelled but has no warp image") as err:
        DsecNight(tmp_path, "test", {"seq": 100}, sensor_size=SENSOR)
    assert err.value.path == seq / "warp_images/000006.png"

    cv2.imwrite(str(seq / "warp_images/000006.png"), np.zeros((10, 16, 3), np.uint8))
    data = DsecNight(tmp_path, "test", {"seq": 100}, sensor_size=SENSOR)
    with pytest.raises(DataError, match="16x10 pixels, expected the event sensor's 16x12"):
        data.image(1)
    cv2.imwrite(str(seq / "labels/seq_000003_grey_gtFine_labelTrainIds.png"), np.zeros((11, 16), np.uint8))
    with pytest.raises(DataError, match="16x11 pixels"):
        data.label(0)
    cv2.imwrite(str(seq / "labels/seq_000003_grey_gtFine_labelTrainIds.png"), np.full(SENSOR, 40, np.uint8))
    with pytest.raises(DataError, match=r"label ids \[40\]"):
        data.label(0)

    (seq / "warp_images").rename(seq / "wrap_images")
    with pytest.raises(DataError, match="rename .*wrap_images to warp_images"):
        DsecNight(tmp_path, "test", {"seq": 100}, sensor_size=SENSOR)
    (seq / "wrap_images").rename(seq / "warp_images")

    (seq / "images/timestamps.txt").write_text("".join(f"{T_OFFSET + 100_000 + FRAME_US * i}\n" for i in range(5)))
    with pytest.raises(DataError, match="lists 5 frames, but warp images or labels exist for frame 5"):
        DsecNight(tmp_path, "test", {"seq": 100}, sensor_size=SENSOR)

    with pytest.raises(DataError, match="sequence folder does not exist"):
        DsecNight(tmp_path, "test", {"nope": 100}, sensor_size=SENSOR)
    (seq / "images/timestamps.txt").write_text("".join(f"{T_OFFSET + 100_000 + FRAME_US * i}\n" for i in range(8)))
    with pytest.raises(DataError, match="split .* is empty"):
        DsecNight(tmp_path, "train", {"seq": 400}, sensor_size=SENSOR)


def test_frames_outside_the_events_are_misaligned(tmp_path):
    # the event recording starts after frame 4: frame 3's interval has no events at all
    make_night_sequence(tmp_path, "seq", 8, labelled=[3, 6], events_from_us=100_000 + 4 * FRAME_US)
    data = DsecNight(tmp_path, "test", {"seq": 100}, sensor_size=SENSOR)
    with pytest.raises(DataError, match="frames and events are misaligned"):
        data.events(0)
    assert len(data.events(1)[2]) > 0
    data.close()
