"""The high-pass / complementary filter against hand formulas and a brute-force loop written from the
equations of reference/e2vid_ecddp.md §B (exact decay between events, per-event fade gamma*w, bilinear
shares of rectified events)."""

import math

import numpy as np
import pytest

from evseg.recon.highpass import HighPassConfig, HighPassFilter

T0 = 50_000_000_123  # DSEC-like µs timestamps, above 2**32


def alpha_of(cfg):
    return 2 * math.pi * cfg.cutoff_hz


def events(*rows):
    """(x, y, t, p) arrays from rows of (x, y, t, p)."""
    x, y, t, p = zip(*rows)
    return (np.array(x, np.float32), np.array(y, np.float32), np.array(t, np.int64) + T0,
            np.array(p, np.uint8))


# -- single events ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [0.0, 0.5])
def test_single_event_then_exact_decay(gamma):
    cfg = HighPassConfig(cutoff_hz=2.0, per_event_decay=gamma, contrast_on=0.2)
    hp = HighPassFilter(5, 7, cfg)
    hp.update(*events((3.0, 2.0, 1000, 1)))
    L = hp.log_intensity(T0 + 1000)
    expected = np.zeros((5, 7))
    expected[2, 3] = 0.2  # from L = 0 the fade does nothing: exp(-alpha*dt - gamma)*0 + c
    np.testing.assert_array_equal(L, expected.astype(np.float32))
    dt_us = 137_000
    L = hp.log_intensity(T0 + 1000 + dt_us)
    expected[2, 3] = 0.2 * math.exp(-alpha_of(cfg) * dt_us * 1e-6)
    np.testing.assert_allclose(L, expected, rtol=1e-6, atol=0)
    assert L.dtype == np.float32 and L.shape == (5, 7)


def test_integer_coordinates_as_ints_are_the_same():
    hp_f, hp_i = HighPassFilter(4, 4), HighPassFilter(4, 4)
    x, y, t, p = events((1.0, 2.0, 0, 1), (3.0, 0.0, 10, 0), (1.0, 2.0, 50, 0))
    hp_f.update(x, y, t, p)
    hp_i.update(x.astype(np.int16), y.astype(np.int64), t, p.astype(bool))
    np.testing.assert_array_equal(hp_f.log_intensity(T0 + 60), hp_i.log_intensity(T0 + 60))


def test_off_events_subtract_contrast_off():
    hp = HighPassFilter(3, 3, HighPassConfig(contrast_on=0.3, contrast_off=0.05))
    hp.update(*events((0.0, 0.0, 0, 0), (2.0, 2.0, 0, 1)))
    L = hp.log_intensity(T0)
    assert L[0, 0] == pytest.approx(-0.05) and L[2, 2] == pytest.approx(0.3)


# -- a step as a train of events at one pixel -----------------------------------------------------------


def test_event_train_is_sum_of_decayed_impulses():
    cfg = HighPassConfig(cutoff_hz=0.8, contrast_on=0.1)
    a = alpha_of(cfg)
    times = np.array([0, 3_000, 3_000, 40_000, 41_500, 200_000, 350_000])  # a ramp/step, one repeated time
    hp = HighPassFilter(6, 6, cfg)
    n = len(times)
    hp.update(np.full(n, 4.0), np.full(n, 1.0), times + T0, np.ones(n, np.uint8))
    T = 500_000
    expected = sum(0.1 * math.exp(-a * (T - tk) * 1e-6) for tk in times)
    L = hp.log_intensity(T0 + T)
    assert L[1, 4] == pytest.approx(expected, rel=1e-6)
    assert np.count_nonzero(L) == 1


