"""Rule evaluate_summary: one row per evaluated model, and the pseudo-labels' quality after each refinement step,
in summary.csv."""

import json
from pathlib import Path

import pandas as pd

from evseg.stage import as_list, run_stage


def main(input, output, params, threads):
    rows = []
    for path in as_list(input.metrics):
        metrics = json.loads(Path(path).read_text())
        model_dir = Path(path).parent  # evaluate/<model>/seed<seed>/metrics.json
        rows.append({"model": model_dir.parent.name, "seed": int(model_dir.name.removeprefix("seed")),
                     "miou": metrics["miou"], "miou_absent_as_zero": metrics["miou_absent_as_zero"],
                     "pixel_accuracy": metrics["pixel_accuracy"], "mean_class_accuracy": metrics["mean_class_accuracy"],
                     "samples": metrics["samples"], "input": metrics["input"]})
    seed = None
    for path in as_list(getattr(input, "pseudo_labels", [])):
        quality = json.loads(Path(path).read_text())
        seed = quality["seed"]
        rows.append({"model": "pseudo_labels (train)", "seed": quality["seed"], "miou": quality["miou_labelled"],
                     "pixel_accuracy": quality["pixel_accuracy_labelled"], "samples": quality["samples"],
                     "labelled_share": quality["labelled_share"], "miou_before_threshold": quality["miou_all_pixels"]})
    for path in as_list(getattr(input, "psa", [])):
        quality = json.loads(Path(path).read_text())
        rows.append({"model": f"psa {quality['backend']} (train)", "seed": seed, "miou": quality["miou_labelled"],
                     "pixel_accuracy": quality["pixel_accuracy_labelled"], "samples": quality["samples"],
                     "labelled_share": quality["labelled_share"]})
    for path in as_list(getattr(input, "scc", [])):
        quality = json.loads(Path(path).read_text())
        rows.append({"model": f"scc {quality['rule']} rule (train)", "seed": seed, "miou": quality["miou_labelled"],
                     "pixel_accuracy": quality["pixel_accuracy_labelled"], "samples": quality["samples"],
                     "labelled_share": quality["labelled_share"]})
    table = pd.DataFrame(rows)
    means = table.groupby("model", sort=False)[["miou", "pixel_accuracy"]].agg(["mean", "std", "count"])
    table.round(4).to_csv(output.summary, index=False)
    means.columns = ["_".join(c) for c in means.columns]
    means.round(4).to_csv(output.means)


run_stage(main, globals())
