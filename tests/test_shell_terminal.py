"""The interactive shell on a real pseudo-terminal: a prompt, replies, and kept history."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from tests.harness import EXAMPLE, ROOT


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


def test_an_interactive_session_keeps_history(sqlite_url: str, tmp_path: Path) -> None:
    history = tmp_path / "history"
    env = {**os.environ, "MARVIN_DATABASE__URL": sqlite_url, "MARVIN_HISTORY": str(history),
           "TERM": "dumb"}
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "marvin.cli", "--config", str(EXAMPLE), "shell", "--user", "bob"],
        stdin=child, stdout=child, stderr=child, cwd=ROOT, env=env, close_fds=True,
    )
    os.close(child)
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
