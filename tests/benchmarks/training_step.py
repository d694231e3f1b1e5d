"""What the training-step benchmarks (bench_cmda.py, bench_pretrain.py) share: their command line, timing the
iterations of a step as ``run_steps`` runs them, peak memory, and one fresh process per variant."""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import time
from collections.abc import Callable

import torch


def arguments(doc: str) -> argparse.Namespace:
    """``--demo`` (the demo's CPU setting; default: the paper's, on CUDA), ``--steps``, ``--warmup``, ``--threads``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--demo", action="store_true", help="the demo's CPU setting (default: the paper's, on CUDA)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (CPU runs)")
    args = parser.parse_args()
    if not args.demo and not torch.cuda.is_available():
        parser.exit(1, "the paper setting needs a CUDA GPU; use --demo for the CPU setting\n")
    return args


def prepare(device: torch.device, threads: int) -> None:
    """Threads on the CPU, a fresh peak-memory count on a GPU, and seed 0."""
    if device.type == "cpu":
        torch.set_num_threads(threads)
    else:
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(0)


def time_iterations(iteration: Callable[[int], None], make_batch: Callable[[], dict], steps: int, warmup: int,
                    device: torch.device) -> dict:
    """Seconds of ``iteration(index, batch)`` (zero_grad, step, optimizer step: what run_steps times), batches made
    before each and not timed; the median, min and max over ``steps`` after ``warmup``, and the peak memory:
    CUDA-allocated GiB, or the process's peak resident set size on the CPU."""
    seconds = []
    for index in range(warmup + steps):
        batch = make_batch()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        tic = time.perf_counter()
        iteration(index, batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if index >= warmup:
            seconds.append(time.perf_counter() - tic)
    if device.type == "cuda":
        memory = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    return {"s_per_iter": statistics.median(seconds), "min": min(seconds), "max": max(seconds), "memory_gib": memory}


def in_fresh_process(function: Callable[..., dict], *args) -> dict:
    """``function(*args)`` in a process of its own: its own peak memory, and no caches from another variant."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)
