"""EventSlicer against a brute-force scan of the arrays the file was written from."""

import math

import numpy as np
import pytest

from evseg.events import EventSlicer
from tests.conftest import T_OFFSET


def brute_window(arrays, t_start, t_end):
    x, y, t, p = arrays
    keep = (t + T_OFFSET >= t_start) & (t + T_OFFSET < t_end)
    return x[keep], y[keep], t[keep] + T_OFFSET, p[keep]


def assert_events_equal(events, expected):
    for got, want in zip(events, expected):
        np.testing.assert_array_equal(np.asarray(got, np.int64), np.asarray(want, np.int64))


def test_random_windows_match_brute_force(recording):
    path, *arrays = recording
    rng = np.random.default_rng(0)
    with EventSlicer(path) as slicer:
        assert slicer.t_offset == T_OFFSET
        for _ in range(200):
            a = int(rng.integers(-5_000, 240_000)) + T_OFFSET
            b = a + int(rng.integers(0, 30_000))
            events = slicer.get_events(a, b)
            # the writer's ms_to_idx covers every millisecond up to one past the last event
            if math.ceil((b - T_OFFSET) / 1000) > arrays[2][-1] // 1000 + 1:
                assert events is None
            else:
                assert_events_equal(events, brute_window(arrays, a, b))


@pytest.mark.parametrize("start_ms,end_ms", [(70, 71), (70, 90), (89, 90), (94, 95), (95, 96), (60, 61), (0, 1)])
def test_windows_on_exact_milliseconds(recording, start_ms, end_ms):
    path, *arrays = recording
    a, b = start_ms * 1000 + T_OFFSET, end_ms * 1000 + T_OFFSET
    with EventSlicer(path) as slicer:
        events = slicer.get_events(a, b)
    assert_events_equal(events, brute_window(arrays, a, b))
    assert len(events) > 0 or start_ms in (94,)  # the edge events themselves must be found


def test_window_past_the_end_returns_none(recording):
    path, *_ = recording
    with EventSlicer(path) as slicer:
        last = slicer.time_range_us[1]
        assert slicer.get_events(last - 10_000, last + 50_000) is None
        assert slicer.get_events(last - 10_000, last - 5_000) is not None


@pytest.mark.parametrize("t_end_ms", [0.5, 70, 70.0005, 80, 95, 95.001, 130.2, 400])
@pytest.mark.parametrize("num", [1, 17, 500, 100_000])
def test_fixed_number_before_time(recording, t_end_ms, num):
    path, x, y, t, p = recording
    t_end = int(round(t_end_ms * 1000)) + T_OFFSET
    end = int(np.sum(t + T_OFFSET < t_end))  # brute force: every event strictly before t_end
    start = max(end - num, 0)
    with EventSlicer(path) as slicer:
        events = slicer.get_events_fixed_num(t_end, num)
    assert_events_equal(events, (x[start:end], y[start:end], t[start:end] + T_OFFSET, p[start:end]))


def test_reads_only_what_the_window_needs(recording, monkeypatch):
    path, *_ = recording
    with EventSlicer(path) as slicer:
        reads = []
        original = slicer._read_t
        monkeypatch.setattr(slicer, "_read_t", lambda i0, i1: reads.append(i1 - i0) or original(i0, i1))
        slicer.get_events(T_OFFSET + 120_000, T_OFFSET + 121_000)
        assert sum(reads) < slicer.num_events / 50  # one or two millisecond buckets, not the file


def test_appended_pieces_write_the_same_file(recording, tmp_path):
    import h5py

    from evseg.events.writer import EventsH5Appender

    path, x, y, t, p = recording
    pieces = tmp_path / "pieces.h5"
    with EventsH5Appender(pieces, T_OFFSET) as out:
        for s in np.array_split(np.arange(len(t)), [5, 1000, 1001, 4000]):
            out.append(x[s], y[s], t[s], p[s])
    with h5py.File(path) as a, h5py.File(pieces) as b:
        for name in ("events/x", "events/y", "events/t", "events/p", "ms_to_idx", "t_offset"):
            np.testing.assert_array_equal(a[name][()], b[name][()])
        ms_to_idx = a["ms_to_idx"][()]
        for name, values in (("x", x), ("y", y), ("t", t), ("p", p)):  # what was written, independently
            np.testing.assert_array_equal(b[f"events/{name}"][()], values)
        assert int(b["t_offset"][0]) == T_OFFSET
    for ms in range(len(ms_to_idx)):  # brute force: the first event at or after 1000 * ms
        assert ms_to_idx[ms] == np.argmax(np.append(t, np.inf) >= 1000 * ms)
    assert len(ms_to_idx) == t[-1] // 1000 + 2
    with pytest.raises(ValueError, match="sorted"):
        with EventsH5Appender(tmp_path / "bad.h5", 0) as out:
            out.append(x[:3], y[:3], np.array([5, 9, 20]), p[:3])
            out.append(x[:2], y[:2], np.array([10, 30]), p[:2])
    assert not list(tmp_path.glob("bad.h5*"))  # nothing that looks complete is left behind


def test_rectification_checks_its_input():
    from evseg.events import rectify_events

    rectify_map = np.stack(np.meshgrid(np.arange(4.0), np.arange(3.0)), -1).astype(np.float32) + 0.25
    x_rect, y_rect = rectify_events(np.array([0, 3, 2]), np.array([0, 2, 1]), rectify_map)
    np.testing.assert_allclose(x_rect, [0.25, 3.25, 2.25])
    np.testing.assert_allclose(y_rect, [0.25, 2.25, 1.25])
    with pytest.raises(ValueError, match="covers 4x3"):
        rectify_events(np.array([4]), np.array([0]), rectify_map)
    with pytest.raises(ValueError, match="negative"):
        rectify_events(np.array([-1]), np.array([0]), rectify_map)
    with pytest.raises(TypeError, match="integer"):
        rectify_events(np.array([1.0]), np.array([0.0]), rectify_map)
