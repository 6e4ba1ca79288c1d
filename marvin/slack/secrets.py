"""Slack credentials: from the environment under Bolt's usual names, never from YAML."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import SecretStr

from marvin.config import Settings

PLACEHOLDER_CHANNEL = "C0PRODUCTION"


@dataclass(frozen=True)
class SlackSecrets:
    bot_token: SecretStr | None
    signing_secret: SecretStr | None
    app_token: SecretStr | None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SlackSecrets:
        env = os.environ if env is None else env

        def read(name: str) -> SecretStr | None:
            value = env.get(name, "").strip()
            return SecretStr(value) if value else None

        return cls(
            bot_token=read("SLACK_BOT_TOKEN"),
            signing_secret=read("SLACK_SIGNING_SECRET"),
            app_token=read("SLACK_APP_TOKEN"),
        )


def missing_for_serve(settings: Settings, secrets: SlackSecrets) -> list[str]:
    """What `marvin serve` still needs, each as a sentence an operator can act on."""
    problems: list[str] = []
    if secrets.bot_token is None:
        problems.append("SLACK_BOT_TOKEN is not set (the bot token, xoxb-...)")
    elif not secrets.bot_token.get_secret_value().startswith("xoxb-"):
        problems.append("SLACK_BOT_TOKEN does not look like a bot token (xoxb-...)")
    if settings.slack.mode == "http" and secrets.signing_secret is None:
        problems.append("SLACK_SIGNING_SECRET is not set (needed to verify Slack's requests)")
    if settings.slack.mode == "socket":
        if secrets.app_token is None:
            problems.append("SLACK_APP_TOKEN is not set (the app-level token, xapp-...)")
        elif not secrets.app_token.get_secret_value().startswith("xapp-"):
            problems.append("SLACK_APP_TOKEN does not look like an app-level token (xapp-...)")
    if settings.production_channel.chat == "none":
        problems.append(
            "production_channel.chat is none: set it to slack (or auto), so that announcements "
            "go to the channel in Slack"
        )
    if settings.production_channel.id == PLACEHOLDER_CHANNEL:
        problems.append(
            "production_channel.id is still the example value; set it to your channel's id"
        )
    return problems
