"""Training-free event-to-image reconstruction: the high-pass (and complementary) filter of Scheerlinck,
Barnes and Mahony (ACCV 2018), written from the equations in reference/e2vid_ecddp.md §B.

Model, per pixel: the log-intensity estimate ``L`` obeys dL/dt = E(t) - alpha*(L - L_F), where
E(t) = sum_i c_i delta(t - t_i) is the event train (c_i = +contrast_on for ON, -contrast_off for OFF events)
and L_F is the log of the latest frame (0 without frames: the pure high-pass filter, dL/dt = E - alpha*L).
Between events the solution is an exact exponential decay, so the state is updated only where something
happens:

- on an event at pixel k, time t:  beta = exp(-alpha*(t - t_last[k]) - gamma),
  L[k] <- beta*L[k] + (1 - beta)*L_F[k] + c,  t_last[k] <- t;
- at an output time t, every pixel gets the same decay (without gamma) and t_last <- t.

``gamma`` is the C++ ``Cutoff_frequency_per_event_component``: an extra fade per event, so that pixels fade
in proportion to their event rate. The paper form is gamma = 0.

Differences from the reference, all forced by our input or chosen on purpose:

- Events arrive rectified, at fractional coordinates (possibly slightly outside the image), so that the
  image is aligned with the rectified label frame. Each event is split bilinearly over its 4 neighbouring
  pixels (lower neighbour by floor; weights (1-dx)(1-dy), dx(1-dy), (1-dx)dy, dx*dy; neighbours outside
  the image are dropped, the others keep their weights, so an event half outside adds half of c). Each
  neighbour k with weight w > 0 gets its own exact decay to the event time and then c*w:

      beta = exp(-alpha*(t - t_last[k]) - gamma*w),  L[k] <- beta*L[k] + (1 - beta)*L_F[k] + c*w.

  Why gamma*w: gamma is a decay *per event*, i.e. a decay rate gamma*r(t) driven by the pixel's event
  density r(t) = sum_i delta(t - t_i). Splatting gives pixel k the density sum_i w_ik delta(t - t_i), hence
  the fade exp(-gamma*w). This keeps the total fade of one event independent of where it falls between
  pixel centres (a full exp(-gamma) on each of 4 neighbours would fade sub-pixel events 4x harder than
  events that happen to land on a pixel centre, i.e. make the result depend on the rectification map),
  and splitting an event into parts of weight w1 + w2 = 1 on one pixel fades it by
  exp(-gamma*w1)*exp(-gamma*w2) = exp(-gamma). At an integer coordinate the weights are (1, 0, 0, 0),
  zero-weight neighbours are not touched at all, and the update is exactly the reference
  L <- exp(-alpha*dt - gamma)*L + c.
- Time must not go backwards, between chunks or at output times: the C++ code silently resets all state
  on a non-monotonic timestamp; we raise ValueError instead, because in this pipeline a backwards time is a
  bug in the caller (wrong chunk order, mixed sequences), and a silent reset would hide it.
- The C++ code skips the border pixels x = 0 and y = 0; we do not.
- The complementary filter is the same kernel with a frame set by ``set_log_frame``; its display mapping
  is not reproduced (``frame()`` always uses the HF one; read ``log_intensity`` for CF outputs).

The event loop is compiled with numba: one pass over the events, one thread, no temporaries. Its time is
mostly cache misses on the state (L and t_last, 2 x 2.4 MB at 640x480), so, as in
evseg/events/representations.py, the common case (all 4 neighbours inside) is straight-line code on the
flat arrays. Speed, one thread (AMD EPYC, 2 cores), 1M events at 640x480: ~13-16 Mev/s for uniformly
random events (the worst case for the cache; the same with gamma or a frame), ~18 Mev/s for sweeping
edges; the output-time step takes 2 ms and frame() 9 ms (mostly the quantiles).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

LOG_1_5 = math.log(1.5)


@dataclass
class HighPassConfig:
    # Cutoff of the high-pass filter; alpha = 2*pi*cutoff_hz rad/s, i.e. a memory (time constant) of
    # 1/alpha. The C++ HF default, 0.06 Hz (tau = 2.7 s), suits a mostly still, hand-held camera, where the
    # background must persist for seconds without events. A driving camera sweeps the whole scene across
    # the image within ~0.1-0.5 s, so a multi-second memory mostly keeps trails of where edges were, plus
    # the slow drift of noise events and of ON/OFF threshold mismatch. 1 Hz (alpha = 6.28 rad/s,
    # tau = 0.16 s; the notebook uses alpha = 5 rad/s) keeps an edge for ~3 label periods at 20 Hz, so
    # an object shows its outline and texture, and lets a trail fall to 5% within 0.5 s. The cost: when the
    # car stops, the image fades to grey within about half a second.
    cutoff_hz: float = 1.0
    per_event_decay: float = 0.0   # gamma (C++ Cutoff_frequency_per_event_component; its default is 0.06)
    contrast_on: float = 0.1       # log-intensity step of an ON event (C++ default +0.1)
    contrast_off: float = 0.1      # magnitude: an OFF event adds -contrast_off (C++ default -0.1)
    # Display mapping (frame()): img = exp(L + ln 1.5) - 1, which maps L = 0 to 0.5, then a robust range.
    display_trim: float = 0.0025       # fraction of pixels discarded at each end of the range (0.25%)
    display_margin: float = 0.05       # the robust min/max are widened by this much (image units)
    display_low_cap: float = 0.3       # the lower bound is at most this
    display_high_floor: float = 0.7    # the upper bound is at least this
    # Temporal low-pass of the bounds, as in the C++ viewer. Off by default: in this pipeline frames are
    # training/eval inputs read at label times (per sample after a reset, or streamed), and a smoothed
    # range makes each frame depend on which frames were requested before it and how far apart; with it
    # off, frame(t) is a function of the filter state alone. Turn it on for flicker-free videos.
    smooth_range: bool = False
    range_rise_time_s: float = 2.0     # time for the bounds to cover 95% of a step (reference: "2 s (95%
                                       # rise)"), i.e. a time constant of 2 s / ln 20 = 0.67 s

    def __post_init__(self):
        if not self.cutoff_hz >= 0 or not self.per_event_decay >= 0:
            raise ValueError(f"cutoff_hz ({self.cutoff_hz}) and per_event_decay ({self.per_event_decay}) "
                             "must be >= 0")
        if not self.contrast_on > 0 or not self.contrast_off > 0:
            raise ValueError(f"contrast_on ({self.contrast_on}) and contrast_off ({self.contrast_off}) must "
                             "be > 0: contrast_off is a magnitude (OFF events add -contrast_off), unlike the "
                             "C++ Contrast_threshold_OFF, which is negative")
        if not 0 <= self.display_trim < 0.5:
            raise ValueError(f"display_trim must be in [0, 0.5), got {self.display_trim}")
        if self.smooth_range and not self.range_rise_time_s > 0:
            raise ValueError(f"range_rise_time_s must be > 0, got {self.range_rise_time_s}")

    @property
    def alpha(self) -> float:
        """The filter gain in rad/s."""
        return 2.0 * math.pi * self.cutoff_hz


# -- kernels ------------------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, inline="always")
def _decayed_plus(value, log_frame_value, has_frame, t, t_last, c, w, alpha, gamma):
    """A pixel's new value: its exact decay from ``t_last`` to ``t`` (with the per-event fade gamma*w,
    toward the frame's log value in the complementary filter), plus ``c*w``."""
    beta = np.exp(-(alpha * (float(t - t_last) * 1e-6) + gamma * w))
    if has_frame:
        return beta * value + (1.0 - beta) * log_frame_value + c * w
    return beta * value + c * w


