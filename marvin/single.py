"""One `marvin serve` per SQLite file.

SQLite has one writer and no shared leases worth the name across hosts; two servers on one
file would also both take up the same pending work at start. The first server holds an
exclusive lock on a file next to the database; a second one refuses to start.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import make_url

from marvin.store.db import Store


class AlreadyServing(Exception):
    def __init__(self, path: str) -> None:
        super().__init__(
            f"Another `marvin serve` is already running on {path}: SQLite takes one server. "
            "Stop the other one, or use PostgreSQL (database.url) to run several replicas."
        )
        self.path = path


@contextmanager
def sqlite_serve_lock(store: Store) -> Iterator[bool]:
    """Hold the database's serve lock; yields True when this is the only server (SQLite),
    False when the database is shared by design (PostgreSQL)."""
    if not store.is_sqlite:
        yield False
        return
    database = make_url(store.url).database
    if not database or database == ":memory:":
        yield True
        return
    path = os.path.abspath(database)
    fd = os.open(f"{path}.serve-lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyServing(path) from None
        yield True
    finally:
        os.close(fd)  # closing the descriptor lets the lock go
