"""Configuration: embedded defaults, a YAML file, environment overrides, every invalid key."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from marvin.config import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.yaml"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No MARVIN_* variable from the developer's shell leaks into these tests."""
    for name in list(os.environ):
        if name.upper().startswith("MARVIN_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert info.value.problems, "a ConfigError always says what is wrong"
    return info.value.problems


# --- defaults and files -----------------------------------------------------------------------


def test_no_file_gives_embedded_defaults() -> None:
    settings = load_settings()
    assert settings.database.url == "sqlite+aiosqlite:///marvin.db"
    assert settings.flags.ceiling_percent == 1.0
    assert settings.flags.ceiling_environments == ["production"]
    assert settings.flags.soak_hours == 24.0
    assert settings.flags.allow_random is False
    assert settings.production_channel.id == "C0PRODUCTION"
    assert settings.production_channel.name == "production"
    assert settings.availability.watch_hours == 4.0
    assert settings.limits.max_command_chars == 4000
    assert settings.directory.people == []


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    path = _write(tmp_path / "empty.yaml", "# nothing here\n")
    assert load_settings(path) == Settings()


def test_yaml_file(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "marvin.yaml",
        """
        production_channel: {id: C123, name: "#prod"}
        database: {url: "sqlite+aiosqlite:///data/m.db", echo: true}
        flags: {ceiling_percent: 2.5, soak_hours: 12, ceiling_environments: [staging, production]}
        availability: {watch_hours: 1}
        directory:
          people: [{handle: alice, gitlab_username: alice}]
          roles: {production: {grants: [feature_flags], members: [alice]}}
        oncall:
          rotation: {people: [alice], shift_hours: 24}
        """,
    )
    settings = load_settings(path)
    assert settings.production_channel.id == "C123"
    assert settings.production_channel.name == "prod"  # the '#' is dropped
    assert settings.database.url == "sqlite+aiosqlite:///data/m.db"
    assert settings.database.echo is True
    assert settings.flags.ceiling_percent == 2.5
    assert settings.flags.soak_hours == 12.0
    assert settings.flags.ceiling_environments == ["staging", "production"]
    assert settings.availability.watch_hours == 1.0
    assert [p.handle for p in settings.directory.people] == ["alice"]
    assert settings.directory.roles["production"].members == ["alice"]
    assert settings.oncall.rotation.people == ["alice"]
    # keys the file leaves out keep their defaults
    assert settings.flags.allow_random is False
    assert settings.limits.max_command_chars == 4000


def test_marvin_config_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "c.yaml", "flags: {ceiling_percent: 3}\n")
    monkeypatch.setenv("MARVIN_CONFIG", str(path))
    assert load_settings().flags.ceiling_percent == 3.0


def test_explicit_path_beats_marvin_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARVIN_CONFIG", str(_write(tmp_path / "a.yaml", "flags: {soak_hours: 1}")))
    chosen = _write(tmp_path / "b.yaml", "flags: {soak_hours: 2}\n")
    assert load_settings(chosen).flags.soak_hours == 2.0


def test_shipped_example_loads() -> None:
    settings = load_settings(EXAMPLE)
    assert settings.flags.ceiling_percent == 1.0
    assert settings.database.url == "sqlite+aiosqlite:///marvin.db"
    handles = {p.handle for p in settings.directory.people}
    assert {"alice", "bob", "carol", "dave", "erin"} <= handles
    assert settings.directory.roles["production"].members == ["alice"]
    assert settings.directory.path == ROOT / "demo" / "roles.yaml"


# --- the environment overrides the file ---------------------------------------------------------

FILE = """
database: {url: "sqlite+aiosqlite:///from-file.db", echo: true}
flags: {ceiling_percent: 2, soak_hours: 5}
"""


