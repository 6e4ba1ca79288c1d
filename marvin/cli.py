"""`marvin`: serve, shell, db upgrade, config check."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import structlog

from marvin.config import CONFIG_ENV, ConfigError, Settings, load_settings
from marvin.logs import configure_logging

if TYPE_CHECKING:
    from marvin.outbox import Sink
    from marvin.services import Services
    from marvin.shell_delivery import ChatSinks

log = structlog.get_logger(__name__)

DISTRIBUTION = "marvin-chatops"


def version() -> str:
    """The installed package's version (the image's labels carry the same)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"


SHELL_HELP = """\
Talk to Marvin in the terminal: the same commands as in Slack, one per line.

On a terminal: Ctrl-C clears the line, Ctrl-C twice in a row or Ctrl-D quits.
Fed from a pipe or a file (one command a line; blank lines and # comments skipped):
exit status 0 when every command went through, 1 when any was refused or failed,
2 when the shell could not start (configuration, database)."""

_HANDLE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def _handle(value: str) -> str:
    """A person's handle as people type it: `Bob` and `@bob` are `bob`; empty is refused."""
    handle = value.strip().removeprefix("@").lower()
    if not handle:
        raise argparse.ArgumentTypeError("is empty: name someone from the directory, e.g. alice")
    if not _HANDLE.match(handle):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a handle: lowercase letters, digits, '.', '_' or '-'"
        )
    return handle


