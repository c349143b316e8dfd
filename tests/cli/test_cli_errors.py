"""Bad input gets one clear line, a non-zero exit, and changes nothing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from helpers import Dataset, datalad, rerund, run


def _unchanged(ds: Dataset, head: str) -> None:
    assert (head, "") == (ds.head(), ds.status())


def test_not_a_repository(tmp_path: Path) -> None:
    """Pointing rerund at a plain directory is one clear error."""
    done = rerund("plan", "-C", str(tmp_path), cwd=tmp_path, check=False)
    assert (1, f"rerund: error: {tmp_path} is not inside a git repository\n") == (
        done.returncode,
        done.stderr,
    )


def test_unknown_revisions_are_refused(pipeline: Dataset) -> None:
    """--since or COMMIT naming nothing, or a non-record commit, are refused up front."""
    head = pipeline.head()
    cases = [
        (("plan", "--since", "nope"), "--since 'nope' names no commit"),
        (("rerun", "nope"), "'nope' names no commit"),
        (("rerun", "HEAD~3"), "is not a run record"),
        (("rerun", "--since=", "HEAD"), "give either --since or COMMITs, not both"),
    ]
    for args, message in cases:
        done = rerund(*args, cwd=pipeline.path, check=False)
        assert 1 == done.returncode, args
        assert message in done.stderr
        assert 1 == len(done.stderr.splitlines())
    _unchanged(pipeline, head)


def test_hanging_command_is_stopped_and_nothing_committed(dataset: Dataset) -> None:
    """A step over its time limit is stopped; nothing is committed, the tree is as committed."""
    dataset.write("in.txt", "1\n")
    dataset.save("in")
    datalad("run", "-i", "in.txt", "-o", "out.txt", "cat in.txt > out.txt", cwd=dataset.path)
    record = dataset.record()
    record["cmd"] = "echo started; echo partial > out.txt; sleep 30; cat in.txt > out.txt"
    body = json.dumps(record, indent=1, sort_keys=True)
    slow = dataset.commit_record("slow", body)

    done = rerund("rerun", "--timeout", "1", slow, cwd=dataset.path, check=False)

    assert 1 == done.returncode
    assert f"step {slow[:8]} ran longer than 1.0 s and was stopped" in done.stderr
    assert (slow, "", "1\n") == (dataset.head(), dataset.status(), dataset.read("out.txt"))
    log = dataset.path / ".git" / "rerund" / "logs" / f"{slow[:12]}.log"
    assert "started\n" in log.read_text() and "stopped after 1.0 s" in log.read_text()
    assert "partial\n" == (log.with_suffix(".partial") / "out.txt").read_text()


def test_failure_restores_the_tree_and_runs_nothing_downstream(pipeline: Dataset) -> None:
    """A failing step commits nothing, puts the tree back, keeps its partial output by the log."""
    committed = pipeline.read("work/stats.txt")
    pipeline.write("code/stats.sh", 'echo partial > "$2"; echo broken >&2; exit 4\n')
    change = pipeline.save("break stats")

    done = rerund("rerun", cwd=pipeline.path, check=False)

    stats = pipeline.record_commit("stats")
    log = pipeline.path / ".git" / "rerund" / "logs" / f"{stats[:12]}.log"
    assert 4 == done.returncode  # the command's own status, as `datalad rerun` exits
    assert f"step {stats[:8]} exited with 4 (recorded: 0)" in done.stderr
    assert f"see {log}" in done.stderr
    assert f"not run: {pipeline.record_commit('report')[:8]}" in done.stderr
    assert "broken" in log.read_text()
    assert ("", committed) == (pipeline.status(), pipeline.read("work/stats.txt"))
    kept = log.with_suffix(".partial")
    assert f"its partial outputs are in {kept}" in done.stderr
    assert "partial\n" == (kept / "work" / "stats.txt").read_text()
    assert change == pipeline.head()
    again = rerund("rerun", cwd=pipeline.path, check=False)
    assert "uncommitted changes" not in again.stderr
    assert f"step {stats[:8]} exited with 4" in again.stderr


def test_record_running_outside_the_dataset_is_refused(dataset: Dataset) -> None:
    """A record whose pwd leaves the dataset is never executed."""
    record = {"cmd": "touch escaped", "pwd": "../..", "exit": 0, "inputs": [], "outputs": []}
    head = dataset.commit_record("escape", json.dumps(record))

    done = rerund("rerun", "HEAD", cwd=dataset.path, check=False)

    assert 1 == done.returncode and "outside the dataset" in done.stderr
    assert not (dataset.path.parent.parent / "escaped").exists()
    _unchanged(dataset, head)


def test_dry_run_shows_the_plan_and_runs_nothing(pipeline: Dataset) -> None:
    """--dry-run prints what would run and changes nothing."""
    pipeline.write("raw/data.txt", "1\n")
    head = pipeline.save("fix")

    done = rerund("rerun", "--dry-run", cwd=pipeline.path)

    assert done.stdout.startswith("3 step(s) would rerun at ")
    _unchanged(pipeline, head)


def test_annexed_sidecar_is_fetched_in_a_fresh_clone(dataset: Dataset, tmp_path: Path) -> None:
    """A clone lacks the annexed sidecar's content; rerund fetches it to read the record."""
    datalad("run", "--sidecar", "yes", "-m", "side", "date +%N > s.txt", cwd=dataset.path)
    clone = tmp_path / "clone"
    datalad("clone", str(dataset.path), str(clone))
    runinfo = next((clone / ".datalad" / "runinfo").iterdir())
    assert not runinfo.exists()  # a dangling annex symlink: content not here

    plan = json.loads(rerund("plan", "--json", "--since=", cwd=clone).stdout)

    assert ["side"] == [step["summary"] for step in plan["steps"]]
    assert runinfo.exists()
    assert "" == run("git", "status", "--porcelain", cwd=clone).stdout


