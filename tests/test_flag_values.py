"""Flag values, names, gates and state: the pure rules in marvin/flags.py."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Literal

import pytest

from marvin.flags import (
    OFF,
    FlagState,
    GateKind,
    SetRequest,
    apply_set,
    fmt_percent,
    parse_gate_list,
    parse_percentage,
    parse_value,
    validate_flag_name,
)

NOT_A_VALUE = "is not a value: use true, false or a percentage from 0 to 100 (like 1, 0.5 or 25%)"

# --- values ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0", Decimal(0)),
        ("1", Decimal(1)),
        ("0.5", Decimal("0.5")),
        ("25%", Decimal(25)),
        ("100", Decimal(100)),
        ("100%", Decimal(100)),
        ("100.0", Decimal(100)),
        ("0.0001", Decimal("0.0001")),
        ("1.50", Decimal("1.5")),
        (" 25% ", Decimal(25)),
        ("TRUE", True),
        ("true", True),
        ("True", True),
        ("false", False),
        ("FALSE", False),
    ],
)
def test_value_accepted(raw: str, expected: bool | Decimal) -> None:
    value = parse_value(raw)
    assert type(value) is type(expected)
    assert value == expected


@pytest.mark.parametrize(
    ("raw", "shown"),
    [("0", "0"), ("0.0", "0"), ("100", "100"), ("100%", "100"), ("10", "10"), ("1.50", "1.5")],
)
def test_percentage_is_written_plainly(raw: str, shown: str) -> None:
    # What gets stored and sent on: 100, never 1E+2.
    value = parse_percentage(raw)
    assert str(value) == shown
    assert json.loads(FlagState(percentage_of_actors=value).model_dump_json()) == {
        "enabled": False,
        "percentage_of_actors": shown,
        "percentage_of_time": None,
        "actors": [],
    }


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("-1", f"'-1' {NOT_A_VALUE}"),
        ("101", "'101' is over 100%"),
        ("100.0001", "'100.0001' is over 100%"),
        ("1000", "'1000' is"),
        ("NaN", f"'NaN' {NOT_A_VALUE}"),
        ("nan", f"'nan' {NOT_A_VALUE}"),
        ("inf", f"'inf' {NOT_A_VALUE}"),
        ("Infinity", f"'Infinity' {NOT_A_VALUE}"),
        ("1e2", f"'1e2' {NOT_A_VALUE}"),
        ("0x10", f"'0x10' {NOT_A_VALUE}"),
        ("1/2", f"'1/2' {NOT_A_VALUE}"),
        ("½", f"'½' {NOT_A_VALUE}"),
        ("５", f"'５' {NOT_A_VALUE}"),  # fullwidth digit
        ("٥", f"'٥' {NOT_A_VALUE}"),  # Arabic-Indic digit
        ("1,5", f"'1,5' {NOT_A_VALUE}"),
        (".5", f"'.5' {NOT_A_VALUE}"),
        ("5.", f"'5.' {NOT_A_VALUE}"),
        ("50%%", f"'50%%' {NOT_A_VALUE}"),
        ("%50", f"'%50' {NOT_A_VALUE}"),
        (" ", f"' ' {NOT_A_VALUE}"),
        ("", f"'' {NOT_A_VALUE}"),
        ("one", f"'one' {NOT_A_VALUE}"),
        ("1 %", f"'1 %' {NOT_A_VALUE}"),
        ("0.00001", f"'0.00001' {NOT_A_VALUE}"),
        ("+5", f"'+5' {NOT_A_VALUE}"),
        ("yes", f"'yes' {NOT_A_VALUE}"),
        ("5\n5", f"'5\\n5' {NOT_A_VALUE}"),
    ],
)
def test_value_refused(raw: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_value(raw)
    assert str(info.value).startswith(message)
    with pytest.raises(ValueError):
        parse_percentage(raw)


@pytest.mark.parametrize("raw", ["true", "false", "TRUE"])
def test_percentage_alone_refuses_booleans(raw: str) -> None:
    with pytest.raises(ValueError, match="is not a value"):
        parse_percentage(raw)


@pytest.mark.parametrize(
    ("value", "shown"),
    [(Decimal(1), "1%"), (Decimal("0.5"), "0.5%"), (Decimal("1E+2"), "100%"), (Decimal(0), "0%")],
)
def test_fmt_percent(value: Decimal, shown: str) -> None:
    assert fmt_percent(value) == shown


# --- flag names ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "new_nav", "a1_b2", "x__y", "a" * 63, "ci_runner_v2"])
def test_flag_name_accepted(name: str) -> None:
    assert validate_flag_name(name) == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("a" * 64, "a flag name is at most 63 characters"),
        ("New_nav", "lowercase letters, digits and underscores, starting with a letter"),
        ("NEW", "lowercase letters, digits and underscores, starting with a letter"),
        ("1abc", "lowercase letters, digits and underscores, starting with a letter"),
        ("_abc", "lowercase letters, digits and underscores, starting with a letter"),
        ("new-nav", "lowercase letters, digits and underscores, starting with a letter"),
        ("new nav", "lowercase letters, digits and underscores, starting with a letter"),
        ("new.nav", "lowercase letters, digits and underscores, starting with a letter"),
        ("ñame", "lowercase letters, digits and underscores, starting with a letter"),
        ("naïve", "lowercase letters, digits and underscores, starting with a letter"),
        ("flag_５", "lowercase letters, digits and underscores, starting with a letter"),
        ("ａbc", "lowercase letters, digits and underscores, starting with a letter"),
        ("", "lowercase letters, digits and underscores, starting with a letter"),
        ("abc\n", "lowercase letters, digits and underscores, starting with a letter"),
    ],
)
def test_flag_name_refused(name: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        validate_flag_name(name)
    assert message in str(info.value)


def test_flag_name_limit_is_a_parameter() -> None:
    assert validate_flag_name("abcde", max_length=5) == "abcde"
    with pytest.raises(ValueError, match="at most 4 characters"):
        validate_flag_name("abcde", max_length=4)


# --- gate lists -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "kind", "expected"),
    [
        ("alice", "user", ("alice",)),
        ("@alice", "user", ("alice",)),
        ("alice,bob", "user", ("alice", "bob")),
        (" alice , bob ", "user", ("alice", "bob")),
        ("bob,@bob,bob", "user", ("bob",)),
        ("a.b-c_d", "user", ("a.b-c_d",)),
        ("a" * 255, "user", ("a" * 255,)),
        ("gitlab-org/gitlab", "project", ("gitlab-org/gitlab",)),
        ("group/sub/proj", "project", ("group/sub/proj",)),
        ("a/b, c/d, a/b", "project", ("a/b", "c/d")),
        ("gitlab-org", "group", ("gitlab-org",)),
        ("gitlab-org/sub_group", "group", ("gitlab-org/sub_group",)),
    ],
)
def test_gate_list_accepted(raw: str, kind: GateKind, expected: tuple[str, ...]) -> None:
    assert parse_gate_list(raw, kind) == expected


@pytest.mark.parametrize(
    ("raw", "kind", "message"),
    [
        ("", "user", "--user takes a comma-separated list with no empty entries"),
        (",", "user", "--user takes a comma-separated list with no empty entries"),
        ("alice,", "user", "--user takes a comma-separated list with no empty entries"),
        ("alice,,bob", "user", "--user takes a comma-separated list with no empty entries"),
        (" , ", "project", "--project takes a comma-separated list with no empty entries"),
        ("a/b,", "group", "--group takes a comma-separated list with no empty entries"),
        ("ali ce", "user", "'ali ce' is not a valid user name"),
        ("alice bob", "user", "'alice bob' is not a valid user name"),
        ("<script>", "user", "'<script>' is not a valid user name"),
        ("@@alice", "user", "'@@alice' is not a valid user name"),
        (".alice", "user", "'.alice' is not a valid user name"),
        ("ａlice", "user", "'ａlice' is not a valid user name"),
        ("a" * 256, "user", "is not a valid user name"),
        ("../etc", "project", "'../etc' is not a valid project name"),
        ("a/../b", "project", "'a/../b' is not a valid project name"),
        ("..", "group", "'..' is not a valid group name"),
        ("/a/b", "project", "'/a/b' is not a valid project name"),
        ("a/b/", "project", "'a/b/' is not a valid project name"),
        ("a//b", "project", "'a//b' is not a valid project name"),
        ("a b/c", "project", "'a b/c' is not a valid project name"),
        ("a\\b", "project", "is not a valid project name"),
        ("@gitlab-org", "group", "'@gitlab-org' is not a valid group name"),
        ("a/" * 127 + "ab", "project", "is not a valid project name"),  # 256 characters
        ("a\nb", "user", "is not a valid user name"),
    ],
)
def test_gate_list_refused(raw: str, kind: GateKind, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_gate_list(raw, kind)
    assert message in str(info.value)


# --- state ------------------------------------------------------------------------------------

HALF = Decimal("0.5")


@pytest.mark.parametrize(
    ("state", "exposure", "on", "described"),
    [
        (OFF, Decimal(0), False, "off"),
        (FlagState(enabled=True), Decimal(100), True, "on for everyone"),
        (FlagState(percentage_of_actors=Decimal(25)), Decimal(25), True, "25% of actors"),
        (FlagState(percentage_of_time=HALF), HALF, True, "0.5% of the time"),
        (FlagState(percentage_of_actors=Decimal(0)), Decimal(0), False, "0% of actors"),
        (
            FlagState(actors=("user:alice", "project:a/b")),
            Decimal(0),
            True,
            "for user:alice, project:a/b",
        ),
        (
            FlagState(enabled=True, percentage_of_actors=Decimal(5)),
            Decimal(100),
            True,
            "on for everyone; 5% of actors",
        ),
        (
            FlagState(percentage_of_actors=Decimal(5), percentage_of_time=Decimal(10)),
            Decimal(10),
            True,
            "5% of actors; 10% of the time",
        ),
        (
            FlagState(percentage_of_actors=Decimal(1), actors=("user:bob",)),
            Decimal(1),
            True,
            "1% of actors; for user:bob",
        ),
        (FlagState(percentage_of_actors=Decimal("1E+2")), Decimal(100), True, "100% of actors"),
    ],
)
def test_state(state: FlagState, exposure: Decimal, on: bool, described: str) -> None:
    assert state.exposure() == exposure
    assert state.is_on() is on
    assert state.describe() == described


# --- apply_set --------------------------------------------------------------------------------

PCT25_ACTORS = FlagState(percentage_of_actors=Decimal(25))
PCT10_TIME = FlagState(percentage_of_time=Decimal(10))
ON = FlagState(enabled=True)
BOB = FlagState(actors=("user:bob",))
MIXED = FlagState(percentage_of_actors=Decimal(25), actors=("project:a/b", "user:bob"))


def _req(value: bool | str, of: Literal["actors", "time"] | None = None, *gates: str) -> SetRequest:
    parsed = value if isinstance(value, bool) else Decimal(value)
    return SetRequest(value=parsed, of=of, gates=gates)


@pytest.mark.parametrize(
    ("current", "req", "expected"),
    [
        # true without gates: on for everyone; targeted gates stay
        pytest.param(OFF, _req(True), ON, id="true-from-off"),
        pytest.param(
            BOB, _req(True), FlagState(enabled=True, actors=("user:bob",)), id="true-keeps-actors"
        ),
        pytest.param(ON, _req(True), ON, id="true-when-on"),
        # true with gates: those actors, merged sorted and deduplicated; nobody else
        pytest.param(OFF, _req(True, None, "user:alice"), FlagState(actors=("user:alice",))),
        pytest.param(
            BOB,
            _req(True, None, "user:carol", "user:alice", "user:bob"),
            FlagState(actors=("user:alice", "user:bob", "user:carol")),
            id="true-gates-merge-sorted-dedup",
        ),
        pytest.param(
            PCT25_ACTORS,
            _req(True, None, "group:g"),
            FlagState(percentage_of_actors=Decimal(25), actors=("group:g",)),
            id="true-gates-keep-percentage",
        ),
        # false without gates: off entirely, every gate cleared
        pytest.param(ON, _req(False), OFF, id="false-from-on"),
        pytest.param(MIXED, _req(False), OFF, id="false-clears-everything"),
        pytest.param(
            FlagState(enabled=True, percentage_of_time=Decimal(3), actors=("user:x",)),
            _req(False),
            OFF,
            id="false-clears-all-kinds",
        ),
        # false with gates: only those actors go
        pytest.param(
            MIXED,
            _req(False, None, "user:bob"),
            FlagState(percentage_of_actors=Decimal(25), actors=("project:a/b",)),
            id="false-gates-remove-actors",
        ),
        pytest.param(
            FlagState(enabled=True, actors=("user:bob",)),
            _req(False, None, "user:bob", "user:nobody"),
            ON,
            id="false-gates-keep-enabled",
        ),
        # a percentage replaces the percentage gate, one kind at a time
        pytest.param(OFF, _req("1", "actors"), FlagState(percentage_of_actors=Decimal(1))),
        pytest.param(
            PCT25_ACTORS,
            _req("50", "actors"),
            FlagState(percentage_of_actors=Decimal(50)),
            id="actors-replaces-actors",
        ),
        pytest.param(
            PCT10_TIME,
            _req("5", "actors"),
            FlagState(percentage_of_actors=Decimal(5)),
            id="actors-replaces-time",
        ),
        pytest.param(
            PCT25_ACTORS,
            _req("2", "time"),
            FlagState(percentage_of_time=Decimal(2)),
            id="time-replaces-actors",
        ),
        # a percentage lowers a flag that was on for everyone
        pytest.param(
            ON,
            _req("1", "actors"),
            FlagState(percentage_of_actors=Decimal(1)),
            id="percentage-lowers-fully-on",
        ),
        # a percentage keeps targeted actors and adds its own gates, sorted and deduplicated
        pytest.param(
            MIXED,
            _req("10", "actors", "user:alice", "user:bob"),
            FlagState(
                percentage_of_actors=Decimal(10), actors=("project:a/b", "user:alice", "user:bob")
            ),
            id="percentage-with-gates",
        ),
    ],
)
def test_apply_set(current: FlagState, req: SetRequest, expected: FlagState) -> None:
    after = apply_set(current, req)
    assert after == expected


def test_percentage_lowers_exposure_of_fully_on_flag() -> None:
    after = apply_set(ON, _req("1", "actors"))
    assert after.exposure() == Decimal(1) < ON.exposure()
    assert after.enabled is False


def test_false_is_off() -> None:
    after = apply_set(MIXED, _req(False))
    assert after is OFF or after == OFF
    assert not after.is_on()
    assert after.describe() == "off"


def test_apply_set_does_not_change_its_input() -> None:
    before = MIXED.model_copy()
    apply_set(MIXED, _req(True, None, "user:zed"))
    apply_set(MIXED, _req("3", "time"))
    assert before == MIXED