def _text(what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not value.strip():
            raise argparse.ArgumentTypeError(f"is empty: give {what}")
        return value.strip()

    return check


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="marvin", description="Marvin guards production.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    parser.add_argument("--config", help="YAML config file (default: $MARVIN_CONFIG)")
    # `--config` is taken after the subcommand too (`marvin config check --config FILE`),
    # as people type it; SUPPRESS keeps a subcommand from resetting one given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", default=argparse.SUPPRESS, help="YAML config file (default: $MARVIN_CONFIG)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve", parents=[common], help="run the Slack bot (HTTP or Socket Mode, per config)"
    )
    serve.add_argument("--port", type=int, help="HTTP port (default: slack.port)")

    shell = sub.add_parser(
        "shell",
        parents=[common],
        help="talk to Marvin in the terminal",
        description=SHELL_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    shell.add_argument(
        "--user", type=_handle, help="who you are (a handle from the directory; Bob is bob)"
    )
    where = shell.add_mutually_exclusive_group()
    where.add_argument("--channel", help="channel to stand in (default: the production one)")
    where.add_argument("--dm", action="store_true", help="talk in a direct message")
    shell.add_argument("--json", action="store_true", help="one JSON object per reply")

    db = sub.add_parser("db", parents=[common], help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", parents=[common], help="apply the migrations")
    up.add_argument("revision", nargs="?", default="head")
    down = db_sub.add_parser("downgrade", parents=[common], help="revert migrations")
    down.add_argument("revision")
    db_sub.add_parser(
        "prune", parents=[common], help="remove finished bookkeeping older than retention_days"
    )

    issue = sub.add_parser(
        "issue", parents=[common], help="the embedded issue tracker (issues.backend: local)"
    )
    issue_sub = issue.add_subparsers(dest="issue_command", required=True)
    opened = issue_sub.add_parser("open", parents=[common], help="open an issue")
    opened.add_argument("title", type=_text("the issue a title"))
    opened.add_argument(
        "--label", action="append", default=[], type=_text("a label"), help="a label (repeatable)"
    )
    opened.add_argument("--description", default="")
    opened.add_argument("--author", default="operator", type=_handle)
    labelled = issue_sub.add_parser(
        "label", parents=[common], help="add a label, e.g. to approve a deviation"
    )
    labelled.add_argument("ref", type=_text("the issue, e.g. #1"))
    labelled.add_argument("label", type=_text("a label"))
    closed = issue_sub.add_parser("close", parents=[common], help="close an issue")
    closed.add_argument("ref", type=_text("the issue, e.g. #1"))
    issue_sub.add_parser("list", parents=[common], help="list issues")

    config = sub.add_parser("config", parents=[common], help="configuration")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser(
        "check", parents=[common], help="validate the configuration; say what is wrong"
    )
    check.add_argument(
        "--serve",
        action="store_true",
        help="also check what `marvin serve` needs (tokens, signing secret, channel id)",
    )
    return parser


def _load(path: str | None) -> Settings:
    try:
        return load_settings(path)
    except ConfigError as exc:
        print(f"Configuration from {exc.source} is invalid:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        raise SystemExit(2) from None


def _shell(settings: Settings, args: argparse.Namespace) -> int:
    """The shell reads its lines between commands, with no event loop running: Ctrl-C at
    the prompt is the terminal's (it clears the line), never a thread left in `input()`."""
    from marvin.shell import Shell
    from marvin.wiring import build_services, close

    with asyncio.Runner() as runner:
        if not runner.run(_schema_ready(settings, migrate=False)):
            return 2

        async def build() -> Shell:
            return Shell(
                build_services(settings),
                user=args.user or settings.shell.default_user,
                channel=args.channel,
                dm=args.dm,
                as_json=args.json,
                chat_sinks=_slack_sinks(settings),
            )

        shell = runner.run(build())
        shell.start_delivery()
        try:
            if sys.stdin.isatty() and not args.json:
                return shell.run_interactive(runner)
            return shell.run_stream(sys.stdin, runner)
        finally:
            try:
                shell.finish_delivery()
            except KeyboardInterrupt:
                pass  # what is left stays in the outbox, for `marvin serve`
            runner.run(close(shell.services))


def _slack_sinks(settings: Settings) -> ChatSinks | None:
    """With the production channel in Slack and its bot token here, the shell posts its
    announcements itself; without the token they wait for `marvin serve`."""
    if settings.production_channel.chat_in_use() != "slack":
        return None
    from marvin.metrics import Metrics
    from marvin.slack.announce import chat_sinks
    from marvin.slack.secrets import SlackSecrets
    from marvin.slack.server import make_client

    secrets = SlackSecrets.from_env()
    if secrets.bot_token is None:
        return None

    def sinks(services: Services) -> dict[str, Sink]:
        return chat_sinks(make_client(settings, secrets), Metrics())

    return sinks


def _serve_problems(settings: Settings) -> list[str]:
    from marvin.slack.secrets import SlackSecrets, missing_for_serve

    return missing_for_serve(settings, SlackSecrets.from_env())


def _say_refused(exc: Exception) -> None:
    """One sentence for people; the detail (the driver's own error) in the log, at debug."""
    print(str(exc), file=sys.stderr)
    cause = exc.__cause__ or exc
    log.debug("database.refused", error=str(exc), exc_info=cause)


async def _schema_ready(settings: Settings, *, migrate: bool) -> bool:
    """The schema is at head (migrated first when `migrate`), or one sentence says why not."""
    from marvin.store.migrate import SchemaError, prepare

    try:
        await prepare(settings.database.url, migrate=migrate)
    except SchemaError as exc:
        _say_refused(exc)
        return False
    return True


async def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from marvin.slack.secrets import SlackSecrets
    from marvin.slack.server import serve

    problems = _serve_problems(settings)
    if problems:
        print("marvin serve cannot start:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    # With database.migrate_on_start (the image sets it), the schema is brought to head
    # first, under a lock: replicas starting together migrate once, the others wait.
    if not await _schema_ready(settings, migrate=settings.database.migrate_on_start):
        return 2
    return await serve(settings, SlackSecrets.from_env(), port=args.port)


async def _db(settings: Settings, args: argparse.Namespace) -> int:
    from marvin.store import migrate

    if args.db_command == "prune":
        from datetime import timedelta

        if not await _schema_ready(settings, migrate=False):
            return 2

        from marvin.clock import SystemClock
        from marvin.retention import prune
        from marvin.store.db import Store

        store = Store(settings.database.url)
        try:
            counts = await prune(
                store, SystemClock().now(), timedelta(days=settings.database.retention_days)
            )
        finally:
            await store.dispose()
        print("Pruned " + ", ".join(f"{n} {name}" for name, n in counts.items()) + ".")
        return 0
    try:
        if args.db_command == "upgrade":
            await migrate.upgrade(settings.database.url, args.revision)
            print(f"Database upgraded to {args.revision}.")
        else:
            await migrate.downgrade(settings.database.url, args.revision)
            print(f"Database downgraded to {args.revision}.")
    except migrate.SchemaError as exc:
        _say_refused(exc)
        return 2
    return 0


async def _issue(settings: Settings, args: argparse.Namespace) -> int:
    from marvin.adapters.errors import AdapterError
    from marvin.adapters.issues import Issue, LocalIssueTracker
    from marvin.clock import SystemClock
    from marvin.store.db import Store

    if not await _schema_ready(settings, migrate=False):
        return 2
    store = Store(settings.database.url)
    tracker = LocalIssueTracker(store, SystemClock())

    def show(issue: Issue) -> None:
        labels = ", ".join(issue.labels) or "no labels"
        print(f"{issue.ref} [{issue.state}] {issue.title} ({labels})")

    try:
        if args.issue_command == "open":
            show(
                await tracker.create(
                    title=args.title,
                    description=args.description,
                    labels=args.label,
                    author=args.author,
                )
            )
        elif args.issue_command == "label":
            show(await tracker.add_label(args.ref, args.label))
        elif args.issue_command == "close":
            show(await tracker.close(args.ref))
        else:
            for issue in await tracker.all():
                show(issue)
    except AdapterError as exc:
        print(f"{exc.shown()}.", file=sys.stderr)
        return 1
    finally:
        await store.dispose()
    return 0


def _config_check(settings: Settings, args: argparse.Namespace) -> int:
    path = args.config or os.environ.get(CONFIG_ENV)
    overrides = sorted(
        name
        for name in os.environ
        if name.upper().startswith("MARVIN_") and name.upper() not in (CONFIG_ENV, "MARVIN_HISTORY")
    )
    also = " and the MARVIN_* environment variables set" if overrides else ""
    if path:
        print(f"Checked {path}{also}.")
    else:
        print(
            f"No configuration file given (--config FILE or ${CONFIG_ENV}): checked the "
            f"built-in defaults{also}."
        )
    if not args.serve:
        print("Configuration is valid.")
        return 0
    problems = _serve_problems(settings)
    if problems:
        for problem in problems:
            print(f"  missing for serve: {problem}", file=sys.stderr)
        print(
            "Not ready to serve: the configuration itself is valid, but `marvin serve` needs "
            "what is missing above.",
            file=sys.stderr,
        )
        return 1
    print(f"Configuration is valid. Ready to serve Slack in {settings.slack.mode} mode.")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = _load(args.config)
    level = settings.logging.level
    if args.command == "shell" and level in ("debug", "info"):
        level = "warning"  # the terminal is for the conversation, not the log
    configure_logging(level, settings.logging.format)
    try:
        if args.command == "config":
            return _config_check(settings, args)
        if args.command == "serve":
            return asyncio.run(_serve(settings, args))
        if args.command == "shell":
            return _shell(settings, args)
        if args.command == "issue":
            return asyncio.run(_issue(settings, args))
        if args.command == "db":
            return asyncio.run(_db(settings, args))
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    raise AssertionError(args.command)


if __name__ == "__main__":
    raise SystemExit(main())
