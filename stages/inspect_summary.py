"""Rule inspect_summary: one table of all sequences (event rates, class frequencies) and a bar chart
comparing the class frequencies of the source and target splits."""

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from evseg.stage import run_stage  # noqa: E402


def main(input, output, params, threads):
    records = [json.loads(open(path).read()) for path in [*input.sequences, input.cityscapes]]
    rows = []
    for r in records:
        pixels = r.pop("class_pixels")
        total = sum(pixels.values()) + r["ignored_pixels"]
        rows.append({**r, **{f"freq_{name}": count / total for name, count in pixels.items()}})
    table = pd.DataFrame(rows)
    table.to_csv(output.table, index=False, float_format="%.6g")

    freq_columns = [c for c in table.columns if c.startswith("freq_")]
    groups = table.groupby(["domain", "split"])[freq_columns].mean().T
    groups.index = [c[len("freq_"):] for c in groups.index]
    ax = groups.plot.bar(figsize=(10, 4), width=0.8)
    ax.set_ylabel("fraction of label pixels")
    ax.set_title("class frequencies: source (Cityscapes format) vs target (DSEC format)")
    plt.tight_layout()
    plt.savefig(output.classes, dpi=100)


run_stage(main, globals())
