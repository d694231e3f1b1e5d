"""The street as plain data, and its random generation from a seed.

Holds the Cityscapes classes, materials and shapes of the box table, the `Street`
record and `random_street` (layout, buildings, furniture, traffic, people, appearance
draws).  Nothing here renders: any street can be cast and shaded in either style.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STYLES = ("day", "night")

# Cityscapes trainIds.
(ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, TRAFFIC_LIGHT, TRAFFIC_SIGN, VEGETATION,
 TERRAIN, SKY, PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE) = range(19)
VOID = 255

# Materials decide shading; the class of a box is stored separately.
(M_BUILDING, M_WALL, M_FENCE, M_HEDGE, M_POLE, M_LAMP, M_LIGHT, M_SIGN, M_TRUNK,
 M_CANOPY, M_CAR, M_GLASS, M_TRUCK, M_BUS, M_CLOTHES, M_HEAD, M_BIKE) = range(17)

# Shapes: how a box is intersected.  Masks cut a silhouette out of one face plane.
SH_BOX, SH_ELLIPSOID, SH_DISC, SH_BIKE_X, SH_BIKE_Z = range(5)


# ----------------------------------------------------------------------------- street

@dataclass
class Street:
    """One procedurally generated street.  Plain data (floats and numpy arrays).

    Layout: the road spans x in [-road_half[0], road_half[1]], sidewalks of width
    `sidewalk[side]` follow, terrain lies beyond.  `ground_rects` rows
    (x0, x1, z0, z1, trainId) are painted over that base layout in order (terrain
    strips, cross streets).  Boxes rows are (x0, x1, y0, y1, z0, z1) at time 0; a box
    moves along z at `box_vz` m/s.  `appearance[style]` holds what each style draws.
    """
    style: str                 # the domain the street was drawn for (geometry ignores it)
    length_m: float
    z_min: float
    z_max: float
    lane_width: float
    lanes: int                 # lanes per direction
    road_half: np.ndarray      # (2,) kerb distance from x = 0, (left, right)
    sidewalk: np.ndarray       # (2,) sidewalk widths, (left, right)
    ego_x: float               # centre of the first right-hand lane, a natural camera x
    lines: np.ndarray          # (L, 3) lane markings: x centre, width, dashed
    dash_phase: float
    ground_rects: np.ndarray   # (K, 5)
    crosswalks: np.ndarray     # (C, 2) z0, z1 of zebra crossings
    facades: np.ndarray        # (F, 5) side, z0, z1, x_front, height (for sun shadows)
    boxes: np.ndarray          # (N, 6) float32
    box_vz: np.ndarray         # (N,) float32
    box_cls: np.ndarray        # (N,) uint8 trainIds
    box_mat: np.ndarray        # (N,) int8 materials
    box_shape: np.ndarray      # (N,) int8 shapes
    box_heading: np.ndarray    # (N,) int8: +1 the object faces +z, -1 it faces -z
    box_rnd: np.ndarray        # (N, 4) float32 uniforms fixing colours and patterns
    lamps: np.ndarray          # (M, 3) street lamp heads
    appearance: dict           # style -> {name: float | array}


class _Boxes:
    """Accumulates boxes while a street is generated."""

    def __init__(self, rng):
        self.rng = rng
        self.rows = []

    def add(self, x0, x1, y0, y1, z0, z1, cls, mat, shape=SH_BOX, vz=0.0, heading=1, rnd=None):
        rnd = self.rng.random(4) if rnd is None else rnd
        self.rows.append((min(x0, x1), max(x0, x1), y0, y1, min(z0, z1), max(z0, z1),
                          vz, cls, mat, shape, heading, *rnd))


def random_street(rng: np.random.Generator, length_m: float, style: str) -> Street:
    """A street to drive `length_m` metres forward from z = 0 with ~60 m still ahead.

    Geometry and appearance come from two independent child generators, and the
    appearance of BOTH styles is drawn for every street, so `style` never changes the
    layout (nor its statistics) and any street can be rendered in either style; the
    argument only records the domain the street was drawn for.
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    geo_seed, app_seed = (int(s) for s in rng.integers(0, 2**62, size=2))
    g = np.random.default_rng(geo_seed)
    z_min, z_max = -20.0, float(length_m) + 110.0
    lay = _draw_layout(g, z_min, z_max)
    boxes = _Boxes(g)
    facades = _add_buildings(g, lay, boxes)
    lamps = _add_furniture(g, lay, boxes)
    _add_vehicles(g, lay, boxes, length_m)
    _add_people(g, lay, boxes)
    rows = np.array(boxes.rows, np.float64).reshape(-1, 15)
    a = np.random.default_rng(app_seed)
    appearance = {s: _draw_appearance(a, s, len(lamps)) for s in STYLES}
    return Street(
        style=style, length_m=float(length_m), z_min=z_min, z_max=z_max,
        lane_width=lay["lane_w"], lanes=lay["lanes"],
        road_half=lay["road"], sidewalk=lay["sw"], ego_x=lay["lane_w"] / 2,
        lines=lay["lines"], dash_phase=lay["dash_phase"],
        ground_rects=np.array(lay["rects"], np.float32).reshape(-1, 5),
        crosswalks=np.array(lay["crosswalks"], np.float32).reshape(-1, 2),
        facades=np.array(facades, np.float32).reshape(-1, 5),
        boxes=rows[:, :6].astype(np.float32), box_vz=rows[:, 6].astype(np.float32),
        box_cls=rows[:, 7].astype(np.uint8), box_mat=rows[:, 8].astype(np.int8),
        box_shape=rows[:, 9].astype(np.int8), box_heading=rows[:, 10].astype(np.int8),
        box_rnd=rows[:, 11:15].astype(np.float32),
        lamps=np.array(lamps, np.float32).reshape(-1, 3), appearance=appearance)


