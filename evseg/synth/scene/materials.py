"""Surface materials: the world-anchored albedo (and glow) of every hit, per style.

Texture sets and colour palettes, face-local coordinates of box hits (`_Surface`), and
one function per ground class and per box material, each writing into a `_Shader`'s
arrays.  Lighting is applied afterwards, in shade.py.
"""

import numpy as np

from evseg.synth.scene.noise import _band, _hash01, _noise, _pulse
from evseg.synth.scene.street import (
    M_BIKE, M_BUILDING, M_BUS, M_CANOPY, M_CAR, M_CLOTHES, M_FENCE, M_GLASS, M_HEAD, M_HEDGE,
    M_LAMP, M_LIGHT, M_POLE, M_SIGN, M_TRUCK, M_TRUNK, M_WALL, RIDER, SH_DISC,
)


def _c(r, g, b):
    """A colour constant shaped (3, 1), to broadcast over (3, n) pixel arrays."""
    return np.array([r, g, b], np.float32).reshape(3, 1)


# ----------------------------------------------------------------------------- textures
# Texture set A (day) and B (night): same materials, other patterns and frequencies.

_TEXTURES = {
    "day": dict(asphalt=(0.02, 0.22), patches=(0.45, 0.16), tile=(0.5, 0.5, 0.02), tile_var=0.12,
                grass=(0.035, 0.35), wall=(0.03, 0.10), leaf=(0.05, 0.45), brick=False,
                fence="bars"),
    "night": dict(asphalt=(0.04, 0.30), patches=(1.6, 0.45), tile=(0.24, 0.12, 0.015), tile_var=0.22,
                  grass=(0.08, 0.45), wall=(0.08, 0.18), leaf=(0.11, 0.6), brick=True,
                  fence="mesh"),
}

