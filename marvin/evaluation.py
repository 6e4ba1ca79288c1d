"""How an application's flag check is answered from a `FlagState`. Pure: no I/O here.

Marvin serves its embedded flags two ways, OFREP (`marvin/ofrep.py`) and a flagd file
(`marvin/flagd.py`), and both must give every actor the same answer. This module is the
one place that decides it.

The evaluation context an application sends:

- `targetingKey` (string): the actor a percentage of actors is sticky for. Use one stable
  id per actor (a user id, a project id); a flag at a percentage of actors cannot be
  evaluated without it (TARGETING_KEY_MISSING).
- `user`, `project`, `group` (strings): matched exactly against the flag's actor gates
  `user:<name>`, `project:<path>`, `group:<path>` (`{"user": "bob"}` matches `user:bob`).
  One value each; anything that is not a string matches nothing.

Gates combine with OR, as in Flipper: on for everyone (reason STATIC), else a matching
actor gate (TARGETING_MATCH), else the percentage of actors (SPLIT, sticky), else the
percentage of time (SPLIT, random on every call), else off: SPLIT when a percentage said
no, DEFAULT when only actor gates exist and none matched, DISABLED when nothing is on.

The percentage of actors buckets exactly as flagd's `fractional` operator does in its
current form (flagd ADR "fractional-non-string-rand-units", flagd-testbed `@fractional-v3`,
`openfeature-flagd-core` 2.x): MurmurHash3 x86 32-bit, seed 0, of the canonical CBOR
encoding of the two-item array `[flag name, targetingKey]`; the unsigned hash maps to a
bucket in [0, total weight) as `(hash * total) >> 32`, and the first variant whose running
weight exceeds the bucket wins. Marvin writes the weights `["on", p * 10_000]` and
`["off", 1_000_000 - p * 10_000]` (percentages carry at most four decimals), so an actor
is on when `bucket < p * 10_000`: raising the percentage only ever adds actors.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from enum import StrEnum
from functools import lru_cache
from typing import Final

from marvin.flags import FlagState, GateKind

VARIANT_ON: Final = "on"
VARIANT_OFF: Final = "off"
# Four decimals of a percentage: 0.0001% is one unit of weight out of 1,000,000.
WEIGHT_SCALE: Final = 10_000
TOTAL_WEIGHT: Final = 100 * WEIGHT_SCALE
# The context keys that carry each kind of actor gate.
ACTOR_KEYS: Final[Mapping[GateKind, str]] = {"user": "user", "project": "project", "group": "group"}
TARGETING_KEY: Final = "targetingKey"

_MASK: Final = 0xFFFFFFFF


class Reason(StrEnum):
    STATIC = "STATIC"
    TARGETING_MATCH = "TARGETING_MATCH"
    SPLIT = "SPLIT"
    DEFAULT = "DEFAULT"
    DISABLED = "DISABLED"


class ErrorCode(StrEnum):
    FLAG_NOT_FOUND = "FLAG_NOT_FOUND"
    TARGETING_KEY_MISSING = "TARGETING_KEY_MISSING"
    INVALID_CONTEXT = "INVALID_CONTEXT"
    PARSE_ERROR = "PARSE_ERROR"
    GENERAL = "GENERAL"


@dataclass(frozen=True)
class Resolution:
    value: bool
    variant: str
    reason: Reason


class EvaluationError(Exception):
    """The flag exists but this context cannot be evaluated against it."""

    def __init__(self, code: ErrorCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


# --- hashing --------------------------------------------------------------------------------


def murmur3_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3 x86 32-bit (Appleby's reference), unsigned, as `mmh3.hash(data, seed,
    signed=False)` and Go's `murmur3.Sum32` compute it."""
    c1, c2, mask = 0xCC9E2D51, 0x1B873593, _MASK
    h = seed & mask
    length = len(data)
    blocks = length // 4
    for k in struct.unpack_from(f"<{blocks}I", data):
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        h ^= (k * c2) & mask
        h = ((h << 13) | (h >> 19)) & mask
        h = (h * 5 + 0xE6546B64) & mask
    if length % 4:
        k = int.from_bytes(data[blocks * 4 :], "little")
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        h ^= (k * c2) & mask
    h ^= length & mask
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & mask
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & mask
    h ^= h >> 16
    return h


def _cbor_head(major: int, length: int) -> bytes:
    """A CBOR item head in its shortest form (RFC 8949 §4.2.1, preferred serialization)."""
    kind = major << 5
    if length < 24:
        return bytes([kind | length])
    for extra, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if length < 1 << (8 * size):
            return bytes([kind | extra]) + length.to_bytes(size, "big")
    raise ValueError("too long for CBOR")


