"""Requests exactly as Slack sends them to an app's Request URL, correctly signed.

Each builder returns ``(body, headers)``: the raw bytes Slack would POST and the headers
that go with them. The signature comes from slack_sdk's own
``SignatureVerifier.generate_signature`` so these requests verify (or fail to) exactly
the way the app's verification code will judge them.

Payload shapes follow docs.slack.dev: the slash command page (form fields), the Events
API page (``event_callback`` envelope, ``X-Slack-Retry-Num``/``X-Slack-Retry-Reason`` on
redeliveries), the interactivity handling page (form field ``payload`` holding JSON), and
the ``url_verification`` handshake; the signing scheme is the "Verifying requests from
Slack" page (``v0:{timestamp}:{body}``, HMAC-SHA256, five-minute window).
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

JSONDict = dict[str, Any]
SignedRequest = tuple[bytes, dict[str, str]]

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
# What Slack's outgoing requests identify themselves as.
SLACK_USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"
# Slack still sends the deprecated verification token in payloads.
VERIFICATION_TOKEN = "legacy-verification-token"


def _compact(value: JSONDict) -> str:
    return json.dumps(value, separators=(",", ":"))


def signed_headers(
    signing_secret: str, body: bytes, *, content_type: str, timestamp: int | None = None
) -> dict[str, str]:
    """Slack's request headers for ``body``; an old ``timestamp`` makes a stale request."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(signing_secret).generate_signature(timestamp=ts, body=body)
    assert signature is not None
    return {
        "Content-Type": content_type,
        "User-Agent": SLACK_USER_AGENT,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature,
    }


def new_trigger_id() -> str:
    """A trigger_id in Slack's format, for requests no fake will exchange."""
    return f"{secrets.randbelow(10**12)}.{secrets.randbelow(10**10)}.{secrets.token_hex(16)}"


def slash_command(
    signing_secret: str,
    *,
    command: str = "/marvin",
    text: str,
    user_id: str,
    user_name: str,
    channel_id: str,
    channel_name: str,
    team_id: str = "T1",
    team_domain: str = "test",
    api_app_id: str = "A1",
    response_url: str,
    trigger_id: str,
    timestamp: int | None = None,
) -> SignedRequest:
    """A slash command invocation: form-encoded fields, as on the slash command page."""
    fields = {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "team_domain": team_domain,
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": api_app_id,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id,
    }
    body = urlencode(fields).encode()
    return body, signed_headers(signing_secret, body, content_type=FORM, timestamp=timestamp)


def event_callback(
    signing_secret: str,
    event: JSONDict,
    *,
    event_id: str | None = None,
    event_time: int | None = None,
    team_id: str = "T1",
    api_app_id: str = "A1",
    bot_user_id: str = "UBOT",
    retry_num: int | None = None,
    retry_reason: str | None = None,
    timestamp: int | None = None,
) -> SignedRequest:
    """An Events API delivery; ``retry_num``/``retry_reason`` mark it as a redelivery."""
    envelope = {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or "Ev" + secrets.token_hex(5).upper(),
        "event_time": int(time.time()) if event_time is None else event_time,
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": "4-" + secrets.token_hex(12),
    }
    body = _compact(envelope).encode()
    headers = signed_headers(signing_secret, body, content_type=JSON, timestamp=timestamp)
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = retry_reason or "http_timeout"
    return body, headers


def block_action(
    signing_secret: str,
    *,
    user_id: str,
    action_id: str,
    value: str,
    channel_id: str,
    response_url: str,
    message_ts: str | None = None,
    user_name: str = "user",
    channel_name: str = "channel",
    block_id: str = "actions",
    team_id: str = "T1",
    team_domain: str = "test",
    api_app_id: str = "A1",
    trigger_id: str | None = None,
    message: JSONDict | None = None,
    timestamp: int | None = None,
) -> SignedRequest:
    """A button click on a message: form field ``payload`` holding the JSON payload."""
    now = time.time()
    message_ts = message_ts or f"{now:.6f}"
    payload: JSONDict = {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": team_id},
        "api_app_id": api_app_id,
        "token": VERIFICATION_TOKEN,
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": False,
        },
        "trigger_id": trigger_id or new_trigger_id(),
        "team": {"id": team_id, "domain": team_domain},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": channel_name},
        "message": message or {"type": "message", "ts": message_ts, "text": ""},
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [
            {
                "action_id": action_id,
                "block_id": block_id,
                "text": {"type": "plain_text", "text": value, "emoji": True},
                "value": value,
                "type": "button",
                "action_ts": f"{now:.6f}",
            }
        ],
    }
    body = urlencode({"payload": _compact(payload)}).encode()
    return body, signed_headers(signing_secret, body, content_type=FORM, timestamp=timestamp)


def view_submission(
    signing_secret: str,
    *,
    user_id: str,
    view: JSONDict,
    values: JSONDict,
    user_name: str = "user",
    team_id: str = "T1",
    team_domain: str = "test",
    api_app_id: str = "A1",
    timestamp: int | None = None,
) -> SignedRequest:
    """A modal's submit button: form field ``payload`` holding the view as views.open
    answered it, with ``state.values`` as the person filled it in (block_id -> action_id ->
    element state)."""
    payload: JSONDict = {
        "type": "view_submission",
        "team": {"id": team_id, "domain": team_domain},
        "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": team_id},
        "api_app_id": api_app_id,
        "token": VERIFICATION_TOKEN,
        "trigger_id": new_trigger_id(),
        "view": {**view, "state": {"values": values}},
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }
    body = urlencode({"payload": _compact(payload)}).encode()
    return body, signed_headers(signing_secret, body, content_type=FORM, timestamp=timestamp)


def url_verification(
    signing_secret: str,
    *,
    challenge: str | None = None,
    timestamp: int | None = None,
) -> SignedRequest:
    """The handshake Slack sends when a Request URL is saved; the app echoes ``challenge``."""
    envelope = {
        "token": VERIFICATION_TOKEN,
        "challenge": challenge or secrets.token_urlsafe(32),
        "type": "url_verification",
    }
    body = _compact(envelope).encode()
    return body, signed_headers(signing_secret, body, content_type=JSON, timestamp=timestamp)