@pytest.mark.parametrize(
    ("variable", "value", "section", "key", "expected"),
    [
        (
            "MARVIN_DATABASE__URL",
            "sqlite+aiosqlite:///from-env.db",
            "database",
            "url",
            "sqlite+aiosqlite:///from-env.db",
        ),
        (
            "MARVIN_DATABASE__URL",
            "sqlite:///env.db",
            "database",
            "url",
            "sqlite+aiosqlite:///env.db",
        ),
        (
            "MARVIN_DATABASE__URL",
            "postgres://marvin@db:5432/marvin",
            "database",
            "url",
            "postgresql+asyncpg://marvin@db:5432/marvin",
        ),
        ("MARVIN_FLAGS__CEILING_PERCENT", "7.5", "flags", "ceiling_percent", 7.5),
        ("marvin_flags__ceiling_percent", "4", "flags", "ceiling_percent", 4.0),
        ("MARVIN_FLAGS__ALLOW_RANDOM", "true", "flags", "allow_random", True),
    ],
)
def test_environment_wins_over_file(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    section: str,
    key: str,
    expected: object,
) -> None:
    path = _write(tmp_path / "marvin.yaml", FILE)
    monkeypatch.setenv(variable, value)
    settings = load_settings(path)
    assert getattr(getattr(settings, section), key) == expected
    # the other keys of the same sections still come from the file
    assert settings.database.echo is True
    assert settings.flags.soak_hours == 5.0


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARVIN_FLAGS__CEILING_PERCENT", "5")
    monkeypatch.setenv("MARVIN_DATABASE__URL", "postgresql://u@h/db")
    settings = load_settings()
    assert settings.flags.ceiling_percent == 5.0
    assert settings.database.url == "postgresql+asyncpg://u@h/db"


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("MARVIN_FLAGS__CEILING_PERCENT", "abc", "flags.ceiling_percent: "),
        ("MARVIN_FLAGS__CEILING_PERCENT", "0", "flags.ceiling_percent: "),
        ("MARVIN_DATABASE__URL", "mysql://x/y", "database.url: "),
        ("MARVIN_DATABASE__BOGUS", "1", "database.bogus: unknown key"),
    ],
)
def test_invalid_environment_value_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, problem: str
) -> None:
    path = _write(tmp_path / "marvin.yaml", FILE)
    monkeypatch.setenv(variable, value)
    problems = _problems(path)
    assert any(p.startswith(problem) for p in problems), problems


# --- database URLs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("sqlite:///marvin.db", "sqlite+aiosqlite:///marvin.db"),
        ("sqlite:////var/lib/marvin.db", "sqlite+aiosqlite:////var/lib/marvin.db"),
        ("sqlite://", "sqlite+aiosqlite://"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgres://u@h:5432/db", "postgresql+asyncpg://u@h:5432/db"),
        ("postgresql://u:pw@h/db", "postgresql+asyncpg://u:pw@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
    ],
)
def test_database_url_normalised_to_async_driver(tmp_path: Path, url: str, normalised: str) -> None:
    path = _write(tmp_path / "marvin.yaml", f'database: {{url: "{url}"}}\n')
    assert load_settings(path).database.url == normalised


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u@h/db",
        "postgresql+psycopg2://u@h/db",
        "sqlite+pysqlite:///x.db",
        "marvin.db",
        "",
        "http://example.com",
    ],
)
def test_bad_database_url(tmp_path: Path, url: str) -> None:
    path = _write(tmp_path / "marvin.yaml", f'database: {{url: "{url}"}}\n')
    problems = _problems(path)
    assert len(problems) == 1
    assert problems[0].startswith("database.url: ")
    assert "must be a sqlite+aiosqlite:// or postgresql+asyncpg:// URL" in problems[0]


# --- invalid keys, each with its dotted path ----------------------------------------------------

PEOPLE = "directory:\n  people: [{handle: alice}, {handle: bob}]\n"


