"""Rule dsec_sequence: one DSEC-Semantic sequence folder from its archives, in the raw label layout:
events/left/{events.h5, rectify_map.h5}, {11,19}classes/, <seq>_semantic_timestamps.txt, and with
download.dsec_images also images/left/rectified/ and images/timestamps.txt."""

from pathlib import Path

from evseg.fetch.dsec import assemble_sequence
from evseg.stage import as_list, run_stage


def main(input, output, params, threads):
    images = (input.images, input.image_timestamps) if hasattr(input, "images") else None
    assemble_sequence(Path(as_list(output)[0]), input.events, input.labels, images)


run_stage(main, globals())
