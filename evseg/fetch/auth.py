"""Logins for downloads that need an account (Cityscapes).

Credentials come from environment variables or ``~/.netrc``, never from config files, and are never
logged: error messages name where credentials are looked up, not their values. The environment variables
are only ever sent to the official website; a mirror's login (download.mirrors) needs its own ``~/.netrc``
entry, so that a typo in a mirror URL cannot hand the official account to another host.
"""

from __future__ import annotations

import netrc
import os
import time
from urllib.parse import urlsplit

import requests

from evseg.fetch.manifest import cityscapes_login

CITYSCAPES_LOGIN = cityscapes_login()
CITYSCAPES_HOST = urlsplit(CITYSCAPES_LOGIN).hostname
CITYSCAPES_ENV = ("CITYSCAPES_USERNAME", "CITYSCAPES_PASSWORD")
LOGIN_ATTEMPTS = 3


def cityscapes_fix(host: str = CITYSCAPES_HOST) -> str:
    environment = (f"set {CITYSCAPES_ENV[0]} and {CITYSCAPES_ENV[1]} in the environment, or "
                   if host == CITYSCAPES_HOST else "")
    return (f"register at https://www.cityscapes-dataset.com and wait for the account's approval, then "
            f"{environment}add the line 'machine {host} login <user> password <password>' to ~/.netrc (chmod 600)")


def netrc_entry(host: str) -> tuple[str, str] | None:
    """(user, password) of ``host`` in ~/.netrc; None without a file or entry; a broken file is an error."""
    try:
        entry = netrc.netrc().authenticators(host)
    except FileNotFoundError:
        return None
    except (netrc.NetrcParseError, OSError) as err:
        raise PermissionError(f"~/.netrc cannot be read ({err}): fix the file, or remove it and use the "
                              "environment variables") from err
    return (entry[0], entry[2]) if entry and entry[0] and entry[2] else None


def credentials(host: str, env: tuple[str, str] | None) -> tuple[str, str] | None:
    """(user, password) from the two environment variables ``env`` (if given), else ~/.netrc's entry for ``host``."""
    user, password = (os.environ.get(name) for name in env) if env else (None, None)
    if user and password:
        return user, password
    return netrc_entry(host)


def cityscapes_session(login_url: str = CITYSCAPES_LOGIN, timeout_s: float = 60) -> requests.Session:
    """A session logged in to the Cityscapes website, whose cookie authorises the package downloads."""
    host = urlsplit(login_url).hostname
    found = credentials(host, CITYSCAPES_ENV if host == CITYSCAPES_HOST else None)
    if found is None:
        raise PermissionError(f"Cityscapes needs an account and none was found for {host}: {cityscapes_fix(host)}")
    session = requests.Session()
    for attempt in range(LOGIN_ATTEMPTS):
        try:
            response = session.post(login_url, data={"username": found[0], "password": found[1], "submit": "Login"},
                                    timeout=timeout_s)
            break
        except requests.exceptions.RequestException as err:
            if attempt + 1 == LOGIN_ATTEMPTS:  # from None: the chained error would repeat the request
                raise ConnectionError(f"the Cityscapes login at {host} failed {LOGIN_ATTEMPTS} times "
                                      f"({type(err).__name__}): check the network and rerun") from None
            time.sleep(2**attempt)
    # the site answers a wrong password with the login form again (HTTP 200, and a CSRF cookie)
    if response.status_code in (401, 403) or 'type="password"' in response.text:
        raise PermissionError(f"the Cityscapes login at {host} was refused (HTTP {response.status_code}, the "
                              f"login form came back): check the user name and password; {cityscapes_fix(host)}")
    response.raise_for_status()
    return session
