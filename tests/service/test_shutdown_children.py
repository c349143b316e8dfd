"""A daemon stopped mid-step leaves no process of the step behind."""

from __future__ import annotations

from pathlib import Path

from helpers import Dataset
from service_helpers import Daemon, make_lab, wait_for
from terminal import alive


def _marked(mark: str) -> list[int]:
    """Live processes whose environment carries ``mark`` (the step's, not the daemon's)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if f"STEP_MARK={mark}".encode() in environ.split(b"\0") and b"rerund" not in cmdline:
            found.append(int(entry.name))
    return [pid for pid in found if alive(pid)]


def test_sigterm_past_the_deadline_leaves_no_child(
    _pipeline_template: Dataset, tmp_path: Path
) -> None:
    """SIGTERM while a step sleeps: after the drain deadline every process of the step is gone."""
    lab = make_lab(tmp_path, _pipeline_template, shutdown_timeout_s=1)
    mark = str(tmp_path)
    daemon = Daemon(lab, env={"SLOW_STEP_S": "60", "STEP_MARK": mark}).start()
    wait_for(daemon.scanned, timeout_s=90, what="the start-up scan to finish")
    lab.push_fix()
    running = wait_for(lambda: [pid for pid in _marked(mark) if _is_sleep(pid)], what="the step")

    assert 0 == daemon.stop()

    assert [] == [pid for pid in running if alive(pid)]
    assert [] == _marked(mark)


def _is_sleep(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep\0")
    except OSError:
        return False
