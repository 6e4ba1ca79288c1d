"""`marvin` on the command line: options where people type them, one verdict, and one
sentence (never a traceback) when the database or Slack can't be reached."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from marvin.config import Settings
from marvin.slack.secrets import SlackSecrets
from marvin.slack.server import build_bot
from marvin.wiring import close
from tests.harness import EXAMPLE, ROOT

BOLT_TOKEN_WARNINGS = ("will be unused", "will be ignored")
READY = {
    "SLACK_BOT_TOKEN": "xoxb-1-very-secret",
    "SLACK_SIGNING_SECRET": "sign-very-secret",
    "MARVIN_PRODUCTION_CHANNEL__ID": "C123",
}


def run(
    args: list[str],
    cwd: Path,
    stdin: str = "",
    *,
    timeout: float = 90,
    ready: bool = False,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """`marvin ARGS` in `cwd`, with no MARVIN_* or SLACK_* variable but `env` (and, when
    `ready`, what `marvin serve` needs)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "MARVIN_"))}
    clean |= {"PYTHONPATH": str(ROOT), **(READY if ready else {}), **env}
    return subprocess.run(
        [sys.executable, "-m", "marvin.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=clean,
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def log_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("{")]


def said(stderr: str) -> list[str]:
    """What was said to a person on stderr: everything but the JSON log."""
    return [line for line in stderr.splitlines() if line and not line.startswith("{")]


# --- options after the subcommand, as people type them ---------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["config", "check", "--config", str(EXAMPLE)],
        ["config", "--config", str(EXAMPLE), "check"],
        ["--config", str(EXAMPLE), "config", "check"],
    ],
)
def test_config_is_taken_before_or_after_the_subcommand(tmp_path: Path, args: list[str]) -> None:
    result = run(args, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"Checked {EXAMPLE}.", "Configuration is valid."]


