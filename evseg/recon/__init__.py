"""Event-to-image reconstruction: E2VID and FireNet (official checkpoints), the training-free high-pass
filter, E2VID's post-processing, and the drivers that run any of them over a DSEC sequence."""
