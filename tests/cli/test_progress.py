"""`rerund rerun` shows what runs while it runs: live on a terminal, plain lines otherwise."""

from __future__ import annotations

import re

from helpers import Dataset, rerund
from terminal import Terminal


def _talking_pipeline(dataset: Dataset) -> None:
    dataset.write("in.txt", "1\n")
    dataset.write("second.sh", "echo computing second; cat mid.txt > out.txt\n")
    dataset.save("in")
    dataset.run_step("first", "in.txt", "mid.txt", "echo computing first; cat in.txt > mid.txt")
    dataset.run_step("second", "mid.txt", "out.txt", "sh second.sh")
    dataset.write("in.txt", "2\n")
    dataset.save("new input")


def test_terminal_shows_position_streams_output_and_sums_up(dataset: Dataset) -> None:
    """On a tty: [n/N] before each step, the command's output as it comes, outcome, summary."""
    _talking_pipeline(dataset)

    terminal = Terminal(["rerun"], dataset.path)
    code = terminal.wait()

    out = terminal.output
    assert 0 == code, out
    lines = out.splitlines()
    assert lines[0].startswith("[1/2] first (")
    assert "computing first" in lines
    assert re.search(r"^\[1/2\] first: committed [0-9a-f]{8} in \d+\.\ds$", out, re.M)
    assert any(line.startswith("[2/2] second (") for line in lines)
    assert "computing second" in lines
    summary = r"^rerund: 2 step\(s\) in \d+\.\ds: 2 committed, 0 identical, 0 failed$"
    assert re.search(summary, out, re.M)


def test_plain_output_is_one_line_per_step_and_a_failure_shows_the_log_tail(
    dataset: Dataset,
) -> None:
    """Off a tty: no live lines, one line per step; a failure prints the end of its log."""
    _talking_pipeline(dataset)
    dataset.write("second.sh", "echo about to fail; exit 3\n")
    dataset.save("break the second step")

    done = rerund("rerun", cwd=dataset.path, check=False)

    assert 3 == done.returncode  # the failed command's own status, as `datalad rerun` exits
    assert 1 == len(done.stdout.splitlines())
    assert "committed" in done.stdout and "[1/" not in done.stdout
    assert "computing" not in done.stdout
    assert "--- last lines of " in done.stderr
    assert "  about to fail" in done.stderr.splitlines()
    assert "1 committed, 0 identical, 1 failed" in done.stderr.splitlines()[-1]
