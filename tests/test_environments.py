"""Configured flag environments: GitLab.com's six (`--dev`, `--staging`, `--staging-ref`,
`--pre`, `--ops`, `--production`), each an option of `feature`, each judged against the one
it follows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from marvin.config import ConfigError, load_settings
from marvin.environments import DEFAULT, RESERVED, Environments, environment_problems
from marvin.flags import Environment
from marvin.ofrep import tokens_from_env
from marvin.store.tables import AuditRecord, FlagChange, LocalFlag
from marvin.wiring import registry
from tests.harness import Bot

# A list, in the order they are shown: a mapping would be merged into the example's.
GITLAB_COM = {
    "environments": [
        "dev",
        "staging",
        {"staging-ref": {"follows": "staging"}},
        {"pre": None},
        "ops",
        {"production": {"follows": "staging"}},
    ]
}


@pytest.fixture
def gitlab_com(bot_factory: Callable[..., Bot]) -> Bot:
    return bot_factory(flags=GITLAB_COM)


async def _flags(bot: Bot) -> list[tuple[str, str, bool]]:
    return sorted((r.environment, r.name, r.enabled) for r in await bot.rows(LocalFlag))


async def test_each_configured_environment_is_an_option(gitlab_com: Bot) -> None:
    bot = gitlab_com
    for env in ("dev", "pre", "ops"):
        reply = await bot.say("alice", f"feature set new_nav true --{env}")
        assert reply.ok, reply.text
        assert f"`new_nav` in {env} is now on for everyone (was new)." in reply.text
    assert await _flags(bot) == [
        ("dev", "new_nav", True),
        ("ops", "new_nav", True),
        ("pre", "new_nav", True),
    ]
    shown = await bot.say("carol", "feature get new_nav")
    assert shown.text.splitlines()[-6:] == [
        "• dev: on for everyone",
        "• staging: no such flag",
        "• staging-ref: no such flag",
        "• pre: on for everyone",
        "• ops: on for everyone",
        "• production: no such flag",
    ]
    assert (await bot.say("carol", "feature get new_nav --pre")).text == (
        "`new_nav` in pre: on for everyone"
    )
    listed = await bot.say("carol", "feature list --ops")
    assert listed.text.splitlines()[0] == "1 flag(s) in ops:"
    # Without a name, the configured default: production.
    assert (await bot.say("carol", "feature list")).text == "No flags in production."


async def test_an_environment_runs_nothing_ahead_of_the_one_it_follows(gitlab_com: Bot) -> None:
    bot = gitlab_com
    refused = await bot.say("alice", "feature set new_nav true --staging-ref")
    assert not refused.ok
    assert "`new_nav` is off in staging. Turn it on there first" in refused.text
    assert "`feature set new_nav ... --staging`" in refused.text
    assert (await bot.say("alice", "feature set new_nav true --staging")).ok
    assert (await bot.say("alice", "feature set new_nav true --staging-ref")).ok
    # Staging goes off only after what follows it.
    refused = await bot.say("alice", "feature set new_nav false --staging")
    assert not refused.ok
    assert "`new_nav` is on in staging-ref. Turn it off there first" in refused.text
    assert (await bot.say("alice", "feature set new_nav false --staging-ref")).ok
    assert (await bot.say("alice", "feature set new_nav false --staging")).ok
    # An environment that follows none is on its own.
    assert (await bot.say("alice", "feature set other true --dev")).ok


async def test_several_environments_go_in_the_order_they_follow(gitlab_com: Bot) -> None:
    bot = gitlab_com
    # Typed in any order: staging first, then what follows it, in configured order.
    reply = await bot.say(
        "alice", "feature set new_nav 1 --actors --production —staging-ref --STAGING"
    )
    assert reply.ok, reply.text
    allowed = await bot.rows(AuditRecord, AuditRecord.outcome == "allowed")
    assert [r.request_id.rsplit(".", 1)[1] for r in allowed] == [
        "staging",
        "staging-ref",
        "production",
    ]
    # Turned off, the followers go first.
    reply = await bot.say("alice", "feature set new_nav false --staging --staging-ref --production")
    assert reply.ok, reply.text
    lines = reply.text.splitlines()
    assert [line.split("`")[2].split()[1] for line in lines] == [
        "production",
        "staging-ref",
        "staging",
    ]


async def test_a_refusal_says_which_environments_were_left_alone(gitlab_com: Bot) -> None:
    bot = gitlab_com
    reply = await bot.say("carol", "feature set new_nav true --staging --staging-ref --production")
    assert not reply.ok
    assert reply.text.endswith("Nothing was done in staging-ref and production.")
    assert await bot.rows(LocalFlag) == []


async def test_an_environment_not_configured_is_not_an_option(bot: Bot) -> None:
    reply = await bot.say("alice", "feature set new_nav true --pre")
    assert not reply.ok and reply.kind == "usage"
    assert "`feature set` has no option `--pre`." in reply.text
    typo = await bot.say("alice", "feature set new_nav true --stagin")
    assert "Did you mean `--staging`?" in typo.text


async def test_help_and_deviations_know_the_configured_environments(gitlab_com: Bot) -> None:
    bot = gitlab_com
    shown = (await bot.say("carol", "help feature set")).text
    for env in ("--dev", "--staging-ref", "--pre", "--ops", "--production"):
        assert env in shown
    assert "on production (the default)" in shown
    asked = await bot.say(
        "bob", 'feature deviate new_nav 50 --pre --ops "a launch on Monday needs half of them"'
    )
    assert asked.ok, asked.text
    assert "for `new_nav` to 50% in pre and ops;" in asked.text


def test_environments_in_order() -> None:
    envs = Environments(
        {"dev": None, "staging": None, "staging-ref": "staging", "production": "staging"},
        "production",
    )
    e = Environment
    assert envs.follows(e("production")) is e("staging")
    assert envs.followers(e("staging")) == [e("staging-ref"), e("production")]
    assert envs.related(e("staging-ref")) == [e("staging")]
    chosen = [e("production"), e("dev"), e("staging")]
    assert envs.in_order(chosen, lowering=False) == [e("dev"), e("staging"), e("production")]
    assert envs.in_order(chosen, lowering=True) == [e("production"), e("staging"), e("dev")]
    assert list(DEFAULT) == [e("staging"), e("production")] and DEFAULT.default == "production"


@pytest.mark.parametrize(
    ("follows", "default", "wanted"),
    [
        ({}, "production", "name at least one environment"),
        ({"Prod": None}, "Prod", "'Prod' can't name an environment"),
        ({"staging_ref": None}, "staging_ref", "lowercase letters, digits and dashes"),
        ({"issue": None}, "issue", "`--issue` is already an option of `feature`"),
        ({"production": "staging"}, "production", "'staging', which is not one of"),
        ({"a": "b", "b": "a"}, "a", "a, b follow each other in a circle"),
        ({"a": "a"}, "a", "a can't follow itself"),
        ({"staging": None}, "production", "the default environment 'production' is not"),
    ],
)
def test_environment_problems(follows: dict[str, Any], default: str, wanted: str) -> None:
    problems = environment_problems(follows, default)
    assert any(wanted in p for p in problems), problems


def test_reserved_names_are_every_option_of_feature() -> None:
    """An environment named like an option would make `--issue` mean two things."""
    feature = registry().in_group("feature")
    taken = {opt.name for spec in feature for opt in spec.opts} - set(DEFAULT)
    fields = {f.replace("_", "-") for spec in feature for f in spec.model.model_fields}
    assert taken | fields <= RESERVED


def _load(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "marvin.yaml"
    path.write_text(text)
    try:
        load_settings(path)
    except ConfigError as exc:
        return exc.problems
    return []


def test_renaming_production_must_say_where_the_ceiling_applies(tmp_path: Path) -> None:
    renamed = "flags: {environments: [dev, prod], default_environment: prod}\n"
    assert _load(tmp_path, renamed) == [
        "flags.ceiling_environments: 'production' is not one of flags.environments (dev, prod)",
        "flags.flagd_environment: 'production' is not one of flags.environments (dev, prod)",
    ]
    fixed = renamed.replace("}", ", ceiling_environments: [prod], flagd_environment: prod}")
    assert _load(tmp_path, fixed) == []
    other = fixed + "unleash: {environments: {staging: development}}\n"
    assert _load(tmp_path, other) == [
        "unleash.environments: 'staging' is not one of flags.environments (dev, prod)"
    ]


def test_ofrep_tokens_for_configured_environments() -> None:
    envs = Environments({"staging-ref": None, "production": None}, "production")
    given = {"MARVIN_OFREP_TOKEN_STAGING_REF": "s3cret", "MARVIN_OFREP_TOKEN_STAGING": "x"}
    tokens = tokens_from_env(given, environments=envs)
    assert {env: t.get_secret_value() for env, t in tokens.items()} == {"staging-ref": "s3cret"}


async def test_a_renamed_production_is_still_locked_by_an_incident(
    bot_factory: Callable[..., Bot],
) -> None:
    bot = bot_factory(
        flags={
            "environments": ["dev", {"prod": {"follows": "dev"}}],
            "default_environment": "prod",
            "ceiling_environments": ["prod"],
            "flagd_environment": "prod",
        }
    )
    assert (await bot.say("alice", "feature set new_nav true --dev")).ok
    await bot.open_incident(1)
    refused = await bot.say("alice", "feature set new_nav 1 --actors")
    assert refused.denied_by == "change_lock", refused.text
    assert "Changes to prod are locked" in refused.text
    # The ceiling applies there too.
    assert (await bot.say("alice", "feature set new_nav true --dev")).text.endswith(
        "nothing changed."
    )
    over = await bot.say(
        "alice", 'feature set new_nav true --ignore-production-check "a test of the ceiling"'
    )
    assert over.denied_by == "ceiling", over.text


async def test_any_spelling_of_zero_turns_off_followers_first(bot: Bot) -> None:
    assert (await bot.say("alice", "feature set new_nav 1 --actors --staging --production")).ok
    reply = await bot.say("alice", "feature set new_nav 0.00 --actors --staging --production")
    assert reply.ok, reply.text
    first, second = reply.text.splitlines()[-2:]
    assert first.startswith("`new_nav` in production is now off")
    assert second.startswith("`new_nav` in staging is now off")


async def test_each_part_keeps_a_quoted_value_as_typed(bot: Bot) -> None:
    assert (await bot.say("alice", "feature set new_nav 1 --actors --staging --production")).ok
    await bot.open_incident(1)
    reason = "checked on --staging and --production dashboards"
    both = "feature set new_nav 2 --actors --staging --production"
    reply = await bot.say("alice", f'{both} --ignore-production-check "{reason}"')
    overrides = [r.override_reason for r in await bot.rows(FlagChange) if r.override_reason]
    assert overrides and set(overrides) == {reason}, reply.text
