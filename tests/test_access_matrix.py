"""The authorization matrix: every access command against every demo role, in a direct
message, asserting allow or deny and the reason."""

from __future__ import annotations

import pytest

from tests.harness import Bot

# Demo people by role (demo/roles.yaml); zed is in no registry at all.
PEOPLE = {
    "alice": "production",
    "dave": "release-manager",
    "erin": "support",
    "frank": "engineering-manager",
    "bob": "developer with the feature_flags grant",
    "carol": "developer",
    "zed": "stranger",
}
ANYONE = {
    "access who": "access who --env staging",
    "access check": "access check @erin",
    "access mine": "access mine",
    "access request": 'access request runners "debugging a runner"',
    "account link": "account link frank",
}
PRODUCTION_ONLY = {
    "access grant": "access grant feature_flags @carol --issue #1",
    "access revoke": "access revoke feature_flags @carol",
    "access refresh": "access refresh",
    "access report": "access report",
    "access reviewed": "access reviewed @erin",
    "account confirm": "account confirm 1",
}
CASES = [
    (command, text, who, command in ANYONE or who == "alice")
    for command, text in {**ANYONE, **PRODUCTION_ONLY}.items()
    for who in PEOPLE
]


def test_the_matrix_covers_every_access_command(bot: Bot) -> None:
    names = {s.name for s in bot.pipeline.registry.specs if s.group in ("access", "account")}
    assert names == {*ANYONE, *PRODUCTION_ONLY}


@pytest.mark.parametrize(
    ("command", "text", "who", "allowed"),
    CASES,
    ids=[f"{c}-{w}" for c, _, w, _ in CASES],
)
async def test_access_authorization(
    bot: Bot, command: str, text: str, who: str, allowed: bool
) -> None:
    reply = await bot.say(who, text, dm=True)
    assert reply.command == command
    if allowed:
        assert reply.denied_by is None, reply.text
        return
    assert reply.denied_by == "roles"
    assert not reply.ok
    assert f"`{command}` is for production engineers (the `production` role) only." in (reply.text)
