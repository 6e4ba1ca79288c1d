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
        registry = self.registry
        if cmd.topic is None:
            return Done(registry.overview())
        words = cmd.topic.lower().split()
        group = words[0]
        if group not in registry.group_summaries:
            return Done(
                f"There's no command `{group[:40]}`.\n{registry.overview()}", False, "usage"
            )
        if len(words) > 1:
            spec = registry.find(group, words[1])
            if spec is not None:
                return Done(spec.help_text())
        return Done(registry.group_help(group))


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
