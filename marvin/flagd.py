"""Marvin's embedded flags as a flagd flag-definition file, for OpenFeature's flagd providers
in file mode (`openfeature-provider-flagd`: `FlagdProvider(resolver_type=ResolverType.FILE,
offline_flag_source_path=...)`), which read it with no flag server.

Every flag is boolean, variants `on: true` and `off: false`, state ENABLED, and answers each
actor as OFREP does (`marvin/evaluation.py`):

- on for everyone: `defaultVariant: "on"`, no targeting.
- actor gates: `{"in": [{"var": "user"}, [names...]]}` (and `project`, `group`) under an
  `if` whose match is `"on"`.
- a percentage of actors: flagd's shorthand `{"fractional": [["on", w], ["off", 1000000 -
  w]]}` with `w` the percentage times 10,000. flagd buckets `[flagKey, targetingKey]`
  exactly as `marvin.evaluation.bucket` does, so both give the same actors the flag.
  Without a targetingKey flagd's `fractional` answers null and the flag is off; OFREP
  answers TARGETING_KEY_MISSING, and the application falls back to its code default.
- a percentage of time is NOT written: it is random on every call, which a file evaluated
  in each application cannot be. The nearest thing flagd offers (a `fractional` over
  `$flagd.timestamp`) would switch the flag on and off for every actor at once, second by
  second: the correlated blast GitLab deprecated `--random` for. So the file errs on the
  safe side: that gate counts as off there (actor gates still apply), and the flag's
  `metadata.marvinState` says so ("5% of the time") for whoever looks.
- off: `defaultVariant: "off"` (not state DISABLED, with which flagd answers the
  application's code default, which may be true).

The file is rewritten atomically (a temporary file in the same directory, then a rename),
and only when its content changes: flagd's file watcher reloads on a newer mtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from marvin.adapters.flags import LocalFlagBackend
from marvin.clock import SystemClock
from marvin.evaluation import (
    ACTOR_KEYS,
    TOTAL_WEIGHT,
    VARIANT_OFF,
    VARIANT_ON,
    actor_gates,
    weight,
)
from marvin.flags import Environment, FlagState
from marvin.store.db import Store, write_open

SCHEMA: Final = "https://flagd.dev/schema/v0/flags.json"


def targeting(state: FlagState) -> dict[str, Any] | None:
    """The flag's JsonLogic rule; None when its answer is the same for everyone."""
    if state.enabled:
        return None
    conditions: list[Any] = [
        {"in": [{"var": ACTOR_KEYS[kind]}, list(names)]}
        for kind, names in actor_gates(state).items()
    ]
    split: dict[str, Any] | None = None
    if state.percentage_of_actors is not None:
        on = weight(state.percentage_of_actors)
        split = {"fractional": [[VARIANT_ON, on], [VARIANT_OFF, TOTAL_WEIGHT - on]]}
    if not conditions:
        return split
    matched = conditions[0] if len(conditions) == 1 else {"or": conditions}
    # No match and no split: null, which flagd answers with the default variant ("off").
    return {"if": [matched, VARIANT_ON, split]}


def flagd_flag(state: FlagState) -> dict[str, Any]:
    flag: dict[str, Any] = {
        "state": "ENABLED",
        "variants": {VARIANT_ON: True, VARIANT_OFF: False},
        "defaultVariant": VARIANT_ON if state.enabled else VARIANT_OFF,
        "metadata": {"marvinState": state.describe()},
    }
    rule = targeting(state)
    if rule is not None:
        flag["targeting"] = rule
    return flag


def flagd_document(flags: Mapping[str, FlagState], environment: Environment) -> dict[str, Any]:
    """The whole flagd file for one environment's flags, by name."""
    return {
        "$schema": SCHEMA,
        "metadata": {"generatedBy": "marvin", "environment": environment.value},
        "flags": {name: flagd_flag(state) for name, state in sorted(flags.items())},
    }


def render(document: Mapping[str, Any]) -> str:
    """One spelling per document, so an unchanged flag set rewrites nothing."""
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def write_atomically(path: Path, text: str) -> bool:
    """Replace `path` with `text` in one rename; False (and no write) when it already holds it.

    Readers see the old file or the new one, never half of one."""
    data = text.encode("utf-8")
    try:
        if path.read_bytes() == data:
            return False
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644  # read by applications, often as another user
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):  # the rename itself made durable, where supported
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    return True


class FlagdFileWriter:
    """Writes one environment's flags to one flagd file. Build one per file and call
    `write()` after every committed change of that environment's flags (and at start-up):
    calls are taken in turn, each reading the flags afresh, so the last one leaves the
    file as the database stands."""

    def __init__(
        self, store: Store, path: str | Path, environment: Environment = Environment.production
    ) -> None:
        self.path = Path(path)
        self.environment = environment
        self._backend = LocalFlagBackend(store, SystemClock())
        self._lock = asyncio.Lock()

    async def write(self) -> bool:
        """True when the file changed. Raises `Unavailable` (database) or `OSError` (file)."""
        if write_open():
            raise RuntimeError("write the flagd file after the change's transaction commits")
        async with self._lock:
            flags = dict(await self._backend.list(self.environment, None))
            text = render(flagd_document(flags, self.environment))
            return await asyncio.to_thread(write_atomically, self.path, text)


async def write_flagd_file(
    store: Store, path: str | Path, environment: Environment = Environment.production
) -> bool:
    """One-off: read `environment`'s flags (one read transaction) and write them to `path`."""
    return await FlagdFileWriter(store, path, environment).write()
