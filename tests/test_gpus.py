"""Local GPU assignment (evseg.gpus): disjoint devices for concurrent jobs, release on kill, and the workflow."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from evseg import gpus
from tests.test_workflow import REPO, snakemake

HOLDER = """
import sys, time
from evseg.gpus import claim
held = claim(int(sys.argv[1]), sys.argv[2].split(","), sys.argv[3], wait_s=float(sys.argv[4]), poll_s=0.05)
print(",".join(held.devices), flush=True)
time.sleep(600)
"""


def hold(count, devices, lock_dir, wait_s=5.0):
    """A process that claims ``count`` devices and keeps them; returns (process, its devices)."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(count), ",".join(devices), str(lock_dir),
                                str(wait_s)], stdout=subprocess.PIPE, text=True, cwd=REPO,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    return process, process.stdout.readline().strip().split(",")


def test_concurrent_jobs_get_disjoint_devices_and_a_kill_frees_them(tmp_path):
    devices = ["0", "1", "2"]
    first, got_first = hold(1, devices, tmp_path)
    second, got_second = hold(2, devices, tmp_path)
    try:
        assert got_first == ["0"] and got_second == ["1", "2"]  # the first free ones, each held by one job
        with pytest.raises(RuntimeError, match=r"no 1 of the GPUs \['0', '1', '2'\] became free"):
            gpus.claim(1, devices, tmp_path, wait_s=0.2, poll_s=0.05)
        second.send_signal(signal.SIGKILL)  # a killed job: the kernel drops its locks
        second.wait()
        mine = gpus.claim(2, devices, tmp_path, wait_s=5, poll_s=0.05)
        assert mine.devices == ["1", "2"]
        mine.release()
        assert gpus.claim(2, devices, tmp_path, wait_s=0).devices == ["1", "2"]
    finally:
        for process in (first, second):
            process.kill()
            process.wait()


def test_too_many_gpus_asked_for(tmp_path):
    with pytest.raises(RuntimeError, match="asks for 2 GPUs but this machine shares 1"):
        gpus.claim(2, ["0"], tmp_path, wait_s=0)


def test_device_list(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    monkeypatch.delenv("EVSEG_GPUS", raising=False)
    assert gpus.visible_devices() == ["2", "3"]  # a user's restriction is respected
    monkeypatch.setenv("EVSEG_GPUS", "1, 0")
    assert gpus.visible_devices() == ["1", "0"]
    monkeypatch.delenv("EVSEG_GPUS")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(gpus.shutil, "which", lambda _: None)
    assert gpus.visible_devices() == []
    monkeypatch.setenv("EVSEG_GPUS", "5,6")
    monkeypatch.setenv("EVSEG_GPU_LOCKS", str(tmp_path))
    held = gpus.assign_gpus(1)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5" and held.devices == ["5"]
    held.release()
    assert gpus.assign_gpus(0) is None


def test_slurm_jobs_share_their_own_allocation(monkeypatch, tmp_path):
    """Under SLURM the devices are the allocation's and the locks per allocation: with device cgroups two jobs
    on one node both see their GPU as 0, and must not wait for each other."""
    monkeypatch.delenv("EVSEG_GPUS", raising=False)
    monkeypatch.setenv("EVSEG_GPU_LOCKS", str(tmp_path))
    monkeypatch.setenv("EVSEG_GPU_WAIT_S", "0")
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)  # salloc's shell: not in a job step
    with pytest.raises(RuntimeError, match=r"asks for 1 GPUs \(resources.<rule>.gpu\) but SLURM job 42 was given 0"):
        gpus.assign_gpus(1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setenv("EVSEG_GPUS", "0,1,2,3")  # exported by sbatch from the submitting shell: not this job's
    with pytest.raises(RuntimeError, match=r"asks for 2 GPUs \(resources.<rule>.gpu\) but SLURM job 42 was given 1"):
        gpus.assign_gpus(2)
    job_42 = gpus.assign_gpus(1)
    assert job_42.devices == ["0"] and (tmp_path / "slurm-42/gpu0.lock").exists()
    with pytest.raises(RuntimeError, match="no 1 of the GPUs"):  # Snakemake's next job in the same allocation
        gpus.assign_gpus(1)
    monkeypatch.setenv("SLURM_JOB_ID", "43")
    job_43 = gpus.assign_gpus(1)  # another job, its own "GPU 0"
    assert job_43.devices == ["0"] and os.environ["CUDA_VISIBLE_DEVICES"] == "0"
    job_42.release()
    job_43.release()


def claims_in_logs(folder: Path) -> list[tuple[str, datetime, datetime]]:
    """(device, start, end) of each job: the time of its 'GPUs' log line, and the log's last change."""
    found = []
    for log in folder.rglob("*.log"):
        match = re.search(r"^(\S+ \S+) INFO GPUs (\S+) \(CUDA_VISIBLE_DEVICES\)", log.read_text(), re.MULTILINE)
        assert match, f"{log} has no GPU line:\n{log.read_text()}"
        start = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
        found.append((match.group(2), start, datetime.fromtimestamp(log.stat().st_mtime)))
    return found


def test_workflow_jobs_get_their_own_gpu(tmp_path):
    config = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    config.setdefault("resources", {})["synthesize_dsec"] = {"gpu": 1}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {"EVSEG_GPUS": "0,1", "EVSEG_GPU_LOCKS": str(tmp_path / "locks")}
    snakemake(tmp_path, "--until", "synthesize_dsec", "--cores", "2", "--resources", "gpu=2", "--configfile",
              str(path), env=env)
    claims = claims_in_logs(tmp_path / "data/synthetic/logs/synthesize_dsec")
    assert len(claims) >= 3 and {device for device, _, _ in claims} <= {"0", "1"}
    for i, (device, start, end) in enumerate(claims):
        for other, other_start, other_end in claims[i + 1:]:
            if start < other_end and other_start < end:  # ran at the same time
                assert device != other
