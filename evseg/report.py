"""Figures for the run's HTML report (``snakemake --report``): training curves, per-class IoU, and the
pseudo-label quality after each refinement step. Each function reads the CSVs the rules wrote and saves a PNG."""

from __future__ import annotations

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


def pseudo_label_quality(summary: str | Path, path: str | Path) -> None:
    """Bars of mIoU, pixel accuracy and labelled share of the training pseudo-labels after each step."""
    table = pd.read_csv(summary)
    steps = table[table["labelled_share"].notna()].set_index("model")
    if steps.empty:
        raise ValueError(f"{summary} has no pseudo-label rows (labelled_share): the run has no refinement")
    values = steps[["miou", "pixel_accuracy", "labelled_share"]] * 100
    ax = values.plot.bar(figsize=(7, 3.6), rot=0, color=["C0", "C1", "C2"])
    ax.set(ylabel="%", xlabel="", ylim=(0, 100), title="training pseudo-labels on their labelled pixels")
    ax.legend(["mIoU", "pixel accuracy", "labelled share"])
    ax.grid(axis="y", alpha=0.3)
    ax.figure.tight_layout()
    ax.figure.savefig(path, dpi=100)
    plt.close(ax.figure)
