"""The errors every adapter raises, whatever the system behind it.

Each carries the service's name and a message that is safe to show a person: no tokens, no
URLs with credentials, no stack. An adapter never turns one of these into `None` or into a
different answer ("Slack did not answer" is not "you are not in the registry").
"""

from __future__ import annotations


class AdapterError(Exception):
    """Base: `service` names the system (e.g. "GitLab"), `message` says what happened."""

    def __init__(self, service: str, message: str) -> None:
        super().__init__(f"{service}: {message}")
        self.service = service
        self.message = message

    def shown(self) -> str:
        """One sentence for a person."""
        return f"{self.service} {self.message}"


class Unavailable(AdapterError):
    """The service did not answer, or answered that it cannot serve now (5xx, 429)."""


class OutcomeUnknown(Unavailable):
    """A change was sent but no answer came back: it may or may not have been made."""


class NotFound(AdapterError):
    """The service answered that the thing does not exist."""


class Conflict(AdapterError):
    """The service refused because the thing changed or already exists."""


class Refused(AdapterError):
    """The service refused the request: not allowed, or not valid."""