# Per-material colour palettes (linear RGB), one per style: a box picks an entry
# with rnd[0] and varies its brightness with rnd[1].
_PALETTES = {
    "day": {
        M_BUILDING: [(0.55, 0.47, 0.36), (0.42, 0.42, 0.42), (0.62, 0.60, 0.56), (0.58, 0.50, 0.32),
                     (0.36, 0.17, 0.11), (0.40, 0.44, 0.48), (0.50, 0.38, 0.30)],
        M_WALL: [(0.45, 0.43, 0.40), (0.38, 0.33, 0.27), (0.55, 0.52, 0.48)],
        M_FENCE: [(0.28, 0.28, 0.27), (0.10, 0.18, 0.10), (0.40, 0.38, 0.34)],
        M_HEDGE: [(0.05, 0.12, 0.03), (0.07, 0.15, 0.04)],
        M_CANOPY: [(0.06, 0.13, 0.03), (0.09, 0.17, 0.04), (0.11, 0.16, 0.05)],
        M_TRUNK: [(0.12, 0.08, 0.05)],
        M_POLE: [(0.30, 0.30, 0.30), (0.18, 0.20, 0.18)],
        M_CAR: [(0.70, 0.70, 0.70), (0.03, 0.03, 0.03), (0.35, 0.36, 0.37), (0.12, 0.12, 0.13),
                (0.45, 0.04, 0.03), (0.05, 0.10, 0.35), (0.30, 0.28, 0.22), (0.06, 0.15, 0.08)],
        M_TRUCK: [(0.70, 0.70, 0.68), (0.50, 0.10, 0.05), (0.10, 0.20, 0.45), (0.60, 0.50, 0.10)],
        M_BUS: [(0.10, 0.25, 0.55), (0.65, 0.65, 0.63), (0.55, 0.08, 0.05)],
        M_CLOTHES: [(0.05, 0.05, 0.06), (0.05, 0.08, 0.20), (0.35, 0.30, 0.22), (0.50, 0.08, 0.06),
                    (0.55, 0.55, 0.55), (0.15, 0.15, 0.15), (0.10, 0.25, 0.12)],
        M_BIKE: [(0.05, 0.05, 0.05), (0.35, 0.05, 0.04), (0.08, 0.12, 0.35)],
        M_SIGN: [(0.05, 0.15, 0.50), (0.55, 0.04, 0.04), (0.65, 0.55, 0.08)],
    },
    "night": {
        M_BUILDING: [(0.30, 0.27, 0.24), (0.20, 0.20, 0.22), (0.38, 0.20, 0.14), (0.26, 0.28, 0.30)],
        M_WALL: [(0.30, 0.30, 0.32), (0.25, 0.20, 0.16)],
        M_FENCE: [(0.35, 0.35, 0.36), (0.20, 0.22, 0.20)],
        M_HEDGE: [(0.04, 0.09, 0.04), (0.06, 0.10, 0.06)],
        M_CANOPY: [(0.05, 0.10, 0.05), (0.08, 0.12, 0.06)],
        M_TRUNK: [(0.10, 0.08, 0.07)],
        M_POLE: [(0.25, 0.25, 0.26), (0.35, 0.35, 0.32)],
        M_CAR: [(0.70, 0.70, 0.70), (0.03, 0.03, 0.03), (0.35, 0.36, 0.37), (0.12, 0.12, 0.13),
                (0.45, 0.04, 0.03), (0.05, 0.10, 0.35), (0.30, 0.28, 0.22), (0.06, 0.15, 0.08)],
        M_TRUCK: [(0.70, 0.70, 0.68), (0.50, 0.10, 0.05), (0.10, 0.20, 0.45), (0.60, 0.50, 0.10)],
        M_BUS: [(0.10, 0.25, 0.55), (0.65, 0.65, 0.63), (0.55, 0.08, 0.05)],
        M_CLOTHES: [(0.04, 0.04, 0.05), (0.04, 0.06, 0.14), (0.25, 0.22, 0.18), (0.35, 0.06, 0.05),
                    (0.45, 0.45, 0.45), (0.10, 0.10, 0.10)],
        M_BIKE: [(0.05, 0.05, 0.05), (0.30, 0.05, 0.04), (0.40, 0.40, 0.40)],
        M_SIGN: [(0.05, 0.15, 0.50), (0.55, 0.04, 0.04), (0.65, 0.55, 0.08)],
    },
}
_PALETTES = {s: {m: np.array(c, np.float32).T.copy() for m, c in p.items()} for s, p in _PALETTES.items()}


class _Surface:
    """Hit points of one material group on boxes, with face-local coordinates.

    s / r: world coordinates across / up the hit face (metres), ls / lr: the same
    from the box corner, fp_s / fp_r: pixel footprints along s / r (foreshortened)."""

    def __init__(self, sh, idx):
        self.idx = idx
        k = sh.prim[idx]
        self.k = k
        b = sh.bx.T[:, k].T          # (n, 6) whose columns are contiguous in memory
        self.rnd = sh.st.box_rnd[k]
        px, py, pz = (c[idx] for c in sh.p)
        ex = np.minimum(np.abs(px - b[:, 0]), np.abs(px - b[:, 1]))
        ey = np.minimum(np.abs(py - b[:, 2]), np.abs(py - b[:, 3]))
        ez = np.minimum(np.abs(pz - b[:, 4]), np.abs(pz - b[:, 5]))
        ax = np.where((ex <= ey) & (ex <= ez), 0, np.where(ey <= ez, 1, 2))
        on_x, on_y = ax == 0, ax == 1
        self.axis = ax
        self.s = np.where(on_x, pz, px)
        self.r = np.where(on_y, pz, py)
        self.ls = self.s - np.where(on_x, b[:, 4], b[:, 0])
        self.lr = self.r - np.where(on_y, b[:, 4], b[:, 2])
        self.width = np.where(on_x, b[:, 5] - b[:, 4], b[:, 1] - b[:, 0])
        self.height = np.where(on_y, b[:, 5] - b[:, 4], b[:, 3] - b[:, 2])
        dn = np.where(on_x, sh.d[0][idx], np.where(on_y, sh.d[1][idx], sh.d[2][idx]))
        cos = np.maximum(np.abs(dn) / sh.norm[idx], 0.05)
        fp = sh.fp[idx]
        self.fp = np.maximum(fp, 0.003)
        self.fp_s = np.maximum(np.where(ax != 1, fp / np.where(on_x, cos, 1.0), fp), 0.003)
        self.fp_r = np.maximum(np.where(on_y, fp / cos, fp), 0.003)
        sgn = -np.sign(dn)
        sh.n[0][idx] = sgn * on_x
        sh.n[1][idx] = sgn * on_y
        sh.n[2][idx] = sgn * (ax == 2)
        self.facing_cam_z = (ax == 2) & (dn > 0)      # a -z face, seen from behind it
        self.px, self.py, self.pz = px, py, pz
        self.b = b

    def part(self, sl):
        """The same surface restricted to a contiguous slice of its pixels."""
        out = object.__new__(_Surface)
        out.__dict__ = {name: v[sl] for name, v in self.__dict__.items()}
        return out


