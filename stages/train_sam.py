"""Rule train_sam: a small SAM trained on the reconstructions of the simulated drives (the demo's stand-in for
the official SAM weights, evseg/refine/sam_training.py).

Writes a plain state dict (``sam_<variant>.pth``) that ``psa`` loads through the same strict loader as
``sam_vit_h_4b8939.pth``, ``losses.csv`` (loss and IoU of every step) and ``pictures.png``: reconstruction,
the renderer's segments and the automatic mask generator's masks (with psa.sam.amg) for a few frames. It takes
a few minutes on a CPU, so it has no intermediate checkpoints: a killed run starts again.
"""

import logging

import numpy as np
import pandas as pd
import torch

from evseg.adapt.data import InputSpec, TargetSamples
from evseg.recon.methods import pick_device
from evseg.refine.sam import OFFICIAL_AMG, SAM_VARIANTS, SamMasks, build_sam
from evseg.refine.sam_training import SamTraining, SegmentImages, segment_map, train_sam
from evseg.stage import as_list, run_stage
from evseg.viz import gray, panel, save_rgb

PICTURES = 4  # frames drawn in pictures.png


def colour_segments(segments: np.ndarray, seed: int = 0) -> np.ndarray:
    """An RGB picture of an int map (0 = none, black), one random colour per id."""
    colours = np.random.default_rng(seed).integers(40, 256, size=(int(segments.max()) + 1, 3), dtype=np.uint8)
    colours[0] = 0
    return colours[segments]


def automatic_segments(masks: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """The automatic masks painted in output order (later ones on top) as an id map."""
    canvas = np.zeros(shape, np.int32)
    for k, mask in enumerate(masks, start=1):
        canvas[mask] = k
    return canvas


def main(input, output, params, threads):
    torch.set_num_threads(threads)
    cfg, variant = params.train, params.variant
    # The segments come from the 19-class labels, which are finer than the 11 segmented classes.
    dsec = {**params.dsec, "num_classes": 19}
    samples = TargetSamples.from_folders(as_list(input.drives), dsec, InputSpec.from_config(params.input, True),
                                         as_list(input.reconstructions))
    images = [samples.reconstruction(i) for i in range(len(samples))]
    labels = [samples.label(i) for i in range(len(samples))]
    training = SamTraining(**{k: v for k, v in cfg.items() if k != "enabled"})
    data = SegmentImages(images, labels, SAM_VARIANTS[variant].image_size, training.min_segment_pixels)
    logging.info("%d frames of %d simulated drives, %d segments to prompt", len(data), len(as_list(input.drives)),
                 sum(len(c) for c in data.choices))

    torch.manual_seed(training.seed)
    sam = build_sam(SAM_VARIANTS[variant]).to(pick_device(params.device))
    history = train_sam(sam, data, training)
    sam.eval()
    torch.save({k: v.cpu() for k, v in sam.state_dict().items()}, output.checkpoint)
    pd.DataFrame(history).round(5).to_csv(output.losses, index=False)

    masks = SamMasks(sam, **params.amg)
    rows = []
    for i in np.linspace(0, len(images) - 1, min(PICTURES, len(images))).round().astype(int):
        masks.set_image(images[i])
        found = masks.automatic()
        rows.append([gray(images[i]), colour_segments(segment_map(labels[i])),
                     colour_segments(automatic_segments(found, images[i].shape))])
        logging.info("frame %s: %d automatic masks", samples.ids[i], len(found))
    settings = "official settings" if not params.amg else f"{ {**OFFICIAL_AMG, **params.amg} }"
    save_rgb(output.pictures, panel(rows, ["reconstruction", "renderer's segments",
                                           f"automatic masks ({settings})"]))


run_stage(main, globals())