def test_config_after_the_subcommand_is_the_one_used(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("flags: {ceiling_percent: 250}\n", encoding="utf-8")
    result = run(["config", "check", "--config", str(broken)], tmp_path)
    assert result.returncode == 2
    assert f"Configuration from {broken} is invalid:" in result.stderr


def test_shell_and_db_take_config_after_the_subcommand(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    upgraded = run(["db", "upgrade", "--config", str(EXAMPLE)], tmp_path, MARVIN_DATABASE__URL=url)
    assert upgraded.returncode == 0, upgraded.stderr
    shell = run(
        ["shell", "--config", str(EXAMPLE), "--user", "bob"],
        tmp_path,
        "whoami\n",
        MARVIN_DATABASE__URL=url,
    )
    assert shell.returncode == 0, shell.stderr
    # the example's directory (bob is a developer there), not the built-in defaults
    assert "Roles: developer." in shell.stdout


def test_version(tmp_path: Path) -> None:
    result = run(["--version"], tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("marvin ")


# --- config check: what was checked, what is missing, then one verdict -----------------------


def test_config_check_without_a_file_says_it_checked_the_defaults(tmp_path: Path) -> None:
    result = run(["config", "check"], tmp_path)
    assert result.returncode == 0, result.stderr
    first, verdict = result.stdout.splitlines()
    assert "No configuration file given" in first and "checked the built-in defaults" in first
    assert "$MARVIN_CONFIG" in first
    assert verdict == "Configuration is valid."


def test_config_check_names_environment_overrides(tmp_path: Path) -> None:
    result = run(["config", "check"], tmp_path, MARVIN_FLAGS__SOAK_HOURS="12")
    assert "built-in defaults and the MARVIN_* environment variables set" in result.stdout


def test_config_check_names_the_file_from_marvin_config(tmp_path: Path) -> None:
    result = run(["config", "check"], tmp_path, MARVIN_CONFIG=str(EXAMPLE))
    assert result.stdout.splitlines()[0] == f"Checked {EXAMPLE}."


def test_config_check_serve_lists_what_is_missing_then_one_verdict(tmp_path: Path) -> None:
    result = run(["--config", str(EXAMPLE), "config", "check", "--serve"], tmp_path)
    assert result.returncode == 1
    # never "valid" before the list of what is missing
    assert "Configuration is valid." not in result.stdout
    lines = result.stderr.splitlines()
    assert lines[:-1] and all(line.startswith("  missing for serve: ") for line in lines[:-1])
    assert lines[-1].startswith("Not ready to serve:")
    assert sum("Not ready" in line or "valid" in line for line in lines) == 1


def test_config_check_serve_ready_is_one_verdict(tmp_path: Path) -> None:
    result = run(["--config", str(EXAMPLE), "config", "check", "--serve"], tmp_path, ready=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"Checked {EXAMPLE} and the MARVIN_* environment variables set.",
        "Configuration is valid. Ready to serve Slack in http mode.",
    ]
    assert result.stderr == ""


# --- an unreachable database: one sentence, where, non-zero; the detail at debug -------------


def _unreachable_url() -> str:
    return f"postgresql+asyncpg://marvin:hunter2secret@127.0.0.1:{closed_port()}/marvin"


@pytest.mark.parametrize(
    "args",
    [
        ["db", "upgrade"],
        ["db", "prune"],
        ["shell", "--user", "bob"],
        ["serve", "--port", "0"],
        ["issue", "list"],
    ],
    ids=lambda a: " ".join(a),
)
def test_an_unreachable_database_is_one_sentence(tmp_path: Path, args: list[str]) -> None:
    url = _unreachable_url()
    result = run(
        ["--config", str(EXAMPLE), *args],
        tmp_path,
        "whoami\n",
        MARVIN_DATABASE__URL=url,
        MARVIN_LOGGING__FORMAT="json",
        ready=True,
    )
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert "Traceback" not in output and "hunter2secret" not in output
    [sentence] = said(result.stderr)
    shown = url.replace("hunter2secret", "***")
    assert sentence.startswith(f"The database at {shown} did not answer (")
    assert sentence.endswith(").")


def test_the_database_detail_goes_to_the_log_at_debug(tmp_path: Path) -> None:
    result = run(
        ["--config", str(EXAMPLE), "db", "upgrade"],
        tmp_path,
        MARVIN_DATABASE__URL=_unreachable_url(),
        MARVIN_LOGGING__LEVEL="debug",
        MARVIN_LOGGING__FORMAT="json",
    )
    assert result.returncode == 2
    assert len(said(result.stderr)) == 1
    [detail] = [line for line in log_lines(result.stderr) if '"database.refused"' in line]
    assert '"level": "debug"' in detail and "ConnectionRefusedError" in detail
    assert "Traceback (most recent call last)" in detail  # inside the JSON, not on its own
    assert "hunter2secret" not in result.stderr


# --- an unreachable Slack at start: one line, exit 2; Bolt's token warnings never -----------


@pytest.mark.parametrize("mode", ["http", "socket"])
def test_an_unreachable_slack_at_start_is_one_line(
    sqlite_url: str, tmp_path: Path, mode: str
) -> None:
    api = f"http://127.0.0.1:{closed_port()}/api/"
    result = run(
        ["--config", str(EXAMPLE), "serve", "--port", "0"],
        tmp_path,
        timeout=120,
        MARVIN_DATABASE__URL=sqlite_url,
        MARVIN_SLACK__API_BASE_URL=api,
        MARVIN_SLACK__MODE=mode,
        MARVIN_LOGGING__FORMAT="json",
        SLACK_APP_TOKEN="xapp-1-very-secret",
        ready=True,
    )
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert said(result.stderr) == []  # nothing but the log
    errors = [line for line in log_lines(result.stderr) if '"level": "error"' in line]
    assert len(errors) == 1, result.stderr
    assert '"event": "serve.slack_unreachable"' in errors[0]
    assert f"Slack at {api} could not be reached" in errors[0]
    for warning in BOLT_TOKEN_WARNINGS:
        assert warning not in output


@pytest.mark.parametrize("signing", ["s", None], ids=["http", "socket"])
async def test_bolt_never_warns_about_the_token_at_start(
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    sqlite_url: str,
    signing: str | None,
) -> None:
    # as `marvin serve` builds it: the token in SLACK_BOT_TOKEN and in the client
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1-very-secret")
    secrets = SlackSecrets(
        SecretStr("xoxb-1-very-secret"),
        SecretStr(signing) if signing else None,
        None if signing else SecretStr("xapp-1"),
    )
    settings = Settings(database={"url": sqlite_url})
    caplog.set_level(logging.DEBUG)
    bot = build_bot(settings, secrets)
    try:
        shown = [r.getMessage() for r in caplog.records if r.name.startswith("slack_bolt")]
        assert not [m for m in shown if any(w in m for w in BOLT_TOKEN_WARNINGS)], shown
    finally:
        await close(bot.services)
    # only those two are dropped, and only while the app is built
    bolt = logging.getLogger("slack_bolt.AsyncApp")
    assert bolt.filters == []
    bolt.warning("something else")
    assert "something else" in caplog.text