@pytest.mark.parametrize(
    ("yaml_text", "path", "fragment"),
    [
        ("databse: {url: x}\n", "databse", "unknown key"),
        ("database: {urll: x}\n", "database.urll", "unknown key"),
        ("flags: {ceiling: 5}\n", "flags.ceiling", "unknown key"),
        ("directory: {people: [{handle: a, nick: b}]}\n", "directory.people.0.nick", "unknown key"),
        ("flags: {ceiling_percent: abc}\n", "flags.ceiling_percent", "valid number"),
        ("flags: {allow_random: maybe}\n", "flags.allow_random", "valid boolean"),
        ("database: {pool_size: many}\n", "database.pool_size", "valid integer"),
        ("database: 5\n", "database", "valid dictionary"),
        ("flags: {approval_labels: label}\n", "flags.approval_labels", "valid list"),
        ("flags: {ceiling_percent: 0}\n", "flags.ceiling_percent", "greater than 0"),
        ("flags: {ceiling_percent: 101}\n", "flags.ceiling_percent", "less than or equal to 100"),
        ("flags: {soak_hours: -1}\n", "flags.soak_hours", "greater than or equal to 0"),
        ("database: {pool_size: 0}\n", "database.pool_size", "greater than or equal to 1"),
        ("availability: {watch_hours: 100}\n", "availability.watch_hours", "less than or equal"),
        ("limits: {max_command_chars: 10}\n", "limits.max_command_chars", "greater than or equal"),
        ("flags: {ceiling_environments: [qa]}\n", "flags.ceiling_environments", "'qa' is not"),
        ("logging: {level: loud}\n", "logging.level", "'debug'"),
        ("flags: {backend: gitlab}\n", "flags.backend", "'local'"),
        ("database: {url: 'mysql://h/db'}\n", "database.url", "sqlite+aiosqlite://"),
        (
            "directory: {people: [{handle: Alice Smith}]}\n",
            "directory.people.0.handle",
            "lowercase letters",
        ),
        (
            "production_channel: {id: ''}\n",
            "production_channel.id",
            "at least 1 character",
        ),
        (
            PEOPLE + "  roles: {production: {members: [alice, zed]}}\n",
            "directory.roles.production.members",
            "unknown person 'zed'",
        ),
        (
            PEOPLE + "oncall: {rotation: {people: [alice, yan]}}\n",
            "oncall.rotation.people.1",
            "unknown person 'yan'",
        ),
        (
            PEOPLE + "oncall: {overrides: [{handle: xavier, starts_at: 2026-01-01T00:00:00Z,"
            " ends_at: 2026-01-02T00:00:00Z}]}\n",
            "oncall.overrides.0.handle",
            "unknown person 'xavier'",
        ),
        (
            PEOPLE + "oncall: {overrides: [{handle: bob, starts_at: 2026-01-02T00:00:00Z,"
            " ends_at: 2026-01-01T00:00:00Z}]}\n",
            "oncall.overrides.0",
            "ends_at must be after starts_at",
        ),
        (
            PEOPLE + "oncall: {overrides: [{handle: bob, starts_at: 2026-01-02T00:00:00Z,"
            " ends_at: 2026-01-02T00:00:00Z}]}\n",
            "oncall.overrides.0",
            "ends_at must be after starts_at",
        ),
        (
            "oncall: {overrides: [{handle: bob, starts_at: soon, ends_at: later}]}\n",
            "oncall.overrides.0.starts_at",
            "valid datetime",
        ),
        (
            "change_lock: {freezes: [{name: x, starts_at: 2026-01-01T00:00:00Z}]}\n",
            "change_lock.freezes.0.ends_at",
            "Field required",
        ),
    ],
)
def test_invalid_key_reported_with_its_path(
    tmp_path: Path, yaml_text: str, path: str, fragment: str
) -> None:
    problems = _problems(_write(tmp_path / "marvin.yaml", yaml_text))
    matching = [p for p in problems if p.startswith(f"{path}: ")]
    assert matching, problems
    assert fragment in matching[0]


def test_every_invalid_key_is_reported_at_once(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "marvin.yaml",
        """
        databse: {url: x}
        database: {url: "mysql://x", pool_size: 0}
        flags: {ceiling_percent: 250, soak_hours: abc}
        """,
    )
    problems = _problems(path)
    paths = sorted(p.split(":", 1)[0] for p in problems)
    assert paths == [
        "database.pool_size",
        "database.url",
        "databse",
        "flags.ceiling_percent",
        "flags.soak_hours",
    ]


def test_every_unknown_person_is_reported(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "marvin.yaml",
        """
        directory:
          people: [{handle: alice}]
          roles:
            production: {members: [alice, zed]}
            support: {members: [yan]}
        oncall:
          rotation: {people: [alice, xavier]}
        """,
    )
    assert _problems(path) == [
        "directory.roles.production.members: unknown person 'zed'",
        "directory.roles.support.members: unknown person 'yan'",
        "oncall.rotation.people.1: unknown person 'xavier'",
    ]


