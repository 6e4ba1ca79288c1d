"""The environment options of the `feature` commands: `--staging`, `--production`, and
whatever else is configured (`--dev`, `--staging-ref`, `--pre`, `--ops`), as GitLab's ChatOps
names them.

The grammar reads each as a switch; the command model gathers the ones given into
`environments`, in configured order, and fills in the default (or, where a command shows
them all, every one) when none was named. Which environments exist comes from the registry
the text was parsed with (its validation context); without one, the built-in two.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import ValidationInfo, model_validator

from marvin.environments import DEFAULT, Environments
from marvin.flags import Environment
from marvin.spec import CommandModel, Opt

CONTEXT_KEY = "environments"


def field_of(env: str) -> str:
    return env.replace("-", "_")


def environment_opts(
    environments: Environments, *, what: str = "on", default: bool = True
) -> tuple[Opt, ...]:
    """An option per environment; `default`: the help says which one naming none means."""
    return tuple(
        Opt(
            env,
            f"{what} {env}" + (" (the default)" if default and env == environments.default else ""),
        )
        for env in environments
    )


class OnEnvironment(CommandModel):
    environments: tuple[Environment, ...] = ()
    # Whether several together are understood (`--staging --production`, as GitLab's
    # ChatOps takes them): a change then runs once per environment (the pipeline splits it).
    _many_environments: ClassVar[bool] = False
    # Naming none means all of them (`feature get` shows every one), not the default.
    _all_when_none: ClassVar[bool] = False

    @model_validator(mode="before")
    @classmethod
    def _gather_environments(cls, values: Any, info: ValidationInfo) -> Any:
        if not isinstance(values, dict) or values.get("environments"):
            return values
        context = info.context if isinstance(info.context, dict) else {}
        configured: Environments = context.get(CONTEXT_KEY, DEFAULT)
        values = dict(values)
        named = [env for env in configured if values.pop(field_of(env), False)]
        if not named:
            named = list(configured) if cls._all_when_none else [configured.default]
        if len(named) > 1 and not cls._many_environments:
            raise ValueError(f"choose one environment: {configured.options()}")
        values["environments"] = tuple(named)
        return values

    @property
    def lowers(self) -> bool:
        """Whether the change only turns off, removes or undoes: several environments then
        go followers first. A command that sets a value says for itself."""
        return True

    @property
    def many(self) -> bool:
        return len(self.environments) > 1

    @property
    def environment(self) -> Environment:
        if self.many:
            raise RuntimeError("a change named for several environments runs once for each")
        return self.environments[0]
