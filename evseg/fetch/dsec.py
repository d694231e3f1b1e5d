"""One DSEC-Semantic sequence folder assembled from its official archives (the 'raw' label layout), or one DSEC
Night-Semantic sequence folder from DSEC's public files and the authors' archive."""

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


def extract_events(events_zip: str | Path, sequence_dir: Path) -> None:
    """A DSEC <seq>_events_left.zip into <sequence_dir>/events/left/."""
    event_dir = sequence_dir / "events" / "left"
    extract(events_zip, event_dir)
    missing = [name for name in EVENT_FILES if not (event_dir / name).is_file()]
    if missing:
        raise DataError(events_zip, f"does not hold {missing} at its top level",
                        "it is not a DSEC <seq>_events_left.zip: delete it and download it again")


def assemble_sequence(destination: Path, events_zip: str | Path, labels_root: str | Path,
                      images: tuple[str | Path, str | Path] | None = None) -> None:
    """Write ``destination`` (<root>/<split>/<seq>) from the sequence's event archive, the unpacked label
    archive of its split and, optionally, (rectified images zip, image timestamps file)."""
    destination, labels_root = Path(destination), Path(labels_root)
    with staging_folder(destination, "assembling") as staging:
        extract_events(events_zip, staging)
        shutil.copytree(find_sequence_labels(labels_root, destination.name), staging, dirs_exist_ok=True)
        if images is not None:
            images_zip, timestamps = map(Path, images)
            extract(images_zip, staging / "images" / "left" / "rectified")
            shutil.copyfile(timestamps, staging / "images" / "timestamps.txt")


def find_night_sequence(night_root: Path, seq: str) -> Path:
    """The folder of ``seq`` inside the unpacked Night-Semantic archive (any depth) that holds its warp images."""
    found = [p for p in night_root.rglob(seq) if p.is_dir() and ((p / "warp_images").is_dir()
                                                                  or (p / "wrap_images").is_dir())]
    if len(found) != 1:
        problem = "holds no" if not found else f"holds {len(found)}"
        raise DataError(night_root, f"{problem} folder {seq}/ with warp_images/ (and labels/)",
                        "unpack the authors' DSEC Night-Semantic archive (CMDA README) into this folder, whole")
    return found[0]


def assemble_night_sequence(destination: Path, events_zip: str | Path, images_zip: str | Path,
                            timestamps: str | Path, night_root: str | Path) -> None:
    """Write ``destination`` (<root>/<seq>) in the DSEC Night-Semantic layout: DSEC's events and rectified left
    frames with their timestamps, and the sequence's warp_images/ and labels/ from the authors' archive (the
    misspelled wrap_images/ of older copies is renamed)."""
    destination = Path(destination)
    with staging_folder(destination, "assembling") as staging:
        extract_events(events_zip, staging)
        extract(images_zip, staging / "images" / "left" / "rectified")
        shutil.copyfile(timestamps, staging / "images" / "timestamps.txt")
        source = find_night_sequence(Path(night_root), destination.name)
        warp = source / "warp_images" if (source / "warp_images").is_dir() else source / "wrap_images"
        shutil.copytree(warp, staging / "warp_images")
        if not (source / "labels").is_dir():
            raise DataError(source, "has warp images but no labels/ folder",
                            "unpack the authors' DSEC Night-Semantic archive again, whole")
        shutil.copytree(source / "labels", staging / "labels")
