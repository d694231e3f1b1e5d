"""Rule unpack: archives into one new folder (Cityscapes' zips into its root, a DSEC-Semantic label archive)."""

from evseg.fetch.archives import unpack_all
from evseg.stage import as_list, run_stage


def main(input, output, params, threads):
    unpack_all(as_list(input.archives), as_list(output)[0])


run_stage(main, globals())
