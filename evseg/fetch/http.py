"""Resumable, verified HTTP downloads.

A file is fetched into ``<path>.part``. A cut connection or a killed job leaves that partial file, and the
next attempt asks only for the missing bytes (HTTP Range), on the condition (If-Range) that the remote file
is still the one the partial file came from; where the server names no version (ETag, Last-Modified) and no
checksum is known, nothing proves that, and a partial file is started over. Size and sha256, where known, are checked before the atomic
rename to ``path``: a file under its final name is complete and, where a checksum is known, verified.

Bytes are stored exactly as the server sends them (``Accept-Encoding: identity``, no decoding): a server
that labels a ``.tar.gz`` as gzip-encoded must not get it decompressed, and Range offsets count these bytes.
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
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import requests
import urllib3
from tqdm import tqdm

log = logging.getLogger(__name__)

CHUNK = 1 << 16  # what a cut connection may lose of the block in flight
DISK_MARGIN = 1 << 30  # leave 1 GiB free: a full disk breaks every other job too
IDENTITY = {"Accept-Encoding": "identity"}
SECRET_QUERY = re.compile(r"token|key|sig|auth|pass|secret|credential", re.IGNORECASE)


class FetchError(RuntimeError):
    """A download that cannot succeed as things stand: says which URL, what went wrong and how to fix it."""

    def __init__(self, url: str, path: str | Path, problem: str, fix: str):
        self.url, self.path, self.problem, self.fix = shown_url(url), Path(path), problem, fix
        super().__init__(f"{self.url} -> {path}: {problem}\n  fix: {fix}")


def shown_url(url: str) -> str:
    """``url`` fit for messages and logs: without user:password@ and with secret-looking query values hidden
    (signed mirror URLs carry tokens)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    query = "&".join(f"{key}=***" if SECRET_QUERY.search(key) else f"{key}={value}"
                     for key, value in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class _Transient(Exception):
    """A failure that a retry (resuming from the partial file) may cure."""


def partial_path(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def validator_path(path: Path) -> Path:
    """Beside the partial file: the remote file's ETag or Last-Modified when the partial file was begun."""
    return path.with_name(path.name + ".part.validator")


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
            digest = _transfer(url, path, session, size, sha256, timeout_s, auth_fix)
            break
        except _Transient as err:
            if attempt == retries:  # from None: the chained network error would print the URL unredacted
                raise FetchError(url, path, f"gave up after {retries + 1} attempts: {err}",
                                 f"check the network and rerun; the {_bytes(part)} already in {part.name} are "
                                 "kept and the next run resumes from them") from None
            wait = backoff_s * 2**attempt
            log.warning("%s: %s; retrying in %.0f s from byte %d", path.name, err, wait, _size(part))
            time.sleep(wait)
    if size is not None and _size(part) != size:  # a server that sent no length ended early or late
        problem = f"the download ended after {_size(part)} bytes, but evseg/fetch/manifest.yaml expects {size}"
        _discard(path)
        raise FetchError(url, path, problem + "; the file was deleted", "rerun to download it again; if it "
                         "fails again the file changed upstream: check its entry in evseg/fetch/manifest.yaml")
    if sha256 is not None and not digest.startswith(sha256):
        _discard(path)
        raise FetchError(url, path, f"the downloaded file's sha256 is {digest}, but {sha256} was expected; "
                         "the file was deleted", "rerun to download it again; if it fails again the file "
                         "changed upstream or a proxy alters it: check the URL in evseg/fetch/manifest.yaml")
    os.replace(part, path)
    validator_path(path).unlink(missing_ok=True)
    log.info("%s: %s, sha256 %s", path, _bytes(path), digest)
    return digest


def _discard(path: Path) -> None:
    partial_path(path).unlink(missing_ok=True)
    validator_path(path).unlink(missing_ok=True)


def _transfer(url: str, path: Path, session: requests.Session, size: int | None, sha256: str | None,
              timeout_s: float, auth_fix: str) -> str:
    """One attempt: append the missing bytes to the partial file; return the sha256 of the complete file."""
    part, validator = partial_path(path), validator_path(path)
    if _size(part) and not validator.exists() and sha256 is None:
        # nothing tells whether the remote file is still the one the partial file came from: start over
        log.warning("%s: the server named no version of the file and no checksum is known; starting over", path.name)
        _discard(path)
    offset = _size(part)
    headers = dict(IDENTITY)
    remembered = validator.read_text().strip() if offset and validator.exists() else None
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if remembered:  # the server answers 200 (the whole file) if the file has changed since
            headers["If-Range"] = remembered
    try:
        response = session.get(url, headers=headers, stream=True, timeout=timeout_s)
    except requests.exceptions.RequestException as err:
        raise _Transient(f"connection failed ({type(err).__name__})") from err
    with response:
        status = response.status_code
        if status in (401, 403):
            raise FetchError(url, path, f"the server refused access (HTTP {status})", auth_fix)
        if status == 404:
            raise FetchError(url, path, "the server has no such file (HTTP 404)",
                             "the file may have moved: check its URL in evseg/fetch/manifest.yaml, or set "
                             "download.mirrors to a copy you can reach")
        if status == 416 and offset:
            remote = re.match(r"bytes \*/(\d+)", response.headers.get("Content-Range", ""))
            if offset == (int(remote.group(1)) if remote else size):  # complete: a run killed before the rename
                return sha256_of(part).hexdigest()
            _discard(path)  # larger than the file: not a prefix of it
            raise _Transient("the partial file does not fit the remote file; starting over")
        if status == 429 or status >= 500:
            raise _Transient(f"HTTP {status}")
        if status not in (200, 206):
            raise FetchError(url, path, f"unexpected HTTP {status}",
                             "check the URL in evseg/fetch/manifest.yaml")
        if response.headers.get("Content-Type", "").startswith("text/html"):
            raise FetchError(url, path, "the server answered with a web page instead of the "
                             "file (a login or error page)", auth_fix)
        if status == 200 and offset:
            log.warning("%s: the server sent the whole file (it ignores Range requests, or the file changed "
                        "since the partial download); starting over", part.name)
            _discard(path)
            offset = 0
        if status == 206 and _range_start(response) != offset:
            _discard(path)
            raise _Transient("the server sent another byte range than asked; starting over")
        etag = response.headers.get("ETag")
        if status == 206 and remembered and remembered.startswith('"') and etag and etag != remembered:
            # a server that ignored If-Range, but names another version of the file
            _discard(path)
            raise _Transient("the remote file changed since the partial download; starting over")
        total = _total_size(response, offset)
        if size is not None and total is not None and total != size:
            raise FetchError(url, path, f"the server offers {total} bytes, but "
                             f"evseg/fetch/manifest.yaml expects {size}", "the file changed upstream: update "
                             "the manifest entry (size and sha256) after checking the new file's source")
        if total is not None:
            check_free_space(part.parent, total - offset, f"downloading {path.name}", url)
        if not offset:
            _remember_validator(response, validator)
        hasher = sha256_of(part) if offset else hashlib.sha256()
        bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=path.name, mininterval=0.5 if sys.stderr.isatty() else 30)
        try:
            with open(part, "ab") as f:
                for block in response.raw.stream(CHUNK, decode_content=False):
                    f.write(block)
                    hasher.update(block)
                    bar.update(len(block))
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as err:
            raise _Transient(f"the connection broke after {_bytes(part)} ({type(err).__name__})") from err
        finally:
            bar.close()
    if total is not None and _size(part) != total:
        raise _Transient(f"the connection closed after {_size(part)} of {total} bytes")
    return hasher.hexdigest()


def _remember_validator(response: requests.Response, validator: Path) -> None:
    """Keep the remote file's identity for a later If-Range; weak ETags do not qualify (RFC 9110 13.1.5)."""
    etag = response.headers.get("ETag", "")
    value = etag if etag and not etag.startswith("W/") else response.headers.get("Last-Modified", "")
    if value:
        validator.write_text(value + "\n")
    else:
        validator.unlink(missing_ok=True)


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