# ----------------------------------------------------------------- street generation

def _draw_layout(g, z_min, z_max):
    """Road and sidewalk widths, lane lines, cross streets, terrain strips."""
    lanes = 1 if g.random() < 0.6 else 2
    lane_w = g.uniform(3.3, 3.9) if lanes == 1 else g.uniform(2.9, 3.5)
    parking = g.random(2) < 0.5                       # parking lane (left, right)
    bike = ~parking & (g.random(2) < 0.5)              # else maybe a bike lane
    road = lanes * lane_w + 2.2 * parking + 1.5 * bike
    sw = g.uniform(2.2, 5.5, size=2)
    lines = [(0.0, 0.12, 1.0)]                         # dashed centre line
    for k in range(1, lanes):                          # dashed lane separators
        lines += [(k * lane_w, 0.12, 1.0), (-k * lane_w, 0.12, 1.0)]
    for s, p in zip((-1, 1), parking | bike):          # solid edge of the driving lanes
        if p:
            lines.append((s * (lanes * lane_w + 0.1), 0.15, 0.0))
    crosses, z = [], g.uniform(35.0, 140.0)
    while z < z_max - 20:
        w = g.uniform(9.0, 15.0)
        crosses.append((z, z + w))
        z += w + g.uniform(80.0, 220.0)
    rects, crosswalks = [], []
    for side in (-1, 1):                               # grass strips between kerb and sidewalk
        if g.random() < 0.55:
            i = 0 if side < 0 else 1
            width = g.uniform(1.0, min(2.0, sw[i] - 0.8))
            x0, x1 = road[i] + 0.25, road[i] + 0.25 + width
            for za, zb in _free_intervals(z_min, z_max, crosses, margin=3.0):
                rects.append((*sorted((side * x0, side * x1)), za, zb, TERRAIN))
    for za, zb in crosses:
        # the cross street's own sidewalks, then its road across everything
        rects.append((-1e4, -road[0], za - sw.mean(), zb + sw.mean(), SIDEWALK))
        rects.append((road[1], 1e4, za - sw.mean(), zb + sw.mean(), SIDEWALK))
        rects.append((-1e4, 1e4, za, zb, ROAD))
        crosswalks.append((za - sw.mean() - 4.0, za - sw.mean() - 0.8))
    return dict(lane_w=lane_w, lanes=lanes, parking=parking, bike=bike, road=road, sw=sw,
                lines=np.array(lines, np.float32), dash_phase=g.uniform(0, 9.0),
                crosses=crosses, rects=rects, crosswalks=crosswalks,
                z_min=z_min, z_max=z_max, strips=[r for r in rects if r[4] == TERRAIN])


