"""Watch directories with watchdog and hand each change to the event loop safely.

Used for the spool directory (the hook's drop box) and for the refs of bare
repositories where nobody can install a hook. watchdog calls back on its own
thread; the callback only schedules ``notify(key)`` on the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer


class _Relay(FileSystemEventHandler):
    def __init__(self, loop: asyncio.AbstractEventLoop, notify: Callable[[], None]) -> None:
        self._loop = loop
        self._notify = notify

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("created", "modified", "moved", "deleted"):
            self._loop.call_soon_threadsafe(self._notify)


class DirectoryWatcher:
    """One watchdog observer for many directories, each with its own callback."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._observer = Observer()
        self._observer.daemon = True

    def watch(self, directory: Path, notify: Callable[[], None], *, recursive: bool) -> None:
        if directory.is_dir():
            self._observer.schedule(_Relay(self._loop, notify), str(directory), recursive=recursive)

    def watch_refs(self, bare_repo: Path, notify: Callable[[], None]) -> None:
        """Loose refs under ``refs/heads`` and the ``packed-refs`` file of a bare repository."""
        self.watch(bare_repo / "refs" / "heads", notify, recursive=True)
        self.watch(bare_repo, notify, recursive=False)  # packed-refs is rewritten in place

    def start(self) -> None:
        self._observer.start()

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)
