"""`marvin`: serve, shell, db upgrade, config check."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from marvin.config import ConfigError, Settings, load_settings
from marvin.logs import configure_logging

DISTRIBUTION = "marvin-chatops"


def version() -> str:
    """The installed package's version (the image's labels carry the same)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="marvin", description="Marvin guards production.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    parser.add_argument("--config", help="YAML config file (default: $MARVIN_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the Slack bot (HTTP or Socket Mode, per config)")
    serve.add_argument("--port", type=int, help="HTTP port (default: slack.port)")

    shell = sub.add_parser("shell", help="talk to Marvin in the terminal")
    shell.add_argument("--user", help="who you are (a handle from the directory)")
    where = shell.add_mutually_exclusive_group()
    where.add_argument("--channel", help="channel to stand in (default: the production one)")
    where.add_argument("--dm", action="store_true", help="talk in a direct message")
    shell.add_argument("--json", action="store_true", help="one JSON object per reply")

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="apply the migrations")
    up.add_argument("revision", nargs="?", default="head")
    down = db_sub.add_parser("downgrade", help="revert migrations")
    down.add_argument("revision")
    db_sub.add_parser("prune", help="remove finished bookkeeping older than retention_days")

    issue = sub.add_parser("issue", help="the embedded issue tracker (issues.backend: local)")
    issue_sub = issue.add_subparsers(dest="issue_command", required=True)
    opened = issue_sub.add_parser("open", help="open an issue")
    opened.add_argument("title")
    opened.add_argument("--label", action="append", default=[], help="a label (repeatable)")
    opened.add_argument("--description", default="")
    opened.add_argument("--author", default="operator")
    labelled = issue_sub.add_parser("label", help="add a label, e.g. to approve a deviation")
    labelled.add_argument("ref")
    labelled.add_argument("label")
    closed = issue_sub.add_parser("close", help="close an issue")
    closed.add_argument("ref")
    issue_sub.add_parser("list", help="list issues")

    config = sub.add_parser("config", help="configuration")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate the configuration; say what is wrong")
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


async def _shell(settings: Settings, args: argparse.Namespace) -> int:
    from marvin.shell import Shell
    from marvin.wiring import build_services, close

    if not await _schema_ready(settings, migrate=False):
        return 2
    services = build_services(settings)
    shell = Shell(
        services,
        user=args.user or settings.shell.default_user,
        channel=args.channel,
        dm=args.dm,
        as_json=args.json,
    )
    try:
        if sys.stdin.isatty() and not args.json:
            return await shell.run_interactive()
        return await shell.run_stream(sys.stdin)
    finally:
        await close(services)


def _serve_problems(settings: Settings) -> list[str]:
    from marvin.slack.secrets import SlackSecrets, missing_for_serve

    return missing_for_serve(settings, SlackSecrets.from_env())


async def _schema_ready(settings: Settings, *, migrate: bool) -> bool:
    """The schema is at head (migrated first when `migrate`), or one sentence says why not."""
    from marvin.store.migrate import SchemaError, prepare

    try:
        await prepare(settings.database.url, migrate=migrate)
    except SchemaError as exc:
        print(str(exc), file=sys.stderr)
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
        print(str(exc), file=sys.stderr)
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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = _load(args.config)
    level = settings.logging.level
    if args.command == "shell" and level in ("debug", "info"):
        level = "warning"  # the terminal is for the conversation, not the log
    configure_logging(level, settings.logging.format)
    if args.command == "config":
        print("Configuration is valid.")
        if args.serve:
            problems = _serve_problems(settings)
            for problem in problems:
                print(f"  missing for serve: {problem}", file=sys.stderr)
            if problems:
                return 1
            print(f"Ready to serve Slack in {settings.slack.mode} mode.")
        return 0
    if args.command == "serve":
        return asyncio.run(_serve(settings, args))
    if args.command == "shell":
        return asyncio.run(_shell(settings, args))
    if args.command == "issue":
        return asyncio.run(_issue(settings, args))
    if args.command == "db":
        return asyncio.run(_db(settings, args))
    raise AssertionError(args.command)


if __name__ == "__main__":
    raise SystemExit(main())
