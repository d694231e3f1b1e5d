"""Rule report_figures: the figures of the HTML report (training curves, per-class IoU, pseudo-label quality)."""

from pathlib import Path

from evseg.report import per_class_iou, pseudo_label_quality, training_curves
from evseg.stage import as_list, run_stage


def by_model(paths: list[str]) -> dict[str, list[str]]:
    """results/<run>/<stage>/<model>/seed<s>/<file> grouped by model, in the order given."""
    grouped: dict[str, list[str]] = {}
    for path in paths:
        grouped.setdefault(Path(path).parent.parent.name, []).append(path)
    return grouped


def main(input, output, params, threads):
    metrics = {model: {int(Path(p).parent.name.removeprefix("seed")): p for p in files}
               for model, files in by_model(as_list(input.metrics)).items()}
    training_curves(metrics, output.curves)
    per_class_iou(by_model(as_list(input.per_class)), output.per_class)
    if hasattr(output, "pseudo_labels"):
        pseudo_label_quality(input.summary, output.pseudo_labels, input.scc)


run_stage(main, globals())