def test_config_error_names_its_source(tmp_path: Path) -> None:
    path = _write(tmp_path / "marvin.yaml", "databse: {}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert info.value.source == str(path)
    assert str(info.value) == f"{path}: databse: unknown key"


# --- files that are not a configuration ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("- a\n- b\n", "the top level must be a mapping of sections"),
        ("just a sentence\n", "the top level must be a mapping of sections"),
        ("42\n", "the top level must be a mapping of sections"),
        ("database: [1, 2\n", "not valid YAML"),
        ("database:\n\turl: x\n", "not valid YAML"),
        ("a: b: c\n", "not valid YAML"),
    ],
)
def test_not_a_mapping_or_not_yaml(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "marvin.yaml"
    path.write_text(text, encoding="utf-8")
    problems = _problems(path)
    assert len(problems) == 1
    assert problems[0].startswith(problem)


def test_missing_file(tmp_path: Path) -> None:
    assert _problems(tmp_path / "nope.yaml") == ["cannot read: No such file or directory"]


# --- directory.path: a roles file next to the config -------------------------------------------

ROLES = """
people:
  - {handle: alice, gitlab_username: alice}
  - {handle: bob, gitlab_username: bobby}
roles:
  production: {grants: [feature_flags], members: [alice]}
"""


def test_directory_path_relative_to_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir = tmp_path / "etc" / "marvin"
    _write(config_dir / "people" / "roles.yaml", ROLES)
    config = _write(config_dir / "marvin.yaml", "directory: {path: people/roles.yaml}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = load_settings(config)
    assert [p.handle for p in settings.directory.people] == ["alice", "bob"]
    assert settings.directory.people[1].gitlab_username == "bobby"
    assert settings.directory.roles["production"].members == ["alice"]
    assert settings.directory.path == config_dir / "people" / "roles.yaml"


def test_directory_path_absolute(tmp_path: Path) -> None:
    roles = _write(tmp_path / "roles" / "r.yaml", ROLES)
    config = _write(tmp_path / "conf" / "marvin.yaml", f'directory: {{path: "{roles}"}}\n')
    settings = load_settings(config)
    assert {p.handle for p in settings.directory.people} == {"alice", "bob"}


def test_directory_path_people_checked_against_rotation(tmp_path: Path) -> None:
    _write(tmp_path / "roles.yaml", ROLES)
    config = _write(
        tmp_path / "marvin.yaml",
        "directory: {path: roles.yaml}\noncall: {rotation: {people: [alice, carol]}}\n",
    )
    assert _problems(config) == ["oncall.rotation.people.1: unknown person 'carol'"]


def test_directory_path_missing_file(tmp_path: Path) -> None:
    config = _write(tmp_path / "marvin.yaml", "directory: {path: missing.yaml}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    assert info.value.source == str(tmp_path / "missing.yaml")
    assert info.value.problems == ["cannot read: No such file or directory"]


def test_directory_path_not_a_mapping(tmp_path: Path) -> None:
    _write(tmp_path / "roles.yaml", "- alice\n")
    config = _write(tmp_path / "marvin.yaml", "directory: {path: roles.yaml}\n")
    assert _problems(config) == ["the top level must be a mapping of sections"]


# --- bugs found in marvin/config.py, now fixed --------------------------------------------------


def test_naive_and_aware_shift_times_are_a_config_error(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "marvin.yaml",
        PEOPLE + "oncall: {overrides: [{handle: bob, starts_at: '2026-01-01T00:00:00Z',"
        " ends_at: '2026-01-02T00:00:00'}]}\n",
    )
    problems = _problems(path)
    assert any(p.startswith("oncall.overrides.0") for p in problems)


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "marvin.yaml"
    path.write_bytes(b"production_channel: {name: caf\xe9}\n")
    assert _problems(path)


def test_freeze_ending_before_it_starts_is_refused(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "marvin.yaml",
        "change_lock: {freezes: [{name: x, starts_at: 2026-01-02T00:00:00Z,"
        " ends_at: 2026-01-01T00:00:00Z}]}\n",
    )
    problems = _problems(path)
    assert any(p.startswith("change_lock.freezes.0") for p in problems)


def test_directory_path_from_environment_loads_the_roles_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    roles = _write(tmp_path / "roles.yaml", ROLES)
    monkeypatch.setenv("MARVIN_DIRECTORY__PATH", str(roles))
    settings = load_settings()
    assert {p.handle for p in settings.directory.people} == {"alice", "bob"}


# --- marvin config check ------------------------------------------------------------------------


def _config_check(path: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("MARVIN_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "marvin.cli", "--config", str(path), "config", "check"],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
    )


def test_config_check_accepts_the_shipped_example(tmp_path: Path) -> None:
    # run from elsewhere: the roles file is found relative to the config, not the cwd
    result = _config_check(EXAMPLE, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Configuration is valid." in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_config_check_reports_every_invalid_key(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "broken.yaml",
        """
        databse: {url: x}
        database: {url: "mysql://x", pool_size: 0}
        flags: {ceiling_percent: 250, soak_hours: abc}
        directory:
          people: [{handle: alice}, {handle: "Bad Handle"}]
        """,
    )
    result = _config_check(path, tmp_path)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert f"Configuration from {path} is invalid:" in result.stderr
    for key in [
        "databse: unknown key",
        "database.url: ",
        "database.pool_size: ",
        "flags.ceiling_percent: ",
        "flags.soak_hours: ",
        "directory.people.1.handle: ",
    ]:
        assert f"  {key}" in result.stderr, result.stderr
    assert "Configuration is valid." not in result.stdout


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            PEOPLE + "  roles: {production: {members: [zed]}}\n",
            "directory.roles.production.members: unknown person 'zed'",
        ),
        ("- a\n", "the top level must be a mapping of sections"),
        ("database: [1, 2\n", "not valid YAML"),
    ],
)
def test_config_check_reports_other_problems(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text, encoding="utf-8")
    result = _config_check(path, tmp_path)
    assert result.returncode != 0
    assert problem in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_config_check_missing_file(tmp_path: Path) -> None:
    result = _config_check(tmp_path / "nope.yaml", tmp_path)
    assert result.returncode != 0
    assert "cannot read: No such file or directory" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
