"""The interactive shell on a real pseudo-terminal: a prompt, replies, and kept history."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import EXAMPLE, ROOT

CTRL_C, CTRL_D = b"\x03", b"\x04"
# A person never types faster than this after a prompt shows (readline checks for a Ctrl-C
# only once it is waiting for a key: one sent within microseconds of the prompt waits).
HUMAN = 0.3


def read_until(fd: int, needle: bytes, timeout: float = 20.0) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 4096)
            except OSError:
                break
    return seen


def _controlling_terminal() -> None:
    # In the child, after setsid: the pty on stdin becomes its terminal, so that Ctrl-C
    # typed on it is a SIGINT, as in a real one.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    def __init__(self, proc: subprocess.Popen[bytes], fd: int) -> None:
        self.proc = proc
        self.fd = fd
        self.seen = b""

    def type(self, keys: bytes) -> None:
        time.sleep(HUMAN)
        os.write(self.fd, keys)

    def until(self, needle: bytes, timeout: float = 20.0) -> bytes:
        got = read_until(self.fd, needle, timeout)
        self.seen += got
        return got

    def exit_code(self, timeout: float = 20.0) -> int:
        code = self.proc.wait(timeout=timeout)
        self.seen += read_until(self.fd, b"\0", 0.5)  # whatever it wrote on the way out
        return code


def _shell_on_a_pty(
    sqlite_url: str, history: Path, **popen: Any
) -> tuple[subprocess.Popen[bytes], int]:
    """`marvin shell --user bob` on a new pty; the process and the pty's main side."""
    env = {
        **os.environ,
        "MARVIN_DATABASE__URL": sqlite_url,
        "MARVIN_HISTORY": str(history),
        "TERM": "dumb",
    }
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "marvin.cli", "--config", str(EXAMPLE), "shell", "--user", "bob"],
        stdin=child,
        stdout=child,
        stderr=child,
        cwd=ROOT,
        env=env,
        close_fds=True,
        **popen,
    )
    os.close(child)
    return proc, main


@pytest.fixture
def terminal(sqlite_url: str, tmp_path: Path) -> Iterator[Terminal]:
    proc, main = _shell_on_a_pty(
        sqlite_url,
        tmp_path / "history",
        start_new_session=True,
        preexec_fn=_controlling_terminal,
    )
    term = Terminal(proc, main)
    try:
        assert b"Marvin shell as @bob" in term.until(b"marvin> ")
        yield term
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(main)
    assert b"Traceback" not in term.seen, term.seen.decode(errors="replace")


def test_an_interactive_session_keeps_history(sqlite_url: str, tmp_path: Path) -> None:
    history = tmp_path / "history"
    proc, main = _shell_on_a_pty(sqlite_url, history)
    try:
        banner = read_until(main, b"marvin> ")
        assert b"Marvin shell as @bob in #production" in banner
        os.write(main, b"whoami\n")
        reply = read_until(main, b"marvin> ")
        assert b"GitLab user: bob." in reply and b"Grants: feature_flags." in reply
        os.write(main, b"exit\n")
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(main)
    assert "whoami" in history.read_text()


def test_ctrl_c_clears_the_line_and_the_prompt_comes_back(terminal: Terminal) -> None:
    terminal.type(b"feature li")
    terminal.type(CTRL_C)
    # at once, not after the next key
    assert terminal.until(b"marvin> ", timeout=5).endswith(b"marvin> ")
    assert terminal.proc.poll() is None
    # what was typed before Ctrl-C is gone: this is `whoami`, not `feature liwhoami`
    terminal.type(b"whoami\n")
    reply = terminal.until(b"marvin> ")
    assert b"GitLab user: bob." in reply
    terminal.type(b"exit\n")
    assert terminal.exit_code() == 0


def test_ctrl_c_twice_quits_without_a_traceback(terminal: Terminal) -> None:
    terminal.type(b"whoami\n")
    terminal.until(b"marvin> ")
    terminal.type(CTRL_C)
    assert b"Ctrl-C again or Ctrl-D to quit" in terminal.until(b"marvin> ", timeout=5)
    terminal.type(CTRL_C)
    assert terminal.exit_code(timeout=10) == 130


def test_ctrl_c_then_a_command_then_ctrl_c_does_not_quit(terminal: Terminal) -> None:
    # "twice in a row": a command in between starts the count again
    terminal.type(CTRL_C)
    terminal.until(b"marvin> ", timeout=5)
    terminal.type(b"whoami\n")
    terminal.until(b"marvin> ")
    terminal.type(CTRL_C)
    terminal.until(b"marvin> ", timeout=5)
    assert terminal.proc.poll() is None
    terminal.type(CTRL_D)
    assert terminal.exit_code(timeout=10) == 0


def test_ctrl_d_quits_without_a_traceback(terminal: Terminal) -> None:
    terminal.type(CTRL_D)
    assert terminal.exit_code(timeout=10) == 0
