"""The one grammar: `[/marvin] <group> <verb> <args> [--opt value|--opt=value]`."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marvin.commands.account import StatusAway, StatusBack, StatusShow, WhoAmI
from marvin.commands.feature import (
    FeatureDelete,
    FeatureGet,
    FeatureHistory,
    FeatureList,
    FeatureSet,
)
from marvin.commands.help import Help
from marvin.flags import Environment
from marvin.grammar import Parsed, UsageError, parse, tokenize
from marvin.spec import CommandModel
from marvin.wiring import registry as build_registry

REGISTRY = build_registry()


def test_grammar_imports_on_its_own() -> None:
    # `marvin.commands.feature` imports from `marvin.grammar`; importing the grammar first
    # must not trip over that cycle.
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", "import marvin.grammar"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def _ok(text: str) -> CommandModel:
    return parse(text, REGISTRY).command


def _error(text: str) -> UsageError:
    with pytest.raises(UsageError) as info:
        parse(text, REGISTRY)
    return info.value


# --- typed commands -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("feature get new_nav", FeatureGet(name="new_nav")),
        ("feature get new_nav --staging", FeatureGet(name="new_nav", staging=True)),
        ("feature list", FeatureList()),
        ("feature list 'new_*'", FeatureList(pattern="new_*")),
        ("feature history new_nav --limit 5", FeatureHistory(name="new_nav", limit=5)),
        (
            "feature set new_nav 1 --actors",
            FeatureSet(name="new_nav", value="1", actors=True),
        ),
        (
            "feature set new_nav 0.5 --random --staging",
            FeatureSet(name="new_nav", value="0.5", random=True, staging=True),
        ),
        (
            "feature set new_nav true --user bob,carol --project gitlab-org/gitlab",
            FeatureSet(name="new_nav", value="true", user="bob,carol", project="gitlab-org/gitlab"),
        ),
        (
            "feature set new_nav 50 --actors --issue #12",
            FeatureSet(name="new_nav", value="50", actors=True, issue="#12"),
        ),
        (
            'feature delete old_nav --ignore-production-check "sev2 cleanup"',
            FeatureDelete(name="old_nav", ignore_production_check="sev2 cleanup"),
        ),
        ("whoami", WhoAmI()),
        ("status", StatusShow()),
        ("status away", StatusAway()),
        ("status away lunch", StatusAway(reason="lunch")),
        ("status back", StatusBack()),
        ("help", Help()),
        ("help feature set", Help(topic="feature set")),
        # group, verb and option names are case-insensitive; values are not touched
        ("FEATURE Get new_nav --STAGING", FeatureGet(name="new_nav", staging=True)),
        # extra whitespace of any kind between words
        ("  feature\tget \n new_nav  ", FeatureGet(name="new_nav")),
    ],
)
def test_parses_to_typed_command(text: str, expected: CommandModel) -> None:
    parsed = parse(text, REGISTRY)
    assert isinstance(parsed, Parsed)
    assert type(parsed.command) is type(expected)
    assert parsed.command == expected
    assert parsed.spec.model is type(expected)


@pytest.mark.parametrize(
    ("text", "spec_name"),
    [
        ("feature set x true", "feature set"),
        ("feature get x", "feature get"),
        ("status away", "status away"),
        ("status", "status"),
        ("whoami", "whoami"),
    ],
)
def test_picks_the_spec(text: str, spec_name: str) -> None:
    assert parse(text, REGISTRY).spec.name == spec_name


def test_feature_set_fields_are_typed() -> None:
    cmd = _ok("feature set new_nav 25% --actors --staging --project a/b,a/b --group g")
    assert isinstance(cmd, FeatureSet)
    assert cmd.name == "new_nav"
    assert cmd.value == "25%"
    assert cmd.actors is True and cmd.random is False
    assert cmd.environment is Environment.staging
    request = cmd.request(("alice",))
    assert request.value == Decimal(25)
    assert request.of == "actors"
    assert request.gates == ("user:alice", "project:a/b", "group:g")


def test_history_limit_is_an_int() -> None:
    cmd = _ok("feature history new_nav --limit=7")
    assert isinstance(cmd, FeatureHistory)
    assert cmd.limit == 7


@pytest.mark.parametrize(
    ("text", "environment"),
    [
        ("feature list", Environment.production),
        ("feature get x --production", Environment.production),
        ("feature get x --staging", Environment.staging),
        ("feature set x true --staging", Environment.staging),
        ("feature list --staging", Environment.staging),
        ("feature delete x", Environment.production),
    ],
)
def test_environment(text: str, environment: Environment) -> None:
    cmd = _ok(text)
    assert isinstance(cmd, FeatureGet | FeatureSet | FeatureList | FeatureDelete)
    assert cmd.environment is environment


@pytest.mark.parametrize(
    ("spaced", "inline"),
    [
        ("feature set x true --user bob", "feature set x true --user=bob"),
        ("feature history x --limit 3", "feature history x --limit=3"),
        ("feature set x 5 --actors --issue #1", "feature set x 5 --actors --issue=#1"),
        (
            "feature set x true --ignore-production-check 'sev1 fix'",
            "feature set x true --ignore-production-check='sev1 fix'",
        ),
        (
            "feature set x true --ignore-production-check “sev1 fix”",
            "feature set x true --ignore-production-check=“sev1 fix”",
        ),
        # options may come before the arguments
        ("feature set --staging x true", "feature set x true --staging"),
    ],
)
def test_option_value_spaced_or_inline(spaced: str, inline: str) -> None:
    assert _ok(spaced) == _ok(inline)


# --- quoting --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('status away "gone fishing"', "gone fishing"),
        ("status away 'gone fishing'", "gone fishing"),
        ("status away “gone fishing”", "gone fishing"),
        ("status away ‘gone fishing’", "gone fishing"),
        ("status away „gone fishing“", "gone fishing"),
        # a phone may close a curly quote with a straight one
        ('status away “gone fishing"', "gone fishing"),
        ('status away "it\'s   spaced"', "it's   spaced"),
        # apostrophes inside or at the end of a word are letters, not quotes
        ("status away I'm at lunch", "I'm at lunch"),
        ("status away I’m at lunch", "I’m at lunch"),
        ("status away the cats' vet", "the cats' vet"),
        ("status away don't ask", "don't ask"),
        # a quoted word is never an option
        ('status away "--back"', "--back"),
        # `--` ends options: what follows is taken as it is
        ("status away -- --back soon", "--back soon"),
        ("status away lunch -- --staging", "lunch --staging"),
    ],
)
def test_quotes_and_apostrophes(text: str, reason: str) -> None:
    cmd = _ok(text)
    assert isinstance(cmd, StatusAway)
    assert cmd.reason == reason


def test_quoted_token_is_marked() -> None:
    tokens = tokenize("a 'b c' --x=“d e” f'g")
    assert [(t.text, t.quoted) for t in tokens] == [
        ("a", False),
        ("b c", True),
        ("--x=d e", False),  # still an option: the quote only groups its value
        ("f'g", False),
    ]


def test_double_dash_stops_option_parsing() -> None:
    # `--staging` after `--` is a word, not the switch: the switch stays off and the word
    # is left over.
    err = _error("feature get new_nav -- --staging")
    assert err.message == "I don't know what to do with `--staging`."


@pytest.mark.parametrize(
    "text",
    [
        "/marvin feature get new_nav",
        "/marvin   feature get new_nav",
        "  /marvin feature get new_nav",
    ],
)
def test_leading_slash_command_is_stripped(text: str) -> None:
    assert _ok(text) == FeatureGet(name="new_nav")


def test_slash_command_alone_asks_what_to_do() -> None:
    assert _error("/marvin").message == "Tell me what to do."


# --- @names (Slack mentions are resolved by the transport; the grammar sees people) -------


@pytest.mark.parametrize(
    "text",
    ["feature set x true --user <@U123>", "feature set x true --user=<@U123|bob>"],
)
def test_a_raw_chat_mention_is_not_a_username(text: str) -> None:
    assert "not a valid user name" in _error(text).message


@pytest.mark.parametrize(
    ("text", "gates"),
    [
        ("feature set x true --user @bob", ("user:bob",)),
        ("feature set x true --user '@bob, carol'", ("user:bob", "user:carol")),
        ("feature set x true --user bob,@bob", ("user:bob",)),
    ],
)
def test_at_names_in_user_option(text: str, gates: tuple[str, ...]) -> None:
    from marvin.commands.feature import _gates

    cmd = _ok(text)
    assert isinstance(cmd, FeatureSet)
    assert cmd.user is not None
    users = tuple(_gates("user", cmd.user))
    assert cmd.request(users).gates == gates


# --- usage errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Tell me what to do."),
        ("   \t ", "Tell me what to do."),
        ("--staging", "Tell me what to do: start with a command."),
        ("featur", "I don't know the command `featur`. Did you mean `feature`?"),
        ("featur list", "I don't know the command `featur`. Did you mean `feature list`?"),
        ("deploy now", "`deploy` has no subcommand `now`."),
        ("feature sett x", "`feature` has no subcommand `sett`. Did you mean `feature set`?"),
        ("feature lst", "`feature` has no subcommand `lst`. Did you mean `feature list`?"),
        ("feature launch x", "`feature` has no subcommand `launch`."),
        ("feature", "`feature` needs a subcommand."),
        (
            "feature get x --stagin",
            "`feature get` has no option `--stagin`. Did you mean `--staging`?",
        ),
        ("feature get x --force", "`feature get` has no option `--force`."),
        # an option of another command of the group: which one takes it
        (
            "feature get x --limit 3",
            "`feature get` has no option `--limit`. `feature history` takes it.",
        ),
        ("feature get x --staging=yes", "`--staging` is a switch and takes no value."),
        ("feature set x 1 --actors=true", "`--actors` is a switch and takes no value."),
        ("feature set x true --user", "`--user` needs a value: `--user <users>`."),
        ("feature set x true --user --staging", "`--user` needs a value: `--user <users>`."),
        ("feature history x --limit", "`--limit` needs a value: `--limit <n>`."),
        ("feature get x --staging --staging", "`--staging` is given twice."),
        ("feature set x true --user a --user=b", "`--user` is given twice."),
        ("feature get", "`feature get` needs `<name>`."),
        ("feature set x", "`feature set` needs `<value>`."),
        ("feature get x y", "I don't know what to do with `y`."),
        ("feature set x true now please", "I don't know what to do with `now please`."),
        ("whoami please", "I don't know what to do with `please`."),
        ("status back soon", "I don't know what to do with `soon`."),
    ],
)
def test_usage_error_message(text: str, message: str) -> None:
    assert _error(text).message == message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            "feature list --staging --production",
            "Choose one environment: `--staging`, `--production`.",
        ),
        ("feature set x 1 --actors --random", "Choose one of --actors or --random."),
        ("feature set x true --actors", "--actors and --random go with a percentage"),
        ("feature set x 5", "Say what the percentage is of: --actors"),
        ("feature set x 101 --actors", "'101' is over 100%"),
        ("feature set x maybe", "'maybe' is not a value"),
        ("feature get New-Nav", "A flag name is lowercase letters"),
        ("feature list 'NEW'", "A pattern is flag-name characters"),
        ("feature history x --limit 0", "`--limit` takes a number from 1 to 100"),
        ("feature history x --limit lots", "`--limit` takes a whole number from 1 to 100"),
        ("feature set x true --user 'a b'", "'a b' is not a valid user name"),
        ("feature set x true --project ../etc", "'../etc' is not a valid project name"),
        ("feature set x true --user a,,b", "--user takes a comma-separated list"),
        ("feature delete x --ignore-production-check ok", "at least 3 characters"),
    ],
)
def test_validation_error_message(text: str, fragment: str) -> None:
    err = _error(text)
    assert fragment in err.message
    assert "Value error" not in err.message
    # the command's usage comes along, on one line, with where to read more
    assert err.usage is not None and err.usage.startswith("`") and "\n" not in err.usage
    assert "Usage:" in err.text() and "`help feature " in err.text()


def test_too_long() -> None:
    text = "status away " + "x" * (4001 - len("status away "))
    assert len(text) == 4001
    assert _error(text).message == "The command is 4001 characters long; the limit is 4000."


def test_at_the_limit_is_fine() -> None:
    text = "whoami" + " " * (4000 - len("whoami"))
    assert len(text) == 4000
    assert isinstance(_ok(text), WhoAmI)


def test_limit_is_configurable() -> None:
    with pytest.raises(UsageError, match="the limit is 64"):
        parse("status away " + "x" * 60, REGISTRY, max_chars=64)


@pytest.mark.parametrize(
    ("char", "code"),
    [
        ("\x00", "U+0000"),
        ("\x1b", "U+001B"),
        ("\x7f", "U+007F"),
        ("\u202e", "U+202E"),  # right-to-left override
        ("\u2066", "U+2066"),  # left-to-right isolate
        ("\u200b", "U+200B"),  # zero-width space
        ("\u200d", "U+200D"),  # zero-width joiner
        ("\ufeff", "U+FEFF"),  # byte-order mark
    ],
)
@pytest.mark.parametrize("template", ["feature get new{}nav", "status away {}", "{}whoami"])
def test_control_characters_refused(char: str, code: str, template: str) -> None:
    err = _error(template.format(char))
    assert err.message == (
        f"The command contains a control or invisible character ({code}); retype it as plain text."
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('status away "lunch', 'Unbalanced quote " at character 13'),
        ("status away 'lunch", "Unbalanced quote ' at character 13"),
        ("status away “lunch", "Unbalanced quote “ at character 13"),
        ("status away ‘lunch", "Unbalanced quote ‘ at character 13"),
        ("feature set x true --ignore-production-check='sev1", "Unbalanced quote '"),
        ('"', 'Unbalanced quote " at character 1'),
    ],
)
def test_unbalanced_quotes(text: str, fragment: str) -> None:
    err = _error(text)
    assert err.message.startswith(fragment)
    assert err.message.endswith("close it or leave it out.")


def test_long_unknown_words_are_shortened_in_messages() -> None:
    err = _error("x" * 100)
    assert "x" * 40 + "…" in err.message
    assert "x" * 41 not in err.message


def test_errors_come_with_usage() -> None:
    err = _error("feature sett x")
    assert err.usage == REGISTRY.group_usage("feature")
    # an empty command is answered with what Marvin can do
    empty = _error("")
    assert empty.usage == REGISTRY.overview()
    assert empty.text() == "Tell me what to do.\n" + REGISTRY.overview()


# --- errors for people: a sentence, the usage on one line, where to read more -----------------

FIELD_NAMES = sorted(
    {name for spec in REGISTRY.specs for name in spec.model.model_fields if "_" in name}
    | {"limit", "name", "value"}
)


def _leaks(text: str) -> list[str]:
    """Field names (as pydantic puts them: `limit: ...`) or pydantic's own words in what a
    person reads."""
    found = [name for name in FIELD_NAMES if re.search(rf"(?:^|[;\n] ?){re.escape(name)}: ", text)]
    return found + [w for w in ("Input should", "Value error", "validation error") if w in text]


@pytest.mark.parametrize(
    ("text", "sentence"),
    [
        (
            "feature delete x --ignore-production-check ok",
            "`--ignore-production-check` needs a reason of at least 3 characters.",
        ),
        (
            "feature set x true --ignore-production-check=no",
            "`--ignore-production-check` needs a reason of at least 3 characters.",
        ),
        (
            "feature delete x --ignore-production-check " + "y" * 501,
            "`--ignore-production-check` takes a reason of at most 500 characters; "
            "this one has 501.",
        ),
        (
            "feature history x --limit 0",
            "`--limit` takes a number from 1 to 100; `0` is out of range.",
        ),
        (
            "feature history x --limit 101",
            "`--limit` takes a number from 1 to 100; `101` is out of range.",
        ),
        (
            "feature history x --limit lots",
            "`--limit` takes a whole number from 1 to 100; `lots` isn't one.",
        ),
        (
            "feature history x --limit 2.5",
            "`--limit` takes a whole number from 1 to 100; `2.5` isn't one.",
        ),
        (
            "status away " + "z" * 501,
            "`<reason>` takes a reason of at most 500 characters; this one has 501.",
        ),
    ],
)
def test_validation_errors_are_sentences_about_options(text: str, sentence: str) -> None:
    err = _error(text)
    assert err.message == sentence
    assert not _leaks(err.text())


def test_validation_errors_never_name_fields() -> None:
    for text in [
        "feature history x --limit 0",
        "feature history x --limit lots",
        "feature delete x --ignore-production-check ok",
        "feature set x true --ignore-production-check ok --staging",
        "feature list --match " + "m" * 65,
        "feature set x true --issue " + "1" * 256,
    ]:
        err = _error(text)
        assert not _leaks(err.text()), err.text()
        assert err.message[0].isupper() or err.message[0] in "`'", err.message
        assert err.message.endswith("."), err.message


@pytest.mark.parametrize(
    "text", ["feature lst", "feature sett x", "feature", "feature get x --stagin", "feature get"]
)
def test_a_usage_error_is_three_lines_at_most_not_the_groups_help(text: str) -> None:
    err = _error(text)
    shown = err.text()
    assert len(shown.splitlines()) <= 2, shown
    assert REGISTRY.group_help("feature") not in shown
    assert "`help feature" in shown


def test_a_misspelt_subcommand_points_to_the_closest_and_to_help() -> None:
    shown = _error("feature lst").text()
    assert (
        shown.splitlines()[0] == "`feature` has no subcommand `lst`. Did you mean `feature list`?"
    )
    assert "(`help feature` explains it)" in shown


def test_a_misspelt_option_points_to_the_closest_and_to_help() -> None:
    shown = _error("feature get x --stagin").text()
    assert "Did you mean `--staging`?" in shown
    assert "Usage: `feature get <name> [--staging] [--production]`" in shown
    assert "`help feature get`" in shown


@pytest.mark.parametrize("text", ["status maybe", "status bak", "status 'maybe'", "status"])
def test_status_usage_shows_its_subcommands(text: str) -> None:
    if text == "status":
        assert isinstance(_ok(text), StatusShow)
        return
    err = _error(text)
    assert err.usage is not None
    assert "`status away [<reason>...]`" in err.usage and "`status back`" in err.usage


def test_status_maybe_is_not_a_subcommand() -> None:
    assert _error("status maybe").message == "`status` has no subcommand `maybe`."
    assert "Did you mean `status back`?" in _error("status bak").message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"feature list"', FeatureList()),
        ("“feature list”", FeatureList()),
        ("'feature get new_nav --staging'", FeatureGet(name="new_nav", staging=True)),
        ('/marvin "feature list"', FeatureList()),
        ('"/marvin feature list"', FeatureList()),
        ('"whoami"', WhoAmI()),
        ("\"status away 'gone fishing'\"", StatusAway(reason="gone fishing")),
    ],
)
def test_a_whole_command_in_quotes_is_understood(text: str, expected: CommandModel) -> None:
    assert _ok(text) == expected


def test_only_a_whole_command_in_quotes_is_unquoted() -> None:
    # a quoted word among others stays a literal, never a command name
    assert _error('"feature" list').message == "Tell me what to do: start with a command."
    assert _error('""').message == "Tell me what to do: start with a command."


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("feature set x 1 —actors", "feature set x 1 --actors"),  # em dash
        ("feature set x 1 –actors", "feature set x 1 --actors"),  # en dash
        ("feature set x 1 –-actors", "feature set x 1 --actors"),
        ("feature set x 1 —-actors", "feature set x 1 --actors"),
        ("feature set x 1 ——actors", "feature set x 1 --actors"),
        ("feature get x —staging", "feature get x --staging"),
        ("feature set x true —user=bob", "feature set x true --user=bob"),
        (
            "feature set x true —ignore-production-check=“sev1 fix”",
            "feature set x true --ignore-production-check='sev1 fix'",
        ),
        ("feature history x —limit 3", "feature history x --limit 3"),
    ],
)
def test_a_dash_put_in_place_of_two_hyphens_is_two_hyphens(text: str, expected: str) -> None:
    assert _ok(text) == _ok(expected)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        # a dash that is punctuation stays what it is
        ("status away lunch — back at 2", "lunch — back at 2"),
        ("status away 1–2 pm", "1–2 pm"),
        ('status away "—actors"', "—actors"),
    ],
)
def test_a_dash_as_punctuation_is_left_alone(text: str, reason: str) -> None:
    cmd = _ok(text)
    assert isinstance(cmd, StatusAway) and cmd.reason == reason


@pytest.mark.parametrize(
    "text",
    [
        "run feature list",
        "RUN feature list",
        "/chatops run feature list",
        "/marvin run feature list",
        '"run feature list"',
    ],
)
def test_a_leading_run_is_chatops_style_and_ignored(text: str) -> None:
    assert _ok(text) == FeatureList()


def test_run_alone_asks_what_to_do() -> None:
    assert _error("run").message == "Tell me what to do."


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("feature set x true --user ''", "`--user` needs a value: `--user <users>`."),
        ('feature set x true --user ""', "`--user` needs a value: `--user <users>`."),
        ("feature set x true --user=", "`--user` needs a value: `--user <users>`."),
        ("feature set x true --user '  '", "`--user` needs a value: `--user <users>`."),
        ("feature set x true --issue ''", "`--issue` needs a value: `--issue <ref>`."),
        ("feature list --match ''", "`--match` needs a value: `--match <text>`."),
        ("status away ''", "`<reason>` is empty: fill it in or leave it out."),
        ("feature get ''", "`<name>` is empty: fill it in."),
        ("feature set x '' --staging", "`<value>` is empty: fill it in."),
    ],
)
def test_empty_values_are_refused(text: str, message: str) -> None:
    assert _error(text).message == message


def test_user_names_are_case_insensitive() -> None:
    from marvin.commands.feature import _gates

    cmd = _ok("feature set x true --user Bob,bob,@BOB")
    assert isinstance(cmd, FeatureSet) and cmd.user is not None
    assert _gates("user", cmd.user) == ("bob",)


# --- help <topic> ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "answer"),
    [
        (
            "feature nope",
            "`feature` has no subcommand `nope`. `help feature` lists what it can do.",
        ),
        (
            "feature lst",
            "`feature` has no subcommand `lst`. Did you mean `feature list`? "
            "`help feature` lists what it can do.",
        ),
        ("featur", "There's no command `featur`. Did you mean `feature`? `help` lists them all."),
        ("nope", "There's no command `nope`. `help` lists them all."),
    ],
)
def test_help_on_what_does_not_exist_says_so(topic: str, answer: str) -> None:
    assert REGISTRY.explain(topic) == (answer, False)


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("feature", REGISTRY.group_help("feature")),
        ("FEATURE SET", next(s.help_text() for s in REGISTRY.specs if s.name == "feature set")),
        ("status away", next(s.help_text() for s in REGISTRY.specs if s.name == "status away")),
    ],
)
def test_help_on_what_exists(topic: str, expected: str) -> None:
    assert REGISTRY.explain(topic) == (expected, True)


async def test_help_feature_nope_is_not_help_feature() -> None:
    from typing import cast

    from marvin.commands.base import Context, Done
    from marvin.commands.help import HelpHandler

    done = await HelpHandler(REGISTRY).plan(Help(topic="feature nope"), cast(Context, None))
    assert isinstance(done, Done)
    assert not done.ok and done.kind == "usage"
    assert done.text.startswith("`feature` has no subcommand `nope`.")


# --- help -------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", REGISTRY.specs, ids=lambda s: s.name)
def test_overview_lists_every_command(spec: object) -> None:
    from marvin.spec import CommandSpec

    assert isinstance(spec, CommandSpec)
    overview = REGISTRY.overview()
    assert f"• `{spec.group}`: {REGISTRY.group_summaries[spec.group]}" in overview
    if spec.verb:
        assert f"`{spec.usage()}`" in overview


@pytest.mark.parametrize("spec", REGISTRY.specs, ids=lambda s: s.name)
def test_group_help_lists_every_command_and_option(spec: object) -> None:
    from marvin.spec import CommandSpec

    assert isinstance(spec, CommandSpec)
    text = REGISTRY.group_help(spec.group)
    assert f"`{spec.usage()}`" in text
    for opt in spec.opts:
        assert opt.usage() in text
    for arg in spec.args:
        assert arg.usage() in text


def test_feature_help_usages() -> None:
    text = REGISTRY.group_help("feature")
    for usage in [
        "feature get <name> [--staging] [--production]",
        "feature list [<pattern>]",
        "feature set <name> <value> [--actors] [--random] [--user <users>]",
        "feature delete <name> [--ignore-production-check <reason>]",
        "feature history <name> [--limit <n>]",
    ]:
        assert usage in text


@pytest.mark.parametrize("spec", REGISTRY.specs, ids=lambda s: s.name)
def test_examples_in_help_parse(spec: object) -> None:
    from marvin.spec import CommandSpec

    assert isinstance(spec, CommandSpec)
    for example in spec.examples:
        assert parse(example, REGISTRY).spec is spec


# --- any text: a command or a usage error, nothing else ---------------------------------------

GROUPS = [*REGISTRY.groups(), "featur", "/marvin", "FEATURE"]
VERBS = sorted({s.verb for s in REGISTRY.specs if s.verb} | {"sett", "SET", "purge"})
OPTIONS = sorted(
    {f"--{o.name}" for s in REGISTRY.specs for o in s.opts}
    | {"--", "--bogus", "--=", "--user=", "--limit=5", "--issue=#1", "--STAGING"}
)
WORDS = [
    "new_nav",
    "x",
    "New-Nav",
    "1abc",
    "new_*",
    "true",
    "false",
    "TRUE",
    "0",
    "1",
    "0.5",
    "25%",
    "100",
    "101",
    "-1",
    "NaN",
    "1e2",
    "５",
    "½",
    "50%%",
    "bob,carol",
    "@bob",
    "<@U123>",
    "<@U123|bob>",
    "a/b",
    "../etc",
    "a,,b",
    "#12",
    "I'm",
    "",
    "9" * 50,
]
QUOTES = ['"', "'", "“", "”", "‘", "’", "„"]


@st.composite
def near_commands(draw: st.DrawFn) -> str:
    word = st.one_of(
        st.sampled_from(WORDS),
        st.sampled_from(OPTIONS),
        st.sampled_from(VERBS),
        st.builds(lambda o, w: f"{o}={w}", st.sampled_from(OPTIONS), st.sampled_from(WORDS)),
        st.builds(
            lambda q1, w, q2: f"{q1}{w}{q2}",
            st.sampled_from(QUOTES),
            st.sampled_from(WORDS + OPTIONS),
            st.sampled_from(["", *QUOTES]),
        ),
        st.text(max_size=6),
    )
    head = [draw(st.sampled_from(GROUPS))]
    if draw(st.booleans()):
        head.append(draw(st.sampled_from(VERBS)))
    words = head + draw(st.lists(word, max_size=8))
    sep = draw(st.sampled_from([" ", "  ", "\t", "\n"]))
    return sep.join(words)


def _parse_or_usage_error(text: str) -> None:
    try:
        result = parse(text, REGISTRY)
    except UsageError as exc:
        assert isinstance(exc.message, str) and exc.message.strip()
        assert exc.text().startswith(exc.message)
        assert not _leaks(exc.text()), exc.text()
        if exc.usage != REGISTRY.overview():
            # one line of error, one of usage: never a whole group's help
            assert len(exc.text().splitlines()) <= 2, exc.text()
    else:
        assert isinstance(result, Parsed)
        assert isinstance(result.command, result.spec.model)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_any_text_parses_or_is_a_usage_error(text: str) -> None:
    _parse_or_usage_error(text)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(near_commands())
def test_near_commands_parse_or_are_usage_errors(text: str) -> None:
    _parse_or_usage_error(text)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["feature get new_nav", "status away lunch", "feature set x 1 --actors"]),
    st.text(min_size=1, max_size=3),
)
def test_any_suffix_parses_or_is_a_usage_error(prefix: str, suffix: str) -> None:
    _parse_or_usage_error(prefix + suffix)