def _pick(style, mat, rnd):
    """(3, n) base colours: palette entry from rnd[:, 0], brightness from rnd[:, 1]."""
    pal = _PALETTES[style][mat]
    i = np.minimum((rnd[:, 0] * pal.shape[1]).astype(np.intp), pal.shape[1] - 1)
    return pal[:, i] * (0.8 + 0.4 * rnd[:, 1])


def _tex(sh, s, r, scale_contrast, fp, slot):
    """Multiplicative (log-normal) texture exp(contrast * noise), world anchored; a
    per-street offset per slot decorrelates surfaces and streets."""
    scale, contrast = scale_contrast
    off = sh.app["tex_offset"][slot]
    return np.exp(np.float32(contrast) * _noise(s + off, r + 0.37 * off, scale, fp))


# ------------------------------------------------------------------ ground materials
# Each returns (3, m) albedo for m ground pixels at world (x, z); fp / fpz are the
# pixel footprints across / along the street.

def _ground_road(sh, x, z, fp, fpz, off):
    ts = sh.tex
    fm = np.sqrt(fp * fpz)
    t = _tex(sh, x, z, ts["asphalt"], fm, 0) * _tex(sh, x * 0.7, z, ts["patches"], fm, 1)
    alb = sh.app["road"][:, None] * t
    paint = np.zeros_like(x)
    fx = np.maximum(fp, 0.003)
    for xc, w, dashed in sh.st.lines.tolist():
        j = np.flatnonzero(np.abs(x - xc) < w / 2 + fx)   # only pixels touching the line
        m = _band(x[j], xc - w / 2, xc + w / 2, fx[j])
        if dashed:
            m = m * _pulse(z[j] - sh.st.dash_phase, 9.0, 3.0, fpz[j])
        paint[j] = np.maximum(paint[j], m)
    for z0, z1 in sh.st.crosswalks.tolist():
        j = np.flatnonzero((z > z0 - 1.0) & (z < z1 + 1.0))
        if len(j):
            m = _band(z[j], z0, z1, fpz[j]) * _pulse(x[j] + 0.25, 1.0, 0.5, fx[j])
            paint[j] = np.maximum(paint[j], m)
    if sh.style == "night":    # worn paint: the night set breaks the markings up
        j = np.flatnonzero(paint > 0)
        paint[j] *= np.clip(0.75 + 0.5 * _noise(x[j] * 3.0, z[j], 0.05, fm[j]), 0.2, 1.0)
    return alb + (np.float32(sh.app["paint"]) - alb) * paint


