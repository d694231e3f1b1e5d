"""Ray casting: which primitive each camera sample sees, and at what depth.

The pinhole `Camera`, its rays at a pose, culling of the box table to pixel blocks,
box / ellipsoid / silhouette intersection, the z-buffer on the ray parameter, and the
class layout of the ground.  Kept apart from shading, which only reads the hits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evseg.synth.scene.noise import _noise
from evseg.synth.scene.street import (
    ROAD, SH_BIKE_X, SH_BIKE_Z, SH_BOX, SH_DISC, SH_ELLIPSOID, SIDEWALK, TERRAIN,
)

NEAR_M = 0.5    # nothing closer to the camera (in depth) is drawn
FAR_M = 90.0    # boxes beyond this depth are culled; the ground and sky are not

_GROUND, _SKY = -1, -2   # primitive ids besides box indices


# ----------------------------------------------------------------------------- camera

@dataclass
class Camera:
    fx: float
    fy: float
    cx: float
    cy: float
    height_m: float = 1.4

    @classmethod
    def for_resolution(cls, width: int, height: int) -> "Camera":
        """75 deg horizontal FOV, square pixels, horizon 8 % of the height above centre
        (like a car camera pitched a little down, as in Cityscapes)."""
        f = 0.5 * width / np.tan(np.deg2rad(75.0) / 2)
        return cls(float(f), float(f), (width - 1) / 2.0, (height - 1) / 2.0 - 0.08 * height)


# ----------------------------------------------------------------------------- casting

@dataclass
class _Rays:
    o: tuple            # camera centre (x, y, z)
    d: tuple            # ray directions (dx, dy, dz), (H, W) each, camera-depth normalised
    inv: tuple          # 1 / d
    norm: np.ndarray    # |d|
    # Monotone bounds of the sampling grid, for culling with searchsorted: row_hi[r]
    # = max v over rows <= r, row_lo[r] = min v over rows >= r (same for columns).
    # Any sample with v in [a, b] lies in rows [searchsorted(row_hi, a),
    # searchsorted(row_lo, b, "right")), for any grid, distorted or not.
    row_hi: np.ndarray
    row_lo: np.ndarray
    col_hi: np.ndarray
    col_lo: np.ndarray


def _rays(cam, pose, uv):
    x, z, yaw = (float(p) for p in pose)
    uv = np.asarray(uv, np.float32)
    a = (uv[..., 0] - cam.cx) / cam.fx
    b = -(uv[..., 1] - cam.cy) / cam.fy
    c, s = np.cos(yaw), np.sin(yaw)
    # d = R_yaw (a, b, 1): its camera-frame z is 1, so the ray parameter is the depth.
    d = [c * a + s, b, c - s * a]
    for arr in d:    # no exact zeros: keeps 1/d finite-signed and 0 * inf out of the slabs
        arr[np.abs(arr) < 1e-7] = 1e-7
    d = tuple(arr.astype(np.float32) for arr in d)
    v, u = uv[..., 1], uv[..., 0]
    return _Rays(o=(x, cam.height_m, z), d=d, inv=tuple(1.0 / arr for arr in d),
                 norm=np.sqrt(d[0] ** 2 + d[1] ** 2 + d[2] ** 2),
                 row_hi=np.maximum.accumulate(v.max(1)), row_lo=np.minimum.accumulate(v.min(1)[::-1])[::-1],
                 col_hi=np.maximum.accumulate(u.max(0)), col_lo=np.minimum.accumulate(u.min(0)[::-1])[::-1])


def _boxes_at(st, time_s):
    bx = st.boxes.copy()
    bx[:, 4:6] += (st.box_vz * np.float32(time_s))[:, None]
    return bx


def _cull(bx, cam, pose, rays):
    """Indices of boxes within [NEAR, FAR] depth and the pixel block (r0, r1, c0, c1)
    of the sampling grid that can see each one (from the projected, near-clipped box)."""
    x, z, yaw = (float(p) for p in pose)
    c, s = np.cos(yaw), np.sin(yaw)
    margin = 1.0 + 100.0 * abs(s)                     # depth differs from z - z_cam by less
    idx = np.flatnonzero((bx[:, 5] > z + NEAR_M - margin) & (bx[:, 4] < z + FAR_M + margin))
    b = bx[idx].T
    # the 4 corners of the footprint in the camera's ground plane (lateral, depth)
    X = np.stack([b[0], b[1], b[1], b[0]]) - x
    Z = np.stack([b[4], b[4], b[5], b[5]]) - z
    xc, zc = c * X - s * Z, s * X + c * Z
    keep = (zc.max(0) > NEAR_M) & (zc.min(0) < FAR_M)
    idx, b, xc, zc = idx[keep], b[:, keep], xc[:, keep], zc[:, keep]
    # where the 4 footprint edges cross the near plane (vertical edges never do)
    xn, zn = np.roll(xc, -1, 0), np.roll(zc, -1, 0)
    cross = (zc - NEAR_M) * (zn - NEAR_M) < 0
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(cross, (NEAR_M - zc) / (zn - zc), 0.0)
    px = np.concatenate([xc, xc + f * (xn - xc)])     # 8 candidate points ...
    pz = np.concatenate([np.maximum(zc, NEAR_M), np.full_like(zc, NEAR_M)])
    ok = np.concatenate([zc > NEAR_M, cross])         # ... of which these are real
    u = cam.cx + cam.fx * px / pz
    inv_z = cam.fy / pz
    v_top = cam.cy - (b[3] - cam.height_m) * inv_z    # the box top and bottom at each point
    v_bot = cam.cy - (b[2] - cam.height_m) * inv_z
    umin, umax = np.where(ok, u, np.inf).min(0), np.where(ok, u, -np.inf).max(0)
    vmin = np.where(ok, v_top, np.inf).min(0)
    vmax = np.where(ok, v_bot, -np.inf).max(0)
    r0, r1 = np.searchsorted(rays.row_hi, vmin, "left"), np.searchsorted(rays.row_lo, vmax, "right")
    c0, c1 = np.searchsorted(rays.col_hi, umin, "left"), np.searchsorted(rays.col_lo, umax, "right")
    seen = (r0 < r1) & (c0 < c1)
    return idx[seen], np.stack([r0, r1, c0, c1], 1)[seen]


def _hit_box(b, o, ix, iy, iz):
    """Slab test: entry parameter and hit mask of the rays (inverse directions
    ix, iy, iz) against box b = (x0, x1, y0, y1, z0, z1)."""
    t0 = (b[0] - o[0]) * ix
    t1 = (b[1] - o[0]) * ix
    tn, tf = np.minimum(t0, t1), np.maximum(t0, t1)
    t0 = (b[2] - o[1]) * iy
    t1 = (b[3] - o[1]) * iy
    np.maximum(tn, np.minimum(t0, t1), out=tn)
    np.minimum(tf, np.maximum(t0, t1), out=tf)
    t0 = (b[4] - o[2]) * iz
    t1 = (b[5] - o[2]) * iz
    np.maximum(tn, np.minimum(t0, t1), out=tn)
    np.minimum(tf, np.maximum(t0, t1), out=tf)
    return tn, (tn <= tf) & (tn > NEAR_M)


def _hit_ellipsoid(b, o, d):
    """Ray vs the ellipsoid inscribed in box b (tree canopies)."""
    c = ((b[0] + b[1]) / 2, (b[2] + b[3]) / 2, (b[4] + b[5]) / 2)
    r = ((b[1] - b[0]) / 2, (b[3] - b[2]) / 2, (b[5] - b[4]) / 2)
    oc = [(o[i] - c[i]) / r[i] for i in range(3)]
    ds = [d[i] * (1.0 / r[i]) for i in range(3)]
    qa = ds[0] ** 2 + ds[1] ** 2 + ds[2] ** 2
    qb = oc[0] * ds[0] + oc[1] * ds[1] + oc[2] * ds[2]
    qc = oc[0] ** 2 + oc[1] ** 2 + oc[2] ** 2 - 1.0
    disc = qb * qb - qa * qc
    t = (-qb - np.sqrt(np.maximum(disc, 0.0))) / qa
    return t, (disc > 0) & (t > NEAR_M)


def _leafy_rim(b, o, d, t, fp_scale, seed):
    """Ragged, leafy canopy silhouette: near the rim, world-anchored noise at the hit
    point decides whether the ray is caught by leaves."""
    c = ((b[0] + b[1]) / 2, (b[2] + b[3]) / 2, (b[4] + b[5]) / 2)
    r = ((b[1] - b[0]) / 2, (b[3] - b[2]) / 2, (b[5] - b[4]) / 2)
    p = [o[i] + t * d[i] for i in range(3)]
    # closest approach of the ray to the centre (scaled space): 0 centre, 1 rim
    oc = [(o[i] - c[i]) / r[i] for i in range(3)]
    ds = [d[i] * (1.0 / r[i]) for i in range(3)]
    qa = ds[0] ** 2 + ds[1] ** 2 + ds[2] ** 2
    qb = oc[0] * ds[0] + oc[1] * ds[1] + oc[2] * ds[2]
    m = (oc[0] ** 2 + oc[1] ** 2 + oc[2] ** 2) - qb * qb / qa
    leaf = _noise(p[0] + p[2] + seed, p[1], 0.09, t * fp_scale)
    return m < 0.88 - 0.12 * leaf


def _mask(shape, b, o, d, t, heading):
    """Silhouettes cut out of a face plane: round signs, bicycles (profile in x or z).
    Elementwise: b (6 box bounds) and heading may be scalars or per-ray arrays."""
    if shape == SH_DISC:
        px, py = o[0] + t * d[0], o[1] + t * d[1]
        rx, ry = (b[1] - b[0]) / 2, (b[3] - b[2]) / 2
        return ((px - (b[0] + b[1]) / 2) / rx) ** 2 + ((py - (b[2] + b[3]) / 2) / ry) ** 2 < 1.0
    py = o[1] + t * d[1] - b[2]
    if shape == SH_BIKE_X:
        a, length = o[0] + t * d[0] - b[0], b[1] - b[0]
    else:
        a, length = o[2] + t * d[2] - b[4], b[5] - b[4]
    a = np.where(np.asarray(heading) < 0, length - a, a)   # the bike points the other way
    return _bike_profile(a, py, length)


def _bike_profile(a, y, length):
    """Bicycle seen from the side: two tyres, a frame, saddle and handlebar."""
    r = 0.33
    w1 = np.hypot(a - 0.36, y - r)
    w2 = np.hypot(a - (length - 0.36), y - r)
    tyres = (np.abs(w1 - r + 0.03) < 0.055) | (np.abs(w2 - r + 0.03) < 0.055)
    hubs = (w1 < 0.06) | (w2 < 0.06)
    top = (y > 0.72) & (y < 0.8) & (a > 0.62) & (a < length - 0.55)
    seat = (np.abs(a - 0.66) < 0.04) & (y > r) & (y < 0.9)
    saddle = (y > 0.86) & (y < 0.94) & (np.abs(a - 0.62) < 0.13)
    fork = (np.abs(a - (length - 0.45 + 0.09 * (1.0 - y))) < 0.04) & (y > r) & (y < 1.0)
    bar = (y > 0.96) & (y < 1.03) & (np.abs(a - (length - 0.42)) < 0.14)
    chain = (np.abs(y - r) < 0.03) & (a > 0.36) & (a < 0.7)
    down = (np.abs(y - (r + (a - 0.66) / (length - 1.1) * 0.42)) < 0.04) & (a > 0.66) & (a < length - 0.44)
    return tyres | hubs | top | seat | saddle | fork | bar | chain | down


_SMALL_BLOCK = 1024    # primitives seen by fewer pixels are intersected together, in one pass
_MASKED = (SH_DISC, SH_BIKE_X, SH_BIKE_Z)


def _cast_small(st, bx, idx, blocks, o, rays, t, prim, fp_scale):
    """Intersect many small primitives at once over all their (primitive, pixel)
    pairs: per-primitive numpy calls would cost more in overhead than in arithmetic."""
    if not len(idx):
        return
    r0, r1, c0, c1 = blocks.T
    w = c1 - c0
    cnt = (r1 - r0) * w
    owner = np.repeat(np.arange(len(idx)), cnt)
    off = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    pix = (r0[owner] + off // w[owner]) * t.shape[1] + c0[owner] + off % w[owner]
    b = bx[idx][owner]
    shapes = st.box_shape[idx][owner]
    tn = np.empty(len(pix), np.float32)
    ok = np.empty(len(pix), bool)
    ell = shapes == SH_ELLIPSOID
    for sel, is_ell in ((np.flatnonzero(~ell), False), (np.flatnonzero(ell), True)):
        if is_ell:
            tn[sel], ok[sel] = _hit_ellipsoid(b[sel].T, o, [a.ravel()[pix[sel]] for a in rays.d])
        else:
            tn[sel], ok[sel] = _hit_box(b[sel].T, o, *[a.ravel()[pix[sel]] for a in rays.inv])
    tf = t.ravel()
    ok &= tn < tf[pix]
    for shp in _MASKED + (SH_ELLIPSOID,):     # silhouettes, on candidate pairs only
        sel = np.flatnonzero(ok & (shapes == shp))
        if len(sel):
            d = [a.ravel()[pix[sel]] for a in rays.d]
            k = idx[owner[sel]]
            if shp == SH_ELLIPSOID:
                ok[sel] = _leafy_rim(b[sel].T, o, d, tn[sel], fp_scale, st.box_rnd[k, 3] * 97.0)
            else:
                ok[sel] = _mask(shp, b[sel].T, o, d, tn[sel], st.box_heading[k])
    cand = np.flatnonzero(ok)
    if not len(cand):
        return
    # nearest candidate per pixel: z-buffer by unbuffered minimum, then the winners
    pc, tc = pix[cand], tn[cand]
    np.minimum.at(tf, pc, tc)
    win = cand[tc == tf[pc]]
    prim.ravel()[pix[win]] = idx[owner[win]]


def _cast(st, cam, pose, uv, time_s):
    """Nearest hit per sample: (rays, t (H, W) camera depth, prim (H, W) int32 —
    box index, _GROUND or _SKY, boxes at time_s)."""
    rays = _rays(cam, pose, uv)
    shape = rays.d[0].shape
    t = np.full(shape, np.inf, np.float32)
    prim = np.full(shape, _SKY, np.int32)
    down = rays.d[1] < 0
    t[down] = (cam.height_m / -rays.d[1])[down]
    prim[down] = _GROUND
    bx = _boxes_at(st, time_s)
    idx, blocks = _cull(bx, cam, pose, rays)
    o = rays.o
    fp_scale = 1.0 / cam.fx
    shapes = st.box_shape[idx]
    area = (blocks[:, 1] - blocks[:, 0]) * (blocks[:, 3] - blocks[:, 2])
    small = area <= _SMALL_BLOCK
    _cast_small(st, bx, idx[small], blocks[small], o, rays, t, prim, fp_scale)
    big = ~small
    for i, b, (r0, r1, c0, c1), shp in zip(idx[big].tolist(), bx[idx[big]].tolist(),
                                           blocks[big].tolist(), shapes[big].tolist()):
        sl = (slice(r0, r1), slice(c0, c1))
        tb = t[sl]
        if shp == SH_ELLIPSOID:
            tn, ok = _hit_ellipsoid(b, o, [a[sl] for a in rays.d])
        else:
            tn, ok = _hit_box(b, o, rays.inv[0][sl], rays.inv[1][sl], rays.inv[2][sl])
        ok &= tn < tb
        if shp != SH_BOX:     # silhouettes: evaluated on the candidate pixels only
            cand = np.nonzero(ok)
            d = [a[sl][cand] for a in rays.d]
            if shp == SH_ELLIPSOID:
                keep = _leafy_rim(b, o, d, tn[cand], fp_scale, float(st.box_rnd[i, 3]) * 97.0)
            else:
                keep = _mask(shp, b, o, d, tn[cand], st.box_heading[i])
            ok[cand] = keep
        np.copyto(tb, tn, where=ok)
        np.copyto(prim[sl], i, where=ok)
    return rays, t, prim, bx


def _ground_labels(st, x, z):
    right = x >= 0
    off = np.where(right, x - st.road_half[1], -x - st.road_half[0])
    sw = np.where(right, st.sidewalk[1], st.sidewalk[0])
    lab = np.where(off <= 0, ROAD, np.where(off <= sw, SIDEWALK, TERRAIN)).astype(np.uint8)
    if len(z):
        lo, hi = z.min(), z.max()
        for x0, x1, z0, z1, c in st.ground_rects.tolist():
            if z1 > lo and z0 < hi:
                lab[(z >= z0) & (z < z1) & (x >= x0) & (x < x1)] = int(c)
    return lab, off
