"""Figures for the run's HTML report (``snakemake --report``): training curves, per-class IoU, and the
pseudo-label quality after each refinement step. Each function reads the CSVs the rules wrote and saves a PNG."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # jobs have no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

LINESTYLES = ("-", "--", ":", "-.")


def training_curves(metrics: dict[str, dict[int, str | Path]], path: str | Path) -> None:
    """One panel per model, every ``loss*`` column of its metrics.csv against the step, one line style per seed."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    for ax, (model, seeds) in zip(axes[0], metrics.items()):
        for k, (seed, csv) in enumerate(sorted(seeds.items())):
            table = pd.read_csv(csv)
            for i, column in enumerate(c for c in table.columns if c.startswith("loss")):
                if table[column].notna().any():
                    ax.plot(table["step"], table[column], LINESTYLES[k % len(LINESTYLES)], color=f"C{i}",
                            label=column if k == 0 else None)
        ax.set(title=f"{model} (seeds {', '.join(map(str, sorted(seeds)))})", xlabel="step", ylabel="loss")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def per_class_iou(per_class: dict[str, list[str | Path]], path: str | Path) -> None:
    """Grouped bars: each class's test IoU for each model, the mean over its seeds (a tick spans the seeds)."""
    tables = {model: pd.concat([pd.read_csv(f) for f in files]).groupby("class", sort=False)["iou"]
              for model, files in per_class.items()}
    classes = list(next(iter(tables.values())).mean().index)
    width = 0.8 / len(tables)
    fig, ax = plt.subplots(figsize=(max(8, len(classes) * 0.8), 3.8))
    for i, (model, grouped) in enumerate(tables.items()):
        mean, low, high = (grouped.agg(f).reindex(classes) * 100 for f in ("mean", "min", "max"))
        x = [c + (i - (len(tables) - 1) / 2) * width for c in range(len(classes))]
        ax.bar(x, mean, width, label=model, color=f"C{i}")
        ax.vlines(x, low, high, color="k", linewidth=0.8)
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    ax.set(ylabel="IoU (%)", ylim=(0, 100))
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def pseudo_label_quality(summary: str | Path, path: str | Path, scc_quality: str | Path | None = None) -> None:
    """Bars of mIoU, pixel accuracy and labelled share of the training pseudo-labels after each step; with SCC's
    quality.json beside them, the pixels of each class that SCC kept, relabelled and dropped."""
    table = pd.read_csv(summary)
    steps = table[table["labelled_share"].notna()].set_index("model")
    if steps.empty:
        raise ValueError(f"{summary} has no pseudo-label rows (labelled_share): the run has no refinement")
    fig, axes = plt.subplots(1, 2 if scc_quality else 1, figsize=(14 if scc_quality else 7, 3.8), squeeze=False)
    values = steps[["miou", "pixel_accuracy", "labelled_share"]] * 100
    ax = values.plot.bar(ax=axes[0, 0], rot=0, color=["C0", "C1", "C2"])
    ax.set(ylabel="%", xlabel="", ylim=(0, 100), title="training pseudo-labels on their labelled pixels")
    ax.legend(["mIoU", "pixel accuracy", "labelled share"])
    ax.grid(axis="y", alpha=0.3)
    if scc_quality:
        per_class = pd.DataFrame(json.loads(Path(scc_quality).read_text())["per_class"]).T
        outcomes = ["kept", "relabelled", "dropped"]
        pixels = per_class[[f"pixels_{k}" for k in outcomes]].set_axis(outcomes, axis=1) / 1000
        ax = pixels.plot.bar(ax=axes[0, 1], stacked=True, rot=30, color=["C2", "C1", "C3"])
        regions = per_class[[f"regions_{k}" for k in outcomes]]
        for i, counts in enumerate(regions.itertuples(index=False)):
            ax.annotate("/".join(map(str, counts)), (i, pixels.iloc[i].sum()), ha="center", va="bottom", fontsize=7)
        ax.set(ylabel="thousand pixels", xlabel="", title="SCC per PSA class (regions kept/relabelled/dropped)")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
