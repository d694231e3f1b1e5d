"""Rule download: one file of evseg/fetch/manifest.yaml (dataset archive or weights), resumable and verified."""

from evseg.fetch.auth import cityscapes_fix, cityscapes_session
from evseg.fetch.http import download
from evseg.stage import as_list, run_stage

PUBLIC_FIX = "the file should be public: check that the URL still works in a browser, or set download.mirrors"


def main(input, output, params, threads):
    entry, fetch = params.entry, params.fetch
    if entry["auth"] == "cityscapes":
        session = cityscapes_session(params.cityscapes_login, timeout_s=fetch["timeout_s"])
        fix = cityscapes_fix("www.cityscapes-dataset.com") + "; the account must be approved for this package"
    else:
        session, fix = None, PUBLIC_FIX
    download(entry["url"], as_list(output)[0], sha256=entry["sha256"], size=entry["size"], session=session,
             retries=fetch["retries"], timeout_s=fetch["timeout_s"], backoff_s=fetch.get("backoff_s", 2.0),
             auth_fix=fix)


run_stage(main, globals())
