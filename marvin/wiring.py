"""Build the bot from config: the one place adapters are chosen.

`BACKENDS` is the table: for each `backend:` key in config, the names it accepts and what
each builds. A name that isn't here is a configuration error (`config check` lists it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from marvin.access.mirror import MirroredDirectory
from marvin.adapters.directory import Directory, FileDirectory
from marvin.adapters.flags import Closable, FlagBackend, LocalFlagBackend
from marvin.adapters.gitlab import GitLabClient
from marvin.adapters.gitlab_deploys import DeployBackend, GitLabDeploys
from marvin.adapters.gitlab_flags import GitLabInstanceFlags
from marvin.adapters.gitlab_groups import GitLabGroups
from marvin.adapters.gitlab_issues import GitLabIssueTracker
from marvin.adapters.gitlab_project_flags import GitLabProjectFlags
from marvin.adapters.issues import IssueTracker, LocalIssueTracker
from marvin.adapters.oncall import FileRotation
from marvin.adapters.presence import Presence
from marvin.adapters.unleash_flags import UnleashFlags, admin_token_from_env
from marvin.clock import Clock, SystemClock
from marvin.commands.catalog import build_registry
from marvin.config import Settings
from marvin.environments import DEFAULT as DEFAULT_ENVIRONMENTS
from marvin.environments import Environments
from marvin.flagd import FlagdFileWriter
from marvin.flags import Environment
from marvin.pipeline import Pipeline
from marvin.policies import POLICIES
from marvin.services import Services
from marvin.spec import Registry
from marvin.store.db import Store

# What each builder gets: the settings, the store and the clock (and a flag backend, the
# environment it serves).
Builder = Callable[..., Any]


def gitlab_token(env: Environment | None = None) -> str | None:
    """Marvin's GitLab token, from the environment only: GITLAB_TOKEN_<ENV> for an
    environment's own instance, else GITLAB_TOKEN."""
    named = os.environ.get(f"GITLAB_TOKEN_{env.variable}", "") if env else ""
    return (named or os.environ.get("GITLAB_TOKEN", "")).strip() or None


def _gitlab_instance(
    settings: Settings, store: Store, clock: Clock, env: Environment
) -> FlagBackend:
    url = settings.gitlab.instance_url(env.value)
    assert url is not None  # backend_problems refuses the config otherwise
    client = GitLabClient(url, gitlab_token(env), settings.gitlab.timeout_seconds)
    return GitLabInstanceFlags(client, env)


def _gitlab_project(
    settings: Settings, store: Store, clock: Clock, env: Environment
) -> FlagBackend:
    gitlab = settings.gitlab
    assert gitlab.url and gitlab.flags_project  # backend_problems refuses the config otherwise
    client = GitLabClient(gitlab.url, gitlab_token(), gitlab.timeout_seconds)
    scopes = {str(env): scope for env, scope in gitlab.environment_scopes.items()}
    return GitLabProjectFlags(client, gitlab.flags_project, scopes)


def _unleash(settings: Settings, store: Store, clock: Clock, env: Environment) -> FlagBackend:
    unleash = settings.unleash
    assert unleash.url  # backend_problems refuses the config otherwise
    return UnleashFlags(
        unleash.url,
        admin_token_from_env(),
        project=unleash.project,
        environments={str(env): name for env, name in unleash.environments.items()},
        timeout=unleash.timeout_seconds,
    )


def _gitlab_issues(settings: Settings, store: Store, clock: Clock) -> IssueTracker:
    gitlab = settings.gitlab
    project = settings.issues.project
    assert gitlab.url and project  # backend_problems refuses the config otherwise
    client = GitLabClient(gitlab.url, gitlab_token(), gitlab.timeout_seconds)
    return GitLabIssueTracker(client, project)


def _gitlab_deploys(settings: Settings) -> DeployBackend | None:
    project = settings.deploys.gitlab_project
    if not project or not settings.gitlab.url:
        return None
    client = GitLabClient(settings.gitlab.url, gitlab_token(), settings.gitlab.timeout_seconds)
    return GitLabDeploys(client, project)


def _gitlab_directory(settings: Settings, store: Store, clock: Clock) -> Directory:
    gitlab = settings.gitlab
    assert gitlab.url  # backend_problems refuses the config otherwise
    client = GitLabClient(gitlab.url, gitlab_token(), gitlab.timeout_seconds)
    return MirroredDirectory(store, settings.directory, GitLabGroups(client))


