"""What the core works with: settings, clock, store and the chosen adapters.

Built once by `marvin.wiring`; commands, policies and the pipeline read it, never change it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from marvin.adapters.directory import Directory
from marvin.adapters.flags import FlagBackend
from marvin.adapters.gitlab_deploys import DeployBackend
from marvin.adapters.issues import IssueTracker
from marvin.adapters.oncall import Oncall
from marvin.adapters.presence import Presence
from marvin.clock import Clock
from marvin.config import Settings
from marvin.environments import Environments
from marvin.flagd import FlagdFileWriter
from marvin.flags import Environment
from marvin.store.db import Store


@dataclass(frozen=True)
class Services:
    settings: Settings
    clock: Clock
    store: Store
    # Per environment: the backend its flags live in.
    flag_backends: Mapping[Environment, FlagBackend]
    issues: IssueTracker
    directory: Directory
    oncall: Oncall
    # Per transport: what each chat says about whether someone is away.
    presence: Mapping[str, Presence] = field(default_factory=dict)
    # The flagd file applications may read the embedded flags from (None: not written).
    flagd: FlagdFileWriter | None = None
    # The GitLab project deploys run in (deploys.gitlab_project): its freeze periods and
    # pipelines. None: Marvin keeps the calendar alone.
    deploys: DeployBackend | None = None

    def flags(self, env: Environment) -> FlagBackend:
        return self.flag_backends[env]

    @property
    def environments(self) -> Environments:
        return self.settings.flags.environment_set
