"""Feature flag values and state, Flipper-style as GitLab uses them. Pure: no I/O here.

A flag in one environment has a boolean gate (on for everyone), at most one percentage gate
(of actors: sticky per actor; or of time: random per check) and targeted actor gates
(`user:alice`, `project:group/proj`, `group:gitlab-org`). They combine with OR, as in
Flipper: an actor sees the feature when any gate lets them in.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler
from pydantic_core import core_schema

HUNDRED = Decimal(100)
ZERO = Decimal(0)
# ASCII digits, at most one point, at most 4 decimals, an optional %: "1e2", "NaN", "-1",
# "0x10", "½" and a fullwidth 5 all fail here rather than being half-understood.
# `[0-9]`, not `\d`, which takes any Unicode digit (and Decimal reads those as numbers);
# `\Z`, not `$`, which also matches before a trailing newline.
_PERCENT = re.compile(r"^(?P<int>[0-9]{1,9})(?:\.(?P<frac>[0-9]{1,4}))?%?\Z")
_USERNAME = re.compile(r"^@?[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}\Z")
_PATH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.-]*)*\Z")
_FLAG_NAME = re.compile(r"^[a-z][a-z0-9_]*\Z")

GateKind = Literal["user", "project", "group", "namespace", "feature_group"]
# A feature group is a name GitLab defines (gitlab_team_members): a word, not a path.
_FEATURE_GROUP = re.compile(r"^[a-z][a-z0-9_]{0,63}\Z")


class Environment(str):
    """An environment's name. Which ones exist is configuration (`marvin.environments`);
    one name is one object, so `is` compares them as it would enum members."""

    __slots__ = ()
    _interned: ClassVar[dict[str, Environment]] = {}
    staging: ClassVar[Environment]
    production: ClassVar[Environment]

    def __new__(cls, name: str) -> Environment:
        found = cls._interned.get(name)
        if found is None:
            if not isinstance(name, str) or not name:
                raise ValueError(f"{name!r} is not an environment's name")
            found = cls._interned[name] = super().__new__(cls, name)
        return found

    @property
    def value(self) -> str:
        return str.__str__(self)

    @property
    def variable(self) -> str:
        """Its part of an environment variable's name: STAGING_REF for staging-ref."""
        return self.value.upper().replace("-", "_")

    def __repr__(self) -> str:
        return f"Environment({self.value!r})"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            cls, core_schema.str_schema(min_length=1)
        )


Environment.staging = Environment("staging")
Environment.production = Environment("production")


def validate_flag_name(value: str, max_length: int = 63) -> str:
    if len(value) > max_length:
        raise ValueError(f"a flag name is at most {max_length} characters")
    if not _FLAG_NAME.match(value):
        raise ValueError(
            "a flag name is lowercase letters, digits and underscores, starting with a letter"
        )
    return value


def parse_percentage(raw: str) -> Decimal:
    text = raw.strip()
    match = _PERCENT.match(text)
    if not match:
        raise ValueError(
            f"{raw!r} is not a value: use true, false or a percentage from 0 to 100 "
            "(like 1, 0.5 or 25%)"
        )
    try:
        value = Decimal(match.group("int") + "." + (match.group("frac") or "0"))
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only digits
        raise ValueError(f"{raw!r} is not a percentage") from exc
    if value > HUNDRED:
        raise ValueError(f"{raw!r} is over 100%")
    return percent(value)


def percent(value: Decimal | float | int | str) -> Decimal:
    """One spelling for one percentage, whatever wrote it (a person, JSON, a backend)."""
    value = Decimal(str(value))
    # normalize() alone writes 100 as 1E+2, which str() and JSON would then carry along.
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


def parse_value(raw: str) -> bool | Decimal:
    lowered = raw.strip().lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    return parse_percentage(raw)


def parse_gate_list(raw: str, kind: GateKind) -> tuple[str, ...]:
    option = kind.replace("_", "-")
    items = [item.strip() for item in raw.split(",")]
    if not items or any(not item for item in items):
        raise ValueError(f"--{option} takes a comma-separated list with no empty entries")
    patterns = {"user": _USERNAME, "feature_group": _FEATURE_GROUP}
    pattern = patterns.get(kind, _PATH)
    for item in items:
        if len(item) > 255 or not pattern.match(item):
            raise ValueError(f"{item!r} is not a valid {option.replace('-', ' ')} name")
    # GitLab's usernames and paths are case-insensitive: `Bob` is `bob`, once.
    return tuple(dict.fromkeys(item.lstrip("@").lower() for item in items))


def fmt_percent(value: Decimal) -> str:
    return f"{value.normalize():f}%"


class FlagState(BaseModel):
    model_config = ConfigDict(frozen=True)

    enabled: bool = False
    percentage_of_actors: Decimal | None = None
    percentage_of_time: Decimal | None = None
    actors: tuple[str, ...] = Field(default_factory=tuple)

    def exposure(self) -> Decimal:
        """Share of all traffic that sees the feature; targeted actors are not a share."""
        if self.enabled:
            return HUNDRED
        return max(self.percentage_of_actors or ZERO, self.percentage_of_time or ZERO)

    def is_on(self) -> bool:
        return self.exposure() > ZERO or bool(self.actors)

    def describe(self) -> str:
        parts: list[str] = []
        if self.enabled:
            parts.append("on for everyone")
        if self.percentage_of_actors is not None:
            parts.append(f"{fmt_percent(self.percentage_of_actors)} of actors")
        if self.percentage_of_time is not None:
            parts.append(f"{fmt_percent(self.percentage_of_time)} of the time")
        if self.actors:
            parts.append("for " + ", ".join(self.actors))
        return "; ".join(parts) if parts else "off"


OFF = FlagState()


class SetRequest(BaseModel):
    """A `feature set`, already validated: what the person asked for."""

    model_config = ConfigDict(frozen=True)

    value: bool | Decimal
    of: Literal["actors", "time"] | None = None
    gates: tuple[str, ...] = ()  # "user:alice", "project:a/b", "group:g"


def apply_set(current: FlagState, req: SetRequest) -> FlagState:
    """The state after a `feature set`, following GitLab's semantics.

    - `true` with gates enables those actors; without gates, everyone.
    - `false` with gates disables those actors; without, the flag is off entirely (Flipper's
      boolean `false` clears every gate).
    - a percentage replaces the percentage gate (one kind at a time) and, with gates, also
      enables those actors; it lowers a flag that was on for everyone to that percentage.
    """
    actors = list(current.actors)
    if req.value is True:
        if req.gates:
            return current.model_copy(update={"actors": _merge(actors, req.gates)})
        return current.model_copy(update={"enabled": True})
    if req.value is False:
        if req.gates:
            remaining = tuple(a for a in actors if a not in set(req.gates))
            return current.model_copy(update={"actors": remaining})
        return OFF
    assert isinstance(req.value, Decimal)
    # Zero is off: no "0% of actors" gate is left behind.
    share = req.value if req.value > ZERO else None
    return FlagState(
        enabled=False,
        percentage_of_actors=share if req.of == "actors" else None,
        percentage_of_time=share if req.of == "time" else None,
        actors=_merge(actors, req.gates),
    )


def _merge(actors: list[str], more: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(dict.fromkeys([*actors, *more])))
