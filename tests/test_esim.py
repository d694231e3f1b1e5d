"""The event simulator on analytic log-intensity ramps (reference e2vid_ecddp.md §D.1)."""

import numpy as np
import pytest

from evseg.synth.esim import EsimConfig, EventSimulator

EPS = 1e-3


def simulator(refractory_us=0, shape=(1, 1), threshold=0.2):
    cfg = EsimConfig(contrast_threshold=threshold, threshold_spread=0.0, refractory_us=refractory_us,
                     shot_noise_hz=0.0, log_eps=EPS)
    return EventSimulator(*shape, cfg, np.random.default_rng(0))


def frame(log_value, shape=(1, 1)):
    return np.full(shape, np.exp(log_value) - EPS)


def test_linear_ramp_gives_interpolated_crossings():
    sim = simulator()
    assert len(sim.step(frame(-2.0), 0)[2]) == 0  # the first frame only sets the reference
    x, y, t, p = sim.step(frame(-1.5), 1000)  # +0.5 in log: crossings at +0.2 and +0.4
    np.testing.assert_array_equal(t, [400, 800])
    np.testing.assert_array_equal(p, [1, 1])
    # the reference is now -1.6; going down to -2.05 crosses -1.8 and -2.0
    x, y, t, p = sim.step(frame(-2.05), 2000)
    np.testing.assert_array_equal(p, [0, 0])
    np.testing.assert_array_equal(t, np.rint(1000 + (np.array([-1.8, -2.0]) + 1.5) / -0.55 * 1000))


def test_reference_carries_over_small_steps():
    sim = simulator()
    sim.step(frame(0.0), 0)
    counts = [len(sim.step(frame(0.01 + 0.05 * k), 100 * k)[2]) for k in range(1, 21)]  # steps of 0.05
    assert [k + 1 for k, c in enumerate(counts) if c] == [4, 8, 12, 16, 20]  # one event per 0.2 of log


def test_refractory_suppresses_but_moves_the_reference():
    sim = simulator(refractory_us=500)
    sim.step(frame(0.0), 0)
    _, _, t, _ = sim.step(frame(0.5), 1000)  # crossings at 400 and 800 µs; 800 is within 500 µs
    np.testing.assert_array_equal(t, [400])
    _, _, t, _ = sim.step(frame(0.65), 2000)  # reference is 0.4: the next level 0.6 is crossed at 1667 µs
    np.testing.assert_array_equal(t, [1667])


@pytest.mark.parametrize("rate", [50.0])
def test_shot_noise_rate(rate):
    cfg = EsimConfig(threshold_spread=0.0, shot_noise_hz=rate)
    sim = EventSimulator(40, 50, cfg, np.random.default_rng(1))
    sim.step(np.full((40, 50), 0.3), 0)
    events = sum(len(sim.step(np.full((40, 50), 0.3), 10_000 * k)[2]) for k in range(1, 101))
    expected = rate * 1.0 * 40 * 50  # 1 s of a static scene
    assert abs(events - expected) < 4 * np.sqrt(expected)
