"""Benchmark of evseg.fetch.http.download against a plain streamed copy, over a local HTTP server.

Run ``python tests/benchmarks/bench_fetch.py [--mib 256] [--repeats 3] [--json PATH]``. It is a script, not a
pytest test. The server (tests/http_server.py, 127.0.0.1) serves ``--mib`` MiB of random bytes from memory.

Timed, alternating which goes first, ``--repeats`` times:
- baseline: ``requests`` streaming the file to disk in 64 KiB blocks (what a bare script would do);
- ours: ``download()`` with a sha256 check, the progress bar, the ``.part`` file and the rename;
- ours, resumed: the same after a cut at half the file (the server closes the connection), so the second
  half arrives through a Range request and the first half is read back from disk for the hash.
MiB/s per way (median) and the ratio to the baseline are printed. It exits non-zero only if a file differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from evseg.fetch.http import CHUNK, download  # noqa: E402
from tests.http_server import FileServer  # noqa: E402


def plain_copy(url: str, path: Path) -> None:
    with requests.get(url, stream=True, timeout=60) as response, open(path, "wb") as f:
        for block in response.iter_content(CHUNK):
            f.write(block)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    data = np.random.default_rng(0).integers(0, 256, args.mib << 20, dtype=np.uint8).tobytes()
    digest = hashlib.sha256(data).hexdigest()
    times: dict[str, list[float]] = {"baseline": [], "ours": [], "ours, resumed": []}
    ok = True
    with FileServer() as server, tempfile.TemporaryDirectory() as tmp:
        server.files["/f"] = data
        url = server.url + "/f"
        ways = {
            "baseline": lambda p: plain_copy(url, p),
            "ours": lambda p: download(url, p, sha256=digest, retries=0),
            "ours, resumed": lambda p: (server.cut.__setitem__("/f", [len(data) // 2]),
                                        download(url, p, sha256=digest, retries=1, backoff_s=0)),
        }
        for repeat in range(args.repeats):
            order = list(ways) if repeat % 2 == 0 else list(reversed(ways))
            for name in order:
                path = Path(tmp) / f"{repeat}_{name.replace(', ', '_')}.bin"
                start = time.perf_counter()
                ways[name](path)
                times[name].append(time.perf_counter() - start)
                ok &= path.read_bytes() == data
                path.unlink()
    rates = {name: args.mib / statistics.median(t) for name, t in times.items()}
    for name, rate in rates.items():
        print(f"{name:14s} {rate:8.1f} MiB/s   {rate / rates['baseline']:.2f}x baseline")
    if args.json:
        args.json.write_text(json.dumps({"mib": args.mib, "mib_per_s": rates}, indent=2))
    if not ok:
        print("a downloaded file differs from the served one", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
