"""Replies and announcements as Slack messages: Block Kit with a plain-text fallback."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from marvin.models import Reply

CONFIRM_ACTION = "marvin_confirm"
APPROVE_ACTION = "marvin_approve"
DECLINE_ACTION = "marvin_decline"
# What each of Marvin's buttons says, as the command it stands for.
BUTTON_COMMANDS = {CONFIRM_ACTION: "confirm", APPROVE_ACTION: "approve", DECLINE_ACTION: "decline"}
_SECTION_LIMIT = 3000  # characters in one section's text
_MAX_BLOCKS = 50


def escape(text: str) -> str:
    """Slack reads <...> as links and mentions: what a person typed must not ping a channel."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _sections(text: str) -> list[dict[str, Any]]:
    chunks: list[str] = []
    current = ""
    for line in text.split("\n"):
        while len(line) > _SECTION_LIMIT:
            chunks.append(line[:_SECTION_LIMIT])
            line = line[_SECTION_LIMIT:]
        if len(current) + len(line) + 1 > _SECTION_LIMIT:
            chunks.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current:
        chunks.append(current)
    return [{"type": "section", "text": {"type": "mrkdwn", "text": c}} for c in chunks]


def reply_message(reply: Reply) -> dict[str, Any]:
    text = escape(reply.text)
    if not reply.ok and reply.kind == "error":
        text = f":warning: {text}"
    elif reply.kind == "denied":
        text = f":no_entry: {text}"
    blocks = _sections(text)
    if reply.confirm is not None:
        prompt = escape(reply.confirm.prompt)
        blocks.append(
            {
                "type": "actions",
                "block_id": "marvin_confirm",
                "elements": [
                    {
                        "type": "button",
                        "action_id": CONFIRM_ACTION,
                        "text": {"type": "plain_text", "text": "Go ahead"},
                        "style": "danger",
                        "value": reply.confirm.token,
                        "confirm": {
                            "title": {"type": "plain_text", "text": "Are you sure?"},
                            "text": {"type": "mrkdwn", "text": prompt[:300]},
                            "confirm": {"type": "plain_text", "text": "Do it"},
                            "deny": {"type": "plain_text", "text": "Cancel"},
                            "style": "danger",
                        },
                    }
                ],
            }
        )
    return {"text": text[:4000], "blocks": blocks[:_MAX_BLOCKS]}


def announcement_message(payloads: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One message for one or several announcements to the same channel."""
    blocks: list[dict[str, Any]] = []
    lines: list[str] = []
    for payload in payloads:
        text = escape(str(payload.get("text", "")))
        lines.append(text)
        blocks += _sections(f":loudspeaker: {text}")
        approval = payload.get("approval")
        if approval:
            blocks.append(_approval_buttons(str(approval["token"]), str(approval["prompt"])))
        fields = payload.get("fields") or {}
        if fields.get("request_id"):
            blocks.append(
                {
                    "type": "context",
                    "elements": [
                        {"type": "mrkdwn", "text": f"request `{escape(fields['request_id'])}`"}
                    ],
                }
            )
    return {"text": "\n".join(lines)[:4000], "blocks": blocks[:_MAX_BLOCKS]}


def _approval_buttons(token: str, prompt: str) -> dict[str, Any]:
    return {
        "type": "actions",
        "block_id": f"marvin_approval_{token}"[:255],
        "elements": [
            {
                "type": "button",
                "action_id": APPROVE_ACTION,
                "text": {"type": "plain_text", "text": "Approve"},
                "style": "primary",
                "value": token,
                "confirm": {
                    "title": {"type": "plain_text", "text": "Approve?"},
                    "text": {"type": "mrkdwn", "text": escape(prompt)[:300]},
                    "confirm": {"type": "plain_text", "text": "Approve"},
                    "deny": {"type": "plain_text", "text": "Cancel"},
                },
            },
            {
                "type": "button",
                "action_id": DECLINE_ACTION,
                "text": {"type": "plain_text", "text": "Decline"},
                "value": token,
            },
        ],
    }
