"""Rule night_sequence: one DSEC Night-Semantic sequence folder from DSEC's public events and rectified frames and
the authors' archive (warp_images/, labels/), placed by hand in download.night_archive."""

from pathlib import Path

from evseg.fetch.dsec import assemble_night_sequence
from evseg.stage import as_list, run_stage


def main(input, output, params, threads):
    assemble_night_sequence(Path(as_list(output)[0]), input.events, input.images, input.image_timestamps,
                            input.night_archive)


run_stage(main, globals())