BACKENDS: Mapping[str, Mapping[str, Builder]] = {
    "flags": {
        "local": lambda settings, store, clock, env: LocalFlagBackend(store, clock),
        "gitlab_instance": _gitlab_instance,
        "gitlab_project": _gitlab_project,
        "unleash": _unleash,
    },
    "issues": {
        "local": lambda settings, store, clock: LocalIssueTracker(
            store, clock, settings.issues.project
        ),
        "gitlab": _gitlab_issues,
    },
    "directory": {
        "file": lambda settings, store, clock: FileDirectory(settings.directory),
        "gitlab": _gitlab_directory,
    },
    "oncall": {
        "file": lambda settings, store, clock: FileRotation(settings.oncall),
    },
}


def flag_backend_name(settings: Settings, env: Environment) -> str:
    return settings.flags.backends.get(env.value, settings.flags.backend)


def _chosen(settings: Settings) -> dict[str, str]:
    return {
        "flags": settings.flags.backend,
        "issues": settings.issues.backend,
        "directory": settings.directory.backend,
        "oncall": settings.oncall.backend,
    }


def backend_problems(settings: Settings) -> list[str]:
    """Every `backend:` key naming an implementation that doesn't exist, or one that lacks
    the settings it needs."""
    chosen = [(f"{section}.backend", section, name) for section, name in _chosen(settings).items()]
    chosen += [
        (f"flags.backends.{env}", "flags", name) for env, name in settings.flags.backends.items()
    ]
    problems = []
    for key, section, name in chosen:
        known = BACKENDS[section]
        if name not in known:
            names = ", ".join(repr(k) for k in known)
            problems.append(f"{key}: unknown backend {name!r} (one of: {names})")
    for env in settings.flags.environment_set:
        backend = flag_backend_name(settings, env)
        if backend == "gitlab_instance" and not settings.gitlab.instance_url(env.value):
            problems.append(
                f"gitlab.instances.{env.value}: {env.value} flags are in GitLab's instance "
                "features, so say which GitLab (or set gitlab.url)"
            )
        if backend == "gitlab_project" and not (
            settings.gitlab.url and settings.gitlab.flags_project
        ):
            problems.append(
                f"gitlab.flags_project: {env.value} flags are a GitLab project's feature flags, "
                "so set gitlab.url and gitlab.flags_project"
            )
        if backend == "unleash" and not settings.unleash.url:
            problems.append(f"unleash.url: {env.value} flags are in Unleash, so say where")
    if settings.issues.backend == "gitlab" and not (
        settings.gitlab.url and settings.issues.project
    ):
        problems.append(
            "issues.project: issues live in GitLab, so set gitlab.url and issues.project "
            "(the infrastructure tracker, by path or id)"
        )
    if settings.deploys.gitlab_project and not settings.gitlab.url:
        # Else the project's freeze periods would silently not count.
        problems.append(
            "gitlab.url: deploys.gitlab_project's freeze periods and pipeline are in GitLab, "
            "so say which GitLab"
        )
    directory = settings.directory
    if directory.backend == "gitlab":
        if not settings.gitlab.url:
            problems.append(
                "gitlab.url: the roles registry is GitLab's groups, so say which GitLab"
            )
        if not directory.groups:
            problems.append(
                "directory.groups: the roles registry is GitLab's groups, so map each role to "
                "its group (production: gl-infra/production-engineers)"
            )
    return sorted(set(problems))


def build_services(
    settings: Settings,
    *,
    clock: Clock | None = None,
    presence: Mapping[str, Presence] | None = None,
) -> Services:
    db = settings.database
    clock = clock or SystemClock()
    store = Store(db.url, echo=db.echo, pool_size=db.pool_size)
    chosen = _chosen(settings)

    def build(section: str) -> Any:
        return BACKENDS[section][chosen[section]](settings, store, clock)

    flags = {
        env: BACKENDS["flags"][flag_backend_name(settings, env)](settings, store, clock, env)
        for env in settings.flags.environment_set
    }
    return Services(
        settings=settings,
        clock=clock,
        store=store,
        flag_backends=flags,
        issues=build("issues"),
        directory=build("directory"),
        oncall=build("oncall"),
        presence=dict(presence or {}),
        deploys=_gitlab_deploys(settings),
        flagd=(
            FlagdFileWriter(
                store, settings.flags.flagd_file, Environment(settings.flags.flagd_environment)
            )
            if settings.flags.flagd_file
            else None
        ),
    )


async def close(services: Services) -> None:
    """Give back what the adapters hold (HTTP sessions) and the database pools."""
    for backend in services.flag_backends.values():
        if isinstance(backend, Closable):
            await backend.aclose()
    await services.store.dispose()


def registry(environments: Environments = DEFAULT_ENVIRONMENTS) -> Registry:
    return build_registry(POLICIES, environments)


def build_pipeline(services: Services) -> Pipeline:
    return Pipeline(services, registry(services.settings.flags.environment_set))
