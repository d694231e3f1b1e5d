"""The SLURM profile on a real SLURM: a single-node cluster on this machine (tests/slurm/start_cluster.sh installs
Debian's slurm-wlm, munge, slurmdbd and MariaDB, and starts them on 127.0.0.1; the node has 2 CPUs and 2 stand-in
GPUs), the tiny pipeline submitted through ``snakemake --profile configs/profiles/slurm``, with the commands of the
README's "Running on a cluster".

The set-up needs root and apt (as in CI). Elsewhere the tests are skipped, except under CI=true, where a
cluster that cannot start is a failure.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.test_workflow import REPO, SNAKEMAKE

START = REPO / "tests/slurm/start_cluster.sh"
# The plugin's first status check comes after 40 s by default; a cluster whose jobs take minutes does not
# notice, a test of 24 short jobs does.
FAST_STATUS = ("--slurm-init-seconds-before-status-checks", "1")
# The cluster's node has 2 stand-in GPUs (gres, no CUDA): these rules ask for them, train_semi for both, so it
# trains as 2 torchrun processes (on the CPU).
GPUS_ASKED = {"pseudo_label": 1, "train_semi": 2, "evaluate": 1}


def cluster_is_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    state = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    return state.returncode == 0 and any(s.strip() in ("idle", "mix", "alloc") for s in state.stdout.split())


@pytest.fixture(scope="module")
def cluster():
    """A running cluster, started if need be and left running: with SLURM's commands installed but its
    controller down, every Snakemake start waits ~9 s for the slurm plugin's `scontrol show config` probe.
    The start script runs even when a cluster is up (0.7 s then): it restarts one whose configuration is older
    than the script's (e.g. without the stand-in GPUs)."""
    if os.geteuid() == 0 and shutil.which("apt-get") is not None:
        done = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, f"{START} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    elif not cluster_is_up():
        if os.environ.get("CI") == "true":
            pytest.fail("CI must run the SLURM test: it needs root and apt-get to install SLURM")
        pytest.skip("no SLURM here, and starting one needs root and apt-get (tests/slurm/start_cluster.sh)")


def profile_run(workdir: Path, config: Path, *extra: str) -> subprocess.CompletedProcess:
    """The README's command, in ``workdir``."""
    return subprocess.run([*SNAKEMAKE, "--directory", str(workdir), "--profile", "configs/profiles/slurm",
                           "--configfile", str(config), *FAST_STATUS, *extra], cwd=REPO, capture_output=True,
                          text=True, timeout=1500)


def run_ids(output: str) -> list[str]:
    """The plugin's run ids in a Snakemake output: it names every job it submits after its run."""
    ids = re.findall(r"SLURM run ID: (\S+)", output)
    assert ids, "no 'SLURM run ID' in the Snakemake output:\n" + output[-3000:]
    return ids


def snakemake_jobs(ids: list[str]) -> pd.DataFrame:
    """sacct's record of the jobs of these Snakemake runs (job name = run id), one row per job (not per step).
    Selecting by run id leaves out the jobs of a test suite that runs at the same time from another clone, and
    those of an earlier, killed run that the database still believes running."""
    table = subprocess.run(["sacct", "-X", "-n", "-P", "-S", "now-1days", "--name", ",".join(ids),
                            "-o", "JobID,Partition,AllocCPUS,AllocTRES%200,State,Comment%200"],
                           capture_output=True, text=True, check=True).stdout
    rows = [line.split("|", 5) for line in table.splitlines() if line]
    jobs = pd.DataFrame(rows, columns=["job", "partition", "cpus", "tres", "state", "comment"])
    return jobs.assign(rule=jobs.comment.str.extract(r"^rule_([a-z_]+?)(?:_wildcards|$)", expand=False))