def _free_intervals(z0, z1, crosses, margin):
    """[z0, z1] minus the cross streets (grown by `margin`)."""
    out, z = [], z0
    for a, b in crosses:
        if a - margin > z:
            out.append((z, a - margin))
        z = max(z, b + margin)
    if z < z1:
        out.append((z, z1))
    return out


def _in_cross(lay, z, margin=0.0):
    return any(a - margin <= z <= b + margin for a, b in lay["crosses"])


def _add_buildings(g, lay, b):
    """Facade blocks with varied height/setback along both sides, gaps filled with
    fences, walls, hedges and trees.  Returns facade rows for the sun shadows."""
    facades = []
    for i, side in enumerate((-1, 1)):
        edge = lay["road"][i] + lay["sw"][i]           # outer sidewalk edge
        for za, zb in _free_intervals(lay["z_min"], lay["z_max"], lay["crosses"], 0.0):
            z = za
            while z < zb - 0.5:
                if g.random() < 0.25:                  # gap between buildings
                    e = min(z + g.uniform(5.0, 18.0), zb)
                    _fill_gap(g, b, side, edge, z, e)
                    z = e
                    continue
                e = min(z + g.uniform(8.0, 32.0), zb)
                setback = g.uniform(0.5, 4.0) if g.random() < 0.4 else 0.0
                h = float(np.clip(g.lognormal(np.log(13.0), 0.4), 5.0, 32.0))
                xf = side * (edge + setback)
                b.add(xf, xf + side * g.uniform(10.0, 20.0), 0.0, h, z, e, BUILDING, M_BUILDING)
                facades.append((side, z, e, xf, h))
                if setback > 1.0 and g.random() < 0.8:
                    _edge_barrier(g, b, side, edge, z, e, g.choice(3, p=[0.55, 0.25, 0.2]))
                z = e
    return facades


def _edge_barrier(g, b, side, edge, z0, z1, kind):
    """A wall (0), fence (1) or hedge (2) standing on the outer sidewalk edge."""
    z0, z1 = z0 + 0.2, z1 - 0.2
    if z1 - z0 < 1.0:
        return
    x = side * edge
    if kind == 0:
        b.add(x, x + side * 0.3, 0.0, g.uniform(0.8, 2.6), z0, z1, WALL, M_WALL)
    elif kind == 1:
        b.add(x, x + side * 0.05, 0.0, g.uniform(1.0, 2.0), z0, z1, FENCE, M_FENCE)
    else:
        b.add(x, x + side * 0.8, 0.0, g.uniform(0.8, 1.8), z0, z1, VEGETATION, M_HEDGE)


def _fill_gap(g, b, side, edge, z0, z1):
    kind = g.choice(4, p=[0.3, 0.35, 0.2, 0.15])
    if kind < 3:
        _edge_barrier(g, b, side, edge, z0, z1, kind)
    for _ in range(g.poisson((z1 - z0) / 5.0)):        # trees behind the barrier
        _tree(g, b, side * (edge + g.uniform(2.0, 7.0)), g.uniform(z0, z1))


