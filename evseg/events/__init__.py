"""Event data: DSEC ``events.h5`` slicing, rectification and dense representations."""

from evseg.events.rectify import DSEC_SENSOR_SIZE, load_rectify_map, rectify_events
from evseg.events.representations import e2vid_normalize, e2vid_voxel_grid, ess_event_tensor, voxel_grid
from evseg.events.slicer import EventSlicer, Events

__all__ = ["DSEC_SENSOR_SIZE", "EventSlicer", "Events", "e2vid_normalize", "e2vid_voxel_grid",
           "ess_event_tensor", "load_rectify_map", "rectify_events", "voxel_grid"]
