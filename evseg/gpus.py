"""Which GPUs a job uses.

``snakemake --resources gpu=N`` keeps the GPUs that running jobs asked for (``resources.<rule>.gpu``) within
N, but does not say which device each job gets: two jobs would both use device 0. So every job that asks for
GPUs claims free devices before CUDA starts, through one lock file per device (``fcntl.flock``; the kernel
releases a lock when its process ends, also after a kill), and sets ``CUDA_VISIBLE_DEVICES`` to them. The
job then sees its devices as cuda:0, cuda:1, ...

- The devices to share: ``EVSEG_GPUS`` (e.g. ``0,1,3``) if set, else ``CUDA_VISIBLE_DEVICES`` if set, else
  every GPU that ``nvidia-smi -L`` lists.
- The lock files live in ``EVSEG_GPU_LOCKS`` (default ``<tmp>/evseg-gpu-locks``), shared by every workflow on
  the machine: two Snakemake runs on one workstation do not collide either.
- A job that finds too few free devices waits (a run without ``--resources gpu=N`` is still correct, only
  its waiting jobs hold their cores) and gives up after ``EVSEG_GPU_WAIT_S`` seconds (default 3600).
- Under SLURM (``SLURM_JOB_ID`` set) the devices to share are only the allocation's, which SLURM puts in
  ``CUDA_VISIBLE_DEVICES`` (``EVSEG_GPUS`` is ignored: sbatch exports the submitting shell's), and the locks
  are the allocation's own (a subfolder ``slurm-<job id>``): with device cgroups every job numbers its GPUs
  from 0, so two jobs on a node must not lock each other's "GPU 0". A job of the slurm profile holds exactly
  the GPUs it asked for and claims them at once; Snakemake run with the local profile in a job step of an
  allocation (``salloc --gpus=4`` then ``srun --pty bash``) shares the allocation's GPUs among its jobs.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)


def _device_ids(value: str) -> list[str]:
    return [d.strip() for d in value.split(",") if d.strip()]


def visible_devices() -> list[str]:
    """The device ids that jobs of this machine, or of this SLURM allocation, share (module docstring)."""
    if os.environ.get("SLURM_JOB_ID"):
        return _device_ids(os.environ.get("CUDA_VISIBLE_DEVICES", ""))
    for name in ("EVSEG_GPUS", "CUDA_VISIBLE_DEVICES"):
        value = os.environ.get(name)
        if value is not None:
            return _device_ids(value)
    if shutil.which("nvidia-smi") is None:
        return []
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False).stdout
    return [str(i) for i, line in enumerate(listed.splitlines()) if line.startswith("GPU ")]


class GpuClaim:
    """Devices held by this process until ``release()`` or its end."""

    def __init__(self, devices: list[str], files: list):
        self.devices, self._files = devices, files

    def release(self) -> None:
        for f in self._files:
            f.close()  # closing the file drops its lock
        self._files = []


def claim(count: int, devices: list[str], lock_dir: str | Path, wait_s: float, poll_s: float = 2.0) -> GpuClaim:
    """Lock ``count`` of ``devices`` (the first free ones), waiting up to ``wait_s`` seconds."""
    if count > len(devices):
        raise RuntimeError(f"the job asks for {count} GPUs but this machine shares {len(devices)} ({devices}); "
                           "lower resources.<rule>.gpu in the config (0 runs it on the CPU), or set EVSEG_GPUS")
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    waited = False
    while True:
        held, files = [], []
        for device in devices:
            f = open(lock_dir / f"gpu{device}.lock", "a")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                continue
            held.append(device)
            files.append(f)
            if len(held) == count:
                return GpuClaim(held, files)
        GpuClaim(held, files).release()
        if time.monotonic() >= deadline:
            raise RuntimeError(f"no {count} of the GPUs {devices} became free within {wait_s:.0f} s (locks in "
                               f"{lock_dir}); other jobs hold them: run with --resources gpu=<number of GPUs>, "
                               "or raise EVSEG_GPU_WAIT_S")
        if not waited:
            log.info("waiting for %d free GPU(s) of %s", count, devices)
            waited = True
        time.sleep(poll_s)


def assign_gpus(count: int) -> GpuClaim | None:
    """Claim ``count`` devices for this job and make them its CUDA_VISIBLE_DEVICES (call before CUDA starts)."""
    if count <= 0:
        return None
    lock_dir = Path(os.environ.get("EVSEG_GPU_LOCKS") or Path(tempfile.gettempdir()) / "evseg-gpu-locks")
    devices = visible_devices()
    slurm_job = os.environ.get("SLURM_JOB_ID")
    if slurm_job:
        lock_dir = lock_dir / f"slurm-{slurm_job}"
        if "EVSEG_GPUS" in os.environ:
            log.warning("EVSEG_GPUS=%s is ignored in SLURM job %s: its GPUs are SLURM's choice",
                        os.environ["EVSEG_GPUS"], slurm_job)
        if count > len(devices):
            raise RuntimeError(
                f"the job asks for {count} GPUs (resources.<rule>.gpu) but SLURM job {slurm_job} was given "
                f"{len(devices)} (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}). The slurm "
                "profile asks for the rule's gpu as --gpus; under salloc, run Snakemake in a job step "
                "(srun --pty bash), where SLURM sets CUDA_VISIBLE_DEVICES")
    held = claim(count, devices, lock_dir, float(os.environ.get("EVSEG_GPU_WAIT_S", 3600)))
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(held.devices)
    log.info("GPUs %s (CUDA_VISIBLE_DEVICES)%s", os.environ["CUDA_VISIBLE_DEVICES"],
             f" of SLURM job {slurm_job}" if slurm_job else "")
    return held