def _tree(g, b, x, z):
    trunk_h = g.uniform(1.8, 3.5)
    r_xz, r_y = g.uniform(1.8, 3.6), g.uniform(1.8, 3.8)
    rnd = g.random(4)
    b.add(x - 0.15, x + 0.15, 0.0, trunk_h + 0.5 * r_y, z - 0.15, z + 0.15, VEGETATION, M_TRUNK, rnd=rnd)
    b.add(x - r_xz, x + r_xz, trunk_h, trunk_h + 2 * r_y, z - r_xz, z + r_xz,
          VEGETATION, M_CANOPY, SH_ELLIPSOID, rnd=rnd)


def _poles_along(g, lay, spacing, margin):
    """Positions along z (both sides) for poles, every `spacing` m outside crossings."""
    out = []
    for side in (-1, 1):
        z = lay["z_min"] + g.uniform(0, spacing[1])
        while z < lay["z_max"]:
            if not _in_cross(lay, z, margin):
                out.append((side, z))
            z += g.uniform(*spacing)
    return out


def _add_furniture(g, lay, b):
    """Street lamps, sign posts, traffic lights, street trees, parked bicycles.
    Returns lamp head positions."""
    road, sw = lay["road"], lay["sw"]
    lamps = []
    one_side = g.random() < 0.3                         # lamps on one side only
    for side, z in _poles_along(g, lay, (22.0, 34.0), 2.0):
        if one_side and side < 0:
            continue
        i = 0 if side < 0 else 1
        x, h, arm = side * (road[i] + 0.45), g.uniform(6.0, 9.0), g.uniform(1.0, 2.2)
        rnd = g.random(4)
        b.add(x - 0.09, x + 0.09, 0.0, h, z - 0.09, z + 0.09, POLE, M_POLE, rnd=rnd)
        b.add(x, x - side * arm, h - 0.12, h, z - 0.05, z + 0.05, POLE, M_POLE, rnd=rnd)
        xl = x - side * arm
        b.add(xl - 0.3, xl + 0.3, h - 0.3, h - 0.1, z - 0.16, z + 0.16, POLE, M_LAMP, rnd=rnd)
        lamps.append((xl, h - 0.35, z))
    for side, z in _poles_along(g, lay, (10.0, 45.0), 4.0):      # sign posts
        i = 0 if side < 0 else 1
        x, h = side * (road[i] + 0.35), g.uniform(2.2, 2.9)
        b.add(x - 0.04, x + 0.04, 0.0, h + 0.1, z - 0.04, z + 0.04, POLE, M_POLE)
        for k in range(1 if g.random() < 0.75 else 2):
            size = g.uniform(0.55, 0.85)
            y0 = h - (k + 1) * (size + 0.08)
            shape = SH_DISC if g.random() < 0.55 else SH_BOX
            b.add(x - size / 2, x + size / 2, y0 + 0.08, y0 + 0.08 + size, z - 0.09, z - 0.06,
                  TRAFFIC_SIGN, M_SIGN, shape)
    for za, zb in lay["crosses"]:
        z = za - sw.mean() - 5.0
        for i, side in enumerate((-1, 1)):
            x = side * (road[i] + 0.5)
            b.add(x - 0.08, x + 0.08, 0.0, 3.6, z - 0.08, z + 0.08, POLE, M_POLE)
            b.add(x - 0.18, x + 0.18, 2.6, 3.55, z - 0.25, z - 0.08, TRAFFIC_LIGHT, M_LIGHT)
            if side > 0 and g.random() < 0.6:          # mast arm over the road
                reach = road[1] * g.uniform(0.4, 0.8)
                b.add(x - 0.12, x + 0.12, 0.0, 6.0, z - 0.12, z + 0.12, POLE, M_POLE)
                b.add(x, x - reach, 5.8, 5.95, z - 0.06, z + 0.06, POLE, M_POLE)
                xt = x - reach + 0.3
                b.add(xt - 0.18, xt + 0.18, 4.8, 5.75, z - 0.25, z - 0.07, TRAFFIC_LIGHT, M_LIGHT)
    for side, z in _poles_along(g, lay, (40.0, 160.0), 10.0):   # railings on the kerb
        i = 0 if side < 0 else 1
        x, length = side * (road[i] + 0.12), g.uniform(5.0, 18.0)
        if not _in_cross(lay, z + length, 10.0):
            b.add(x - 0.03, x + 0.03, 0.0, g.uniform(0.9, 1.15), z, z + length, FENCE, M_FENCE)
    for x0, x1, z0, z1, _ in lay["strips"]:           # street trees in the grass strips
        z = z0 + g.uniform(2.0, 8.0)
        while z < z1 - 2:
            _tree(g, b, 0.5 * (x0 + x1), z)
            z += g.uniform(6.0, 11.0)
    for side, z in _poles_along(g, lay, (25.0, 90.0), 3.0):     # lone trees, bike racks
        i = 0 if side < 0 else 1
        if g.random() < 0.5:
            _tree(g, b, side * (road[i] + sw[i] - 0.6), z)
        elif sw[i] > 2.3:
            for k in range(g.integers(1, 5)):
                x = side * (road[i] + sw[i] - 0.2)
                cls = MOTORCYCLE if g.random() < 0.15 else BICYCLE
                b.add(x, x - side * 1.75, 0.0, 1.05, z + 0.7 * k, z + 0.7 * k + 0.06, cls, M_BIKE, SH_BIKE_X)
    return lamps


