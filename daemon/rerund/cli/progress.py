"""What ``rerund rerun`` tells the person watching it, step by step.

On a terminal: which step runs and where it stands in the plan (``[2/7]``),
the command's own output as it comes (followed from the step's log file, so
the log stays complete), a heartbeat with the elapsed time when the command
is silent, and each step's outcome and duration. Off a terminal: one plain
line per finished step, as before, so scripts can read it. On failure, the
tail of the log unless it was already streamed. Always: a one-line summary.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import BinaryIO, TextIO

from rerund.core.plan import Step
from rerund.run.execute import StepResult
from rerund.run.replay import ReplayReport

HEARTBEAT_S = 30.0
TAIL_LINES = 20


class Progress:
    def __init__(self, total: int, log_dir: Path, out: TextIO, err: TextIO) -> None:
        self.total = total
        self.log_dir = log_dir
        self.out = out
        self.err = err
        self.live = out.isatty()
        self.started = time.monotonic()
        self._follower: _LogFollower | None = None
        self._position = 0

    def log_path(self, step: Step) -> Path:
        return self.log_dir / f"{step.commit[:12]}.log"

    def step_started(self, position: int, step: Step) -> None:
        self._position = position
        if not self.live:
            return
        self._print(f"[{position + 1}/{self.total}] {step.summary} ({step.commit[:8]})")
        log_path = self.log_path(step)
        log_path.unlink(missing_ok=True)  # never replay an earlier run's log
        self._follower = _LogFollower(log_path, self.out)
        self._follower.start()

    def step_finished(self, result: StepResult) -> None:
        self._stop_following()
        step = result.step
        position = self._position
        if self.live:
            made = f" {result.new_commit[:8]}" if result.new_commit else ""
            self._print(
                f"[{position + 1}/{self.total}] {step.summary}: {result.outcome}{made}"
                f" in {_duration(result.duration_s)}"
            )
        else:
            self._print(
                f"{step.commit[:8]}  {result.outcome:<10}  "
                f"{(result.new_commit or '')[:8] or '-':<8}  {result.duration_s:.2f}s  "
                f"{step.summary}"
            )

    def step_failed(self, step: Step) -> None:
        """Show the end of the failed step's log, unless the terminal already saw it."""
        streamed = self._follower is not None
        self._stop_following()
        log_path = self.log_path(step)
        if streamed or not log_path.is_file():
            return
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        self.err.write(f"--- last lines of {log_path} ---\n")
        for line in lines[-TAIL_LINES:]:
            self.err.write(f"  {line}\n")
        self.err.flush()

    def summary(self, report: ReplayReport) -> str:
        counts = Counter(result.outcome for result in report.results)
        parts = [f"{counts['committed']} committed", f"{counts['identical']} identical"]
        parts.extend(f"{counts[kind]} {kind}" for kind in ("cut-off", "reused") if counts[kind])
        if not report.interrupted:
            parts.append(f"{1 if report.failure else 0} failed")
        elif report.failed_step is not None:
            parts.append("1 interrupted")
        if report.not_run:
            parts.append(f"{len(report.not_run)} not run")
        elapsed = _duration(time.monotonic() - self.started)
        return f"rerund: {self.total} step(s) in {elapsed}: {', '.join(parts)}"

    def _stop_following(self) -> None:
        if self._follower is not None:
            self._follower.stop()
            self._follower = None

    def _print(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()


class _LogFollower(threading.Thread):
    """Copies what the command writes to its log onto the terminal, as it comes."""

    def __init__(self, path: Path, out: TextIO) -> None:
        super().__init__(name="log-follower", daemon=True)
        self.path = path
        self.out = out
        self._done = threading.Event()
        self._began = time.monotonic()
        self.ends_line = True

    def run(self) -> None:
        handle: BinaryIO | None = None
        quiet_since = time.monotonic()
        try:
            while True:
                finishing = self._done.is_set()
                if handle is None and self.path.exists():
                    handle = self.path.open("rb")
                chunk = handle.read() if handle is not None else b""
                if chunk:
                    self.ends_line = chunk.endswith(b"\n")
                    self.out.buffer.write(chunk)
                    self.out.flush()
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since >= HEARTBEAT_S:
                    elapsed = _duration(time.monotonic() - self._began)
                    self.out.write(f"  ... still running ({elapsed})\n")
                    self.out.flush()
                    quiet_since = time.monotonic()
                if finishing:
                    return
                self._done.wait(0.1)
        finally:
            if handle is not None:
                handle.close()

    def stop(self) -> None:
        """Copy what is left, then stop."""
        self._done.set()
        self.join()
        if not self.ends_line:  # the next line of ours starts on a line of its own
            self.out.write("\n")
            self.out.flush()


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s"
