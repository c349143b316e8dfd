"""Watch directories with watchdog and hand each change to the event loop safely.

Used for the spool directory (the hook's drop box) and for the refs of bare
repositories where nobody can install a hook. watchdog calls back on its own
thread; the callback only schedules ``notify(key)`` on the loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer


class _Relay(FileSystemEventHandler):
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        notify: Callable[[], None],
        only: str | None,
    ) -> None:
        self._loop = loop
        self._notify = notify
        self._only = only

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in ("created", "modified", "moved", "deleted"):
            return
        if self._only is not None:
            names = {Path(os.fsdecode(event.src_path)).name}
            if event.dest_path:
                names.add(Path(os.fsdecode(event.dest_path)).name)
            if self._only not in names:
                return
        self._loop.call_soon_threadsafe(self._notify)


class DirectoryWatcher:
    """One watchdog observer for many directories, each with its own callback."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._observer = Observer()
        self._observer.daemon = True

    def watch(
        self,
        directory: Path,
        notify: Callable[[], None],
        *,
        recursive: bool,
        only: str | None = None,
    ) -> None:
        """Call ``notify`` on the loop when something in ``directory`` (named ``only``) changes."""
        if directory.is_dir():
            relay = _Relay(self._loop, notify, only)
            self._observer.schedule(relay, str(directory), recursive=recursive)

    def watch_refs(self, bare_repo: Path, notify: Callable[[], None]) -> None:
        """Loose refs under ``refs/heads`` and the ``packed-refs`` file of a bare repository."""
        self.watch(bare_repo / "refs" / "heads", notify, recursive=True)
        # git gc and some pushes rewrite packed-refs (via a lock file renamed into place).
        self.watch(bare_repo, notify, recursive=False, only="packed-refs")

    def start(self) -> None:
        self._observer.start()

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)
