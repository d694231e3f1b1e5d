"""Resumable, verified HTTP downloads.

A file is fetched into ``<path>.part``. A cut connection or a killed job leaves that partial file, and the
next attempt asks only for the missing bytes (HTTP Range). Size and sha256 are checked before the atomic
rename to ``path``: a file under its final name is always complete and verified.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import sys
import time
from pathlib import Path

import requests
from tqdm import tqdm

log = logging.getLogger(__name__)

CHUNK = 1 << 16  # what a cut connection may lose of the block in flight
DISK_MARGIN = 1 << 30  # leave 1 GiB free: a full disk breaks every other job too


class FetchError(RuntimeError):
    """A download that cannot succeed as things stand: says which URL, what went wrong and how to fix it."""

    def __init__(self, url: str, path: str | Path, problem: str, fix: str):
        self.url, self.path, self.problem, self.fix = url, Path(path), problem, fix
        super().__init__(f"{url} -> {path}: {problem}\n  fix: {fix}")


class _Transient(Exception):
    """A failure that a retry (resuming from the partial file) may cure."""


def partial_path(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def sha256_of(path: Path, hasher=None) -> "hashlib._Hash":
    hasher = hasher or hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            hasher.update(block)
    return hasher


def check_free_space(folder: Path, needed: int, what: str, url: str = "") -> None:
    free = shutil.disk_usage(folder).free
    if needed + DISK_MARGIN > free:
        raise FetchError(url or str(folder), folder, f"{what} needs {needed / 2**30:.1f} GiB but only "
                         f"{free / 2**30:.1f} GiB are free (1 GiB is kept in reserve)",
                         "free space there, or point download.archives / the dataset roots at a larger disk")


def download(url: str, path: str | Path, *, sha256: str | None = None, size: int | None = None,
             session: requests.Session | None = None, retries: int = 5, timeout_s: float = 60,
             backoff_s: float = 2.0, auth_fix: str = "check the credentials") -> str:
    """Fetch ``url`` to ``path`` and return its sha256 (hex).

    ``sha256`` may be the full digest or a prefix of at least 6 hex digits (torch.hub file names carry
    one). ``size`` is the expected byte count. Either may be None when unknown. ``auth_fix`` is the advice
    given when the server refuses access (401/403).
    """
    path = Path(path)
    if sha256 is not None and not re.fullmatch(r"[0-9a-f]{6,64}", sha256):
        raise ValueError(f"sha256 must be 6 to 64 lowercase hex digits, not {sha256!r}")
    if path.exists():
        return sha256_of(path).hexdigest()  # only verified files ever get the final name
    path.parent.mkdir(parents=True, exist_ok=True)
    session = session or requests.Session()
    part = partial_path(path)
    for attempt in range(retries + 1):
        try:
            digest = _transfer(url, part, session, size, timeout_s, auth_fix)
            break
        except _Transient as err:
            if attempt == retries:
                raise FetchError(url, path, f"gave up after {retries + 1} attempts: {err}",
                                 f"check the network and rerun; the {_bytes(part)} already in {part.name} are "
                                 "kept and the next run resumes from them") from err
            wait = backoff_s * 2**attempt
            log.warning("%s: %s; retrying in %.0f s from byte %d", path.name, err, wait, _size(part))
            time.sleep(wait)
    if sha256 is not None and not digest.startswith(sha256):
        part.unlink()
        raise FetchError(url, path, f"the downloaded file's sha256 is {digest}, but {sha256} was expected; "
                         "the file was deleted", "rerun to download it again; if it fails again the file "
                         "changed upstream or a proxy alters it: check the URL in evseg/fetch/manifest.yaml")
    os.replace(part, path)
    log.info("%s: %s, sha256 %s", path, _bytes(path), digest)
    return digest


def _transfer(url: str, part: Path, session: requests.Session, size: int | None, timeout_s: float,
              auth_fix: str) -> str:
    """One attempt: append the missing bytes to ``part``; return the sha256 of the complete file."""
    offset = _size(part)
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        response = session.get(url, headers=headers, stream=True, timeout=timeout_s)
    except requests.exceptions.RequestException as err:
        raise _Transient(f"connection failed ({type(err).__name__})") from err
    with response:
        status = response.status_code
        if status in (401, 403):
            raise FetchError(url, part.with_suffix(""), f"the server refused access (HTTP {status})", auth_fix)
        if status == 404:
            raise FetchError(url, part.with_suffix(""), "the server has no such file (HTTP 404)",
                             "the file may have moved: check its URL in evseg/fetch/manifest.yaml, or set "
                             "download.mirrors to a copy you can reach")
        if status == 416 and offset:
            remote = re.match(r"bytes \*/(\d+)", response.headers.get("Content-Range", ""))
            if offset == (int(remote.group(1)) if remote else size):  # complete: a run killed before the rename
                return sha256_of(part).hexdigest()
            part.unlink()  # larger than the file: not a prefix of it
            raise _Transient("the partial file does not fit the remote file; starting over")
        if status == 429 or status >= 500:
            raise _Transient(f"HTTP {status}")
        if status not in (200, 206):
            raise FetchError(url, part.with_suffix(""), f"unexpected HTTP {status}",
                             "check the URL in evseg/fetch/manifest.yaml")
        if response.headers.get("Content-Type", "").startswith("text/html"):
            raise FetchError(url, part.with_suffix(""), "the server answered with a web page instead of the "
                             "file (a login or error page)", auth_fix)
        if status == 200 and offset:
            log.warning("%s: the server ignores Range requests; starting over", part.name)
            part.unlink()
            offset = 0
        if status == 206 and _range_start(response) != offset:
            part.unlink()
            raise _Transient("the server sent another byte range than asked; starting over")
        total = _total_size(response, offset)
        if size is not None and total is not None and total != size:
            raise FetchError(url, part.with_suffix(""), f"the server offers {total} bytes, but "
                             f"evseg/fetch/manifest.yaml expects {size}", "the file changed upstream: update "
                             "the manifest entry (size and sha256) after checking the new file's source")
        if total is not None:
            check_free_space(part.parent, total - offset, f"downloading {part.with_suffix('').name}", url)
        hasher = sha256_of(part) if offset else hashlib.sha256()
        bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=part.with_suffix("").name, mininterval=0.5 if sys.stderr.isatty() else 30)
        try:
            with open(part, "ab") as f:
                for block in response.iter_content(CHUNK):
                    f.write(block)
                    hasher.update(block)
                    bar.update(len(block))
        except requests.exceptions.RequestException as err:
            raise _Transient(f"the connection broke after {_bytes(part)} ({type(err).__name__})") from err
        finally:
            bar.close()
    if total is not None and _size(part) != total:
        raise _Transient(f"the connection closed after {_size(part)} of {total} bytes")
    return hasher.hexdigest()


def _range_start(response: requests.Response) -> int | None:
    match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _total_size(response: requests.Response, offset: int) -> int | None:
    if response.status_code == 206:
        match = re.match(r"bytes \d+-\d+/(\d+)", response.headers.get("Content-Range", ""))
        return int(match.group(1)) if match else None
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _bytes(path: Path) -> str:
    return f"{_size(path) / 2**20:.1f} MiB"
