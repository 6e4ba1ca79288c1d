"""structlog setup: JSON when not on a terminal, pretty on one; secrets never printed."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

_SECRET_KEYS = re.compile(r"token|secret|password|authorization|signature", re.IGNORECASE)
# Slack bot/user/app tokens, GitLab personal/deploy/runner tokens, Unleash API tokens.
_SECRET_VALUES = re.compile(
    r"\b(xox[abposre]-|xapp-|glpat-|gldt-|glrt-|glptt-)[A-Za-z0-9_.=-]+"
    r"|\b([A-Za-z0-9_-]+:[A-Za-z0-9_-]+\.)[0-9a-f]{32,}"
)
# The process's own secrets, whatever they look like: someone may paste one into a command.
_SECRET_NAMES = (
    "SLACK_BOT_TOKEN",
    "SLACK_APP_TOKEN",
    "SLACK_SIGNING_SECRET",
    "GITLAB_TOKEN",
    "UNLEASH_ADMIN_TOKEN",
)


def redact_text(text: str) -> str:
    """`text` with anything that looks like a token, or is one of this process's secrets,
    replaced: what people type is stored and logged, tokens never are."""
    for name, value in os.environ.items():
        if (
            value
            and len(value) >= 8
            and (name in _SECRET_NAMES or name.startswith(("GITLAB_TOKEN_", "MARVIN_OFREP_TOKEN_")))
        ):
            text = text.replace(value, "[redacted]")
    return _SECRET_VALUES.sub(lambda m: (m.group(1) or m.group(2)) + "[redacted]", text)


def redact(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        if _SECRET_KEYS.search(key):
            event[key] = "[redacted]"
        elif isinstance(value, str):
            event[key] = redact_text(value)
    return event


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    out = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    # Libraries log through the standard library (and Python's warnings through it): the
    # same stream, the same format, the same redaction, one JSON object a line when JSON.
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                redact,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    logging.basicConfig(handlers=[handler], level=max(numeric, logging.WARNING), force=True)
    logging.captureWarnings(True)