def test_event_train_with_per_event_decay_follows_reference_recursion():
    cfg = HighPassConfig(cutoff_hz=0.5, per_event_decay=0.3, contrast_on=0.1, contrast_off=0.15)
    a, g = alpha_of(cfg), cfg.per_event_decay
    rng = np.random.default_rng(1)
    times = np.sort(rng.integers(0, 2_000_000, 40))
    pols = rng.integers(0, 2, 40)
    hp = HighPassFilter(4, 5, cfg)
    hp.update(np.full(40, 2.0), np.full(40, 3.0), times + T0, pols)
    # the C++ recursion, written out: L <- exp(-alpha*dt - gamma)*L + c
    L, t_last = 0.0, times[0]
    for tk, pk in zip(times, pols):
        L = math.exp(-a * (tk - t_last) * 1e-6 - g) * L + (0.1 if pk else -0.15)
        t_last = tk
    T = 2_500_000
    L *= math.exp(-a * (T - t_last) * 1e-6)  # output time: decay without gamma
    assert hp.log_intensity(T0 + T)[3, 2] == pytest.approx(L, rel=1e-6)


# -- bilinear shares --------------------------------------------------------------------------------------


def test_bilinear_shares():
    hp = HighPassFilter(8, 8, HighPassConfig(contrast_on=0.2))
    hp.update(*events((2.25, 3.5, 0, 1)))
    L = hp.log_intensity(T0)
    expected = np.zeros((8, 8))
    expected[3, 2], expected[3, 3] = 0.2 * 0.375, 0.2 * 0.125
    expected[4, 2], expected[4, 3] = 0.2 * 0.375, 0.2 * 0.125
    np.testing.assert_allclose(L, expected, rtol=1e-6, atol=1e-12)
    assert L.sum() == pytest.approx(0.2, rel=1e-6)


def test_partly_outside_events_keep_their_in_image_share():
    hp = HighPassFilter(4, 6, HighPassConfig(contrast_on=0.2))
    hp.update(*events((-0.5, 1.0, 0, 1), (2.0, 3.75, 0, 1), (5.5, -0.25, 0, 1)))
    L = hp.log_intensity(T0)
    expected = np.zeros((4, 6))
    expected[1, 0] = 0.2 * 0.5     # x = -0.5: column -1 dropped
    expected[3, 2] = 0.2 * 0.25    # y = 3.75 in a 4-row image: row 4 dropped
    expected[0, 5] = 0.2 * 0.5 * 0.75  # x = 5.5, y = -0.25: only (5, 0) is inside
    np.testing.assert_allclose(L, expected, rtol=1e-6, atol=1e-12)


def test_events_outside_the_image_do_nothing():
    hp = HighPassFilter(4, 6)
    hp.update(*events((-1.0, 1.0, 0, 1), (6.0, 1.0, 1, 1), (2.0, -3.0, 2, 1), (2.0, 4.0, 3, 1),
                      (float("nan"), 1.0, 4, 1)))
    assert not hp.log_intensity(T0 + 10).any()


def test_zero_weight_neighbours_are_untouched():
    # an integer event is the reference update on one pixel: its neighbours keep their state and time
    hp = HighPassFilter(5, 5, HighPassConfig(per_event_decay=0.2))
    hp.update(*events((1.5, 1.5, 0, 1)))  # touches (1..2, 1..2) at t = 0
    hp.update(*events((1.0, 1.0, 700, 0), (2.0, 1.0, 900, 1), (1.0, 2.0, 950, 1)))
    hp.update(*events((0.0, 4.0, 990, 1)))  # on the bottom row (the border code path)
    t_last = hp._t_last.reshape(5, 5) - T0
    assert (t_last[1, 1], t_last[1, 2], t_last[2, 1], t_last[2, 2]) == (700, 900, 950, 0)
    assert (t_last[4, 0], t_last[4, 1], t_last[3, 0]) == (990, 0, 0)


def test_per_event_decay_scales_with_the_share():
    # a full event, then a half event on the same pixel: the second fades it by exp(-gamma*0.5)
    cfg = HighPassConfig(cutoff_hz=0.0, per_event_decay=0.4, contrast_on=0.1)
    hp = HighPassFilter(3, 3, cfg)
    hp.update(*events((1.0, 1.0, 0, 1), (0.5, 1.0, 10, 1)))
    assert hp.log_intensity(T0 + 10)[1, 1] == pytest.approx(math.exp(-0.2) * 0.1 + 0.05, rel=1e-9)