def _cbor_text(text: str) -> bytes:
    raw = text.encode("utf-8")  # strict: a lone surrogate has no UTF-8 form
    return _cbor_head(3, len(raw)) + raw


@lru_cache(maxsize=4096)
def _pair_prefix(flag: str) -> bytes:
    return _cbor_head(4, 2) + _cbor_text(flag)


def bucketing_bytes(flag: str, targeting_key: str) -> bytes:
    """What flagd's shorthand `fractional` hashes: CBOR of `[flagKey, targetingKey]`."""
    return _pair_prefix(flag) + _cbor_text(targeting_key)


def bucket(flag: str, targeting_key: str, total: int = TOTAL_WEIGHT) -> int:
    """The actor's bucket in [0, total): flagd's `(hash * totalWeight) >> 32`."""
    return (murmur3_32(bucketing_bytes(flag, targeting_key)) * total) >> 32


@lru_cache(maxsize=1024)
def weight(percentage: Decimal) -> int:
    """A percentage as a weight out of TOTAL_WEIGHT; more than four decimals round down."""
    scaled = (percentage * WEIGHT_SCALE).to_integral_value(rounding=ROUND_FLOOR)
    return max(0, min(TOTAL_WEIGHT, int(scaled)))


def in_percentage_of_actors(flag: str, targeting_key: str, percentage: Decimal) -> bool:
    return bucket(flag, targeting_key) < weight(percentage)


# --- evaluation -----------------------------------------------------------------------------


def actor_gates(state: FlagState) -> dict[GateKind, tuple[str, ...]]:
    """The flag's actor gates by kind, in the order they are stored; unknown kinds dropped."""
    found: dict[GateKind, list[str]] = {kind: [] for kind in ACTOR_KEYS}
    for actor in state.actors:
        kind, _, name = actor.partition(":")
        if kind in found and name:
            found[kind].append(name)
    return {kind: tuple(names) for kind, names in found.items() if names}


def matching_actor(state: FlagState, context: Mapping[str, object]) -> str | None:
    if not state.actors:
        return None
    for kind, names in actor_gates(state).items():
        value = context.get(ACTOR_KEYS[kind])
        if isinstance(value, str) and value in names:
            return f"{kind}:{value}"
    return None


def targeting_key(context: Mapping[str, object]) -> str | None:
    """The context's targeting key; None when absent or empty.

    Raises INVALID_CONTEXT for a key that is not a string or has no UTF-8 form."""
    value = context.get(TARGETING_KEY)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise EvaluationError(ErrorCode.INVALID_CONTEXT, "targetingKey must be a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EvaluationError(
            ErrorCode.INVALID_CONTEXT, "targetingKey is not valid Unicode text"
        ) from exc
    return value


def _time_roll(bound: int) -> int:
    return secrets.randbelow(bound)


def evaluate(
    flag: str,
    state: FlagState,
    context: Mapping[str, object],
    *,
    roll: Callable[[int], int] = _time_roll,
) -> Resolution:
    """The flag's answer for this context. `roll(n)` draws uniformly from [0, n) for the
    percentage of time (injectable for tests). Raises `EvaluationError`."""
    if state.enabled:
        return Resolution(True, VARIANT_ON, Reason.STATIC)
    if matching_actor(state, context) is not None:
        return Resolution(True, VARIANT_ON, Reason.TARGETING_MATCH)
    if state.percentage_of_actors is not None:
        key = targeting_key(context)
        if key is None:
            raise EvaluationError(
                ErrorCode.TARGETING_KEY_MISSING,
                f"{flag} is on for a percentage of actors: the context needs a targetingKey",
            )
        if in_percentage_of_actors(flag, key, state.percentage_of_actors):
            return Resolution(True, VARIANT_ON, Reason.SPLIT)
    if state.percentage_of_time is not None:
        if roll(TOTAL_WEIGHT) < weight(state.percentage_of_time):
            return Resolution(True, VARIANT_ON, Reason.SPLIT)
    if state.percentage_of_actors is not None or state.percentage_of_time is not None:
        return Resolution(False, VARIANT_OFF, Reason.SPLIT)
    if state.actors:
        return Resolution(False, VARIANT_OFF, Reason.DEFAULT)
    return Resolution(False, VARIANT_OFF, Reason.DISABLED)
