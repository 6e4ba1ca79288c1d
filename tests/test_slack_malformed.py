"""What anyone on the internet can send to /slack/events: every request gets a 4xx or a 200,
never a 500; nothing unsigned or malformed makes an account; nothing leaves a traceback.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest

from marvin.store.tables import Account, InboxItem
from tests.fakes import slack_requests
from tests.fakes.slack_requests import FORM, JSON, signed_headers
from tests.slack_harness import (
    SECRET,
    SlackRig,
    json_log_fixture,  # noqa: F401
    log_entries,
    rig_factory_fixture,  # noqa: F401
    rig_fixture,  # noqa: F401
)

Build = Callable[[], tuple[bytes, dict[str, str]]]


def _signed_json(value: Any) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(value).encode()
    return body, signed_headers(SECRET, body, content_type=JSON)


def _signed_form(fields: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    body = urlencode(fields).encode()
    return body, signed_headers(SECRET, body, content_type=FORM)


def _command(**changes: Any) -> dict[str, str]:
    fields = {
        "token": "t",
        "team_id": "T1",
        "channel_id": "C0PRODUCTION",
        "channel_name": "production",
        "user_id": "UBOB",
        "user_name": "bob",
        "command": "/marvin",
        "text": "whoami",
        "response_url": "http://127.0.0.1:1/x",
        "trigger_id": "1.2.3",
    }
    fields.update(changes)
    return {k: v for k, v in fields.items() if v is not None}


def _unsigned(headers: dict[str, str], body: bytes = b"command=%2Fmarvin") -> Build:
    return lambda: (body, {"Content-Type": FORM, **headers})


def _event(event: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "event_callback", "team_id": "T1", "event_id": "EvX", "event": event, **extra}


UNSIGNED: dict[str, Build] = {
    "timestamp ²": _unsigned({"X-Slack-Request-Timestamp": "²", "X-Slack-Signature": "v0=00"}),
    "timestamp of 5,000 digits": _unsigned(
        {"X-Slack-Request-Timestamp": "9" * 5000, "X-Slack-Signature": "v0=00"}
    ),
    "negative timestamp": _unsigned(
        {"X-Slack-Request-Timestamp": "-5", "X-Slack-Signature": "v0=00"}
    ),
    "no signature": _unsigned({"X-Slack-Request-Timestamp": str(int(time.time()))}),
    "no headers at all": _unsigned({}),
    "unknown charset": lambda: (
        b"command=%2Fmarvin",
        {
            "Content-Type": "application/x-www-form-urlencoded; charset=x-klingon",
            "X-Slack-Request-Timestamp": str(int(time.time())),
            "X-Slack-Signature": "v0=00",
        },
    ),
    "deeply nested JSON": lambda: (
        b"[" * 100_000 + b"]" * 100_000,
        {
            "Content-Type": JSON,
            "X-Slack-Request-Timestamp": str(int(time.time())),
            "X-Slack-Signature": "v0=00",
        },
    ),
}

SIGNED: dict[str, Build] = {
    "team as a string": lambda: _signed_json(_event({"type": "app_mention"}, team="T1")),
    "event null": lambda: _signed_json(_event(None)),
    "event a list": lambda: _signed_json(_event([1, 2])),
    "event a string": lambda: _signed_json(_event("hello")),
    "body a list": lambda: _signed_json([1, 2, 3]),
    "body a string": lambda: _signed_json("hello"),
    "deeply nested JSON": lambda: (
        lambda body: (body, signed_headers(SECRET, body, content_type=JSON))
    )(b"[" * 100_000 + b"]" * 100_000),
    "a message without a user": lambda: _signed_json(
        _event({"type": "message", "channel_type": "im", "channel": "DBOB", "text": "hi"})
    ),
    "a mention with a user that is not a string": lambda: _signed_json(
        _event({"type": "app_mention", "channel": "C1", "user": {"id": "U1"}, "text": "<@UBOT>"})
    ),
    "a slash command without user_id": lambda: _signed_form(_command(user_id=None)),
    "a slash command with an empty user_id": lambda: _signed_form(_command(user_id="")),
    "a slash command with an odd user_id": lambda: _signed_form(_command(user_id="../../x")),
    "a button with no actions": lambda: _signed_form(
        {"payload": json.dumps({"type": "block_actions", "user": {"id": "UBOB"}})}
    ),
    "a button payload that is not JSON": lambda: _signed_form({"payload": "{nope"}),
}


@pytest.mark.parametrize("name", list(UNSIGNED))
async def test_unsigned_nonsense_is_refused_quietly(
    rig: SlackRig, json_log: Any, name: str
) -> None:
    body, headers = UNSIGNED[name]()
    response = await rig.post(body, headers)
    assert 400 <= response.status < 500, (response.status, await response.text())
    await rig.settle()
    assert await rig.rows(Account) == [] and await rig.rows(InboxItem) == []
    entries = log_entries(json_log)
    assert not any("Traceback" in json.dumps(e) or e.get("exception") for e in entries)
    assert len(entries) <= 1


@pytest.mark.parametrize("name", list(SIGNED))
async def test_signed_but_malformed_is_never_a_500_nor_an_account(
    rig: SlackRig, json_log: Any, name: str
) -> None:
    body, headers = SIGNED[name]()
    response = await rig.post(body, headers)
    assert response.status < 500, (response.status, await response.text())
    await rig.settle()
    assert await rig.rows(Account) == []
    entries = log_entries(json_log)
    assert not any(e.get("exception") for e in entries), entries


async def test_two_timestamp_headers_are_refused(rig: SlackRig) -> None:
    body, headers = slack_requests.slash_command(
        SECRET,
        text="whoami",
        user_id="UBOB",
        user_name="bob",
        channel_id="C0PRODUCTION",
        channel_name="production",
        response_url="http://127.0.0.1:1/x",
        trigger_id="1.2.3",
    )
    from multidict import CIMultiDict

    doubled = CIMultiDict(headers)
    doubled.add("X-Slack-Request-Timestamp", "1")
    response = await rig.client.post("/slack/events", data=body, headers=doubled)
    assert response.status == 401
    assert await rig.rows(Account) == []