# -- brute force -----------------------------------------------------------------------------------------


def brute_force(x, y, t, p, height, width, cfg, t_out, log_frame=None):
    """Per event, per neighbour, from the equations; then the output-time step at t_out."""
    a, g = alpha_of(cfg), cfg.per_event_decay
    F = np.zeros((height, width)) if log_frame is None else log_frame
    L = np.zeros((height, width))
    t_last = np.full((height, width), t[0], dtype=np.int64)
    for xi, yi, ti, pi in zip(x.astype(float), y.astype(float), t, p):
        c = cfg.contrast_on if pi else -cfg.contrast_off
        for xn in (math.floor(xi), math.floor(xi) + 1):
            for yn in (math.floor(yi), math.floor(yi) + 1):
                w = (1 - abs(xn - xi)) * (1 - abs(yn - yi))
                if 0 <= xn < width and 0 <= yn < height and w > 0:
                    beta = math.exp(-a * (ti - t_last[yn, xn]) * 1e-6 - g * w)
                    L[yn, xn] = beta * L[yn, xn] + (1 - beta) * F[yn, xn] + c * w
                    t_last[yn, xn] = ti
    beta = np.exp(-a * (t_out - t_last) * 1e-6)
    return beta * L + (1 - beta) * F


def random_events(n, height, width, seed=0, span_us=1_500_000):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.5, width + 0.5, n).astype(np.float32)
    y = rng.uniform(-1.5, height + 0.5, n).astype(np.float32)
    on_grid = rng.random(n) < 0.2  # some events on pixel centres, as unrectified ones are
    x[on_grid], y[on_grid] = np.round(x[on_grid]), np.round(y[on_grid])
    t = np.sort(rng.integers(0, span_us, n)) + T0
    t[10:15] = t[10]  # a burst sharing one timestamp
    p = rng.integers(0, 2, n).astype(np.uint8)
    return x, y, t, p


@pytest.mark.parametrize("gamma", [0.0, 0.3])
def test_matches_brute_force(gamma):
    cfg = HighPassConfig(cutoff_hz=1.5, per_event_decay=gamma, contrast_on=0.12, contrast_off=0.08)
    x, y, t, p = random_events(300, 6, 9, seed=2)
    hp = HighPassFilter(6, 9, cfg)
    hp.update(x, y, t, p)
    t_out = int(t[-1]) + 20_000
    np.testing.assert_allclose(hp.log_intensity(t_out), brute_force(x, y, t, p, 6, 9, cfg, t_out),
                               rtol=1e-5, atol=1e-7)


def test_complementary_filter_matches_brute_force():
    cfg = HighPassConfig(cutoff_hz=1.0, per_event_decay=0.1)
    x, y, t, p = random_events(300, 5, 7, seed=4)
    log_frame = np.random.default_rng(5).normal(0, 0.5, (5, 7))
    hp = HighPassFilter(5, 7, cfg)
    hp.set_log_frame(log_frame, int(t[0]))
    hp.update(x, y, t, p)
    t_out = int(t[-1]) + 300_000
    np.testing.assert_allclose(hp.log_intensity(t_out), brute_force(x, y, t, p, 5, 7, cfg, t_out, log_frame),
                               rtol=1e-5, atol=1e-7)


def test_complementary_filter_relaxes_to_the_frame():
    cfg = HighPassConfig(cutoff_hz=0.7)
    hp = HighPassFilter(2, 3, cfg)
    F = np.arange(6.0).reshape(2, 3) - 2.5
    hp.set_log_frame(F, T0)
    dt_us = 400_000
    expected = F * (1 - math.exp(-alpha_of(cfg) * dt_us * 1e-6))
    np.testing.assert_allclose(hp.log_intensity(T0 + dt_us), expected, rtol=1e-6)
    hp.set_log_frame(None, T0 + dt_us)  # back to the pure HF: decays toward 0 from here
    np.testing.assert_allclose(hp.log_intensity(T0 + 2 * dt_us),
                               expected * math.exp(-alpha_of(cfg) * dt_us * 1e-6), rtol=1e-6)


