"""CMDA's result tables: the test metrics of every model and seed, and the L2 study (each variant against the
CMDA baseline, and its logged L2 terms along training)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from evseg.report import LINESTYLES, plt

OUTPUTS = ("fusion", "image", "events")  # evaluated outputs (the ISR output is not used at test time)


def evaluations(paths) -> pd.DataFrame:
    """evaluate_cmda's ``cmda/evaluate/<model>/seed<seed>/metrics.json`` files as one row per model and seed."""
    rows = []
    for path in paths:
        metrics = json.loads(Path(path).read_text())
        model_dir = Path(path).parent
        rows.append({"model": model_dir.parent.name, "seed": int(model_dir.name.removeprefix("seed")),
                     "output": metrics["output"], "miou": metrics["miou"],
                     **{f"miou_{name}": metrics["miou_by_output"].get(name) for name in OUTPUTS},
                     "miou_all_classes": metrics["miou_all_classes"], "pixel_accuracy": metrics["pixel_accuracy"],
                     "samples": metrics["samples"]})
    return pd.DataFrame(rows)


def means(table: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and count over seeds of every mIoU column and the pixel accuracy, per model."""
    columns = [c for c in table.columns if c.startswith("miou") or c == "pixel_accuracy"]
    out = table.groupby("model", sort=False)[columns].agg(["mean", "std", "count"])
    out.columns = ["_".join(c) for c in out.columns]
    return out


def l2_study(table: pd.DataFrame, baseline: str = "fusion") -> pd.DataFrame:
    """Per L2 variant (and the baseline): mean and std of the test mIoU over seeds, and the mean of the per-seed
    differences to the baseline (seeds paired)."""
    if baseline not in set(table["model"]):
        raise ValueError(f"the L2 study compares with the {baseline} model, which was not evaluated")
    base = table[table["model"] == baseline].set_index("seed")["miou"]
    rows = []
    for model, group in table.groupby("model", sort=False):
        miou = group.set_index("seed")["miou"]
        paired = (miou - base).dropna()
        rows.append({"model": model, "variant": model.removeprefix("fusion_l2_") if model != baseline else "none",
                     "seeds": len(miou), "miou_mean": miou.mean(), "miou_std": miou.std(),
                     "delta_vs_baseline": paired.mean() if model != baseline else 0.0})
    return pd.DataFrame(rows)


def l2_terms_figure(training: dict[str, dict[int, str | Path]], path: str | Path) -> None:
    """One panel per variant: its weighted L2 terms (``l2_*`` columns of metrics.csv) against the step, log scale,
    one line style per seed."""
    fig, axes = plt.subplots(1, len(training), figsize=(4.5 * len(training), 3.4), squeeze=False)
    for ax, (model, seeds) in zip(axes[0], training.items()):
        for k, (seed, csv) in enumerate(sorted(seeds.items())):
            curves = pd.read_csv(csv)
            for i, column in enumerate(c for c in curves.columns if c.startswith("l2_")):
                ax.plot(curves["step"], curves[column], LINESTYLES[k % len(LINESTYLES)], color=f"C{i}",
                        label=column if k == 0 else None)
        ax.set(title=model.removeprefix("fusion_l2_"), xlabel="step", ylabel="lambda x L2", yscale="log")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
