"""The tripwire: an outside call made while a database write transaction is open fails the
test that made it.

On SQLite a write transaction blocks every other writer, the inbox write of each Slack ack
included, so an HTTP call inside one makes other people's acks wait for Slack or GitLab.
The HTTP clients Marvin uses (aiohttp under slack_sdk and Bolt, requests under
python-gitlab) are wrapped once per test session; each call asks `write_open()`, which is
a context variable read: cheap enough to stay on in every test. A violation is recorded
(raising inside the call could be swallowed by the code under test) and the autouse
fixture fails the test at its end.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

import aiohttp
import requests

from marvin.store.db import write_open

violations: list[str] = []
_installed = False


def _record(what: str) -> None:
    stack = "".join(traceback.format_stack(limit=12)[:-2])
    violations.append(f"{what} while a write transaction was open:\n{stack}")


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    original_request: Callable[..., Any] = aiohttp.ClientSession._request

    async def guarded_request(
        self: aiohttp.ClientSession, method: str, url: Any, *a: Any, **k: Any
    ) -> Any:
        if write_open():
            _record(f"aiohttp {method} {url}")
        return await original_request(self, method, url, *a, **k)

    aiohttp.ClientSession._request = guarded_request  # type: ignore[method-assign]

    original_send: Callable[..., Any] = requests.Session.send

    def guarded_send(self: requests.Session, request: Any, **kwargs: Any) -> Any:
        if write_open():
            _record(f"requests {request.method} {request.url}")
        return original_send(self, request, **kwargs)

    requests.Session.send = guarded_send  # type: ignore[method-assign]


def take() -> list[str]:
    found = list(violations)
    violations.clear()
    return found