@numba.njit(cache=True, nogil=True, inline="always")
def _touch(state, t_last, log_frame, has_frame, k, t, c, w, alpha, gamma):
    """Update pixel ``k`` for an event share of weight ``w``; zero-weight shares leave it untouched."""
    if w > 0.0:
        frame_value = log_frame[k] if has_frame else 0.0
        state[k] = _decayed_plus(state[k], frame_value, has_frame, t, t_last[k], c, w, alpha, gamma)
        t_last[k] = t


@numba.njit(cache=True, nogil=True)
def _update_events(x, y, t, p, state, t_last, log_frame, height, width, alpha, gamma, c_on, c_off):
    """One pass over time-sorted events; ``state``, ``t_last`` and ``log_frame`` are flat (H*W) arrays;
    ``log_frame`` is None for the pure HF (a separate compilation, so the HF loop has no frame code)."""
    has_frame = log_frame is not None
    for i in range(len(t)):
        xi, yi = float(x[i]), float(y[i])
        if not (xi > -1.0 and xi < width and yi > -1.0 and yi < height):  # also drops NaN
            continue
        ti = t[i]
        c = c_on if p[i] > 0 else -c_off
        x0, y0 = int(np.floor(xi)), int(np.floor(yi))
        ax, ay = xi - x0, yi - y0  # weights of the upper neighbours
        w0, w1 = (1.0 - ay) * (1.0 - ax), (1.0 - ay) * ax
        w2, w3 = ay * (1.0 - ax), ay * ax
        if x0 >= 0 and y0 >= 0 and x0 < width - 1 and y0 < height - 1:
            # Most events: all 4 neighbours are inside. All loads first, then the 4 exps, then the stores:
            # the cache misses of the 4 pixels overlap instead of each waiting behind the previous exp
            # (2x faster than 4 calls of _touch on random events). Same arithmetic as _touch; a zero-weight
            # neighbour gets its old value and time back, i.e. is left untouched.
            k0 = y0 * width + x0
            k1, k2, k3 = k0 + 1, k0 + width, k0 + width + 1
            t0, t1, t2, t3 = t_last[k0], t_last[k1], t_last[k2], t_last[k3]
            v0, v1, v2, v3 = state[k0], state[k1], state[k2], state[k3]
            f0 = log_frame[k0] if has_frame else 0.0
            f1 = log_frame[k1] if has_frame else 0.0
            f2 = log_frame[k2] if has_frame else 0.0
            f3 = log_frame[k3] if has_frame else 0.0
            n0 = _decayed_plus(v0, f0, has_frame, ti, t0, c, w0, alpha, gamma)
            n1 = _decayed_plus(v1, f1, has_frame, ti, t1, c, w1, alpha, gamma)
            n2 = _decayed_plus(v2, f2, has_frame, ti, t2, c, w2, alpha, gamma)
            n3 = _decayed_plus(v3, f3, has_frame, ti, t3, c, w3, alpha, gamma)
            state[k0], t_last[k0] = (n0, ti) if w0 > 0.0 else (v0, t0)
            state[k1], t_last[k1] = (n1, ti) if w1 > 0.0 else (v1, t1)
            state[k2], t_last[k2] = (n2, ti) if w2 > 0.0 else (v2, t2)
            state[k3], t_last[k3] = (n3, ti) if w3 > 0.0 else (v3, t3)
        else:  # near the border: drop the neighbours outside
            x_in0, x_in1 = x0 >= 0, x0 + 1 < width
            if y0 >= 0:
                k = y0 * width + x0
                if x_in0:
                    _touch(state, t_last, log_frame, has_frame, k, ti, c, w0, alpha, gamma)
                if x_in1:
                    _touch(state, t_last, log_frame, has_frame, k + 1, ti, c, w1, alpha, gamma)
            if y0 + 1 < height:
                k = (y0 + 1) * width + x0
                if x_in0:
                    _touch(state, t_last, log_frame, has_frame, k, ti, c, w2, alpha, gamma)
                if x_in1:
                    _touch(state, t_last, log_frame, has_frame, k + 1, ti, c, w3, alpha, gamma)


