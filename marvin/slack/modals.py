"""The declare form: `/marvin incident declare` with no arguments opens it in Slack.

The form is only another way to type the command: what is submitted is checked field by
field (errors go back next to the fields, in Slack's `response_action: errors`), then
turned into the very `incident declare "<title>" --severity N ...` text the pipeline runs,
with its gate, policies, audit and announcement, as if it had been typed where the form was
opened.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from marvin.commands.incident import IncidentDeclare
from marvin.config import Settings

DECLARE_CALLBACK = "marvin_incident_declare"
DECLARE_TEXT = "incident declare"

# Block ids (one input each) and the command's field each one fills.
TITLE, SEVERITY, SERVICE, LABELS, CONFIDENTIAL, ASSIGN = (
    "title",
    "severity",
    "service",
    "labels",
    "confidential",
    "assign",
)
ACTION = "value"
_SEVERITIES = {
    "1": "1: critical, customers can't use it",
    "2": "2: major, many customers affected",
    "3": "3: minor, some affected",
    "4": "4: low, hardly anyone",
}


def opens_form(text: str) -> bool:
    """`incident declare` and nothing else (the form asks for the rest)."""
    return " ".join(text.lower().split()) == DECLARE_TEXT


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text}


def _option(value: str, text: str) -> dict[str, Any]:
    return {"text": _plain(text[:75]), "value": value}


def _input(block_id: str, label: str, element: dict[str, Any], *, optional: bool) -> dict[str, Any]:
    return {
        "type": "input",
        "block_id": block_id,
        "label": _plain(label),
        "optional": optional,
        "element": {**element, "action_id": ACTION},
    }


def declare_view(
    settings: Settings, *, channel_id: str, channel_name: str | None
) -> dict[str, Any]:
    """The form, with the fields of `incident declare`; where it was opened travels in
    `private_metadata`, so the submission runs there."""
    reasons = settings.incidents.confidential_reasons
    blocks = [
        _input(
            TITLE,
            "What is broken?",
            {"type": "plain_text_input", "min_length": 3, "max_length": 200},
            optional=False,
        ),
        _input(
            SEVERITY,
            "Severity",
            {
                "type": "static_select",
                "options": [_option(v, t) for v, t in _SEVERITIES.items()],
            },
            optional=False,
        ),
        _input(SERVICE, "Service affected", {"type": "plain_text_input"}, optional=True),
        _input(
            LABELS,
            "More labels, comma-separated",
            {"type": "plain_text_input", "max_length": 1000},
            optional=True,
        ),
    ]
    if reasons:
        blocks.append(
            _input(
                CONFIDENTIAL,
                "Confidential, for this reason (public by default)",
                {"type": "static_select", "options": [_option(r, r) for r in reasons[:100]]},
                optional=True,
            )
        )
    blocks.append(_input(ASSIGN, "Handler (default: you)", {"type": "users_select"}, optional=True))
    return {
        "type": "modal",
        "callback_id": DECLARE_CALLBACK,
        "title": _plain("Declare an incident"),
        "submit": _plain("Declare"),
        "close": _plain("Cancel"),
        "private_metadata": json.dumps({"channel_id": channel_id, "channel_name": channel_name}),
        "blocks": blocks,
    }


@dataclass(frozen=True)
class Submitted:
    """A submitted form: the command to run and where, or the errors to show."""

    text: str | None
    errors: dict[str, str]
    channel_id: str
    channel_name: str | None


def _value(values: Mapping[str, Any], block_id: str) -> str | None:
    state = (values.get(block_id) or {}).get(ACTION) or {}
    kind = state.get("type")
    if kind == "static_select":
        option = state.get("selected_option") or {}
        raw = option.get("value")
    elif kind == "users_select":
        raw = state.get("selected_user")
    else:
        raw = state.get("value")
    if raw is None:
        return None
    text = " ".join(str(raw).split())
    return text or None


_QUOTE_CHARS = "\"'“”‘’„"


def _quoted(value: str) -> str | None:
    """`value` as one word of the grammar (quoted when it must be); None when no quote can
    hold it."""
    bare = not any(c.isspace() or c in _QUOTE_CHARS for c in value)
    if bare and value[:1] not in "-\u2013\u2014":
        return value
    for opening, closers in (('"', '"”“'), ("'", "'’")):
        if not any(c in value for c in closers):
            return f"{opening}{value}{opening}"
    return None


_FIELD_BLOCKS = {
    "title": TITLE,
    "severity": SEVERITY,
    "service": SERVICE,
    "labels": LABELS,
    "confidential": CONFIDENTIAL,
    "assign": ASSIGN,
}


def read_declare(view: Mapping[str, Any], settings: Settings) -> Submitted:
    try:
        where = json.loads(str(view.get("private_metadata") or "{}"))
    except ValueError:
        where = {}
    channel_id = str(where.get("channel_id") or "")
    channel_name = where.get("channel_name")
    values = ((view.get("state") or {}).get("values")) or {}
    got = {field: _value(values, block) for field, block in _FIELD_BLOCKS.items()}
    errors: dict[str, str] = {}
    if got["title"] is None:
        errors[TITLE] = "Say in a few words what is broken."
    if got["severity"] is None:
        errors[SEVERITY] = "Pick a severity."
    reasons = {r.lower() for r in settings.incidents.confidential_reasons}
    if got["confidential"] is not None and got["confidential"].lower() not in reasons:
        errors[CONFIDENTIAL] = "Pick a reason from the list, or leave it public."
    fields = {k: v for k, v in got.items() if v is not None and k not in ("assign",)}
    try:
        IncidentDeclare.model_validate(fields)
    except ValidationError as exc:
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "title"
            message = error["msg"].removeprefix("Value error, ")
            errors.setdefault(_FIELD_BLOCKS.get(field, TITLE), message[:150])
    words = ["incident", "declare"]
    for field, value in got.items():
        if value is None or field in errors:
            continue
        if field == "assign":
            words += ["--assign", f"<@{value}>"]
            continue
        word = _quoted(value)
        if word is None:
            errors[_FIELD_BLOCKS[field]] = "Use either double or single quotes here, not both."
            continue
        words += [word] if field == "title" else [f"--{field}", word]
    if errors:
        return Submitted(None, errors, channel_id, channel_name)
    return Submitted(" ".join(words), {}, channel_id, channel_name)
