"""Rule download: one file of evseg/fetch/manifest.yaml (dataset archive or weights), resumable and verified.

params.entry is the manifest entry with its official URL; how to fetch it (mirrors, retries, timeouts) comes
from config["download"], so that changing those settings does not rerun the pipeline.
"""

from evseg.fetch.auth import CITYSCAPES_LOGIN, cityscapes_fix, cityscapes_session
from evseg.fetch.http import download
from evseg.fetch.manifest import with_mirrors
from evseg.stage import as_list, run_stage

PUBLIC_FIX = "the file should be public: check that the URL still works in a browser, or set download.mirrors"


def main(input, output, params, threads, config):
    if "download" not in config:
        raise ValueError("the download stage reads config['download'] (retries, timeout_s, backoff_s, mirrors): "
                         "by hand, give it with --config '{\"download\": {...}}' or --config @config.json")
    entry, settings = params.entry, config["download"]
    mirrors = settings.get("mirrors") or {}
    if entry["auth"] == "cityscapes":
        login = with_mirrors(CITYSCAPES_LOGIN, mirrors)
        session = cityscapes_session(login, timeout_s=settings["timeout_s"])
        fix = cityscapes_fix() + "; the account must be approved for this package"
    else:
        session, fix = None, PUBLIC_FIX
    download(with_mirrors(entry["url"], mirrors), as_list(output)[0], sha256=entry["sha256"], size=entry["size"],
             session=session, retries=settings["retries"], timeout_s=settings["timeout_s"],
             backoff_s=settings["backoff_s"], auth_fix=fix)


run_stage(main, globals())