@pytest.fixture(scope="module")
def tiny_run(cluster, tmp_path_factory):
    """The tiny pipeline submitted through the profile: (workdir, its config, sacct's table of its jobs)."""
    workdir = tmp_path_factory.mktemp("slurm_tiny")
    config = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    # jobs asking for 1 CPU (the default) and for 2; train_semi's 2 processes get a CPU each
    config["resources"] = {"train": {"threads": 2}, "train_semi": {"threads": 2}}
    for rule, count in GPUS_ASKED.items():
        config["resources"].setdefault(rule, {})["gpu"] = count
    path = workdir / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    done = profile_run(workdir, path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return workdir, path, snakemake_jobs(run_ids(done.stdout + done.stderr))


def test_tiny_pipeline_through_the_slurm_profile(tiny_run):
    workdir, _, jobs = tiny_run
    results = workdir / "results/tiny"
    assert list(pd.read_csv(results / "evaluate/summary.csv").model)[:3] == ["source_only", "uda", "semi"]

    # every stage ran as a SLURM job, on the partition the profile gives its rule
    assert len(jobs) >= 20 and (jobs.state == "COMPLETED").all(), jobs
    profile = yaml.safe_load((REPO / "configs/profiles/slurm/profile.yaml").read_text())
    default = profile["default-resources"]["slurm_partition"]
    partition_of = {rule: r.get("slurm_partition", default) for rule, r in profile["set-resources"].items()}
    for rule, partition in zip(jobs.rule, jobs.partition):
        assert partition == partition_of.get(rule, default), (rule, partition)
    assert set(jobs.partition) == {"cpu", "gpu"}
    assert {"synthesize_dsec", "train_uda", "train_semi", "evaluate_summary"} <= set(jobs.rule)
    # with the GPUs it asked for: SLURM allocated them (--gpus) and the stage used those devices
    for rule, tres in zip(jobs.rule, jobs.tres):
        asked = GPUS_ASKED.get(rule, 0)
        allocated = re.search(r"gres/gpu=(\d+)", tres)
        assert (int(allocated.group(1)) if allocated else 0) == asked, (rule, tres)
    for rule, count in GPUS_ASKED.items():
        logs = [log for log in [results / f"logs/{rule}.log", *results.glob(f"logs/{rule}/**/*.log")] if log.is_file()]
        assert logs, f"no log of {rule}"
        for log in logs:
            devices = re.search(r"INFO GPUs (\S+) \(CUDA_VISIBLE_DEVICES\) of SLURM job \d+", log.read_text())
            assert devices and len(devices.group(1).split(",")) == count, log
    assert "data-parallel training on 2 GPUs" in (results / "logs/train_semi/seed0.log").read_text()
    # with the CPUs it asked for, bound to them
    seen = set()
    for log in [*results.glob("logs/**/*.log"), *(workdir / "data/synthetic/logs").glob("**/*.log")]:
        match = re.search(r"INFO (\d+) threads, (\d+) CPUs available", log.read_text())
        assert match, f"{log} has no CPU line"
        assert match.group(1) == match.group(2), log
        seen.add(int(match.group(1)))
    assert seen == {1, 2}


def test_a_failing_job_fails_the_workflow_and_shows_its_log(tiny_run):
    workdir, config, _ = tiny_run
    labeled = workdir / "results/tiny/split/labeled.txt"
    labeled.write_text(labeled.read_text() + "synth_00_a/999999\n")  # newer than train_semi's model: it reruns
    done = profile_run(workdir, config)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    slurm_log = re.search(r"log: (\S*slurm_logs/rule_train_semi\S*\.log)", output)
    assert slurm_log and Path(workdir, slurm_log.group(1)).is_file(), output[-4000:]
    assert "results/tiny/logs/train_semi/seed0.log" in output  # the rule's own log, printed (show-failed-logs)
    assert "999999" in output, output[-4000:]  # the stage's error names the bad id


# ------------------------------------------------------------------------------------------------------------
# the start script whatever state an earlier run, another clone or a second test suite left


MACHINE_LOCK = Path(os.environ.get("EVSEG_SLURM_LOCK", "/run/lock/evseg-slurm.lock"))  # as tests/slurm/lock.sh
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the start script runs as root only")


def start_script(script: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


@needs_root
def test_a_start_from_another_clone_waits_for_one_in_progress_then_finds_the_cluster_up(cluster, tmp_path):
    """A second clone's script (another path) waits while another start holds the machine-wide lock (a second
    test suite starting the cluster), then finds the cluster up and leaves it as it is."""
    other = tmp_path / "clone/tests/slurm"
    shutil.copytree(START.parent, other)
    with open(MACHINE_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a start in progress elsewhere
        run = subprocess.Popen(["bash", str(other / "start_cluster.sh")], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        time.sleep(2)
        waited = run.poll() is None
        fcntl.flock(lock, fcntl.LOCK_UN)
    try:
        out, err = run.communicate(timeout=300)
    finally:
        run.kill()
    assert waited and run.returncode == 0, out + err
    waiting = rf"waiting \(at most \d+s\) for the other start/stop that holds {re.escape(str(MACHINE_LOCK))}"
    assert re.search(waiting, out), out
    assert "cluster 'evseg' up" in out and "starting" not in out, out  # nothing restarted
    assert cluster_is_up()


@needs_root
def test_a_second_cluster_is_refused_with_what_runs_and_how_to_stop_it(cluster, tmp_path):
    state = tmp_path / "second-cluster"
    done = start_script(START, EVSEG_SLURM_DIR=str(state))
    assert done.returncode == 1
    assert "another evseg cluster (EVSEG_SLURM_DIR=" in done.stderr and "slurmctld (pid " in done.stderr
    assert f"bash {START.parent}/stop_cluster.sh" in done.stderr
    assert not state.exists()  # refused before it made anything
    assert cluster_is_up()


@needs_root
def test_a_start_that_waits_too_long_for_the_lock_says_who_holds_it(tmp_path):
    lock_path = tmp_path / "evseg-slurm.lock"
    (tmp_path / "evseg-slurm.lock.owner").write_text("start_cluster.sh in /elsewhere (pid 1234)\n")
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = start_script(START, EVSEG_SLURM_LOCK=str(lock_path), EVSEG_SLURM_LOCK_WAIT="1")
    assert done.returncode == 75, done.stdout + done.stderr
    assert f"waiting (at most 1s) for the other start/stop that holds {lock_path}" in done.stdout
    assert "held for more than 1s by: start_cluster.sh in /elsewhere (pid 1234)" in done.stderr


def test_pid_files_of_dead_or_other_processes_are_not_daemons(tmp_path):
    """Stale pid files (a reboot, a kill -9, a pid reused by another program) must not pass for live daemons."""
    sleeper = subprocess.Popen(["sleep", "60"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    try:
        cases = {"alive": (sleeper.pid, "sleep"), "other_program": (sleeper.pid, "slurmd"),
                 "dead": (dead.pid, "true"), "garbage": ("not a pid", "sleep"), "empty": ("", "sleep")}
        found = {}
        for name, (pid, comm) in cases.items():
            (tmp_path / name).write_text(f"{pid}\n")
            found[name] = subprocess.run(
                ["bash", "-c", f'source "{START.parent}/pids.sh"; alive_pid "{tmp_path / name}" {comm}'],
                capture_output=True, text=True, check=True).stdout.strip()
        found["missing"] = subprocess.run(
            ["bash", "-c", f'source "{START.parent}/pids.sh"; alive_pid "{tmp_path}/none" sleep'],
            capture_output=True, text=True, check=True).stdout.strip()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert found == {"alive": str(sleeper.pid), "other_program": "", "dead": "", "garbage": "", "empty": "",
                     "missing": ""}