@numba.njit(cache=True, nogil=True)
def _decay_all(state, t_last, log_frame, has_frame, t, alpha):
    """The output-time step: every pixel decays exactly to ``t`` (no gamma), then t_last = t."""
    for k in range(len(state)):
        exponent = alpha * (float(t - t_last[k]) * 1e-6)
        if exponent != 0.0:
            beta = np.exp(-exponent)
            if has_frame:
                state[k] = beta * state[k] + (1.0 - beta) * log_frame[k]
            else:
                state[k] = beta * state[k]
        t_last[k] = t


@numba.njit(cache=True, nogil=True)
def _first_decrease(t, t_min):
    """Index of the first timestamp below ``t_min`` or below its predecessor; -1 if time is monotonic."""
    previous = t_min
    for i in range(len(t)):
        if t[i] < previous:
            return i
        previous = t[i]
    return -1


# -- filter -------------------------------------------------------------------------------------------------


class HighPassFilter:
    """Per-pixel high-pass (optionally complementary) filter on rectified events.

    State: ``L`` (float64) and ``t_last`` (int64 µs) per pixel. float64 because the state is a long
    recursion (with a low cutoff, alpha = 0 included, a pixel sums 1e5-1e6 steps of +-0.1 and float32
    rounding would drift as a random walk), and so that the kernel matches the reference recursion to
    ~1e-15 rather than ~1e-7; t_last has to be 8 bytes anyway (DSEC times exceed 2**32 µs). Measured on
    1M random events at 640x480 a float32 state is no faster (the cost is the random access, not the width).
    """

    def __init__(self, height: int, width: int, config: HighPassConfig | None = None):
        if height < 1 or width < 1:
            raise ValueError(f"image size must be positive, got {height}x{width}")
        self.height, self.width = int(height), int(width)
        self.config = config if config is not None else HighPassConfig()
        self._L = np.zeros(self.height * self.width, np.float64)
        self._t_last = np.zeros(self.height * self.width, np.int64)
        self._log_frame = np.zeros(self.height * self.width, np.float64)
        self.reset()

    # -- state --------------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything: L = 0, no time seen yet, no frame (pure HF), no display range history."""
        self._L.fill(0.0)
        self._t_last.fill(0)
        self._log_frame.fill(0.0)
        self._has_frame = False
        self._t_now: int | None = None  # latest time seen (event or output time); None after reset
        self._range: tuple[float, float] | None = None
        self._range_t: int | None = None

    @property
    def t_now(self) -> int | None:
        """The latest time (µs) the filter has seen, from events or output times; None after a reset."""
        return self._t_now

    def _advance(self, t_first: int) -> None:
        if self._t_now is None:
            self._t_last.fill(t_first)  # L is 0 everywhere, so any start time is exact
            self._t_now = t_first

    # -- events -------------------------------------------------------------------------------------------

    def update(self, x, y, t, p) -> None:
        """Feed a time-sorted chunk of events: ``x, y`` rectified float coordinates (integer ones work too),
        ``t`` integer µs, ``p`` polarity (> 0 is ON: 0/1 or -1/+1). Events outside (-1, W) x (-1, H) are
        dropped; partly outside ones keep their in-image share."""
        t = np.asarray(t)
        n = len(t)
        lengths = {len(x), len(y), n, len(p)}
        if len(lengths) != 1:
            raise ValueError(f"x, y, t, p have different lengths: {len(x)}, {len(y)}, {n}, {len(p)}")
        if n == 0:
            return
        if t.dtype.kind not in "iu":
            raise TypeError(f"event times must be integer microseconds, got {t.dtype}")
        if t.dtype != np.int64:
            t = t.astype(np.int64)
        t_min = self._t_now if self._t_now is not None else int(t[0])
        bad = _first_decrease(t, t_min)
        if bad >= 0:
            before = t_min if bad == 0 else int(t[bad - 1])
            raise ValueError(f"event time goes backwards: event {bad} of the chunk is at {int(t[bad])} µs, "
                             f"after {before} µs. The filter needs monotonic time (the C++ original silently "
                             "resets its state here; we refuse): feed chunks in time order, call frame()/"
                             "log_intensity() only at times >= the events already fed, or reset() first")
        self._advance(int(t[0]))
        cfg = self.config
        _update_events(np.asarray(x), np.asarray(y), t, np.asarray(p), self._L, self._t_last,
                       self._log_frame if self._has_frame else None, self.height, self.width, cfg.alpha,
                       float(cfg.per_event_decay), float(cfg.contrast_on), float(cfg.contrast_off))
        self._t_now = int(t[-1])

    # -- outputs ------------------------------------------------------------------------------------------

    def _check_time(self, t_us: int, what: str) -> int:
        t_us = int(t_us)
        if self._t_now is not None and t_us < self._t_now:
            raise ValueError(f"{what} at {t_us} µs is before the latest time already seen "
                             f"({self._t_now} µs): the filter needs monotonic time (the C++ original resets "
                             "here; we refuse)")
        return t_us

    def log_intensity(self, t_us: int) -> np.ndarray:
        """Decay every pixel to ``t_us`` (the output-time step, which sets t_last = t_us everywhere) and
        return the log-intensity estimate L, (H, W) float32."""
        return self._decay_to(t_us, "output time").astype(np.float32)

    def _decay_to(self, t_us: int, what: str) -> np.ndarray:
        """The output-time step; returns the float64 state as an (H, W) view."""
        t_us = self._check_time(t_us, what)
        self._advance(t_us)
        _decay_all(self._L, self._t_last, self._log_frame, self._has_frame, t_us, self.config.alpha)
        self._t_now = t_us
        return self._L.reshape(self.height, self.width)

    def frame(self, t_us: int) -> np.ndarray:
        """Display image at ``t_us`` in [0, 1], (H, W) float32, with the reference HF mapping:
        img = exp(L + ln 1.5) - 1 (L = 0 -> 0.5), scaled by a robust range (``display_trim`` of the pixels
        discarded at each end, widened by ``display_margin``, lower bound <= ``display_low_cap``, upper
        bound >= ``display_high_floor``), low-pass filtered over time if ``smooth_range``."""
        t_us = int(t_us)
        img = np.exp(self._decay_to(t_us, "output time") + LOG_1_5) - 1.0
        lo, hi = self._display_range(img, t_us)
        out = (img - lo) * (1.0 / (hi - lo))
        return np.clip(out, 0.0, 1.0).astype(np.float32)

    def _display_range(self, img: np.ndarray, t_us: int) -> tuple[float, float]:
        cfg = self.config
        if cfg.display_trim > 0:
            lo, hi = np.quantile(img, [cfg.display_trim, 1.0 - cfg.display_trim])
        else:
            lo, hi = img.min(), img.max()
        lo = min(float(lo) - cfg.display_margin, cfg.display_low_cap)
        hi = max(float(hi) + cfg.display_margin, cfg.display_high_floor)
        if cfg.smooth_range:
            if self._range is not None:
                # First-order low-pass: 95% of a step after range_rise_time_s, i.e. tau = rise / ln 20.
                tau_us = cfg.range_rise_time_s * 1e6 / math.log(20.0)
                k = 1.0 - math.exp(-(t_us - self._range_t) / tau_us)
                lo = self._range[0] + k * (lo - self._range[0])
                hi = self._range[1] + k * (hi - self._range[1])
            self._range, self._range_t = (lo, hi), t_us
        if not hi > lo:  # only if the caps were configured inverted
            hi = lo + 1e-6
        return lo, hi

    # -- complementary filter -----------------------------------------------------------------------------

    def set_log_frame(self, log_frame: np.ndarray | None, t_us: int) -> None:
        """Complementary filter: from ``t_us`` on, L decays toward ``log_frame`` (log of a frame, (H, W),
        held until the next call) instead of 0. The state is first brought to ``t_us`` with the previous
        frame, which is the exact solution for a piecewise-constant L_F. ``None`` returns to the pure HF."""
        t_us = self._check_time(t_us, "frame time")
        if log_frame is not None:
            log_frame = np.asarray(log_frame, dtype=np.float64)
            if log_frame.shape != (self.height, self.width):
                raise ValueError(f"log frame has shape {log_frame.shape}, expected "
                                 f"{(self.height, self.width)}")
        self._decay_to(t_us, "frame time")
        if log_frame is None:
            self._log_frame.fill(0.0)
            self._has_frame = False
        else:
            self._log_frame[:] = log_frame.reshape(-1)
            self._has_frame = True
