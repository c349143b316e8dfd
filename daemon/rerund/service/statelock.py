"""One daemon per state directory: an exclusive ``flock`` taken before anything else.

A second ``rerund serve`` on the same ``state_dir`` must not run recovery,
which would requeue the first daemon's running job and run it twice in one
work tree. The lock file names its holder (pid and host) for the message; the
kernel drops the lock when the holder dies, however it dies.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from rerund.errors import RerundError

LOCK_NAME = "rerund.lock"


class StateDirLockedError(RerundError):
    """Another process holds the state directory."""


class StateLock:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`StateDirLockedError` naming the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise StateDirLockedError(
                f"{self.path.parent} is in use by {holder}; one daemon per state_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"rerund pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
