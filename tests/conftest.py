import os
import random
import zlib

import numpy as np
import pytest
import torch

from evseg.events.writer import write_events_h5

# Every test function starts from its own seed (torch, numpy's global generator, random), derived from its id, so
# that the draws in its body do not depend on which tests ran before it (module- and session-scoped fixtures are
# set up before it and seed themselves); EVSEG_TEST_SEED shifts all of them (to check that a test passes for
# other draws). A failing test's report names its seed and torch's thread count.
SEED_SHIFT = int(os.environ.get("EVSEG_TEST_SEED", "0"))


def seed_of(nodeid: str) -> int:
    return (zlib.crc32(nodeid.encode()) + SEED_SHIFT) % 2**32


def pytest_report_header(config):
    return (f"evseg: torch {torch.__version__} with {torch.get_num_threads()} threads on {os.cpu_count()} CPUs; "
            f"seeds per test from its id, shifted by EVSEG_TEST_SEED={SEED_SHIFT}")


@pytest.fixture(autouse=True)
def seeded_and_threads_restored(request):
    """Seeds the test; afterwards gives torch back its thread count (stages called in-process set theirs)."""
    seed, threads = seed_of(request.node.nodeid), torch.get_num_threads()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    request.node.randomness = f"seed {seed} (EVSEG_TEST_SEED={SEED_SHIFT}), torch threads {threads}"
    yield
    torch.set_num_threads(threads)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    if report.failed and hasattr(item, "randomness"):
        report.sections.append(("randomness", f"{item.nodeid}: {item.randomness}; rerun the same draws with "
                                              f"EVSEG_TEST_SEED={SEED_SHIFT} pytest '{item.nodeid}'"))

T_OFFSET = 50_123_456_789  # above 2**32, as DSEC's are: uint32 arithmetic would overflow


@pytest.fixture(scope="session")
def recording(tmp_path_factory):
    """A DSEC events.h5 with bursts, silences and events exactly on millisecond boundaries, plus the
    in-memory arrays it was written from (times relative, as stored)."""
    rng = np.random.default_rng(7)
    t = np.concatenate([
        rng.integers(0, 40_000, 3000),               # dense start
        rng.integers(60_000, 61_000, 50),            # a burst after 20 ms of silence
        np.arange(70_000, 90_001, 1000),             # events exactly on millisecond edges
        np.full(30, 95_000),                         # many events sharing one timestamp on an edge
        rng.integers(100_000, 250_000, 4000),
    ])
    t = np.sort(t)
    n = len(t)
    x, y, p = rng.integers(0, 64, n), rng.integers(0, 48, n), rng.integers(0, 2, n)
    path = tmp_path_factory.mktemp("events") / "events.h5"
    write_events_h5(path, x, y, t, p, T_OFFSET)
    return path, x, y, t, p


def make_dsec_sequence(root, split, name, num_labels, layout="raw", num_classes=11, sensor=(24, 32),
                       label_height=22, label_value=None, events_per_ms=20, seed=0):
    """A small DSEC-format sequence: events.h5 covering all label times, rectify_map.h5, labels and
    timestamps in the given label layout. Returns the sequence folder."""
    import cv2

    from evseg.events.writer import write_rectify_map

    rng = np.random.default_rng(seed)
    seq_dir = root / split / name
    label_times = 100_000 + 50_000 * np.arange(num_labels)  # relative to the recording start
    n = int((label_times[-1] + 10_000) / 1000 * events_per_ms)
    t = np.sort(rng.integers(0, label_times[-1] + 10_000, n))
    height, width = sensor
    write_events_h5(seq_dir / "events/left/events.h5", rng.integers(0, width, n), rng.integers(0, height, n), t,
                    rng.integers(0, 2, n), T_OFFSET)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    write_rectify_map(seq_dir / "events/left/rectify_map.h5", np.stack([xx - 0.7, yy + 0.3], -1))
    folder, stamps = {"raw": (f"{num_classes}classes", f"{name}_semantic_timestamps.txt"),
                      "ess": (f"semantic/{num_classes}classes/data", "semantic/timestamps.txt"),
                      "ess_readme": (f"semantic/left/{num_classes}classes/data", "semantic/timestamps.txt")}[layout]
    (seq_dir / folder).mkdir(parents=True, exist_ok=True)
    for i in range(num_labels):
        value = (i % num_classes) if label_value is None else label_value
        cv2.imwrite(str(seq_dir / folder / f"{i:06d}.png"), np.full((label_height, width), value, np.uint8))
    (seq_dir / stamps).parent.mkdir(parents=True, exist_ok=True)
    (seq_dir / stamps).write_text("".join(f"{T_OFFSET + s}\n" for s in label_times))
    return seq_dir
