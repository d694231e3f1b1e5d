"""The procedural street scene and its ray-cast renderer (evseg.synth.scene)."""

import dataclasses

import numpy as np
import pytest

from evseg.synth import scene
from evseg.synth.scene import STYLES, Camera, pixel_grid, random_street, render

W, H = 256, 128
ESS_CLASSES = {0, 1, 2, 3, 4, 5, 7, 8, 10, 11, 13}   # road ... car: the 11 common DSEC/ESS classes


@pytest.fixture(scope="module")
def cam():
    return Camera.for_resolution(W, H)


@pytest.fixture(scope="module")
def street():
    return random_street(np.random.default_rng(3), 120.0, "day")


def open_street(street):
    """The same ground layout with every box removed: an open area to the horizon."""
    empty = {f.name: getattr(street, f.name)[:0] for f in dataclasses.fields(street) if f.name.startswith("box")}
    return dataclasses.replace(street, **empty)


def test_camera_and_grid(cam):
    assert 70 < np.degrees(2 * np.arctan(W / 2 / cam.fx)) < 80
    assert abs(cam.cx - (W - 1) / 2) < 1 and H * 0.3 < cam.cy < (H - 1) / 2   # horizon above centre
    uv = pixel_grid(W, H)
    assert uv.shape == (H, W, 2) and uv.dtype == np.float32
    assert uv[5, 7].tolist() == [7.0, 5.0]


