"""An ESIM-style event simulator: per-pixel log-intensity threshold crossings between rendered frames.

Following ESIM (Rebecq et al. 2018; ../shared/reference/e2vid_ecddp.md §D.1): each pixel keeps a reference
log intensity; between two frames the log intensity is interpolated linearly, and every crossing of
``reference ± C`` emits an event at the linearly interpolated time and moves the reference by ``± C``.
Events inside the refractory period after the pixel's last event are suppressed (the reference still
moves). As in v2e, the contrast thresholds differ per pixel (drawn once, Gaussian spread, clamped at
0.01) and shot noise adds random events at a low rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class EsimConfig:
    contrast_threshold: float = 0.2  # mean C for both polarities
    threshold_spread: float = 0.03  # per-pixel standard deviation of C
    refractory_us: int = 100
    shot_noise_hz: float = 0.1  # random events per pixel per second
    log_eps: float = 1e-3  # L = log(I + eps), I in [0, 1]


class EventSimulator:
    """Feed frames in time order with ``step(intensity, t_us)``; each call returns the events since the
    previous frame as sorted arrays (x, y, t, p) with p in {0, 1}."""

    def __init__(self, height: int, width: int, config: EsimConfig, rng: np.random.Generator):
        self.cfg, self.rng = config, rng
        shape = (height, width)
        spread = lambda: rng.normal(config.contrast_threshold, config.threshold_spread, shape)  # noqa: E731
        self.c_pos = np.maximum(spread(), 0.01)
        self.c_neg = np.maximum(spread(), 0.01)
        self.ref = None  # reference log intensity, set by the first frame
        self.log_prev = None
        self.t_prev = None
        self.t_last_event = np.full(shape, np.iinfo(np.int64).min // 2, dtype=np.int64)

    def log_intensity(self, intensity: np.ndarray) -> np.ndarray:
        return np.log(intensity.astype(np.float64) + self.cfg.log_eps)

    def step(self, intensity: np.ndarray, t_us: int):
        log_now = self.log_intensity(intensity)
        if self.ref is None:  # the first frame only initialises the references
            self.ref, self.log_prev, self.t_prev = log_now.copy(), log_now, int(t_us)
            return _empty()
        t0, t1 = self.t_prev, int(t_us)
        out = [self._crossings(self.log_prev, log_now, t0, t1), self._shot_noise(t0, t1)]
        self.log_prev, self.t_prev = log_now, t1
        x, y, t, p = (np.concatenate([o[k] for o in out]) for k in range(4))
        order = np.argsort(t, kind="stable")
        return x[order], y[order], t[order], p[order]

    def _crossings(self, log0, log1, t0, t1):
        delta = log1 - log0
        up = delta > 0
        threshold = np.where(up, self.c_pos, self.c_neg)
        sign = np.where(up, 1.0, -1.0)
        # Crossings k = 1..n of ref + k*sign*C that lie between ref and log1 (ESIM's invariant keeps
        # ref within one C of log0 on the near side, so every such level is crossed in this interval).
        count = np.floor(sign * (log1 - self.ref) / threshold).astype(np.int64)
        count[(count < 0) | (np.abs(delta) < 1e-6)] = 0
        xs, ys, ts, ps = [], [], [], []
        rows, cols = np.nonzero(count)
        if len(rows):
            n = count[rows, cols]
            ref, c, s, l0, d = (a[rows, cols] for a in (self.ref, threshold, sign, log0, delta))
            last = self.t_last_event[rows, cols]
            for k in range(1, int(n.max()) + 1):
                active = n >= k
                level = ref + k * s * c
                t = np.clip(np.rint(t0 + (level - l0) / d * (t1 - t0)), t0, t1).astype(np.int64)
                # ESIM stops at a level that is not strictly past log0 in the direction of change (the
                # reference can lag behind log0 after a frame pair the pixel skipped as unchanged).
                past_start = s * (level - l0) > 0
                emit = active & past_start & (t - last >= self.cfg.refractory_us)
                last = np.where(emit, t, last)
                xs.append(cols[emit])
                ys.append(rows[emit])
                ts.append(t[emit])
                ps.append(s[emit] > 0)
            self.ref[rows, cols] = ref + n * s * c
            self.t_last_event[rows, cols] = last
        if not xs:
            return _empty()
        return (np.concatenate(xs).astype(np.uint16), np.concatenate(ys).astype(np.uint16),
                np.concatenate(ts), np.concatenate(ps).astype(np.uint8))

    def _shot_noise(self, t0, t1):
        rate = self.cfg.shot_noise_hz * (t1 - t0) * 1e-6
        height, width = self.ref.shape
        count = self.rng.poisson(rate * height * width)
        if count == 0:
            return _empty()
        flat = self.rng.integers(0, height * width, count)
        t = self.rng.integers(t0, max(t1, t0 + 1), count).astype(np.int64)
        p = self.rng.integers(0, 2, count).astype(np.uint8)
        return (flat % width).astype(np.uint16), (flat // width).astype(np.uint16), t, p


def _empty():
    return (np.zeros(0, np.uint16), np.zeros(0, np.uint16), np.zeros(0, np.int64), np.zeros(0, np.uint8))