def _ground_sidewalk(sh, x, z, fp, fpz, off):
    ts = sh.tex
    tw, tl, joint = ts["tile"]
    fx = np.maximum(fp, 0.003)
    if ts["brick"]:              # night set: running-bond pavers
        xs = x + 0.5 * tw * (np.floor(z / tl) % 2)
    else:
        xs = x
    joints = 1.0 - (1.0 - _pulse(xs, tw, joint, fx)) * (1.0 - _pulse(z, tl, joint, fpz))
    var = _hash01(np.floor(xs / tw), np.floor(z / tl), 7) - 0.5
    # per-tile variation fades out once tiles are smaller than a pixel
    fade = np.clip(1.5 - np.maximum(fx / tw, fpz / tl), 0.0, 1.0)
    var = 1.0 + 2 * ts["tile_var"] * var * fade
    t = _tex(sh, x, z, ts["asphalt"], np.sqrt(fp * fpz), 2) * var * (1.0 - 0.45 * joints)
    base = sh.app["sidewalk"][:, None]
    kerb = _band(off, 0.0, 0.22, fx)                 # kerb stones along the road
    kerb_t = 1.3 * (1.0 - 0.4 * _pulse(z, 1.0, 0.02, fpz))
    return base * (t * (1 - kerb) + kerb_t * kerb)


def _ground_terrain(sh, x, z, fp, fpz, off):
    fm = np.sqrt(fp * fpz)
    t = _tex(sh, x, z * 0.7, sh.tex["grass"], fm, 3)
    return sh.app["terrain"][:, None] * t


# ------------------------------------------------------------------ box materials
# Each writes sh.albedo[:, S.idx] (and sh.emit where something glows) for the
# pixels of one material, from the face-local coordinates in S (a _Surface).

def _sh_building(sh, S):
    ts, rnd = sh.tex, S.rnd
    base = _pick(sh.style, M_BUILDING, rnd)
    if ts["brick"]:     # night set: brick courses
        course = np.floor(S.r / 0.28)
        mortar = 1.0 - ((1.0 - _pulse(S.r, 0.28, 0.03, S.fp_r))
                        * (1.0 - _pulse(S.s + 0.3 * (course % 2), 0.6, 0.03, S.fp_s)))
        wall = _tex(sh, S.s, S.r, ts["wall"], S.fp_s, 5) * (1.0 - 0.35 * mortar)
    else:               # day set: plaster with a cornice line at every floor
        cornice = _pulse(S.lr, 3.0 + 0.5 * rnd[:, 2], 0.18, S.fp_r)
        wall = _tex(sh, S.s, S.r, ts["wall"], S.fp_s, 5) * (1.0 + 0.25 * cornice)
    floor_h = 2.9 + 0.6 * rnd[:, 2]
    pitch = 1.5 + 1.6 * rnd[:, 3]
    ws, wr = S.ls - 0.25 * pitch, S.lr - 0.9
    win = _pulse(ws, pitch, 0.55 * pitch, S.fp_s) * _pulse(wr, floor_h, 0.5 * floor_h, S.fp_r)
    shop = _pulse(S.ls - 0.5, 2 * pitch, 1.4 * pitch, S.fp_s) * _band(S.lr, 0.4, 2.7, S.fp_r)
    win = np.where(S.lr < 3.2, shop * (rnd[:, 2] > 0.4), win * (S.lr < S.height - 1.2))
    win = win * (S.axis == 0)       # only the street facades have windows
    glass = _GLASS[sh.style] * (1.0 + 0.3 * (rnd[:, 3] - 0.5))
    sh.albedo[:, S.idx] = base * (wall * (1 - win)) + glass * win
    if sh.style == "night":
        p_lit = sh.app["lit_windows"]
        cell = _hash01(np.floor(ws / pitch), np.floor(wr / floor_h), S.k)
        lit = (cell < p_lit) * (0.35 + 0.65 * cell / max(p_lit, 1e-3))
        sh.emit[:, S.idx] = _WINDOW_LIGHT * (win * lit)


_GLASS = {"day": _c(0.07, 0.09, 0.12), "night": _c(0.02, 0.02, 0.025)}
_WINDOW_LIGHT = _c(0.75, 0.52, 0.25)


