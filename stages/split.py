"""Rule split: the refined pseudo-labels' samples ranked by their labelled share; the top fraction becomes
``labeled.txt`` (UniMatch's labelled set), the rest ``unlabeled.txt``; ``ranking.csv`` has every sample's share."""

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from evseg.data.classes import IGNORE
from evseg.errors import DataError
from evseg.semi.split import rank_split
from evseg.stage import as_list, run_stage


def main(input, output, params, threads):
    ids, shares = [], []
    for folder in map(Path, as_list(input.labels)):
        paths = sorted(p for p in folder.glob("*.png") if p.stem.isdigit())
        if not paths:
            raise DataError(folder, "holds no label PNGs", "rerun the scc rule for this sequence")
        for path in paths:
            label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            ids.append(f"{folder.name}/{path.stem}")
            shares.append(float((label != IGNORE).mean()))
    labeled, unlabeled = rank_split(ids, np.array(shares), params.split["labeled_fraction"])
    Path(output.labeled).write_text("".join(f"{i}\n" for i in labeled))
    Path(output.unlabeled).write_text("".join(f"{i}\n" for i in unlabeled))
    table = pd.DataFrame({"sample_id": ids, "labelled_share": np.round(shares, 5)})
    table["labeled"] = table.sample_id.isin(set(labeled))
    table.sort_values(["labelled_share", "sample_id"], ascending=[False, True]).to_csv(output.ranking, index=False)


run_stage(main, globals())