def _car(g, b, x, z, heading, vz=0.0):
    """A car: lower body box plus a narrower glass cabin; returns its length."""
    length, width = g.uniform(3.8, 4.9), g.uniform(1.7, 1.95)
    top, roof = g.uniform(0.85, 1.05), g.uniform(1.35, 1.6)
    rnd = g.random(4)
    z0 = z
    b.add(x - width / 2, x + width / 2, 0.05, top, z0, z0 + length, CAR, M_CAR, vz=vz, heading=heading, rnd=rnd)
    front, rear = (1.2, 0.6) if heading > 0 else (0.6, 1.2)   # hood is longer than the boot
    b.add(x - width / 2 + 0.12, x + width / 2 - 0.12, top, roof, z0 + rear, z0 + length - front,
          CAR, M_GLASS, vz=vz, heading=heading, rnd=rnd)
    return length


def _big_vehicle(g, b, x, z, heading, vz, bus):
    """A bus (one long box) or a truck (cab + cargo box); returns its length."""
    rnd = g.random(4)
    if bus:
        length = g.uniform(11.0, 13.0)
        b.add(x - 1.27, x + 1.27, 0.25, 3.1, z, z + length, BUS, M_BUS, vz=vz, heading=heading, rnd=rnd)
        return length
    cargo, cab = g.uniform(5.0, 8.0), 2.2
    zc, zg = (z + cargo, z) if heading > 0 else (z, z + cab)
    b.add(x - 1.2, x + 1.2, 0.3, 2.9, zc, zc + cab, TRUCK, M_TRUCK, vz=vz, heading=heading, rnd=rnd)
    b.add(x - 1.25, x + 1.25, 0.5, g.uniform(3.2, 3.8), zg, zg + cargo, TRUCK, M_TRUCK, vz=vz,
          heading=heading, rnd=np.array([rnd[0], rnd[1], 1.0, rnd[3]]))
    return cargo + cab


# Callers drive the camera anywhere in |x| < EGO_CORRIDOR_M (e.g. weaving around the
# centre line).  Slower or oncoming traffic keeps out of that band, so the camera
# never drives through a vehicle; only lead cars faster than any ego speed use it.
EGO_CORRIDOR_M = 1.75


def _traffic_x(k, lay, side, half_width):
    """|x| of a vehicle in lane k (0 = next to the centre line) kept out of the ego
    corridor and inside the driving lanes (0.1 m over the edge line next to parked cars
    or a bike lane, 0.4 m at a kerb), or None if it does not fit."""
    i = 0 if side < 0 else 1
    x = max((k + 0.5) * lay["lane_w"], EGO_CORRIDOR_M + half_width)
    slack = 0.1 if lay["parking"][i] or lay["bike"][i] else 0.4
    return x if x + half_width <= lay["lanes"] * lay["lane_w"] + slack else None