def _sh_wall(sh, S):
    if sh.tex["brick"]:
        course = np.floor(S.lr / 0.35)
        blocks = _pulse(S.lr, 0.35, 0.025, S.fp_r) + _pulse(S.s + 0.4 * (course % 2), 0.8, 0.025, S.fp_s)
    else:
        course = np.floor(S.lr / 0.2)
        blocks = _pulse(S.lr, 0.2, 0.02, S.fp_r) + _pulse(S.s + 0.2 * (course % 2), 0.4, 0.02, S.fp_s)
    coping = _band(S.lr, S.height - 0.1, S.height + 1, S.fp_r)
    t = _tex(sh, S.s, S.r, sh.tex["wall"], S.fp_s, 6) * (1.0 - 0.4 * np.minimum(blocks, 1.0)) * (1.0 + 0.4 * coping)
    sh.albedo[:, S.idx] = _pick(sh.style, M_WALL, S.rnd) * t


def _sh_fence(sh, S):
    """Opaque fence panel: bars (day) or a diagonal mesh (night) over a dark backdrop
    standing for what is behind, posts every 2.5 m, rails at top and bottom."""
    if sh.tex["fence"] == "bars":
        metal = _pulse(S.s, 0.14, 0.04, S.fp_s)
    else:
        metal = 1.0 - (1.0 - _pulse(S.s + S.r, 0.11, 0.02, S.fp_s)) * (1.0 - _pulse(S.s - S.r, 0.11, 0.02, S.fp_s))
    rails = np.maximum(_band(S.lr, S.height - 0.06, S.height + 1, S.fp_r), _band(S.lr, 0.1, 0.16, S.fp_r))
    metal = np.maximum(metal, np.maximum(_pulse(S.s, 2.5, 0.08, S.fp_s), rails))
    backdrop = _c(0.04, 0.06, 0.03) * _tex(sh, S.s, S.r, (0.1, 0.5), S.fp_s, 7)
    sh.albedo[:, S.idx] = _pick(sh.style, M_FENCE, S.rnd) * metal + backdrop * (1 - metal)


def _sh_hedge(sh, S):
    t = _tex(sh, S.s + S.pz, S.r, sh.tex["leaf"], S.fp, 3)
    sh.albedo[:, S.idx] = _pick(sh.style, M_HEDGE, S.rnd) * t


def _sh_canopy(sh, S):
    """Canopies are ellipsoids: shade them with their true normal; leafy texture from
    the world point so the crown sparkles with motion."""
    b = S.b
    n = [(q - (b[:, 2 * i] + b[:, 2 * i + 1]) / 2) / ((b[:, 2 * i + 1] - b[:, 2 * i]) / 2) ** 2
         for i, q in enumerate((S.px, S.py, S.pz))]
    inv = 1.0 / (np.sqrt(n[0] ** 2 + n[1] ** 2 + n[2] ** 2) + 1e-6)
    for i in range(3):
        sh.n[i][S.idx] = n[i] * inv
    t = _tex(sh, S.px + 0.7 * S.pz, S.py, sh.tex["leaf"], S.fp, 3)
    sh.albedo[:, S.idx] = _pick(sh.style, M_CANOPY, S.rnd) * t


def _sh_trunk(sh, S):
    t = _tex(sh, S.s * 6.0, S.r * 0.5, (0.04, 0.35), S.fp_s * 6.0, 5)
    sh.albedo[:, S.idx] = _pick(sh.style, M_TRUNK, S.rnd) * t


def _sh_pole(sh, S):
    band = 1.0 - 0.4 * _pulse(S.lr, 1.7, 0.06, S.fp_r)   # joints / clamps
    sh.albedo[:, S.idx] = _pick(sh.style, M_POLE, S.rnd) * band


def _sh_lamp(sh, S):
    sh.albedo[:, S.idx] = _pick(sh.style, M_POLE, S.rnd)
    if sh.style == "night":
        sh.emit[:, S.idx] = sh.app["lamp_col"][:, None] * (1.2 * _lamp_is_on(sh, S))


