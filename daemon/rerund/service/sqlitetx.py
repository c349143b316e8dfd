"""One write transaction on a shared SQLite connection, for the daemon's stores."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def write_transaction(db: sqlite3.Connection, lock: threading.Lock) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` under ``lock``: committed on success, rolled back on any error.

    IMMEDIATE takes SQLite's write lock at once, so two writers never deadlock
    upgrading a read; the thread lock keeps the connection to one thread at a time.
    """
    with lock:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
