"""Configuration: a YAML file validated by pydantic, any key overridable from the environment.

`MARVIN_DATABASE__URL=...` overrides `database.url`; the environment wins over the file so an
operator can change one key of a shipped file without editing it. Secrets never live here:
they come from the environment under their usual names and are read where they are used.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from marvin.environments import DEFAULT_FOLLOWS, Environments, environment_problems

CONFIG_ENV = "MARVIN_CONFIG"
_HANDLE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_GROUP_PATH = re.compile(
    r"^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,254}(/[A-Za-z0-9_.][A-Za-z0-9_.-]{0,254}){0,20}$"
)


class Section(BaseModel):
    # A typo in a key is an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChannelConfig(Section):
    id: str = Field("C0PRODUCTION", min_length=1, description="Chat id of the production channel")
    name: str = Field("production", min_length=1, description="Its name, without '#'")
    # Which chat the channel is in: announcements go there, whoever made the change and how
    # (a `marvin shell` change is announced by `marvin serve`). `none`: the terminal only.
    # `auto`: Slack when SLACK_BOT_TOKEN is set (as where `marvin serve` runs), else none.
    chat: Literal["auto", "none", "slack"] = "auto"

    def chat_in_use(self) -> Literal["none", "slack"]:
        if self.chat != "auto":
            return self.chat
        return "slack" if os.environ.get("SLACK_BOT_TOKEN", "").strip() else "none"

    @field_validator("name")
    @classmethod
    def _strip_hash(cls, value: str) -> str:
        return value.lstrip("#")


class DatabaseConfig(Section):
    url: str = "sqlite+aiosqlite:///marvin.db"
    echo: bool = False
    # Connections the work may hold at once (each worker uses one at a time; acks have
    # their own two).
    pool_size: int = Field(10, ge=1, le=100)
    retention_days: float = Field(30, gt=0)
    # `marvin serve` brings the schema to head before serving, under a lock (replicas that
    # start together migrate once). Off by default outside the image, where `marvin db
    # upgrade` is its own step; the image turns it on (MARVIN_DATABASE__MIGRATE_ON_START).
    migrate_on_start: bool = False

    @field_validator("url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        if value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            return value
        if value.startswith("sqlite://"):
            return "sqlite+aiosqlite://" + value.removeprefix("sqlite://")
        if value.startswith(("postgresql://", "postgres://")):
            return "postgresql+asyncpg://" + value.split("://", 1)[1]
        raise ValueError("must be a sqlite+aiosqlite:// or postgresql+asyncpg:// URL")


# An environment flags are set in: one of `flags.environments`, checked against them.
EnvName = str


def _not_an_environment(unknown: Iterable[str], known: Iterable[str]) -> str:
    return f"{', '.join(map(repr, unknown))} is not one of flags.environments ({', '.join(known)})"


class EnvironmentConfig(Section):
    # The environment a flag must be on in before it goes on here, and off in only after
    # it is off here (production follows staging).
    follows: str | None = None


def _default_environments() -> dict[str, EnvironmentConfig]:
    return {name: EnvironmentConfig(follows=ahead) for name, ahead in DEFAULT_FOLLOWS.items()}


class FlagsConfig(Section):
    # The environments flags are set in, in the order they are shown; each is an option of
    # `feature` (--staging, --staging-ref). GitLab.com's: dev, staging, staging-ref, pre,
    # ops, production.
    environments: dict[str, EnvironmentConfig] = Field(default_factory=_default_environments)
    # The one a command means when it names none.
    default_environment: str = "production"
    # Where flags live; `backends` chooses per environment, `backend` is the default.
    backend: str = "local"
    backends: dict[EnvName, str] = Field(default_factory=dict)
    ceiling_percent: float = Field(1.0, gt=0, le=100)
    # Checked even when left at its default: renaming production must not silently leave
    # the ceiling applying nowhere.
    ceiling_environments: list[EnvName] = Field(
        default_factory=lambda: list[EnvName](["production"]), validate_default=True
    )
    soak_hours: float = Field(24.0, ge=0)
    allow_random: bool = False
    approval_labels: list[str] = Field(default_factory=lambda: ["deviation::approved"])
    # How long after its approval label was put on a deviation issue still approves (hours).
    deviation_valid_hours: float = Field(24.0, gt=0, le=24 * 90)
    # After the soak, one change may raise exposure by at most this much (percentage
    # points) without a deviation issue: 1% -> 100% in one go is a deviation too.
    max_step_percent: float = Field(50.0, gt=0, le=100)
    # Targeted gates that reach many people at once (a whole group or namespace) need a
    # deviation issue where the ceiling applies, unless the group is one of these (the
    # people who dogfood new features).
    broad_gates: list[Literal["group", "namespace", "project"]] = Field(
        default_factory=lambda: list[Literal["group", "namespace", "project"]](
            ["group", "namespace"]
        )
    )
    dogfood_groups: list[str] = Field(default_factory=lambda: ["gitlab-org", "gitlab-com"])
    # Where a deviation (over the ceiling, an over-large step, an overridden production
    # check) also needs a second production engineer's approval in chat.
    four_eyes: list[EnvName] = Field(default_factory=list)
    approval_minutes: float = Field(60.0, gt=0, le=7 * 24 * 60)
    # The embedded store's flags of one environment as a flagd flag-definition file,
    # rewritten after every change (OpenFeature flagd providers, file mode); off when unset.
    flagd_file: str | None = None
    flagd_environment: EnvName = Field("production", validate_default=True)

    @field_validator("environments", mode="before")
    @classmethod
    def _bare_names(cls, value: Any) -> Any:
        # `{dev: , staging: {}}` or a list, `[dev, staging, {production: {follows: staging}}]`:
        # a bare name follows none.
        if isinstance(value, list):
            listed: dict[Any, Any] = {}
            for item in value:
                listed.update(item if isinstance(item, dict) else {item: {}})
            value = listed
        if isinstance(value, dict):
            return {name: {} if spec is None else spec for name, spec in value.items()}
        return value

    @model_validator(mode="after")
    def _environments_coherent(self) -> FlagsConfig:
        follows = {name: spec.follows for name, spec in self.environments.items()}
        problems = environment_problems(follows, self.default_environment)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @field_validator("backends", "ceiling_environments", "four_eyes", "flagd_environment")
    @classmethod
    def _known_environments(cls, value: Any, info: ValidationInfo) -> Any:
        known = info.data.get("environments")
        if known is None:  # itself invalid: said there
            return value
        names = [value] if isinstance(value, str) else list(value)
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ValueError(_not_an_environment(unknown, known))
        return value

    @cached_property
    def environment_set(self) -> Environments:
        follows = {name: spec.follows for name, spec in self.environments.items()}
        return Environments(follows, self.default_environment)


class AvailabilityConfig(Section):
    watch_hours: float = Field(4.0, gt=0, le=72)
    require_oncall: bool = True


class Shift(Section):
    # Times must say their timezone: a shift that silently shifts by an offset is worse
    # than a config error.
    handle: str
    starts_at: AwareDatetime
    ends_at: AwareDatetime

    @model_validator(mode="after")
    def _ordered(self) -> Shift:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class Rotation(Section):
    starts_at: AwareDatetime = datetime.fromisoformat("2026-01-05T00:00:00+00:00")
    shift_hours: float = Field(168.0, gt=0)
    people: list[str] = Field(default_factory=list)


class OncallConfig(Section):
    backend: str = "file"
    rotation: Rotation = Rotation()
    overrides: list[Shift] = Field(default_factory=list)


class Person(Section):
    handle: str
    name: str = ""
    email: str | None = None
    gitlab_username: str | None = None
    # The person's id in the chat (a Slack user id), when known.
    chat_id: str | None = None
    grants: list[str] = Field(default_factory=list)

    @field_validator("handle")
    @classmethod
    def _handle(cls, value: str) -> str:
        if not _HANDLE.match(value):
            raise ValueError("lowercase letters, digits, '.', '_' or '-'")
        return value


# Where a role gives access: ssh to production, to staging (which holds production data,
# so it is answered as production is), or to the CI runners and runner managers only.
AccessEnv = Literal["production", "staging", "runners"]


class Role(Section):
    description: str = ""
    # Marvin's own grants the role carries (feature_flags, ...).
    grants: list[str] = Field(default_factory=list)
    # The environments the role gives access to.
    access: list[AccessEnv] = Field(default_factory=list)
    members: list[str] = Field(default_factory=list)


class DirectoryConfig(Section):
    # file: people and roles from the roles file; gitlab: each role's members are a GitLab
    # group's, mirrored into the database every `sync_minutes`.
    backend: str = "file"
    path: Path | None = Field(None, description="A roles file; when unset, people/roles below")
    people: list[Person] = Field(default_factory=list)
    roles: dict[str, Role] = Field(default_factory=dict)
    # gitlab: the group (full path) of each role, e.g. production: gl-infra/production-engineers
    groups: dict[str, str] = Field(default_factory=dict)
    sync_minutes: float = Field(15, gt=0, le=24 * 60)
    # An older mirror than this refuses production changes (and reads say how old it is).
    max_staleness_minutes: float = Field(60, gt=0, le=7 * 24 * 60)
    # A grant's holder is told this many days before it expires.
    grant_notice_days: float = Field(7, ge=0, le=90)
    # Registry members not seen by Marvin this long are listed by `access report`.
    idle_days: float = Field(90, gt=0, le=3650)
    # How often the access review summary is posted to the production channel.
    review_reminder_days: float = Field(30, gt=0, le=365)

    @field_validator("groups")
    @classmethod
    def _group_paths(cls, value: dict[str, str]) -> dict[str, str]:
        for path in value.values():
            if not _GROUP_PATH.match(path):
                raise ValueError(f"{path!r} is not a GitLab group path like gl-infra/production")
        return value


class GitLabConfig(Section):
    """GitLab: the token only from the environment (GITLAB_TOKEN; GITLAB_TOKEN_<ENV> for an
    environment's own instance)."""

    url: str | None = None
    timeout_seconds: float = Field(10, gt=0, le=120)
    # gitlab_instance flags: each environment's flags are that GitLab instance's features.
    instances: dict[EnvName, str] = Field(default_factory=dict)
    # gitlab_project flags: the project (path or id) and each environment's scope there.
    flags_project: str | None = None
    environment_scopes: dict[EnvName, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/") if value else value

    @field_validator("instances")
    @classmethod
    def _http_instances(cls, value: dict[EnvName, str]) -> dict[EnvName, str]:
        for url in value.values():
            if not url.startswith(("https://", "http://")):
                raise ValueError(f"{url!r} must be an http(s) URL")
        return {env: url.rstrip("/") for env, url in value.items()}

    def instance_url(self, env: str) -> str | None:
        return self.instances.get(env) or self.url


class UnleashConfig(Section):
    """Unleash's Admin API: the token only from the environment (UNLEASH_ADMIN_TOKEN)."""

    url: str | None = None  # the server's base URL, without /api
    project: str = "default"
    # Per flag environment, its Unleash environment; unmapped, the one of the same name,
    # but staging is development (open-source Unleash has development and production).
    environments: dict[EnvName, str] = Field(default_factory=dict)
    timeout_seconds: float = Field(10, gt=0, le=120)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/") if value else value


class IssuesConfig(Section):
    # Where issues live: local (the embedded tracker) or gitlab (gitlab.url, GITLAB_TOKEN).
    backend: str = "local"
    # The infrastructure tracker (incidents, change requests): a path ("group/project") or
    # a numeric id. Needed when backend is gitlab.
    project: str | None = None
    # Where every flag change is also logged as an issue (issue 10, item 6); off when unset.
    flag_log_project: str | None = None


class IncidentLabels(Section):
    """The label names an incident issue carries (GitLab's production tracker's by default)."""

    outage: str = "outage"
    active: str = "Incident::Active"
    mitigated: str = "Incident::Mitigated"
    resolved: str = "Incident::Resolved"
    # `{n}` is the severity (1-4), `{service}` the --service.
    severity: str = "Severity::{n}"
    service: str = "Service::{service}"
    # While an incident of a severity that locks changes (change_lock.incident_severities)
    # is active (not yet mitigated).
    blocking: list[str] = Field(
        default_factory=lambda: ["blocks deployments", "blocks feature-flags"]
    )

    @field_validator("severity")
    @classmethod
    def _has_n(cls, value: str) -> str:
        if "{n}" not in value:
            raise ValueError("must contain {n}, the severity")
        return value

    @field_validator("service")
    @classmethod
    def _has_service(cls, value: str) -> str:
        if "{service}" not in value:
            raise ValueError("must contain {service}")
        return value


class IncidentsConfig(Section):
    # "What changed?": the flag changes, deploys and overrides recorded this long before a
    # declaration start its timeline.
    lookback_hours: float = Field(6.0, gt=0, le=7 * 24)
    # The chat id of the status channel, where declarations and transitions are announced
    # too (besides the production channel); none when unset.
    status_channel: str | None = None
    # Incidents are public: `--confidential "<reason>"` is accepted only with one of these
    # reasons (compared case-insensitively), and the reason is audited.
    confidential_reasons: list[str] = Field(
        default_factory=lambda: ["security", "customer data", "legal"]
    )
    # The description template: `.gitlab/issue_templates/<template>.md` in issues.project
    # when present, else Marvin's bundled blameless post-mortem.
    template: str = Field("incident", pattern=r"^[A-Za-z0-9_. -]{1,100}$")
    labels: IncidentLabels = IncidentLabels()
    # At most this many "what changed" entries go on a new incident's timeline (the newest).
    max_timeline_entries: int = Field(50, ge=1, le=500)
    # In Slack, this reaction on a message in the production channel (or the status
    # channel, or a thread under Marvin's word of an incident) puts that message on the
    # incident's timeline. Without colons.
    timeline_reaction: str = Field("pushpin", pattern=r"^:?[a-z0-9_+'-]{1,100}:?$")

    @field_validator("timeline_reaction")
    @classmethod
    def _reaction(cls, value: str) -> str:
        return value.strip(":")


class Freeze(Section):
    name: str
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    environments: list[EnvName] = Field(default_factory=lambda: list[EnvName](["production"]))

    @model_validator(mode="after")
    def _ordered(self) -> Freeze:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class ChangeLockConfig(Section):
    incident_severities: list[int] = Field(default_factory=lambda: [1, 2])
    freezes: list[Freeze] = Field(default_factory=list)


_ENV_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")


class DeploysConfig(Section):
    """Deploy scheduling: slots, the queue, locks and freezes (`deploy`, `freeze`)."""

    environments: list[str] = Field(
        default_factory=lambda: ["production", "canary", "staging"], min_length=1
    )
    # Booked, moved and started only by release managers; the others by anyone registered.
    protected: list[str] = Field(default_factory=lambda: ["production", "canary"])
    release_role: str = "release-manager"
    default_minutes: int = Field(30, ge=5, le=24 * 60)
    max_hours: float = Field(12, gt=0, le=72)
    # How far ahead a slot may be booked.
    horizon_days: int = Field(90, ge=1, le=366)
    # A production slot needs an open change request: an open issue in the issue tracker
    # labelled `change_request_label` with the version in its title.
    require_change_request: bool = False
    change_request_label: str = Field("change", min_length=1, max_length=100)
    # GitLab: the project whose freeze periods count as freezes and whose pipeline deploys.
    gitlab_project: str | None = None
    pipeline_ref: str = "main"
    version_variable: str = "DEPLOY_VERSION"
    # A due slot's pipeline starts by itself; otherwise someone says `deploy start <id>`.
    auto_start: bool = False
    # How often the scheduler looks for due slots and running pipelines.
    scheduler_seconds: float = Field(15, ge=1, le=600)
    # A slot announced this long after it was due is announced as overdue.
    overdue_minutes: float = Field(2, ge=0, le=24 * 60)

    @field_validator("environments", "protected")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _ENV_NAME.match(name):
                raise ValueError(f"{name!r}: lowercase letters, digits and '-'")
        return value

    @model_validator(mode="after")
    def _known(self) -> DeploysConfig:
        unknown = set(self.protected) - set(self.environments)
        if unknown:
            raise ValueError(f"protected names unknown environments: {sorted(unknown)}")
        return self


class ShellConfig(Section):
    email_domain: str = "example.com"
    default_user: str = "alice"
    # How long an exiting shell waits for what its commands put in the outbox (issues,
    # notes, announcements); what is left then is `marvin serve`'s to deliver.
    drain_seconds: float = Field(5, ge=0, le=120)
    # The zone times typed in the shell are read in (an IANA name, like Europe/Berlin).
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a time zone I know (like Europe/Berlin)") from None
        return value


class LoggingConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class SlackConfig(Section):
    mode: Literal["http", "socket"] = "http"
    host: str = "0.0.0.0"  # noqa: S104 - a server in a container listens on every interface
    port: int = Field(3000, ge=1, le=65535)
    api_base_url: str = "https://slack.com/api/"
    command: str = "/marvin"
    max_body_bytes: int = Field(1_048_576, ge=1024, le=50 * 1024 * 1024)
    rate_limit_retries: int = Field(3, ge=0, le=10)
    timeout_seconds: float = Field(5, gt=0, le=60)
    # Briefly: who someone is includes their e-mail, which the link to the registry is
    # checked against.
    people_cache_seconds: float = Field(120, ge=0)
    presence_cache_seconds: float = Field(60, ge=0)
    away_status_emojis: list[str] = Field(
        default_factory=lambda: [
            ":palm_tree:",
            ":airplane:",
            ":face_with_thermometer:",
            ":no_entry:",
        ]
    )
    away_status_texts: list[str] = Field(
        default_factory=lambda: ["out of office", "ooo", "vacation", "on leave", "sick"]
    )

    @field_validator("api_base_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value if value.endswith("/") else value + "/"

    @field_validator("command")
    @classmethod
    def _slash(cls, value: str) -> str:
        if not re.match(r"^/[a-z0-9_-]{1,31}$", value):
            raise ValueError("a slash command like /marvin")
        return value


class InboxConfig(Section):
    # How long a replica's claim on acknowledged work lasts without being renewed: a replica
    # that dies leaves its work to the others after this long.
    lease_seconds: float = Field(60, ge=2, le=3600)
    # How many commands one replica works on at once. Most of a command's time is waiting
    # (Slack, GitLab, the database), so this is well above the number of cores.
    workers: int = Field(32, ge=1, le=256)
    # A new command that would be answered later than this is refused at once.
    max_answer_seconds: float = Field(30, gt=0, le=600)
    # On SIGTERM, how long acknowledged work may take to finish; what is still running then
    # is stopped and given back to the inbox, for another replica (or the next start).
    shutdown_grace_seconds: float = Field(20, ge=0, le=600)


class LimitsConfig(Section):
    max_command_chars: int = Field(4000, ge=64, le=40000)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MARVIN_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    production_channel: ChannelConfig = ChannelConfig()
    database: DatabaseConfig = DatabaseConfig()
    flags: FlagsConfig = FlagsConfig()
    availability: AvailabilityConfig = AvailabilityConfig()
    oncall: OncallConfig = OncallConfig()
    directory: DirectoryConfig = DirectoryConfig()
    issues: IssuesConfig = IssuesConfig()
    incidents: IncidentsConfig = IncidentsConfig()
    change_lock: ChangeLockConfig = ChangeLockConfig()
    deploys: DeploysConfig = DeploysConfig()
    shell: ShellConfig = ShellConfig()
    logging: LoggingConfig = LoggingConfig()
    limits: LimitsConfig = LimitsConfig()
    inbox: InboxConfig = InboxConfig()
    slack: SlackConfig = SlackConfig()
    gitlab: GitLabConfig = GitLabConfig()
    unleash: UnleashConfig = UnleashConfig()

    @model_validator(mode="after")
    def _flag_environments_known(self) -> Settings:
        # Other sections name flag environments too: each must be one of them. One line a
        # key, each starting with its path (see `_problems`).
        known = self.flags.environments
        named = {
            "unleash.environments": list(self.unleash.environments),
            "gitlab.instances": list(self.gitlab.instances),
            "gitlab.environment_scopes": list(self.gitlab.environment_scopes),
            "change_lock.freezes": [e for f in self.change_lock.freezes for e in f.environments],
        }
        problems = []
        for key, names in named.items():
            unknown = sorted({name for name in names if name not in known})
            if unknown:
                problems.append(f"{key}: {_not_an_environment(unknown, known)}")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file arrives as init kwargs; the environment overrides it.
        return (env_settings, init_settings)


class ConfigError(Exception):
    """Every invalid key, each with its dotted path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), ["cannot read: not UTF-8 text"]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), [f"not valid YAML: {exc}"]) from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(str(path), ["the top level must be a mapping of sections"])
    return raw


def _format_errors(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        message = str(err["msg"]).removeprefix("Value error, ")
        if not err["loc"] and err["type"] == "value_error":
            problems += message.splitlines()  # across sections: each line names its key
            continue
        where = ".".join(str(part) for part in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        problems.append(f"{where}: {message}")
    return problems


def _load_directory_file(data: dict[str, Any], base: Path) -> None:
    """A roles file named in `directory.path` supplies people and roles, chef-roles style."""
    from_env = os.environ.get("MARVIN_DIRECTORY__PATH")
    if from_env:
        # The environment overrides this key too; its relative path is from the cwd.
        data.setdefault("directory", {})["path"] = str(Path(from_env).resolve())
    directory = data.get("directory")
    if not isinstance(directory, dict) or not directory.get("path"):
        return
    path = Path(str(directory["path"]))
    if not path.is_absolute():
        path = base / path
    content = _read_yaml(path)
    for key in ("people", "roles"):
        if key in content and key not in directory:
            directory[key] = content[key]
    directory["path"] = str(path)


def load_settings(path: str | Path | None = None) -> Settings:
    """Load from `path`, else `$MARVIN_CONFIG`, else the embedded defaults."""
    chosen = path if path is not None else os.environ.get(CONFIG_ENV)
    data: dict[str, Any] = {}
    source = "defaults"
    base = Path.cwd()
    if chosen:
        file = Path(chosen)
        source = str(file)
        data = _read_yaml(file)
        base = file.parent
    _load_directory_file(data, base)
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(source, _format_errors(exc)) from exc
    problems = check_consistency(settings)
    if problems:
        raise ConfigError(source, problems)
    return settings


def check_consistency(settings: Settings) -> list[str]:
    """Cross-key checks a single field validator cannot see."""
    # The table of backends lives with the code that builds them; imported here, not at the
    # top, because building them needs this module.
    from marvin.wiring import backend_problems

    problems: list[str] = backend_problems(settings)
    flags = settings.flags
    if flags.flagd_file and flags.backends.get(flags.flagd_environment, flags.backend) != "local":
        problems.append(
            "flags.flagd_file: the flagd file is written from the embedded store, but "
            f"{flags.flagd_environment} flags live elsewhere"
        )
    handles = {p.handle for p in settings.directory.people}
    for role_name in settings.directory.groups:
        if role_name not in settings.directory.roles:
            problems.append(f"directory.groups.{role_name}: no such role in directory.roles")
    for role_name, role in settings.directory.roles.items():
        for member in role.members:
            if member not in handles:
                problems.append(f"directory.roles.{role_name}.members: unknown person {member!r}")
    for i, person in enumerate(settings.oncall.rotation.people):
        if person not in handles:
            problems.append(f"oncall.rotation.people.{i}: unknown person {person!r}")
    for i, shift in enumerate(settings.oncall.overrides):
        if shift.handle not in handles:
            problems.append(f"oncall.overrides.{i}.handle: unknown person {shift.handle!r}")
    return problems