def _lamp_is_on(sh, S):
    """Whether the lamp inside each hit lamp-head box is switched on."""
    lamps = sh.st.lamps
    cx, cz = (S.b[:, 0] + S.b[:, 1]) / 2, (S.b[:, 4] + S.b[:, 5]) / 2
    j = np.argmin(np.abs(lamps[None, :, 0] - cx[:, None]) + np.abs(lamps[None, :, 2] - cz[:, None]), 1)
    return sh.app["lamp_on"][j]


def _sh_light(sh, S):
    """Traffic light housing with three lamps on the face towards the camera."""
    state = np.minimum((S.rnd[:, 2] * 3).astype(np.intp), 2)
    alb = np.repeat(_c(0.03, 0.03, 0.03), len(S.idx), 1)
    emit = np.zeros_like(alb)
    gain = 0.6 if sh.style == "day" else 2.5
    for i in range(3):
        col = _SIGNAL_COLOURS[:, i:i + 1]
        disc = ((S.ls - S.width / 2) ** 2 + (S.lr - S.height * (0.8 - 0.3 * i)) ** 2 < 0.11 ** 2) & S.facing_cam_z
        alb = np.where(disc, col * 0.15, alb)
        emit += col * (gain * (disc & (state == i)))
    sh.albedo[:, S.idx] = alb
    sh.emit[:, S.idx] = emit


_SIGNAL_COLOURS = np.array([[1.0, 0.08, 0.04], [1.0, 0.55, 0.05], [0.1, 1.0, 0.45]], np.float32).T.copy()


def _sh_sign(sh, S):
    """Sign plate: border ring, coloured field, white symbol bar; grey back; more
    reflective at night (retroreflective: bright where the headlights hit)."""
    base = _pick(sh.style, M_SIGN, S.rnd)
    u = (S.ls / S.width) * 2 - 1
    v = (S.lr / S.height) * 2 - 1
    round_ = sh.st.box_shape[S.k] == SH_DISC
    rad = np.where(round_, np.hypot(u, v), np.maximum(np.abs(u), np.abs(v)))
    symbol = (np.abs(v) < 0.18) & (np.abs(u) < 0.55) & (S.rnd[:, 2] > 0.5)
    alb = np.where((rad > 0.8) | symbol, np.float32(0.7), base)
    alb = np.where(S.facing_cam_z, alb, np.float32(0.25))
    sh.albedo[:, S.idx] = alb * (2.5 if sh.style == "night" else 1.0)


def _sh_car(sh, S):
    """Car body: paint with a dark lower band and wheels on the sides, lights and a
    number plate on the front/rear face (lit at night when the car is driving)."""
    paint = _pick(sh.style, M_CAR, S.rnd)
    low = _band(S.lr, -1.0, 0.25, S.fp_r)
    wheel = (S.axis == 0) & ((np.hypot(S.ls - 0.8, S.lr - 0.28) < 0.33) |
                             (np.hypot(S.ls - (S.width - 0.8), S.lr - 0.28) < 0.33))
    dark = np.maximum(low, wheel)
    alb = paint * (1 - dark) + 0.02 * dark
    end = S.facing_cam_z
    lamp = end & (S.lr > 0.5) & (S.lr < 0.7) & (np.abs(S.ls - S.width / 2) > S.width / 2 - 0.35)
    plate = end & (S.lr > 0.3) & (S.lr < 0.42) & (np.abs(S.ls - S.width / 2) < 0.26)
    rear = sh.st.box_heading[S.k] > 0            # the -z face of a car facing +z is its rear
    lamp_col = np.where(rear, _TAIL, _HEAD)
    alb = np.where(lamp, lamp_col * 0.5, alb)
    sh.albedo[:, S.idx] = np.where(plate, np.float32(0.6), alb)
    if sh.style == "night":
        moving = sh.st.box_vz[S.k] != 0
        sh.emit[:, S.idx] = lamp_col * (0.5 * (lamp & moving))


_TAIL = _c(0.7, 0.03, 0.02)
_HEAD = _c(0.9, 0.9, 0.8)


