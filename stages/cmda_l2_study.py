"""Rule cmda_l2_study: each L2 variant's test mIoU against CMDA without it (l2_study.csv, seeds paired), and the
logged L2 terms along training (l2_terms.png)."""

from pathlib import Path

from evseg.cmda import results
from evseg.stage import as_list, run_stage


def main(input, output, params, threads):
    table = results.evaluations(as_list(input.metrics))
    results.l2_study(table).round(4).to_csv(output.table, index=False)
    training: dict[str, dict[int, str]] = {}
    for path in as_list(input.training):  # cmda/train/<model>/seed<seed>/metrics.csv
        seed_dir = Path(path).parent
        training.setdefault(seed_dir.parent.name, {})[int(seed_dir.name.removeprefix("seed"))] = path
    results.l2_terms_figure(training, output.terms)


run_stage(main, globals())
