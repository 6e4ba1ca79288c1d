"""`help`: generated from the same definitions the parser uses."""

from __future__ import annotations

from marvin.commands.base import Context, Done, Handler, Plan
from marvin.spec import Arg, CommandModel, CommandSpec, Registry


class Help(CommandModel):
    topic: str | None = None


class HelpHandler(Handler[Help]):
    """Answers from the registry it describes (given at construction: it is the registry's
    own help, not a service every command needs)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def plan(self, cmd: Help, ctx: Context) -> Plan:
        if cmd.topic is None:
            return Done(self.registry.overview())
        text, known = self.registry.explain(cmd.topic)
        return Done(text) if known else Done(text, False, "usage")


def specs(registry: Registry) -> tuple[CommandSpec, ...]:
    return (
        CommandSpec(
            "help",
            None,
            "Show what Marvin can do, or explain one command.",
            Help,
            HelpHandler(registry),
            (Arg("topic", "a command, e.g. `feature set`", False, True),),
        ),
    )
