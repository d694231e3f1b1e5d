"""evseg: semantic segmentation for event cameras without event labels.

The library behind the Snakemake pipeline. One concept per module:

- ``evseg.events``  DSEC ``events.h5`` slicing, rectification, voxel grids
- ``evseg.data``    DSEC-Semantic and Cityscapes datasets, class tables
- ``evseg.synth``   the synthetic benchmark written in the official layouts
- ``evseg.viz``     pictures for humans (event frames, label colours, panels)
"""

__version__ = "0.1.0"