# -- chunking, linearity ----------------------------------------------------------------------------------


@pytest.mark.parametrize("split", [1, 12, 150, 299])  # 12 falls inside the burst sharing one timestamp
def test_chunks_equal_one_call(split):
    cfg = HighPassConfig(cutoff_hz=1.0, per_event_decay=0.2)
    x, y, t, p = random_events(300, 6, 9, seed=7)
    whole, parts = HighPassFilter(6, 9, cfg), HighPassFilter(6, 9, cfg)
    whole.update(x, y, t, p)
    parts.update(x[:split], y[:split], t[:split], p[:split])
    parts.update(x[split:], y[split:], t[split:], p[split:])
    t_out = int(t[-1]) + 1
    np.testing.assert_array_equal(whole.log_intensity(t_out), parts.log_intensity(t_out))
    # reading the image between the chunks (output-time decay of every pixel) changes only rounding
    read = HighPassFilter(6, 9, cfg)
    read.update(x[:split], y[:split], t[:split], p[:split])
    read.frame(int(t[split]))
    read.update(x[split:], y[split:], t[split:], p[split:])
    np.testing.assert_allclose(read.log_intensity(t_out), whole.log_intensity(t_out), rtol=1e-12, atol=1e-15)


def test_superposition_without_per_event_decay():
    # gamma = 0: the filter is linear, so merging two event streams adds their images
    cfg = HighPassConfig(cutoff_hz=2.0)
    a, b = random_events(200, 5, 6, seed=8), random_events(200, 5, 6, seed=9)
    merged = [np.concatenate([u, v]) for u, v in zip(a, b)]
    order = np.argsort(merged[2], kind="stable")
    t_out = int(max(a[2][-1], b[2][-1])) + 5_000
    images = []
    for x, y, t, p in (a, b, [m[order] for m in merged]):
        hp = HighPassFilter(5, 6, cfg)
        hp.update(x, y, t, p)
        images.append(hp.log_intensity(t_out).astype(np.float64))
    np.testing.assert_allclose(images[2], images[0] + images[1], rtol=1e-5, atol=1e-7)


# -- display ----------------------------------------------------------------------------------------------


def test_frame_range_type_and_order():
    hp = HighPassFilter(40, 50, HighPassConfig(contrast_on=0.1, contrast_off=0.1))
    hp.update(*events((5.0, 5.0, 0, 0), (30.0, 20.0, 0, 1)))
    img = hp.frame(T0)
    assert img.dtype == np.float32 and img.shape == (40, 50)
    assert img.min() >= 0.0 and img.max() <= 1.0
    assert img[5, 5] < img[0, 0] < img[20, 30]  # OFF < untouched < ON
    # the range is [0.3, 0.7] here (bounds capped), so L = 0 -> 1.5 - 1 = 0.5 -> 0.5
    assert img[0, 0] == pytest.approx(0.5, abs=1e-6)
    assert img[5, 5] == pytest.approx((1.5 * math.exp(-0.1) - 1 - 0.3) / 0.4, abs=1e-6)


def test_frame_robust_range_with_margin():
    # left half L = -1, right half L = +1: the range is [img(-1) - 0.05, img(+1) + 0.05], inside the caps
    hp = HighPassFilter(10, 20, HighPassConfig(contrast_on=1.0, contrast_off=1.0))
    hp.update(*events(*[(float(i), float(j), 0, int(i >= 10)) for i in range(20) for j in range(10)]))
    img = hp.frame(T0)
    lo, hi = 1.5 / math.e - 1 - 0.05, 1.5 * math.e - 1 + 0.05
    assert img[0, 0] == pytest.approx(0.05 / (hi - lo), abs=1e-6)
    assert img[0, 19] == pytest.approx(1 - 0.05 / (hi - lo), abs=1e-6)


