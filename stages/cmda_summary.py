"""Rule cmda_summary: one row per evaluated CMDA model and seed (the 18-class mIoU of its inference output and of
each of its outputs) in summary.csv, and the mean and spread per model in summary_means.csv."""

from evseg.cmda import results
from evseg.stage import as_list, run_stage


def main(input, output, params, threads):
    table = results.evaluations(as_list(input.metrics))
    table.round(4).to_csv(output.summary, index=False)
    results.means(table).round(4).to_csv(output.means)


run_stage(main, globals())