def _vehicle(g, b, x, z, heading, vz, big_p, x_big=None):
    """A car, or with probability big_p a bus or truck (at x_big if given)."""
    if g.random() < big_p:
        return _big_vehicle(g, b, x if x_big is None else x_big, z, heading, vz, bus=g.random() < 0.5)
    return _car(g, b, x, z, heading, vz)


def _add_vehicles(g, lay, b, length_m):
    """Parked cars in the parking lanes; traffic in both directions that keeps out of
    the ego corridor (except lead cars ahead that are faster than any ego car)."""
    lane_w, lanes, road = lay["lane_w"], lay["lanes"], lay["road"]
    for i, side in enumerate((-1, 1)):
        if not lay["parking"][i]:
            continue
        z = lay["z_min"]
        while z < lay["z_max"]:
            if g.random() < 0.65 and not _in_cross(lay, z, 8.0) and not _in_cross(lay, z + 5, 8.0):
                # a parked truck or bus is wider than the lane: half on the kerb
                z += _vehicle(g, b, side * (road[i] - 1.1), z, side, 0.0, 0.05, side * (road[i] - 0.8))
            z += g.uniform(0.8, 3.0) if g.random() < 0.7 else g.uniform(5.0, 20.0)
    horizon_s = length_m / 6.0 + 5.0                    # long enough for an ego at >= 6 m/s
    for k in range(lanes):                              # oncoming traffic
        x = _traffic_x(k, lay, -1, 1.0)               # cars are at most 1.95 m wide
        x_big = _traffic_x(k, lay, -1, 1.3)
        if x is None:
            continue
        big_p = 0.08 if x_big is not None else 0.0
        z = lay["z_min"] + g.uniform(0, 30)
        while z < lay["z_max"] + 14.0 * horizon_s:
            v = -g.uniform(7.0, 14.0)
            z += _vehicle(g, b, -x, z, -1, v, big_p, None if x_big is None else -x_big) + g.uniform(12.0, 70.0)
    for k in range(1, lanes):                            # same direction, outer lanes
        x = _traffic_x(k, lay, 1, 1.3)
        z = lay["z_min"] - 14.0 * horizon_s
        while x is not None and z < lay["z_max"]:
            z += _vehicle(g, b, x, z, 1, g.uniform(6.0, 13.0), 0.08) + g.uniform(15.0, 80.0)
    z = g.uniform(20.0, 60.0)                            # lead cars in the ego lane
    while z < lay["z_max"]:
        z += _car(g, b, 0.5 * lane_w, z, 1, g.uniform(12.5, 15.0)) + g.uniform(20.0, 120.0)
    for i, side in enumerate((-1, 1)):                  # cyclists in the bike lanes
        if not lay["bike"][i]:
            continue
        x = side * (lanes * lane_w + 0.75)
        for _ in range(g.poisson((lay["z_max"] - lay["z_min"]) / 90.0)):
            z, v = g.uniform(15.0, lay["z_max"]), side * g.uniform(4.0, 6.5)
            _rider(g, b, x, z, v)


def _rider(g, b, x, z, vz):
    rnd = g.random(4)
    heading = 1 if vz > 0 else -1
    b.add(x - 0.04, x + 0.04, 0.0, 1.05, z, z + 1.75, BICYCLE, M_BIKE, SH_BIKE_Z, vz, heading, rnd)
    zs = z + (0.45 if heading > 0 else 0.75)
    b.add(x - 0.22, x + 0.22, 0.8, 1.5, zs, zs + 0.55, RIDER, M_CLOTHES, vz=vz, heading=heading, rnd=rnd)
    b.add(x - 0.1, x + 0.1, 1.5, 1.74, zs + 0.2, zs + 0.42, RIDER, M_HEAD, vz=vz, heading=heading, rnd=rnd)


