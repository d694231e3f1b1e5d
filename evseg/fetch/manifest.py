"""What a configuration needs from the internet: archive names, their URLs and checksums (manifest.yaml)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import yaml

MANIFEST = Path(__file__).with_name("manifest.yaml")


@dataclass(frozen=True)
class Entry:
    url: str
    size: int | None = None
    sha256: str | None = None
    auth: str | None = None  # "cityscapes": needs the login session
    approx_gib: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@cache
def manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text())


def with_mirrors(url: str, mirrors: dict[str, str]) -> str:
    """``url`` with the longest matching prefix in ``mirrors`` replaced by its mirror."""
    matches = [prefix for prefix in mirrors if url.startswith(prefix)]
    if not matches:
        return url
    prefix = max(matches, key=len)
    return mirrors[prefix] + url[len(prefix):]


def _entry(spec: dict, auth: str | None = None) -> Entry:
    return Entry(spec["url"], spec.get("size"), spec.get("sha256"), auth, spec.get("approx_gib"))


DSEC_SUFFIXES = {"events": "_events_left.zip", "images": "_images_rectified_left.zip",
                 "image_timestamps": "_image_timestamps.txt"}


def dsec_roles(images: bool) -> list[str]:
    return list(DSEC_SUFFIXES) if images else ["events"]


def dsec_archive_names(split: str, seq: str, images: bool) -> dict[str, str]:
    """Role -> name (relative to download.archives) of one sequence's archives and its split's unpacked labels."""
    names = {role: f"dsec/{split}/{seq}{DSEC_SUFFIXES[role]}" for role in dsec_roles(images)}
    return {**names, "labels": f"dsec/{split}_semantic_segmentation"}


CITYSCAPES_ARCHIVES = ("cityscapes/gtFine_trainvaltest.zip", "cityscapes/leftImg8bit_trainvaltest.zip")
CITYSCAPES_SEQUENCE_ARCHIVE = "cityscapes/leftImg8bit_sequence_trainvaltest.zip"


def cityscapes_archives(sequence_frames: bool) -> tuple[str, ...]:
    """The Cityscapes packages to unpack; CMDA also needs the frames around every labelled one."""
    return CITYSCAPES_ARCHIVES + ((CITYSCAPES_SEQUENCE_ARCHIVE,) if sequence_frames else ())


def night_archive_names(seq: str) -> dict[str, str]:
    """Role -> name (relative to download.archives) of a DSEC Night-Semantic sequence's public DSEC files: its
    events and its rectified left frames with their timestamps (zurich_city_09_* are DSEC training sequences)."""
    return {role: f"dsec/train/{seq}{suffix}" for role, suffix in DSEC_SUFFIXES.items()}


def archives(sequences: dict[str, list[str]], images: bool, night_sequences: list[str] = ()) -> dict[str, Entry]:
    """Every file the download rule may fetch under download.archives, by its relative name (official URLs;
    the download applies download.mirrors): the DSEC-Semantic ``sequences`` per split, or the DSEC files of
    ``night_sequences``, and the Cityscapes packages."""
    spec = manifest()
    dsec, found = spec["dsec"], {}
    for split, names in sequences.items():
        found[f"dsec/{split}_semantic_segmentation.zip"] = _entry(dsec["semantic"][split])
        for seq in names:
            folder = "test" if seq in dsec["test_sequences"] else "train"
            for role in dsec_roles(images):
                url = dsec[role].format(folder=folder, seq=seq)
                found[f"dsec/{split}/{seq}{DSEC_SUFFIXES[role]}"] = Entry(url)
    for seq in night_sequences:
        for role, name in night_archive_names(seq).items():
            found[name] = Entry(dsec[role].format(folder="train", seq=seq))
    for name, package in spec["cityscapes"]["packages"].items():
        found[f"cityscapes/{name}"] = _entry(package, auth="cityscapes")
    return found


def cityscapes_login() -> str:
    return manifest()["cityscapes"]["login"]


def weights(paths: list[str]) -> dict[str, Entry]:
    """The checkpoint paths of a config whose file names the manifest can download."""
    known = manifest()["weights"]
    return {path: _entry(known[Path(path).name]) for path in paths if path and Path(path).name in known}


def placed_by_hand(paths: list[str]) -> dict[str, str]:
    """The checkpoint paths of a config that a user must download by hand, with where to get each."""
    known = manifest()["manual"]
    return {path: known[Path(path).name] for path in paths if path and Path(path).name in known}
