"""Ctrl-C, SIGTERM or SIGHUP stop `rerund rerun`'s whole step and leave the tree as committed."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from helpers import Dataset, datalad
from terminal import Terminal, alive, wait_for

# The step writes a partial output, then leaves a grandchild running in the background.
SLOW = (
    'echo started; printf partial > out.txt; sleep 60 & echo $! > "$PIDFILE";'
    ' echo $$ >> "$PIDFILE"; wait'
)


def _slow_record(dataset: Dataset) -> str:
    dataset.write("in.txt", "1\n")
    dataset.save("in")
    datalad("run", "-i", "in.txt", "-o", "out.txt", "cat in.txt > out.txt", cwd=dataset.path)
    record = dataset.record()
    record["cmd"] = SLOW
    return dataset.commit_record("slow", json.dumps(record, indent=1, sort_keys=True))


@pytest.mark.parametrize("how", ["ctrl-c", "SIGTERM", "SIGHUP"])
def test_interrupt_stops_the_process_group_and_restores_outputs(
    dataset: Dataset, tmp_path: Path, how: str
) -> None:
    """The step's every process is gone, out.txt is as committed, rerund says so and exits 130."""
    slow = _slow_record(dataset)
    pidfile = tmp_path / "pids"
    terminal = Terminal(["rerun", slow], dataset.path, env={"PIDFILE": str(pidfile)})
    wait_for(lambda: pidfile.is_file() and len(pidfile.read_text().split()) == 2)
    pids = [int(pid) for pid in pidfile.read_text().split()]

    if how == "ctrl-c":
        terminal.type(b"\x03")
    else:
        os.kill(terminal.process.pid, getattr(signal, how))
    code = terminal.wait()

    signal_name = "SIGINT" if how == "ctrl-c" else how
    assert 130 == code, terminal.output
    assert f"rerund: interrupted by {signal_name}" in terminal.output
    assert f"rerund: stopped {slow[:8]} (slow): its outputs were put back" in terminal.output
    assert [] == [pid for pid in pids if alive(pid)]
    assert "1\n" == dataset.read("out.txt")
    assert ("", slow) == (dataset.status(), dataset.head())


def test_ctrl_c_after_an_annexed_commit_keeps_it_and_stops_cleanly(
    annexed_pipeline: Dataset, tmp_path: Path
) -> None:
    """Ctrl-C in the second step of an annexed pipeline: the first step's commit stays whole,
    the second's outputs are put back, rerund exits 130 (its git-annex batch is not hit)."""
    ds = annexed_pipeline
    pidfile = tmp_path / "pids"
    ds.write("raw/data.txt", "# measurements\n3\n1\n2\n5\n")
    ds.write("code/stats.sh", 'echo $$ > "$PIDFILE"; sleep 60 & echo $! >> "$PIDFILE"; wait\n')
    ds.save("new data, slow stats")
    terminal = Terminal(["rerun"], ds.path, env={"PIDFILE": str(pidfile)})
    wait_for(lambda: pidfile.is_file() and len(pidfile.read_text().split()) == 2)
    pids = [int(pid) for pid in pidfile.read_text().split()]

    terminal.type(b"\x03")
    code = terminal.wait()

    assert 130 == code, terminal.output
    assert "rerund: interrupted by SIGINT" in terminal.output
    assert "1 committed, 0 identical, 1 interrupted, 1 not run" in terminal.output
    assert [] == [pid for pid in pids if alive(pid)]
    assert ("", "[DATALAD RUNCMD] clean") == (ds.status(), ds.git("log", "-1", "--format=%s"))
    assert "1\n2\n3\n5\n" == ds.read("work/clean.txt")
    assert (ds.path / "work" / "stats.txt").is_symlink()  # locked again, as committed
