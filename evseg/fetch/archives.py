"""Unpacking zip and tar archives safely and atomically.

Every member is checked before anything is written: absolute paths, ``..`` components (path traversal,
"zip-slip"), links and device files are refused, so an archive can only create regular files and folders
inside the destination. Files are extracted into a hidden sibling folder that is renamed into place at the
end: a destination that exists is complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from evseg.errors import DataError
from evseg.fetch.http import check_free_space

REFUSED_FIX = ("the archive is corrupt or was tampered with; nothing was extracted. Delete it and download it "
               "again from its official source")


@dataclass
class Member:
    name: str  # relative POSIX path inside the archive
    size: int
    is_dir: bool


def members(archive: Path) -> list[Member]:
    """The archive's files and folders, after refusing any member that could escape the destination."""
    archive = Path(archive)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            found = []
            for info in zf.infolist():
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise DataError(archive, f"member {info.filename!r} is a symbolic link", REFUSED_FIX)
                found.append(Member(_checked_name(archive, info.filename, info.is_dir()), info.file_size, info.is_dir()))
            return found
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            found = []
            for info in tf.getmembers():
                if not (info.isfile() or info.isdir()):
                    kind = "link" if info.issym() or info.islnk() else "special file"
                    raise DataError(archive, f"member {info.name!r} is a {kind}", REFUSED_FIX)
                found.append(Member(_checked_name(archive, info.name, info.isdir()), info.size, info.isdir()))
            return found
    raise DataError(archive, "is neither a zip nor a tar archive", "delete it and download it again (an "
                    "interrupted copy, or an error page saved under the archive's name)")


def _checked_name(archive: Path, name: str, is_dir: bool) -> str:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or (path.parts and ":" in path.parts[0]) or ".." in path.parts:
        raise DataError(archive, f"member {name!r} would be written outside the destination (path traversal, "
                        "'zip-slip')", REFUSED_FIX)
    if not path.parts and not is_dir:
        raise DataError(archive, f"member {name!r} is a file without a name", REFUSED_FIX)
    return str(path)


@contextlib.contextmanager
def staging_folder(destination: Path, suffix: str) -> Iterator[Path]:
    """A hidden, empty sibling of ``destination`` to fill; renamed to ``destination`` when the block ends
    normally, removed when it raises: a half-written folder never stays behind."""
    staging = destination.with_name(f".{destination.name}.{suffix}")
    shutil.rmtree(staging, ignore_errors=True)  # what a killed run left
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    os.replace(staging, destination)


def extract(archive: str | Path, destination: str | Path) -> list[Member]:
    """Extract ``archive`` into the folder ``destination``, which must not exist yet; return its members."""
    archive, destination = Path(archive), Path(destination)
    if destination.exists():
        raise FileExistsError(f"{destination} exists already; unpacking never merges into a folder")
    listed = members(archive)
    destination.parent.mkdir(parents=True, exist_ok=True)
    check_free_space(destination.parent, sum(m.size for m in listed), f"unpacking {archive.name}")
    bar = tqdm(total=sum(m.size for m in listed), unit="B", unit_scale=True, unit_divisor=1024,
               desc=f"unpack {archive.name}", mininterval=30)
    try:
        with staging_folder(destination, "unpacking") as staging:
            if zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as zf:
                    for info, member in zip(zf.infolist(), listed):
                        _write(staging / member.name, member, lambda: zf.open(info), bar)
            else:
                with tarfile.open(archive) as tf:
                    for info, member in zip(tf.getmembers(), listed):
                        _write(staging / member.name, member, lambda: tf.extractfile(info), bar)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as err:
        raise DataError(archive, f"is damaged ({err})", "delete it and download it again") from err
    finally:
        bar.close()
    return listed


def _write(target: Path, member: Member, open_member, bar) -> None:
    if member.is_dir:
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with open_member() as src, open(target, "wb") as dst:
        for block in iter(lambda: src.read(1 << 20), b""):
            dst.write(block)
            bar.update(len(block))


def unpack_all(archives: list[str | Path], destination: str | Path) -> None:
    """Extract several archives into one new folder ``destination`` (e.g. Cityscapes' gtFine and
    leftImg8bit zips into the dataset root). A file that two archives both hold must be identical in both
    (the licence and README); the folder appears only when all are unpacked."""
    destination = Path(destination)
    if destination.exists():
        raise FileExistsError(f"{destination} exists already; unpacking never merges into a folder")
    with staging_folder(destination, "assembling") as staging:
        for i, archive in enumerate(map(Path, archives)):
            unpacked = staging / f".archive{i}"
            extract(archive, unpacked)
            move_tree(unpacked, staging, archive)


def move_tree(source: Path, target: Path, archive: Path) -> None:
    """Move every file of ``source`` to the same relative place under ``target``, then remove ``source``."""
    for path in sorted(source.rglob("*")):
        if path.is_dir():
            continue
        destination = target / path.relative_to(source)
        if destination.exists():
            if not _same_content(path, destination):
                raise DataError(archive, f"holds {path.relative_to(source)}, which another archive of the same "
                                "dataset holds with other content", "check that the archives belong to the "
                                "same dataset release; delete the wrong one and download it again")
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, destination)
    shutil.rmtree(source)


def _same_content(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return all(x == y for x, y in zip(iter(lambda: fa.read(1 << 20), b""), iter(lambda: fb.read(1 << 20), b"")))
