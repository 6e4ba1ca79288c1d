"""Command definitions: one declaration per command drives parsing, validation and help."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from marvin.commands.base import Change, Handler


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
