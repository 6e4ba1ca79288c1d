"""Command definitions: one declaration per command drives parsing, validation and help."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from marvin.commands.base import Change, Handler
from marvin.environments import DEFAULT as DEFAULT_ENVIRONMENTS
from marvin.environments import Environments


class CommandModel(BaseModel):
    """Base of every typed command: immutable, no unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class Arg:
    name: str
    help: str
    required: bool = True
    rest: bool = False  # takes every remaining word, joined by spaces

    def usage(self) -> str:
        shown = f"<{self.name}>" + ("..." if self.rest else "")
        return shown if self.required else f"[{shown}]"


@dataclass(frozen=True)
class Opt:
    name: str
    help: str
    metavar: str | None = None  # None: a switch that takes no value

    @property
    def field(self) -> str:
        return self.name.replace("-", "_")

    def usage(self) -> str:
        return f"--{self.name}" + (f" <{self.metavar}>" if self.metavar else "")


@dataclass(frozen=True)
class Needs:
    """What the caller must hold to run a command: a grant, or a role itself."""

    kind: Literal["grant", "role"]
    name: str


@dataclass(frozen=True)
class CommandSpec:
    group: str
    verb: str | None
    summary: str
    model: type[CommandModel]
    handler: Handler[Any]
    args: tuple[Arg, ...] = ()
    opts: tuple[Opt, ...] = ()
    # Changes production: only from the production channel, audited and announced.
    production_change: bool = False
    needs: Needs | None = None
    examples: tuple[str, ...] = ()
    # The kinds of change the handler may plan: the registry checks that every mandatory
    # policy can judge each of them before the bot starts.
    plans: tuple[type[Change], ...] = ()

    @property
    def name(self) -> str:
        return f"{self.group} {self.verb}" if self.verb else self.group

    def option(self, name: str) -> Opt | None:
        return next((o for o in self.opts if o.name == name), None)

    def usage(self) -> str:
        parts = [self.name, *(a.usage() for a in self.args)]
        parts += [f"[{o.usage()}]" for o in self.opts]
        return " ".join(parts)

    def brief_usage(self, width: int = 100) -> str:
        """One short line for an error: the whole usage when it fits, else `[options]`."""
        full = self.usage()
        if len(full) <= width or not self.opts:
            return full
        return " ".join([self.name, *(a.usage() for a in self.args), "[options]"])

    def help_text(self) -> str:
        lines = [f"`{self.usage()}`", f"  {self.summary}"]
        lines += [f"  {a.usage():<28} {a.help}" for a in self.args]
        lines += [f"  {o.usage():<28} {o.help}" for o in self.opts]
        if self.examples:
            lines.append("  e.g. " + " | ".join(f"`{e}`" for e in self.examples))
        return "\n".join(lines)


@dataclass
class Registry:
    specs: list[CommandSpec] = field(default_factory=list)
    group_summaries: dict[str, str] = field(default_factory=dict)
    # The flag environments the commands were built for (their options); commands are
    # validated with them (`marvin.commands.on_environment`).
    environments: Environments = DEFAULT_ENVIRONMENTS

    def add(self, group_summary: str, specs: Iterable[CommandSpec]) -> None:
        for spec in specs:
            if self.find(spec.group, spec.verb) is not None:
                raise ValueError(f"command {spec.name!r} defined twice")
            self.specs.append(spec)
            self.group_summaries.setdefault(spec.group, group_summary)

    def groups(self) -> list[str]:
        return list(self.group_summaries)

    def in_group(self, group: str) -> list[CommandSpec]:
        return [s for s in self.specs if s.group == group]

    def find(self, group: str, verb: str | None) -> CommandSpec | None:
        return next((s for s in self.specs if s.group == group and s.verb == verb), None)

    def overview(self) -> str:
        lines = ["*Marvin* guards production. Commands:"]
        for group in self.groups():
            lines.append(f"• `{group}`: {self.group_summaries[group]}")
            lines += [f"    `{s.usage()}`" for s in self.in_group(group) if s.verb]
        lines.append("`help <command>` explains one command and its options.")
        return "\n".join(lines)

    def group_help(self, group: str) -> str:
        specs = self.in_group(group)
        head = f"*{group}*: {self.group_summaries[group]}"
        return "\n".join([head, *(s.help_text() for s in specs)])

    def group_usage(self, group: str) -> str:
        """The group's commands on one line: each with its arguments when there are a few
        (`status` | `status away [<reason>...]` | `status back`), else the subcommands."""
        specs = self.in_group(group)
        if len(specs) <= 4:
            return " | ".join(f"`{s.brief_usage(width=0)}`" for s in specs)
        verbs = [s.verb for s in specs if s.verb]
        head = f"`{group}` | " if any(s.verb is None for s in specs) else ""
        return f"{head}`{group} <{'|'.join(verbs)}> ...`"

    def closest(self, words: list[str]) -> str | None:
        """The command nearest to what was typed (`featur lst` → `feature list`), if any."""
        words = [w.lower() for w in words[:2]]
        if not words:
            return None
        names = [s.name for s in self.specs if s.verb]
        if len(words) == 2:
            match = difflib.get_close_matches(" ".join(words), names, n=1, cutoff=0.6)
            if match:
                return match[0]
        match = difflib.get_close_matches(words[0], self.groups(), n=1, cutoff=0.6)
        return match[0] if match else None

    def closest_in_group(self, group: str, verb: str) -> str | None:
        """The subcommand of `group` nearest to `verb`, as the whole command's name."""
        verbs = [s.verb for s in self.in_group(group) if s.verb]
        match = difflib.get_close_matches(verb.lower(), verbs, n=1, cutoff=0.6)
        return f"{group} {match[0]}" if match else None

    def explain(self, topic: str) -> tuple[str, bool]:
        """`help <topic>`: the help of a group or one command, or (False) one sentence that
        says there is no such thing, with the nearest one."""
        words = topic.lower().split()
        if not words:
            return self.overview(), True
        group = words[0]
        if group not in self.group_summaries:
            near = self.closest(words)
            hint = f" Did you mean `{near}`?" if near else ""
            return f"There's no command `{short(group)}`.{hint} `help` lists them all.", False
        if len(words) == 1:
            return self.group_help(group), True
        spec = self.find(group, words[1])
        if spec is not None:
            return spec.help_text(), True
        near = self.closest_in_group(group, words[1])
        hint = f" Did you mean `{near}`?" if near else ""
        return (
            f"`{group}` has no subcommand `{short(words[1])}`.{hint} "
            f"`help {group}` lists what it can do.",
            False,
        )


def short(word: str, limit: int = 40) -> str:
    """A word as it is echoed in a message: on one line, and not too long."""
    word = " ".join(word.split())
    return word if len(word) <= limit else word[:limit] + "…"