def _add_people(g, lay, b):
    """Pedestrians on the sidewalks, some in groups.  Walkers (slowly along z) keep to
    a lane clear of the poles and grass strip at the kerb and of the trees and bike
    racks at the outer edge, so that they never walk through them."""
    road, sw = lay["road"], lay["sw"]
    for i, side in enumerate((-1, 1)):
        strip = [max(abs(r[0]), abs(r[1])) for r in lay["strips"] if np.sign(r[0] + r[1]) == side]
        walk_lo = max([road[i] + 0.95] + [x + 0.35 for x in strip])
        walk_hi = road[i] + sw[i] - 2.25
        n = g.poisson((lay["z_max"] - lay["z_min"]) / 9.0)
        for z in g.uniform(lay["z_min"], lay["z_max"], size=n):
            walking = walk_hi > walk_lo and g.random() < 0.35
            if walking:
                x, vz = g.uniform(walk_lo, walk_hi), g.choice([-1, 1]) * g.uniform(0.7, 1.5)
            else:
                x, vz = g.uniform(road[i] + 0.6, road[i] + sw[i] - 0.3), 0.0
            for k in range(1 if g.random() < 0.8 or walking else g.integers(2, 4)):
                _person(g, b, side * (x + 0.6 * k), z + g.uniform(-0.3, 0.3), vz)


def _person(g, b, x, z, vz):
    h, w = g.uniform(1.55, 1.9), g.uniform(0.42, 0.55)
    rnd = g.random(4)
    heading = 1 if vz >= 0 else -1
    b.add(x - w / 2, x + w / 2, 0.0, h - 0.24, z - 0.15, z + 0.15, PERSON, M_CLOTHES, vz=vz, heading=heading, rnd=rnd)
    b.add(x - 0.1, x + 0.1, h - 0.26, h, z - 0.11, z + 0.11, PERSON, M_HEAD, vz=vz, heading=heading, rnd=rnd)


def _draw_appearance(a, style, n_lamps):
    """Style-specific appearance parameters; everything here is plain floats/arrays."""
    out = dict(tex_offset=a.uniform(0, 1000, size=8).astype(np.float32),
               paint=a.uniform(0.5, 0.75))
    if style == "day":
        elev, azim = a.uniform(0.35, 1.0), a.uniform(-np.pi, np.pi)
        out.update(
            sun=np.array([np.cos(elev) * np.sin(azim), np.sin(elev), np.cos(elev) * np.cos(azim)], np.float32),
            sun_int=a.uniform(1.3, 1.9), ambient=a.uniform(0.45, 0.65), haze_m=a.uniform(250, 900),
            clouds=a.uniform(-0.6, 0.4),
            road=np.float32([0.12, 0.12, 0.13]) * np.float32(a.uniform(0.75, 1.3)),
            sidewalk=np.float32([0.34, 0.32, 0.29]) * np.float32(a.uniform(0.75, 1.2)),
            terrain=np.float32([0.13, 0.17, 0.06]) * np.float32(a.uniform(0.8, 1.25)))
    else:
        sodium = a.random() < 0.5
        col = np.where(sodium, [1.0, 0.6, 0.25], [0.85, 0.92, 1.0]) * a.uniform(0.9, 1.1, size=3)
        out.update(
            lamp_on=(a.random(max(n_lamps, 1)) < 0.88), lamp_col=col.astype(np.float32),
            lamp_int=a.uniform(18.0, 32.0), lit_windows=a.uniform(0.08, 0.35),
            headlight=a.uniform(0.05, 0.08), ambient=a.uniform(0.004, 0.01), exposure=a.uniform(7.5, 10.0),
            road=np.float32([0.07, 0.07, 0.075]) * np.float32(a.uniform(0.8, 1.3)),
            sidewalk=np.float32([0.22, 0.22, 0.24]) * np.float32(a.uniform(0.8, 1.2)),
            terrain=np.float32([0.08, 0.1, 0.06]) * np.float32(a.uniform(0.8, 1.2)))
    return out
