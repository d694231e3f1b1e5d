"""Logins for downloads that need an account (Cityscapes).

Credentials come from environment variables or ``~/.netrc``, never from config files, and are never
logged: error messages name where credentials are looked up, not their values.
"""

from __future__ import annotations

import netrc
import os
from urllib.parse import urlsplit

import requests

CITYSCAPES_LOGIN = "https://www.cityscapes-dataset.com/login/"
CITYSCAPES_ENV = ("CITYSCAPES_USERNAME", "CITYSCAPES_PASSWORD")


def cityscapes_fix(host: str) -> str:
    return (f"register at https://www.cityscapes-dataset.com and wait for the account's approval, then set "
            f"{CITYSCAPES_ENV[0]} and {CITYSCAPES_ENV[1]} in the environment, or add the line 'machine {host} "
            "login <user> password <password>' to ~/.netrc (chmod 600)")


def credentials(host: str, env: tuple[str, str]) -> tuple[str, str] | None:
    """(user, password) from the two environment variables, else from ~/.netrc's entry for ``host``."""
    user, password = (os.environ.get(name) for name in env)
    if user and password:
        return user, password
    try:
        entry = netrc.netrc().authenticators(host)
    except (FileNotFoundError, netrc.NetrcParseError):
        return None
    return (entry[0], entry[2]) if entry and entry[0] and entry[2] else None


def cityscapes_session(login_url: str = CITYSCAPES_LOGIN, timeout_s: float = 60) -> requests.Session:
    """A session logged in to the Cityscapes website, whose cookie authorises the package downloads.

    The credentials are looked up under the official host, also when ``login_url`` points at a mirror.
    """
    host = urlsplit(CITYSCAPES_LOGIN).hostname
    found = credentials(host, CITYSCAPES_ENV)
    if found is None:
        raise PermissionError(f"Cityscapes needs an account and none was found: {cityscapes_fix(host)}")
    session = requests.Session()
    response = session.post(login_url, data={"username": found[0], "password": found[1], "submit": "Login"},
                            timeout=timeout_s)
    if response.status_code in (401, 403) or not session.cookies:
        raise PermissionError(f"the Cityscapes login at {login_url} was refused (HTTP {response.status_code}): "
                              f"check the user name and password; {cityscapes_fix(host)}")
    response.raise_for_status()
    return session
