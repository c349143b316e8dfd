"""A real terminal for the command line: a pty whose foreground job is ``rerund``.

The process is a session leader with the pty as its controlling terminal
(``setsid --ctty``), so Ctrl-C typed into the terminal reaches it exactly as
it would reach a user's ``rerund rerun``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path


class Terminal:
    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self._master, slave = os.openpty()
        self.process = subprocess.Popen(
            ["setsid", "--ctty", sys.executable, "-m", "rerund", *args],
            cwd=cwd,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**os.environ, **(env or {})},
        )
        os.close(slave)
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._master, 4096)
            except OSError:  # EIO: every holder of the pty's other side is gone
                return
            if not chunk:
                return
            self._chunks.append(chunk)

    @property
    def output(self) -> str:
        return b"".join(self._chunks).decode("utf-8", "replace").replace("\r\n", "\n")

    def type(self, data: bytes) -> None:
        os.write(self._master, data)

    def wait(self, timeout_s: float = 60) -> int:
        code = self.process.wait(timeout=timeout_s)
        self._reader.join(timeout=5)
        os.close(self._master)
        return code


def wait_for(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