def test_ground_depth_is_analytic(cam, street):
    """Below the horizon, with yaw 0 at the origin, the ground is hit at depth fy * h / (v - cy)."""
    uv = pixel_grid(W, H)
    _, t, prim, _ = scene._cast(open_street(street), cam, (0.0, 0.0, 0.0), uv, 0.0)
    v = uv[..., 1]
    below = v > cam.cy + 1
    assert (prim[below] == scene._GROUND).all()
    np.testing.assert_allclose(t[below], cam.fy * cam.height_m / (v[below] - cam.cy), rtol=1e-5)
    _, label = render(open_street(street), cam, (0.0, 0.0, 0.0), uv, 0.0, "day")
    assert label[-1, W // 2] == scene.ROAD   # 3.2 m straight ahead of the centre line


def test_sky_above_horizon_and_road_below(cam, street):
    uv = pixel_grid(W, H)
    _, label = render(open_street(street), cam, (0.0, 10.0, 0.02), uv, 0.0, "day")
    assert (label[: int(cam.cy) - 3] == scene.SKY).all()
    for seed in range(4):
        st = random_street(np.random.default_rng(seed), 80.0, "night")
        for z in (0.0, 25.0, 50.0):
            _, label = render(st, cam, (0.0, z, 0.0), uv, z / 10.0, "night")
            assert label[H - 1, W // 2] == scene.ROAD, (seed, z)


def test_deterministic_and_seed_dependent(cam, street):
    uv = pixel_grid(W, H)
    pose = (0.7, 33.0, -0.02)
    a = render(street, cam, pose, uv, 1.5, "night")
    b = render(random_street(np.random.default_rng(3), 120.0, "day"), cam, pose, uv, 1.5, "night")
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    other = random_street(np.random.default_rng(4), 120.0, "day")
    assert other.boxes.shape != street.boxes.shape or not np.array_equal(other.boxes, street.boxes)
    assert not np.array_equal(render(other, cam, pose, uv, 1.5, "night")[1], a[1])


def test_texture_is_anchored_to_the_world(cam, street):
    """Moving forward by dz, the ground texture seen at (u, v1) reappears where the pinhole
    projection puts the same world point, and not half a pixel or a pixel away from it."""
    st, dz, x0 = open_street(street), 0.6, 0.3
    u = np.linspace(60, 196, 69, dtype=np.float32)
    v1 = np.linspace(cam.cy + 12, H - 8, 24, dtype=np.float32)
    uu, vv = np.meshgrid(u, v1)
    depth = cam.fy * cam.height_m / (vv - cam.cy)                  # ground points seen in frame 1
    x = x0 + (uu - cam.cx) / cam.fx * depth
    v2 = cam.cy + cam.fy * cam.height_m / (depth - dz)             # ... and where frame 2 sees them
    u2 = cam.cx + cam.fx * (x - x0) / (depth - dz)
    before, _ = render(st, cam, (x0, 0.0, 0.0), np.stack([uu, vv], -1), 0.0, "day")
    errors = {}
    for shift in (-1.0, -0.5, 0.0, 0.5, 1.0):
        after, _ = render(st, cam, (x0, dz, 0.0), np.stack([u2, v2 + shift], -1), 0.0, "day")
        errors[shift] = np.abs(np.log(after) - np.log(before)).mean()
    assert min(errors, key=errors.get) == 0.0, errors
    assert errors[0.0] < 0.3 * min(errors[-1.0], errors[1.0]), errors
    assert errors[0.0] < 0.5 * min(errors[-0.5], errors[0.5]), errors


def test_all_ess_classes_appear_along_a_street(cam):
    st = random_street(np.random.default_rng(11), 120.0, "night")
    uv = pixel_grid(W, H)
    seen = set()
    for k in range(30):
        z = 4.0 * k
        _, label = render(st, cam, (0.6 * np.sin(k), z, 0.03 * np.cos(k)), uv, z / 9.0, "night")
        seen |= set(np.unique(label).tolist())
    assert ESS_CLASSES <= seen, sorted(ESS_CLASSES - seen)
    assert seen <= set(range(19)) | {255}


def test_day_and_night_share_labels_not_brightness(cam, street):
    uv = pixel_grid(W, H)
    means = {}
    labels = {}
    for style in STYLES:
        rgb, label = render(street, cam, (-0.5, 18.0, 0.01), uv, 2.0, style)
        assert rgb.dtype == np.float32 and rgb.shape == (H, W, 3)
        assert rgb.min() >= 0.0 and rgb.max() <= 1.0
        assert label.dtype == np.uint8 and label.shape == (H, W)
        means[style], labels[style] = rgb.mean(), label
    assert np.array_equal(labels["day"], labels["night"])
    assert means["night"] < 0.35 * means["day"]
    assert 0.02 < means["night"] < 0.2


def test_distorted_grid_and_moving_objects(cam, street):
    """A lens-distorted grid reaching outside the image just samples more rays; cars and
    people move with time while the street stays put."""
    uv = pixel_grid(W, H)
    c = np.array([cam.cx, cam.cy], np.float32)
    r2 = (((uv - c) / cam.fx) ** 2).sum(-1, keepdims=True)
    warped = c + (uv - c) * (1 + 0.15 * r2)                         # barrel: corners land outside
    assert warped[..., 0].min() < 0 and warped[..., 0].max() > W - 1
    rgb, label = render(street, cam, (0.0, 5.0, 0.0), warped, 0.0, "night")
    assert rgb.shape == (H, W, 3) and np.isfinite(rgb).all()
    moving = street.box_vz != 0
    assert moving.any() and (street.box_vz == 0).any()
    a = scene._boxes_at(street, 0.0)
    b = scene._boxes_at(street, 2.0)
    assert np.array_equal(a[~moving], b[~moving])
    np.testing.assert_allclose(b[moving, 4] - a[moving, 4], 2.0 * street.box_vz[moving], atol=1e-4)


def test_slow_traffic_keeps_out_of_the_ego_corridor():
    """Callers weave the camera around the centre line: only cars faster than any ego
    speed (lead cars ahead) may share that band, so the camera never drives into one."""
    for seed in range(20):
        st = random_street(np.random.default_rng(seed), 80.0, "night")
        slow = (st.box_vz != 0) & (st.box_vz < 12.0)
        inside = (st.boxes[:, 1] > -scene.EGO_CORRIDOR_M) & (st.boxes[:, 0] < scene.EGO_CORRIDOR_M)
        assert not (slow & inside).any(), seed
        lead = (st.box_vz >= 12.0) & inside
        assert (st.boxes[lead, 4] >= 20.0).all()
        # and driving vehicles never share a lateral band with parked ones
        vehicles = np.isin(st.box_cls, [scene.CAR, scene.TRUCK, scene.BUS])
        moving, parked = st.boxes[vehicles & (st.box_vz != 0)], st.boxes[vehicles & (st.box_vz == 0)]
        overlap = (moving[:, None, 0] < parked[None, :, 1]) & (moving[:, None, 1] > parked[None, :, 0])
        assert not overlap.any(), seed


def test_style_does_not_change_geometry():
    a = random_street(np.random.default_rng(8), 50.0, "day")
    b = random_street(np.random.default_rng(8), 50.0, "night")
    assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.ground_rects, b.ground_rects)
    with pytest.raises(ValueError):
        random_street(np.random.default_rng(8), 50.0, "dusk")
