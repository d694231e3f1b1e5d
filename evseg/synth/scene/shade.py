"""Rendering: `render` casts a frame and shades it into rgb and labels.

`_Shader` runs the material passes (materials.py) over the hits, then lights them:
sun, sky, facade shadows and haze by day; street lamps and headlights by night.
"""

from __future__ import annotations

import numpy as np

from evseg.synth.scene.cast import _GROUND, _SKY, Camera, _cast, _cull, _ground_labels
from evseg.synth.scene.materials import (
    _BOX_SHADERS, _TEXTURES, _c, _ground_road, _ground_sidewalk, _ground_terrain, _Surface,
)
from evseg.synth.scene.noise import _noise
from evseg.synth.scene.street import ROAD, SIDEWALK, SKY, STYLES, TERRAIN, Street


def pixel_grid(width: int, height: int) -> np.ndarray:
    """(H, W, 2) float32 array of (u, v) = (column, row) pixel coordinates."""
    u, v = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return np.stack([u, v], -1)


def render(street: Street, cam: Camera, pose, uv: np.ndarray, time_s: float, style: str):
    """Ray-cast the street from `pose` = (x_m, z_m, yaw_rad) (yaw > 0 turns right) at
    the (fractional) pixel coordinates `uv` (H, W, 2) of the rectified pinhole frame.

    Returns rgb float32 (H, W, 3) linear intensity in [0, 1] and label uint8 (H, W)
    (Cityscapes trainIds).  Moving boxes are placed at `time_s`."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    rays, t, prim, bx = _cast(street, cam, pose, uv, time_s)
    sh = _Shader(street, cam, pose, rays, t, prim, bx, style)
    return sh.run()


class _Shader:
    """Shades the hits of one frame.  Materials work on flat index sets of their own
    pixels; lighting works on whole-image component arrays (no (n, 3) reductions)."""

    def __init__(self, st, cam, pose, rays, t, prim, bx, style):
        self.st, self.cam, self.pose, self.bx, self.style = st, cam, pose, bx, style
        self.app = st.appearance[style]
        self.tex = _TEXTURES[style]
        self.rays = rays
        self.shape = t.shape
        self.t = t.ravel()
        self.prim = prim.ravel()
        self.d = [a.ravel() for a in rays.d]
        self.norm = rays.norm.ravel()
        self.o = rays.o
        n = self.t.size
        self.label = np.full(n, SKY, np.uint8)
        # colours are channel-first (3, n): broadcasting a (3,) colour over (n, 3)
        # runs a length-3 inner loop and is ~30x slower than over (3, n)
        self.albedo = np.zeros((3, n), np.float32)
        self.emit = np.zeros((3, n), np.float32)
        self.p = [np.zeros(n, np.float32) for _ in range(3)]     # hit point, 0 on sky
        self.n = [np.zeros(n, np.float32) for _ in range(3)]     # unit normal, 0 on sky

    def run(self):
        hit = np.flatnonzero(self.prim != _SKY)
        th = self.t[hit]
        for k in range(3):
            self.p[k][hit] = self.o[k] + th * self.d[k][hit]
        # metres per pixel across the ray, at the hit
        self.fp = np.zeros(self.t.size, np.float32)
        self.fp[hit] = th * self.norm[hit] / self.cam.fx
        self._ground(np.flatnonzero(self.prim == _GROUND))
        boxes = np.flatnonzero(self.prim >= 0)
        k = self.prim[boxes]
        self.label[boxes] = self.st.box_cls[k]
        # one surface pass over all box pixels, sorted by material so that every
        # material gets a contiguous slice (views, no gathers)
        mats = self.st.box_mat[k]
        order = np.argsort(mats, kind="stable")
        if len(order):
            surf = _Surface(self, boxes[order])
            ms = mats[order]
            cuts = np.concatenate([[0], np.flatnonzero(np.diff(ms)) + 1, [len(ms)]])
            for a, b in zip(cuts[:-1], cuts[1:]):
                _BOX_SHADERS[int(ms[a])](self, surf.part(slice(a, b)))
        rgb = self._day() if self.style == "day" else self._night()
        self._sky(np.flatnonzero(self.prim == _SKY), rgb)
        np.clip(rgb, 0.0, 1.0, out=rgb)
        rgb = np.ascontiguousarray(np.moveaxis(rgb.reshape(3, *self.shape), 0, -1))
        return rgb, self.label.reshape(self.shape)

    # -------------------------------------------------------------- ground
    def _ground(self, idx):
        if not len(idx):
            return
        x, z = self.p[0][idx], self.p[2][idx]
        lab, off = _ground_labels(self.st, x, z)
        self.label[idx] = lab
        self.n[1][idx] = 1.0
        fp = self.fp[idx]
        # foreshortening along z on the ground plane
        fpz = np.minimum(fp * self.norm[idx] / np.maximum(-self.d[1][idx], 1e-3), 50.0)
        for cls, fn in ((ROAD, _ground_road), (SIDEWALK, _ground_sidewalk), (TERRAIN, _ground_terrain)):
            sel = np.flatnonzero(lab == cls)
            if len(sel):
                self.albedo[:, idx[sel]] = fn(self, x[sel], z[sel], fp[sel], fpz[sel], off[sel])

    # -------------------------------------------------------------- light
    def _day(self):
        app = self.app
        sun = app["sun"]
        nx, ny, nz = self.n
        lam = np.maximum(nx * sun[0] + ny * sun[1] + nz * sun[2], 0.0) * self._sun_visible(sun)
        sky = app["ambient"] * (0.75 + 0.25 * ny)
        rgb = _SKY_TINT * sky
        rgb += _SUN_TINT * (app["sun_int"] * lam)
        rgb *= self.albedo
        rgb += self.emit
        # aerial perspective: far surfaces fade to the horizon colour
        f = np.exp(np.minimum(self.t, 1e5) * np.float32(-1.0 / app["haze_m"]))
        rgb *= f
        rgb += _DAY_HORIZON * (1.0 - f)
        return rgb

    def _sun_visible(self, sun):
        """0 where the sun is hidden by the facade row on its side of the street: the
        sun ray from the hit reaches that row's front plane at a height and z that
        tell whether a building stands there."""
        vis = np.ones(self.t.size, np.float32)
        if abs(sun[0]) < 0.05:
            return vis
        side = 1.0 if sun[0] > 0 else -1.0
        fac = self.st.facades[self.st.facades[:, 0] == side]
        if not len(fac):
            return vis
        fac = fac[np.argsort(fac[:, 1])]
        i = 1 if side > 0 else 0
        x_line = side * (self.st.road_half[i] + self.st.sidewalk[i])
        px, py, pz = self.p
        dist = (x_line - px) * (1.0 / sun[0])          # ray length to that plane
        zq = pz + dist * sun[2]
        yq = py + dist * sun[1]
        k = np.clip(np.searchsorted(fac[:, 1], zq, side="right") - 1, 0, len(fac) - 1)
        shadow = (dist > 0) & (zq >= fac[k, 1]) & (zq < fac[k, 2]) & (yq < fac[k, 4])
        vis[shadow] = 0.0
        return vis

    def _night(self):
        app = self.app
        lamps = self._lamp_light()
        head = self._headlights()
        light = _HEADLIGHT_TINT * head
        light += app["lamp_col"][:, None] * lamps
        light += np.float32(app["ambient"]) * _NIGHT_AMBIENT
        return (self.albedo * light + self.emit) * np.float32(app["exposure"])

    def _lamp_light(self):
        """Street lamps as point lights with a downward lobe, each evaluated only in the
        pixel block where its 18 m sphere of influence can appear (smooth cut-off)."""
        st, app = self.st, self.app
        e = np.zeros(self.shape, np.float32)
        on = np.flatnonzero(app["lamp_on"][:len(st.lamps)])
        if not len(on):
            return e.ravel()
        R = 18.0     # beyond this a lamp adds < 1 % of its peak
        L = st.lamps[on]
        reach = np.stack([L[:, 0] - R, L[:, 0] + R, L[:, 1] * 0, L[:, 1] + 0.5, L[:, 2] - R, L[:, 2] + R], 1)
        vis, blocks = _cull(reach, self.cam, self.pose, self.rays)
        P = [a.reshape(self.shape) for a in self.p]
        N = [a.reshape(self.shape) for a in self.n]
        for j, (r0, r1, c0, c1) in zip(vis.tolist(), blocks.tolist()):
            sl = (slice(r0, r1), slice(c0, c1))
            lx, ly, lz = L[j].tolist()
            dx, dy, dz = lx - P[0][sl], ly - P[1][sl], lz - P[2][sl]
            d2 = dx * dx + dy * dy + dz * dz + 0.5
            inv = 1.0 / np.sqrt(d2)
            lam = np.maximum((N[0][sl] * dx + N[1][sl] * dy + N[2][sl] * dz) * inv, 0.0)
            lobe = np.maximum(dy * inv, 0.0)
            window = np.maximum(1.0 - d2 * (1.0 / R ** 2), 0.0) ** 2
            e[sl] += lam * lobe * np.sqrt(lobe) * window / d2
        return e.ravel() * np.float32(app["lamp_int"])

    def _headlights(self):
        """Ego low beams from 0.7 m height: intensity grows towards the cut-off just
        below the horizon, so the lit road falls off slowly (~1/d) with depth."""
        x, z, yaw = (float(v) for v in self.pose)
        ax, az = float(np.sin(yaw)), float(np.cos(yaw))
        rx, ry, rz = self.p[0] - x, self.p[1] - 0.7, self.p[2] - z
        fwd = rx * ax + rz * az
        lat = rx * az - rz * ax
        fwd_c = np.maximum(fwd, 0.3)
        dep = -ry / fwd_c                               # depression angle below the lamp
        cutoff = 1.0 / (1.0 + np.exp(np.minimum(-(dep + 0.01) * 125.0, 60.0)))   # sharp top edge
        beam = (0.06 + 0.94 * cutoff) / (dep * dep + 0.0016)
        cone = np.exp(-np.square(lat / (0.55 * fwd_c)))
        d2 = rx * rx + ry * ry + rz * rz + 1.0
        lam = np.maximum(-(self.n[0] * rx + self.n[1] * ry + self.n[2] * rz), 0.0) / np.sqrt(d2)
        return np.float32(self.app["headlight"]) * beam * cone * lam / d2 * (fwd > 0.3)

    # -------------------------------------------------------------- sky
    def _sky(self, idx, rgb):
        if not len(idx):
            return
        dx, dy, dz = (a[idx] for a in self.d)
        e = dy / self.norm[idx]
        if self.style == "night":
            glow = np.exp(-np.maximum(e, 0) * 9.0)
            rgb[:, idx] = (_NIGHT_SKY + _NIGHT_GLOW * glow) * np.float32(self.app["exposure"])
            return
        g = np.clip(e * 2.5, 0.0, 1.0) ** 0.6
        col = _DAY_HORIZON * (1 - g) + _DAY_ZENITH * g
        # clouds on the sky dome: anchored to the viewing direction, not to the camera
        az = np.arctan2(dx, dz)
        el = np.arcsin(np.clip(e, -1, 1))
        c = _noise(az * 4.0 + self.app["tex_offset"][7], el * 9.0, 0.012, self.norm[idx] / self.cam.fx * 4.0)
        cloud = np.clip(0.5 * c + self.app["clouds"], 0.0, 1.0)
        rgb[:, idx] = col * (1 - cloud) + _CLOUD * cloud


_DAY_HORIZON = _c(0.72, 0.78, 0.85)
_DAY_ZENITH = _c(0.22, 0.40, 0.80)
_CLOUD = _c(0.88, 0.88, 0.9)
_SKY_TINT = _c(0.92, 0.97, 1.08)
_SUN_TINT = _c(1.05, 1.0, 0.92)
_NIGHT_SKY = _c(0.004, 0.005, 0.010)
_NIGHT_GLOW = _c(0.030, 0.020, 0.012)
_NIGHT_AMBIENT = _c(0.8, 0.9, 1.2)
_HEADLIGHT_TINT = _c(1.0, 0.97, 0.9)
