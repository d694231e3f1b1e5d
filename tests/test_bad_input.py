"""Bad input gets a DataError naming the file, the problem and the fix."""

import subprocess
import sys

import cv2
import h5py
import numpy as np
import pytest

from evseg.data import DsecSemantic
from evseg.data.cityscapes import Cityscapes
from evseg.errors import DataError
from evseg.events import EventSlicer, load_rectify_map
from evseg.events.writer import write_rectify_map
from tests.conftest import make_dsec_sequence


def assert_clear(err, path, *words):
    message = str(err.value)
    assert str(path) in message and "fix:" in message, message
    for word in words:
        assert word in message, message


def test_missing_blosc_filter_is_explained(recording, tmp_path):
    path = recording[0]
    code = (
        "import sys; sys.modules['hdf5plugin'] = None\n"  # as if hdf5plugin were not installed
        "from evseg.events import EventSlicer\n"
        f"EventSlicer({str(path)!r})\n"
    )
    env = {"HDF5_PLUGIN_PATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode != 0
    assert "Blosc/ZSTD" in result.stderr and "pip install hdf5plugin" in result.stderr and str(path) in result.stderr


def test_missing_datasets(tmp_path):
    path = tmp_path / "events.h5"
    with h5py.File(path, "w") as f:
        f["events/x"] = np.zeros(3, np.uint16)
        f["events/t"] = np.zeros(3, np.uint32)
    with pytest.raises(DataError) as err:
        EventSlicer(path)
    assert_clear(err, path, "events/y", "events/p", "ms_to_idx")


def test_ms_to_idx_shorter_than_the_events(tmp_path):
    path = tmp_path / "events.h5"
    with h5py.File(path, "w") as f:
        for name, dtype in (("x", np.uint16), ("y", np.uint16), ("p", np.uint8)):
            f[f"events/{name}"] = np.zeros(4, dtype)
        f["events/t"] = np.array([0, 1500, 2500, 9000], np.uint32)
        f["ms_to_idx"] = np.array([0, 1, 2], np.uint64)  # stops at 3 ms, events run to 9 ms
        f["t_offset"] = np.array([0], np.int64)
    with pytest.raises(DataError) as err:
        EventSlicer(path)
    assert_clear(err, path, "ms_to_idx has 3 entries", "9000")


def test_label_window_past_the_recording(tmp_path):
    seq = make_dsec_sequence(tmp_path, "train", "seq", 10)
    stamps = seq / "seq_semantic_timestamps.txt"
    values = np.loadtxt(stamps, dtype=np.int64)
    values[8:] += 10_000_000  # the last protocol label (index 8) lies 10 s after the events end
    stamps.write_text("".join(f"{v}\n" for v in values))
    data = DsecSemantic(tmp_path, "train", ["seq"], sensor_size=(24, 32), label_height=22)
    with pytest.raises(DataError) as err:
        data.events_in_window(len(data) - 1, 50_000)
    assert_clear(err, seq / "events/left/events.h5", "not covered by ms_to_idx")


def test_wrong_rectify_map_shape(tmp_path):
    path = tmp_path / "rectify_map.h5"
    write_rectify_map(path, np.zeros((480, 640, 2)))
    with pytest.raises(DataError) as err:
        load_rectify_map(path, sensor_size=(120, 160))
    assert_clear(err, path, "(480, 640, 2)", "(120, 160, 2)")


def test_label_ids_outside_the_table(tmp_path):
    seq = make_dsec_sequence(tmp_path, "train", "seq", 8, label_value=42)
    data = DsecSemantic(tmp_path, "train", ["seq"], sensor_size=(24, 32), label_height=22)
    with pytest.raises(DataError) as err:
        data.label(0)
    assert_clear(err, seq / "11classes/000006.png", "[42]", "11-class")
    (tmp_path / "cs/leftImg8bit/train/c").mkdir(parents=True)
    (tmp_path / "cs/gtFine/train/c").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "cs/leftImg8bit/train/c/c_0_0_leftImg8bit.png"), np.zeros((2, 2, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "cs/gtFine/train/c/c_0_0_gtFine_labelIds.png"), np.full((2, 2), 77, np.uint8))
    with pytest.raises(DataError) as err:
        Cityscapes(tmp_path / "cs").label(0)
    assert_clear(err, tmp_path / "cs/gtFine/train/c/c_0_0_gtFine_labelIds.png", "[77]", "labelIds")


def test_timestamp_count_differs_from_png_count(tmp_path):
    seq = make_dsec_sequence(tmp_path, "train", "seq", 9)
    (seq / "11classes/000008.png").unlink()
    with pytest.raises(DataError) as err:
        DsecSemantic(tmp_path, "train", ["seq"], sensor_size=(24, 32), label_height=22)
    assert_clear(err, seq / "seq_semantic_timestamps.txt", "9 timestamps", "8 label PNGs")


def test_missing_sequence_and_ambiguous_layout(tmp_path):
    with pytest.raises(DataError) as err:
        DsecSemantic(tmp_path, "test")  # the official test sequences are not there
    assert_clear(err, tmp_path / "test/zurich_city_13_a", "does not exist")
    seq = make_dsec_sequence(tmp_path, "train", "seq", 8)
    make_dsec_sequence(tmp_path, "train", "seq", 8, layout="ess")
    with pytest.raises(DataError) as err:
        DsecSemantic(tmp_path, "train", ["seq"])
    assert_clear(err, seq, "more than one layout")


def test_label_size_must_match_the_config(tmp_path):
    seq = make_dsec_sequence(tmp_path, "train", "seq", 8)
    data = DsecSemantic(tmp_path, "train", ["seq"], sensor_size=(24, 32), label_height=20)
    with pytest.raises(DataError) as err:
        data.label(0)
    assert_clear(err, seq / "11classes/000006.png", "expected 32x20")


def test_explicit_layout_without_its_folder(tmp_path):
    make_dsec_sequence(tmp_path, "train", "seq", 8, layout="raw")
    with pytest.raises(DataError) as err:
        DsecSemantic(tmp_path, "train", ["seq"], layout="ess")
    assert_clear(err, tmp_path / "train/seq/semantic/11classes/data", "'ess' layout does not exist")


def test_sixteen_bit_label_png(tmp_path):
    seq = make_dsec_sequence(tmp_path, "train", "seq", 8)
    cv2.imwrite(str(seq / "11classes/000006.png"), np.full((22, 32), 26001, np.uint16))  # an instanceIds-like PNG
    data = DsecSemantic(tmp_path, "train", ["seq"], sensor_size=(24, 32), label_height=22)
    with pytest.raises(DataError) as err:
        data.label(0)
    assert_clear(err, seq / "11classes/000006.png", "8-bit", "uint16")


def test_events_outside_the_rectify_map(tmp_path):
    seq = make_dsec_sequence(tmp_path, "train", "seq", 8, sensor=(24, 32))
    write_rectify_map(seq / "events/left/rectify_map.h5", np.zeros((24, 16, 2)))  # a map for a narrower sensor
    data = DsecSemantic(tmp_path, "train", ["seq"], sensor_size=(24, 16), label_height=22)
    with pytest.raises(DataError) as err:
        data.events_in_window(0, 50_000)
    assert_clear(err, seq / "events/left/events.h5", "rectify_map.h5", "covers 16x24")
