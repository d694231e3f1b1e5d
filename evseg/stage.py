"""Running a stage script under Snakemake (``script:``) or by hand from the command line.

A stage defines ``main(input, output, params, threads)``; at its bottom, ``run_stage(main, globals())``
calls it with Snakemake's objects, or with these parsed from the command line:

    python stages/inspect_sequence.py --input sequence=data/dsec/test/zurich_city_13_a \
        --output picture=seq.png stats=seq.json --params '{"dsec": {...}, "inspect": {...}}'

A stage may also take a fifth argument ``config``: the whole configuration, for settings that change how a
stage works but not what it produces (download retries, mirrors). Those must not be ``params``, whose
changes make Snakemake rerun the rule and everything downstream. By hand it is given with ``--config``.

Under Snakemake, stdout, stderr (progress bars included) and logging go to the rule's log file, and a rule
that asks for GPUs (``resources: gpu``) gets its own devices as CUDA_VISIBLE_DEVICES (evseg.gpus).

A training stage (``run_stage(..., data_parallel=True)``) given more than one GPU starts itself again through
torchrun, one process per GPU, with the same arguments on the command line; inside torchrun, ``run_stage``
joins the process group (evseg.distributed) before ``main``.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

from evseg import distributed
from evseg.gpus import assign_gpus


def as_list(value) -> list:
    """A rule input or output that may hold one path or several, as a list."""
    return [str(value)] if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__") else [str(v) for v in value]


def _namespace(pairs: list[str]) -> SimpleNamespace:
    """NAME=PATH pairs; a name given several times holds the list of its paths, as Snakemake's would."""
    values: dict[str, list[str]] = {}
    for pair in pairs:
        name, path = pair.split("=", 1)
        values.setdefault(name, []).append(path)
    return SimpleNamespace(**{name: paths[0] if len(paths) == 1 else paths for name, paths in values.items()})


def _json(text: str):
    return json.loads(open(text[1:]).read() if text.startswith("@") else text)


def _from_command_line() -> tuple[SimpleNamespace, SimpleNamespace, SimpleNamespace, int, dict]:
    parser = argparse.ArgumentParser(description="Run one evseg stage by hand (Snakemake passes the same).")
    parser.add_argument("--input", nargs="*", default=[], metavar="NAME=PATH")
    parser.add_argument("--output", nargs="*", default=[], metavar="NAME=PATH")
    parser.add_argument("--params", default="{}", help="a JSON object, or @file.json")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--config", default="{}", help="a JSON object, or @file.json (stages that read config)")
    args = parser.parse_args()
    params = SimpleNamespace(**_json(args.params))
    return _namespace(args.input), _namespace(args.output), params, args.threads, _json(args.config)


def _pairs(files) -> list[str]:
    """Snakemake's named inputs or outputs as NAME=PATH arguments (a list gives one pair per path)."""
    pairs = [f"{name}={path}" for name, value in files.items() for path in as_list(value)]
    if len(pairs) != len(files):
        raise ValueError(f"a data-parallel stage needs every input and output named, got {list(files)}")
    return pairs


def torchrun_command(script: str, processes: int, smk, folder: Path, takes_config: bool) -> list[str]:
    """The command line that runs ``script`` with Snakemake's arguments in ``processes`` torchrun processes;
    params (and config) go through JSON files in ``folder``."""
    (folder / "params.json").write_text(json.dumps(dict(smk.params.items())))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               script, "--input", *_pairs(smk.input), "--output", *_pairs(smk.output),
               "--params", f"@{folder / 'params.json'}", "--threads", str(max(1, smk.threads // processes))]
    if takes_config:
        (folder / "config.json").write_text(json.dumps(smk.config))
        command += ["--config", f"@{folder / 'config.json'}"]
    return command


def run_data_parallel(script: str, processes: int, smk, takes_config: bool, log) -> None:
    with tempfile.TemporaryDirectory(prefix="evseg-torchrun-") as folder:
        command = torchrun_command(script, processes, smk, Path(folder), takes_config)
        logging.info("data-parallel training on %d GPUs: %s", processes, " ".join(command))
        if log is not None:
            log.flush()
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT if log else None).returncode
    if code != 0:
        raise RuntimeError(f"the {processes} torchrun processes failed (exit code {code}): their messages are "
                           "above in this log")


def run_stage(main, namespace: dict, data_parallel: bool = False) -> None:
    """Call ``main`` with Snakemake's objects or the command line's (module docstring). ``data_parallel``:
    ``main`` trains with evseg.distributed and may run as several torchrun processes."""
    smk = namespace.get("snakemake")
    takes_config = "config" in inspect.signature(main).parameters
    if smk is None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        *arguments, config = _from_command_line()
        if data_parallel:
            distributed.start_from_environment()
        try:
            main(*arguments, **({"config": config} if takes_config else {}))
        finally:
            distributed.stop()
        return
    log_path = smk.log[0] if smk.log else None
    with contextlib.ExitStack() as stack:
        if log_path:
            log = stack.enter_context(open(log_path, "w", buffering=1))
            stack.enter_context(contextlib.redirect_stdout(log))
            stack.enter_context(contextlib.redirect_stderr(log))
            logging.basicConfig(stream=log, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                                force=True)
        # what the scheduler granted: on SLURM, CPU binding makes the second number the job's --cpus-per-task
        logging.info("%d threads, %d CPUs available", smk.threads, len(os.sched_getaffinity(0)))
        try:
            gpu_count = int(getattr(smk.resources, "gpu", 0) or 0)
            gpus = assign_gpus(gpu_count)  # before anything starts CUDA
            if gpus is not None:
                stack.callback(gpus.release)
            if gpu_count > 1 and data_parallel:
                run_data_parallel(namespace["__file__"], gpu_count, smk, takes_config, log if log_path else None)
                return
            if gpu_count > 1:
                logging.warning("this stage uses one of its %d GPUs: lower resources.<rule>.gpu to 1", gpu_count)
            main(smk.input, smk.output, smk.params, smk.threads, **({"config": smk.config} if takes_config else {}))
        except Exception:
            logging.exception("stage failed")
            raise
