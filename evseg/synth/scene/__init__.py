"""Procedural street scenes and their ray-cast rendering, in a day and a night style.

A `Street` is plain data: a ground layout (road, sidewalks, terrain, cross streets,
lane markings) and a table of axis-aligned boxes (buildings, walls, fences, poles,
signs, traffic lights, trees, vehicles, people), each with a Cityscapes class, a
material and a few random numbers that fix its look.

`render` casts one ray per sample (u, v) of a pinhole camera standing on the street,
keeps the nearest hit (a z-buffer on the ray parameter, which is also the camera
depth) and shades it from the WORLD coordinates of the hit.  Textures are therefore
glued to the scene, which is what an event camera moving through it needs, and the
output is a pure function of (street, camera, pose, uv, time, style).

The two styles share the geometry and hence the labels; only appearance differs:
  "day"    sun and sky light, facade shadows on the street, haze, texture set A;
  "night"  dark sky, street lamps, the ego car's headlights, lit windows, car lights,
           texture set B (other patterns and frequencies), another brightness
           order of the classes.

World frame: x to the right, y up, z forward along the street; the ground is y = 0.

Modules: `street` (the Street data and its random generation), `cast` (the camera's
rays and the nearest hit per sample), `noise` (world-anchored, anti-aliased texture
primitives), `materials` (textures and colours per ground class and box material) and
`shade` (`render`: materials, then day or night lighting).
"""

from evseg.synth.scene.cast import FAR_M, NEAR_M, Camera
from evseg.synth.scene.shade import pixel_grid, render
from evseg.synth.scene.street import (
    BICYCLE, BUILDING, BUS, CAR, EGO_CORRIDOR_M, FENCE, M_BIKE, M_BUILDING, M_BUS, M_CANOPY, M_CAR,
    M_CLOTHES, M_FENCE, M_GLASS, M_HEAD, M_HEDGE, M_LAMP, M_LIGHT, M_POLE, M_SIGN, M_TRUCK, M_TRUNK,
    M_WALL, MOTORCYCLE, PERSON, POLE, RIDER, ROAD, SH_BIKE_X, SH_BIKE_Z, SH_BOX, SH_DISC, SH_ELLIPSOID,
    SIDEWALK, SKY, STYLES, TERRAIN, TRAFFIC_LIGHT, TRAFFIC_SIGN, TRAIN, TRUCK, VEGETATION, VOID, WALL,
    Street, random_street,
)

# internals that tests/test_scene.py reaches as scene._cast, scene._boxes_at, scene._GROUND
from evseg.synth.scene.cast import _GROUND, _boxes_at, _cast  # noqa: F401

__all__ = [
    "STYLES", "Camera", "Street", "random_street", "pixel_grid", "render",
    "NEAR_M", "FAR_M", "EGO_CORRIDOR_M",
    "ROAD", "SIDEWALK", "BUILDING", "WALL", "FENCE", "POLE", "TRAFFIC_LIGHT", "TRAFFIC_SIGN",
    "VEGETATION", "TERRAIN", "SKY", "PERSON", "RIDER", "CAR", "TRUCK", "BUS", "TRAIN", "MOTORCYCLE",
    "BICYCLE", "VOID",
    "M_BUILDING", "M_WALL", "M_FENCE", "M_HEDGE", "M_POLE", "M_LAMP", "M_LIGHT", "M_SIGN", "M_TRUNK",
    "M_CANOPY", "M_CAR", "M_GLASS", "M_TRUCK", "M_BUS", "M_CLOTHES", "M_HEAD", "M_BIKE",
    "SH_BOX", "SH_ELLIPSOID", "SH_DISC", "SH_BIKE_X", "SH_BIKE_Z",
]
