"""One DSEC-Semantic sequence folder assembled from its official archives (the 'raw' label layout)."""

from __future__ import annotations

import shutil
from pathlib import Path

from evseg.errors import DataError
from evseg.fetch.archives import extract, staging_folder

EVENT_FILES = ("events.h5", "rectify_map.h5")


def find_sequence_labels(labels_root: Path, seq: str) -> Path:
    """The folder of ``seq`` inside an unpacked DSEC-Semantic label archive (any depth, e.g. train/<seq>)."""
    found = [p for p in labels_root.rglob(seq) if p.is_dir() and any(p.glob("*classes"))]
    if len(found) != 1:
        tops = sorted(p.name for p in labels_root.iterdir())[:10]
        problem = "holds no" if not found else f"holds {len(found)}"
        raise DataError(labels_root, f"{problem} folder {seq}/ with 11classes/ or 19classes/ (top level: {tops})",
                        "the sequence is not in this split's label archive: check dsec.sequences in the config "
                        "(DSEC-Semantic train: zurich_city_00_a ... 08_a, test: 13_a, 14_c, 15_a)")
    return found[0]


def assemble_sequence(destination: Path, events_zip: str | Path, labels_root: str | Path,
                      images: tuple[str | Path, str | Path] | None = None) -> None:
    """Write ``destination`` (<root>/<split>/<seq>) from the sequence's event archive, the unpacked label
    archive of its split and, optionally, (rectified images zip, image timestamps file)."""
    destination, labels_root = Path(destination), Path(labels_root)
    with staging_folder(destination, "assembling") as staging:
        event_dir = staging / "events" / "left"
        extract(events_zip, event_dir)
        missing = [name for name in EVENT_FILES if not (event_dir / name).is_file()]
        if missing:
            raise DataError(events_zip, f"does not hold {missing} at its top level",
                            "it is not a DSEC <seq>_events_left.zip: delete it and download it again")
        shutil.copytree(find_sequence_labels(labels_root, destination.name), staging, dirs_exist_ok=True)
        if images is not None:
            images_zip, timestamps = map(Path, images)
            extract(images_zip, staging / "images" / "left" / "rectified")
            shutil.copyfile(timestamps, staging / "images" / "timestamps.txt")
