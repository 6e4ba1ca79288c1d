"""How a failed call to Slack is named in metrics and logs."""

from __future__ import annotations

from slack_sdk.errors import SlackApiError


def error_name(exc: Exception) -> str:
    """Slack's own error code, its HTTP status without one, or the exception's kind when
    Slack never answered (a network error)."""
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error") or exc.response.status_code)
    return type(exc).__name__
