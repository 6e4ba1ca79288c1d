"""The local shell: the same pipeline Slack runs, in a terminal or fed from stdin."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

import structlog

from marvin.access import sync as access_sync
from marvin.deploys.scheduler import DeployScheduler
from marvin.logs import redact_text
from marvin.models import Invocation, Place, Reply
from marvin.outbox import ANNOUNCE, OutboxWorker, Sink
from marvin.services import Services
from marvin.shell_delivery import ChatSinks, ShellDelivery, pending_text
from marvin.supervisor import replica_id
from marvin.wiring import build_pipeline, build_services, close

log = structlog.get_logger(__name__)
PROMPT = "marvin> "
HISTORY = Path(os.environ.get("MARVIN_HISTORY", Path.home() / ".marvin_history"))


class TerminalChannel:
    """With no chat configured, the production channel is the terminal, which printed the
    announcement with the reply; delivering it is acknowledging that it was shown."""

    async def deliver(self, payload: Mapping[str, Any], idempotency_key: str) -> None:
        return None


class Shell:
    def __init__(
        self,
        services: Services,
        *,
        user: str,
        channel: str | None = None,
        dm: bool = False,
        as_json: bool = False,
        out: TextIO | None = None,
        chat_sinks: ChatSinks | None = None,
    ) -> None:
        self.services = services
        self.pipeline = build_pipeline(services)
        # Handles are lowercase: `Bob` is `bob`, not a second person.
        self.user = user.strip().removeprefix("@").lower()
        self.as_json = as_json
        self.out = out or sys.stdout
        production = services.settings.production_channel
        name = (channel or production.name).lstrip("#")
        if dm:
            self.place = Place(id=f"D-{self.user}", is_dm=True)
        elif name == production.name:
            self.place = Place(id=production.id, name=name)
        else:
            self.place = Place(id=f"shell-{name}", name=name)
        # Announcements go to the production channel's chat: when that is Slack, the
        # running `marvin serve` posts them; the shell leaves them in the outbox for it.
        self.chat = services.settings.production_channel.chat_in_use()
        sinks: dict[str, Sink] = {ANNOUNCE: TerminalChannel()} if self.chat == "none" else {}
        self.outbox = OutboxWorker(services.store, sinks, services.clock)
        # Posting to Slack itself needs its token (the CLI builds those sinks when it has it).
        self.chat_sinks: ChatSinks | None = (
            (lambda _services: {ANNOUNCE: TerminalChannel()}) if self.chat == "none" else chat_sinks
        )
        self.delivery: ShellDelivery | None = None
        # The delivery thread prints too (an issue's link): one line at a time.
        self._writing = threading.Lock()
        # The shell is a replica too: due deploy slots are announced and started after a
        # command (claimed like any replica's, so a running `marvin serve` never doubles it).
        self.scheduler = DeployScheduler(services, replica_id())
        self._registry_checked = False

    def start_delivery(self) -> None:
        """Deliver what commands put in the outbox while the shell runs (issues, notes,
        announcements), in a thread of its own."""
        self.delivery = ShellDelivery(
            self.services.settings,
            clock=self.services.clock,
            build=lambda settings, clock: build_services(settings, clock=clock),
            close=close,
            notify=self.notice,
            chat_sinks=self.chat_sinks,
        )
        self.delivery.start()

    def finish_delivery(self) -> int:
        """Before exiting: what is due within `shell.drain_seconds` is delivered; the rest
        stays for `marvin serve`, and the shell says so. Returns how much is left."""
        if self.delivery is None:
            return 0
        left = self.delivery.finish(self.services.settings.shell.drain_seconds)
        self.delivery = None
        text = pending_text(left)
        if text:
            self.notice(f"⏳ {text}")
        return left

    def notice(self, text: str) -> None:
        """News that is no command's reply: on stdout, or stderr when stdout is JSON."""
        stream = sys.stderr if self.as_json else self.out
        with self._writing:
            stream.write(text + "\n")
            stream.flush()

    def invocation(self, text: str) -> Invocation:
        domain = self.services.settings.shell.email_domain
        return Invocation(
            request_id=uuid.uuid4().hex[:16],
            transport="shell",
            user_id=self.user,
            user_name=self.user,
            user_email=f"{self.user}@{domain}",
            place=self.place,
            text=redact_text(text),
            received_at=self.services.clock.now(),
            timezone=self.services.settings.shell.timezone,
        )

    async def run_line(self, text: str) -> Reply:
        if not self._registry_checked:
            # The roles registry's GitLab mirror, brought up to date before the first
            # command when no `marvin serve` has kept it so.
            self._registry_checked = True
            await access_sync.if_stale(self.services)
        reply = await self.pipeline.handle(self.invocation(text))
        self.render(reply)
        await self._deploys()
        await self.outbox.deliver_due()
        if self.delivery is not None:
            self.delivery.wake()
        return reply

    async def _deploys(self) -> None:
        try:
            # One short read first: a round (and the GitLab calls it makes) runs only when
            # a slot is due or its pipeline running, not after every `help`.
            if not await self.scheduler.pending():
                return
            said = await self.scheduler.tick()
        except Exception:
            log.exception("shell.deploy_scheduler_failed")
            return
        if self.as_json:
            return
        channel = self.services.settings.production_channel.name
        for text in said:
            self.out.write(f"📣 #{channel}: {text}\n")
        self.out.flush()

    def render(self, reply: Reply) -> None:
        with self._writing:
            self._render(reply)

    def _render(self, reply: Reply) -> None:
        if self.as_json:
            self.out.write(json.dumps(reply.as_json(), ensure_ascii=False) + "\n")
        else:
            marker = "" if reply.ok else "✋ " if reply.kind == "denied" else "⚠ "
            self.out.write(f"{marker}{reply.text}\n")
            if reply.confirm:
                self.out.write(
                    f"Type `confirm {reply.confirm.token}` within 5 minutes to go ahead.\n"
                )
            if reply.announcement:
                channel = self.services.settings.production_channel.name
                if self.chat == "none":
                    via = ""
                elif self.delivery is not None and self.delivery.posts_chat:
                    via = f" (posted in {self.chat.title()})"
                else:
                    via = f" (posted in {self.chat.title()} by marvin serve)"
                self.out.write(f"📣 #{channel}{via}: {reply.announcement.text}\n")
        self.out.flush()

    def run_stream(self, stream: TextIO, runner: asyncio.Runner) -> int:
        """One command per line; blank lines and `#` comments are skipped. The exit status
        is 0 when every command went through, 1 when any was refused or failed (so that a
        script can tell), 130 when interrupted."""
        failed = False
        try:
            for line in iter(stream.readline, ""):
                text = line.strip()
                if text and not text.startswith("#"):
                    reply = runner.run(self.run_line(text))
                    failed = failed or not reply.ok
        except KeyboardInterrupt:
            return 130
        return 1 if failed else 0

    def run_interactive(self, runner: asyncio.Runner, read: Callable[[str], str] = input) -> int:
        """The prompt. Lines are read with no event loop running, so Ctrl-C is the
        terminal's: it clears the line; twice in a row, or Ctrl-D, quits."""
        try:
            import readline

            readline.read_history_file(HISTORY)
        except ImportError:
            readline = None  # type: ignore[assignment]
        except OSError:
            pass  # no history yet
        where = self.place.label()
        self.out.write(
            f"Marvin shell as @{self.user} in {where}. `help` lists commands; Ctrl-D quits.\n"
        )
        self.out.flush()
        interrupted = False
        try:
            while True:
                try:
                    text = read(PROMPT)
                except EOFError:
                    self.out.write("\n")
                    return 0
                except KeyboardInterrupt:
                    if interrupted:
                        self.out.write("\n")
                        return 130
                    interrupted = True
                    self.out.write("\n(Ctrl-C again or Ctrl-D to quit)\n")
                    self.out.flush()
                    continue
                interrupted = False
                text = text.strip()
                if text in ("exit", "quit"):
                    return 0
                if not text or text.startswith("#"):
                    continue
                try:
                    runner.run(self.run_line(text))
                except KeyboardInterrupt:
                    # Cancelled where it stood; another Ctrl-C at the prompt quits.
                    interrupted = True
                    self.out.write(
                        "\n⚠ Interrupted before the answer came: if that was a change, check "
                        "whether it was made before you try again.\n"
                    )
                    self.out.flush()
        finally:
            if readline is not None:
                try:
                    readline.write_history_file(HISTORY)
                except OSError:
                    pass
