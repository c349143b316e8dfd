"""A step's command as one process group, and stopping it for good.

A step runs ``/bin/sh -c``, which may start children and grandchildren of
its own; killing the shell alone would leave them writing into the work
tree. So every command starts in a new session (its own process group, out
of reach of the terminal's Ctrl-C), and stopping it signals the whole group:
``SIGTERM`` first, so the command can clean up, ``SIGKILL`` after a grace
period. :func:`interruptible` turns SIGINT, SIGTERM and SIGHUP sent to rerund
itself into a request to stop, which the running step obeys at once. The
local runner, a sandbox or a Slurm backend all use these same pieces.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

GRACE_S = 5.0
"""How long a command has after ``SIGTERM`` before ``SIGKILL``."""

INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def start_group(
    argv: list[str], cwd: Path, output: IO[bytes], *, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` as the leader of a new process group, stdout and stderr to ``output``.

    ``env`` is the command's whole environment (``None``: this process's).
    """
    return subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_group(process: subprocess.Popen[bytes], grace_s: float = GRACE_S) -> None:
    """Stop every process of ``process``'s group: ``SIGTERM``, then ``SIGKILL`` after ``grace_s``.

    Waits until the group is gone, so nothing of the command writes afterwards.
    """
    _signal_group(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_s)
    # The leader may be gone while its children linger in the group.
    while _group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    _signal_group(process.pid, signal.SIGKILL)
    process.wait()
    while _group_alive(process.pid):  # SIGKILL cannot be refused; reaping may lag a moment
        time.sleep(0.01)


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


@dataclass
class Interrupt:
    """Set when rerund was asked to stop; the running step sees ``event`` and stops."""

    event: threading.Event = field(default_factory=threading.Event)
    signal_name: str | None = None

    @property
    def requested(self) -> bool:
        return self.event.is_set()


@contextlib.contextmanager
def interruptible() -> Iterator[Interrupt]:
    """Within the block, SIGINT, SIGTERM and SIGHUP request a stop instead of killing rerund.

    The handlers only set a flag (the step's wait loop acts on it). A second
    signal while the first is being handled raises :class:`KeyboardInterrupt`,
    for a user who really wants out now. Only the main thread can do this.
    """
    interrupt = Interrupt()

    def handler(signum: int, _frame: FrameType | None) -> None:
        if interrupt.requested:
            raise KeyboardInterrupt
        interrupt.signal_name = signal.Signals(signum).name
        interrupt.event.set()

    previous = {signum: signal.signal(signum, handler) for signum in INTERRUPT_SIGNALS}
    try:
        yield interrupt
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
