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
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import logging
from types import SimpleNamespace

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


def run_stage(main, namespace: dict) -> None:
    smk = namespace.get("snakemake")
    takes_config = "config" in inspect.signature(main).parameters
    if smk is None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        *arguments, config = _from_command_line()
        main(*arguments, **({"config": config} if takes_config else {}))
        return
    log_path = smk.log[0] if smk.log else None
    with contextlib.ExitStack() as stack:
        if log_path:
            log = stack.enter_context(open(log_path, "w", buffering=1))
            stack.enter_context(contextlib.redirect_stdout(log))
            stack.enter_context(contextlib.redirect_stderr(log))
            logging.basicConfig(stream=log, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                                force=True)
        try:
            gpus = assign_gpus(int(getattr(smk.resources, "gpu", 0) or 0))  # before anything starts CUDA
            if gpus is not None:
                stack.callback(gpus.release)
            main(smk.input, smk.output, smk.params, smk.threads, **({"config": smk.config} if takes_config else {}))
        except Exception:
            logging.exception("stage failed")
            raise