def test_frame_is_monotonic_in_log_intensity():
    x, y, t, p = random_events(3000, 30, 40, seed=11)
    hp = HighPassFilter(30, 40, HighPassConfig(cutoff_hz=0.5))
    hp.update(x, y, t, p)
    t_out = int(t[-1])
    L = hp.log_intensity(t_out).ravel()
    img = hp.frame(t_out).ravel()
    order = np.argsort(L, kind="stable")
    assert np.all(np.diff(img[order]) >= 0)
    assert img.min() >= 0.0 and img.max() <= 1.0
    assert len(np.unique(img)) > 100


def test_empty_filter_is_mid_grey():
    img = HighPassFilter(3, 4).frame(T0)
    np.testing.assert_allclose(img, 0.5, atol=1e-6)


def test_smoothed_range_rises_95_percent_in_rise_time():
    cfg = HighPassConfig(smooth_range=True, range_rise_time_s=2.0, contrast_on=1.0)
    hp = HighPassFilter(20, 20, cfg)
    hp.frame(T0)  # first frame: range [0.3, 0.7], taken as is
    assert hp._range == pytest.approx((0.3, 0.7))
    # 2 s later every pixel gets L = 1: the unsmoothed range would be [0.3, 1.5e - 1 + 0.05]
    hp.update(*events(*[(float(i), float(j), 2_000_000, 1) for i in range(20) for j in range(20)]))
    target_hi = 1.5 * math.e - 1 + 0.05
    img = hp.frame(T0 + 2_000_000)
    assert hp._range[0] == pytest.approx(0.3)
    assert hp._range[1] == pytest.approx(0.7 + 0.95 * (target_hi - 0.7))
    assert img.max() == 1.0  # the smoothed upper bound lags below the image


# -- time -------------------------------------------------------------------------------------------------


def test_non_monotonic_time_raises_and_leaves_state():
    hp = HighPassFilter(4, 4)
    hp.update(*events((1.0, 1.0, 100, 1)))
    before = hp.log_intensity(T0 + 100).copy()
    with pytest.raises(ValueError, match="backwards"):
        hp.update(*events((2.0, 2.0, 200, 1), (2.0, 1.0, 150, 1)))  # decreasing inside a chunk
    with pytest.raises(ValueError, match="backwards"):
        hp.update(*events((2.0, 2.0, 50, 1)))  # before the previous chunk
    np.testing.assert_array_equal(hp.log_intensity(T0 + 100), before)
    hp.frame(T0 + 300)
    with pytest.raises(ValueError, match="monotonic"):
        hp.log_intensity(T0 + 299)
    with pytest.raises(ValueError, match="backwards"):
        hp.update(*events((2.0, 2.0, 299, 1)))  # before an output time already read
    hp.reset()
    hp.update(*events((2.0, 2.0, 0, 1)))  # after a reset any start is fine
    assert hp.log_intensity(T0)[2, 2] == pytest.approx(0.1)


def test_bad_inputs():
    with pytest.raises(ValueError, match="magnitude"):
        HighPassConfig(contrast_off=-0.1)
    hp = HighPassFilter(4, 4)
    with pytest.raises(TypeError, match="integer microseconds"):
        hp.update(np.zeros(2), np.zeros(2), np.array([0.0, 1.0]), np.ones(2))
    with pytest.raises(ValueError, match="different lengths"):
        hp.update(np.zeros(2), np.zeros(3), np.array([0, 1]), np.ones(2))
    hp.update(np.zeros(0), np.zeros(0), np.zeros(0, np.int64), np.zeros(0))  # empty chunk: no-op
    assert hp.t_now is None


def test_default_cutoff():
    assert HighPassConfig().alpha == pytest.approx(2 * math.pi * 1.0)