def _sh_glass(sh, S):
    """Car cabin: dark glass with pillars in the body colour; sky reflection by day."""
    frame = (S.ls < 0.1) | (S.ls > S.width - 0.1) | (S.lr > S.height - 0.06) | (S.axis == 1)
    frame |= (S.axis == 0) & (np.abs(S.ls - S.width * 0.5) < 0.06)
    if sh.style == "day":
        glass = 0.05 + 0.12 * S.lr / np.maximum(S.height, 0.1)
    else:
        glass = np.float32(0.015)
    sh.albedo[:, S.idx] = np.where(frame, _pick(sh.style, M_CAR, S.rnd), glass)


def _sh_truck(sh, S):
    base = _pick(sh.style, M_TRUCK, S.rnd)
    cargo = S.rnd[:, 2] >= 1.0
    ribs = np.where(cargo, 1.0 - 0.25 * _pulse(S.s, 0.45, 0.06, S.fp_s), 1.0)
    cab_glass = ~cargo & (S.lr > 1.3) & (S.lr < 2.3) & (S.ls > 0.15) & (S.ls < S.width - 0.15)
    low = _band(S.lr, -1.0, 0.3, S.fp_r)
    alb = base * (ribs * (1 - low)) + 0.02 * low
    sh.albedo[:, S.idx] = np.where(cab_glass, _GLASS[sh.style], alb)


def _sh_bus(sh, S):
    base = _pick(sh.style, M_BUS, S.rnd)
    band = _band(S.lr, 0.95, 2.35, S.fp_r) * (1.0 - 0.8 * _pulse(S.s, 1.3, 0.1, S.fp_s))
    low = _band(S.lr, -1.0, 0.2, S.fp_r)
    sh.albedo[:, S.idx] = base * (1 - band - low) + _GLASS[sh.style] * band + 0.02 * low
    if sh.style == "night":      # a driving bus is lit inside
        sh.emit[:, S.idx] = _c(0.22, 0.23, 0.2) * (band * (sh.st.box_vz[S.k] != 0))


def _sh_clothes(sh, S):
    """Trousers below the hips, a top above (from different rnd), a dark gap between
    the legs."""
    top = _pick(sh.style, M_CLOTHES, S.rnd)
    legs = _pick(sh.style, M_CLOTHES, S.rnd[:, [2, 3, 0, 1]])
    hip = S.height * np.where(sh.st.box_cls[S.k] == RIDER, 0.3, 0.48)
    gap = (S.lr < hip - 0.1) & (np.abs(S.ls - S.width / 2) < 0.03 + 0.05 * (S.axis != 0))
    alb = np.where(S.lr < hip, legs, top)
    sh.albedo[:, S.idx] = alb * np.where(gap, np.float32(0.3), np.float32(1.0))


def _sh_head(sh, S):
    skin = _c(0.50, 0.34, 0.25) * (0.35 + 0.8 * S.rnd[:, 2])
    hair = _c(0.05, 0.035, 0.025) * (0.5 + 2.0 * S.rnd[:, 3])
    # the back of the head (seen from behind) and its top are hair
    away = ((sh.st.box_heading[S.k] > 0) & S.facing_cam_z) | (S.lr > S.height * 0.7)
    sh.albedo[:, S.idx] = np.where(away, hair, skin)


def _sh_bike(sh, S):
    sh.albedo[:, S.idx] = np.where(S.lr < 0.4, np.float32(0.03), _pick(sh.style, M_BIKE, S.rnd))


_BOX_SHADERS = {
    M_BUILDING: _sh_building, M_WALL: _sh_wall, M_FENCE: _sh_fence, M_HEDGE: _sh_hedge,
    M_CANOPY: _sh_canopy, M_TRUNK: _sh_trunk, M_POLE: _sh_pole, M_LAMP: _sh_lamp,
    M_LIGHT: _sh_light, M_SIGN: _sh_sign, M_CAR: _sh_car, M_GLASS: _sh_glass,
    M_TRUCK: _sh_truck, M_BUS: _sh_bus, M_CLOTHES: _sh_clothes, M_HEAD: _sh_head, M_BIKE: _sh_bike,
}