def test_users_own_commit_hook_still_decides(pipeline: Dataset) -> None:
    """A pre-commit hook of the user's runs for rerun commits; when it refuses, nothing lands."""
    hook = pipeline.path / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'lab policy: no commits today' >&2\nexit 1\n")
    hook.chmod(0o755)
    pipeline.write("raw/data.txt", "4\n")
    fix = _commit_bypassing_hook(pipeline)

    done = rerund("rerun", cwd=pipeline.path, check=False)

    assert 1 == done.returncode
    assert "lab policy: no commits today" in done.stderr
    assert fix == pipeline.head()


def _commit_bypassing_hook(ds: Dataset) -> str:
    ds.git("add", "raw/data.txt")
    ds.git("commit", "-q", "--no-verify", "-m", "fix raw data")
    return ds.head()


def test_missing_directory_is_one_clear_line(tmp_path: Path) -> None:
    """-C naming a directory that does not exist is an error line, not a traceback."""
    missing = tmp_path / "nonexistent"

    done = rerund("plan", "-C", str(missing), cwd=tmp_path, check=False)

    assert (1, f"rerund: error: {missing} does not exist\n") == (done.returncode, done.stderr)


def test_a_reader_that_stops_early_is_not_an_error(pipeline: Dataset) -> None:
    """`rerund plan | head -1`: the closed pipe ends rerund quietly, with no traceback."""
    pipeline.write("raw/data.txt", "5\n")
    pipeline.save("fix")
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before rerund writes a byte

    done = subprocess.run(
        [sys.executable, "-m", "rerund", "plan"],
        cwd=pipeline.path,
        stdout=write_end,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    os.close(write_end)

    assert (141, "") == (done.returncode, done.stderr)


def test_port_in_use_is_a_startup_error(tmp_path: Path) -> None:
    """`serve` on a port someone else holds says so in one line and exits 3."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]

        done = run(
            sys.executable, "-m", "rerund", "serve", "--listen", f"127.0.0.1:{port}",
            cwd=tmp_path, check=False,
        )  # fmt: skip

    assert 3 == done.returncode
    expected = f"rerund: error: cannot listen on 127.0.0.1:{port}: address already in use"
    assert f"{expected} (http.listen)" == done.stderr.splitlines()[-1]
