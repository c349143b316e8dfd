"""Generate large DataLad-format git histories quickly, for benchmarks.

The result is a plain git repository (no annex) laid out like the output of
``datalad create --no-annex`` followed by many ``datalad run`` commits, written
by a single ``git fast-import`` process so that 100,000 commits take seconds.

Layout of the generated dataset::

    .datalad/config      dataset id (committed, as ``datalad create`` writes it)
    .noannex             empty marker written by ``datalad create --no-annex``
    code/step.sh         the only program the run records call
    raw/<k>.txt          raw input of pipeline k (edited by some noise commits)
    out/<k>/s<j>.txt     output of step j of pipeline k (run records only)
    notes/<i>.txt        unrelated files edited by the other noise commits

Every run record executes ``sh code/step.sh {inputs} {outputs}``. The script
writes the POSIX ``cksum`` line of its input to its output, and the generator
commits exactly those bytes, so replaying any record on a consistent tree
reproduces the committed content byte for byte. At the tip of the history every
step of every pipeline is consistent with its current input: after a raw file
is edited, all existing steps of that pipeline are re-run later (new records
for the same outputs, which supersede the earlier ones).
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

AUTHOR_NAME = "rerund bench"
AUTHOR_EMAIL = "bench@rerund.invalid"
START_TIME = 1_700_000_000  # seconds since the epoch of the first commit
TIME_STEP = 60  # seconds between consecutive commits
BRANCH = "main"
NOTE_FILES = 100  # noise commits edit notes/<i>.txt for i < NOTE_FILES
RAW_EDITS_PER_RECORD = 0.2  # raw-file edits attempted per run record (rest: notes)
REWORK_SHARE = 0.25  # at most this share of the records so far may supersede others
RERUN_PROBABILITY = 0.5  # chance that a record catches up a stale pipeline
STEP_CMD = "sh code/step.sh {inputs} {outputs}"

STEP_SCRIPT = """\
#!/bin/sh
# Benchmark pipeline step: write the POSIX cksum line of $1 to $2.
set -e
mkdir -p "$(dirname "$2")"
cksum < "$1" > "$2"
"""

_CRC_POLY = 0x04C11DB7
_MASK = 0xFFFFFFFF


def _crc_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        crc = i << 24
        for _ in range(8):
            crc = ((crc << 1) ^ _CRC_POLY) if crc & 0x80000000 else (crc << 1)
        table.append(crc & _MASK)
    return tuple(table)


_CRC_TABLE = _crc_table()


def cksum_line(data: bytes) -> bytes:
    """Return what POSIX ``cksum`` prints for ``data`` read from stdin."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & _MASK) ^ _CRC_TABLE[(crc >> 24) ^ byte]
    length = len(data)
    while length:
        crc = ((crc << 8) & _MASK) ^ _CRC_TABLE[(crc >> 24) ^ (length & 0xFF)]
        length >>= 8
    return f"{~crc & _MASK} {len(data)}\n".encode()


def run_message(cmd: str, inputs: list[str], outputs: list[str], dsid: str) -> str:
    """Return the commit message ``datalad run`` writes for an inline record."""
    record = {
        "chain": [],
        "cmd": cmd,
        "dsid": dsid,
        "exit": 0,
        "extra_inputs": [],
        "inputs": inputs,
        "outputs": outputs,
        "pwd": ".",
    }
    expanded = cmd.format(
        inputs=" ".join(shlex.quote(p) for p in inputs),
        outputs=" ".join(shlex.quote(p) for p in outputs),
    )
    subject = expanded[:40] + ("..." if len(expanded) > 40 else "")
    text = json.dumps(record, indent=1, sort_keys=True, ensure_ascii=False)
    return (
        f"[DATALAD RUNCMD] {subject}\n\n"
        "=== Do not change lines below ===\n"
        f"{text}\n"
        "^^^ Do not change lines above ^^^\n"
    )


@dataclass
class _Pipeline:
    """Generation state of one pipeline."""

    index: int
    raw: bytes
    raw_version: int = 0
    outputs: list[bytes] = field(default_factory=list)  # content of s1, s2, ...
    valid: int = 0  # steps 1..valid are consistent with the current raw file

    @property
    def depth(self) -> int:
        return len(self.outputs)

    @property
    def raw_path(self) -> str:
        return f"raw/{self.index}.txt"

    def step_path(self, step: int) -> str:
        return f"out/{self.index}/s{step}.txt"


@dataclass
class HistoryStats:
    """Counts describing a generated history."""

    records: int = 0
    commits: int = 0
    raw_edits: int = 0
    reruns: int = 0  # records that supersede an earlier record of the same output
    seconds: float = 0.0


class _Stream:
    """Buffered writer of a ``git fast-import`` stream for branch ``main``."""

    def __init__(self, sink: subprocess.Popen[bytes]) -> None:
        if sink.stdin is None:
            raise ValueError("git fast-import was started without a pipe to its input")
        self._out = sink.stdin
        self._buf = bytearray()
        self._time = START_TIME
        self.commits = 0

    def commit(self, message: str, files: dict[str, bytes]) -> None:
        ident = f"{AUTHOR_NAME} <{AUTHOR_EMAIL}> {self._time} +0000\n".encode()
        msg = message.encode()
        buf = self._buf
        buf += b"commit refs/heads/" + BRANCH.encode() + b"\n"
        buf += b"author " + ident + b"committer " + ident
        buf += b"data %d\n" % len(msg) + msg + b"\n"
        for path, content in files.items():
            buf += b"M 100644 inline " + path.encode() + b"\n"
            buf += b"data %d\n" % len(content) + content + b"\n"
        buf += b"\n"
        self._time += TIME_STEP
        self.commits += 1
        if len(buf) > 1 << 20:
            self.flush()

    def flush(self) -> None:
        view = memoryview(self._buf)
        while view:
            written = self._out.write(view)
            view = view[written or 0 :]
        view.release()
        self._buf.clear()

    def close(self) -> None:
        self._buf += b"done\n"
        self.flush()
        self._out.close()


def _git(path: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=path, check=True, capture_output=True)


def _generate(
    stream: _Stream, records: int, noise: int, pipelines: int, rng: random.Random
) -> HistoryStats:
    dsid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    stats = HistoryStats()

    stream.commit(
        "[DATALAD] new dataset\n",
        {
            ".datalad/config": f'[datalad "dataset"]\n\tid = {dsid}\n'.encode(),
            ".noannex": b"",
        },
    )
    pipes = [
        _Pipeline(index=k, raw=f"pipeline {k} raw data, version 0\n".encode())
        for k in range(pipelines)
    ]
    files = {"code/step.sh": STEP_SCRIPT.encode()}
    files.update({p.raw_path: p.raw for p in pipes})
    stream.commit("Add pipeline step script and raw data\n", files)

    raw_edit_probability = min(0.5, RAW_EDITS_PER_RECORD * records / max(noise, 1))
    remaining_records, remaining_noise = records, noise
    owed = 0  # records needed to make every pipeline consistent again
    note_edits = 0
    while remaining_records or remaining_noise:
        if rng.randrange(remaining_records + remaining_noise) < remaining_records:
            stale = [p for p in pipes if p.valid < p.depth]
            fresh = [p for p in pipes if p.valid == p.depth]
            rerun = bool(stale) and (
                remaining_records == owed or not fresh or rng.random() < RERUN_PROBABILITY
            )
            pipe = rng.choice(stale if rerun else fresh)
            step = pipe.valid + 1
            source = pipe.raw_path if step == 1 else pipe.step_path(step - 1)
            content = cksum_line(pipe.raw if step == 1 else pipe.outputs[step - 2])
            target = pipe.step_path(step)
            if rerun:
                pipe.outputs[step - 1] = content
                owed -= 1
                stats.reruns += 1
            else:
                pipe.outputs.append(content)
            pipe.valid = step
            stream.commit(run_message(STEP_CMD, [source], [target], dsid), {target: content})
            remaining_records -= 1
            stats.records += 1
            continue

        remaining_noise -= 1
        pipe = rng.choice(pipes)
        # Re-running the pipeline must fit in the remaining records, and the share
        # of superseding records must stay below REWORK_SHARE throughout the history.
        rework = stats.reruns + owed + pipe.valid
        if (
            rng.random() < raw_edit_probability
            and owed + pipe.valid <= remaining_records
            and rework <= REWORK_SHARE * (stats.records + 1)
        ):
            owed += pipe.valid
            pipe.raw_version += 1
            pipe.raw = (
                f"pipeline {pipe.index} raw data, version {pipe.raw_version}\n"
                f"measurement {rng.randrange(10**9)}\n"
            ).encode()
            pipe.valid = 0
            stream.commit(f"Update {pipe.raw_path}\n", {pipe.raw_path: pipe.raw})
            stats.raw_edits += 1
        else:
            note_edits += 1
            note = f"notes/{rng.randrange(NOTE_FILES)}.txt"
            stream.commit(f"Edit {note}\n", {note: f"note edit {note_edits}\n".encode()})

    if not all(p.valid == p.depth for p in pipes):
        raise RuntimeError("the generated tip must be consistent: every step current")
    stats.commits = stream.commits
    return stats


def build_history(
    path: Path, records: int, noise: int, pipelines: int = 10, seed: int = 0
) -> HistoryStats:
    """Create the history at ``path`` (absent or empty) and return its counts."""
    if records < 0 or noise < 0 or pipelines < 1:
        raise ValueError("records and noise must be >= 0, pipelines >= 1")
    started = time.perf_counter()
    path.mkdir(parents=True, exist_ok=True)
    if any(path.iterdir()):
        raise FileExistsError(f"{path} is not empty")
    _git(path, "init", "--quiet", f"--initial-branch={BRANCH}")
    rng = random.Random(seed)  # noqa: S311 -- reproducible bench data, not cryptography
    stats: HistoryStats | None = None
    with (
        tempfile.TemporaryFile() as errors,
        subprocess.Popen(
            ["git", "fast-import", "--quiet", "--done"],
            cwd=path,
            stdin=subprocess.PIPE,
            stderr=errors,
            bufsize=0,  # _Stream buffers; an unbuffered pipe cannot fail on close
        ) as proc,
    ):
        try:
            stream = _Stream(proc)
            stats = _generate(stream, records, noise, pipelines, rng)
            stream.close()
        except BrokenPipeError:
            stats = None  # fast-import died early; its stderr says why
        except BaseException:
            proc.kill()
            raise
        if proc.wait() != 0 or stats is None:
            errors.seek(0)
            message = errors.read().decode(errors="replace").strip()
            raise RuntimeError(f"git fast-import failed: {message}")
    _git(path, "reset", "--hard", "--quiet", BRANCH)
    stats.seconds = time.perf_counter() - started
    return stats


def make_history(path: Path, records: int, noise: int, pipelines: int = 10, seed: int = 0) -> None:
    """Create a DataLad-format history with ``records`` run commits at ``path``."""
    build_history(path, records, noise, pipelines, seed)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; prints a one-line summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("out_dir", type=Path, help="directory to create (absent or empty)")
    parser.add_argument("--records", type=int, required=True, help="number of run records")
    parser.add_argument("--noise", type=int, required=True, help="number of non-record commits")
    parser.add_argument("--pipelines", type=int, default=10, help="independent pipelines")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    args = parser.parse_args(argv)
    try:
        stats = build_history(args.out_dir, args.records, args.noise, args.pipelines, args.seed)
    except (ValueError, OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"make_history: error: {exc}", file=sys.stderr)
        return 1
    print(
        f"make_history: {stats.records} records, {stats.commits} commits "
        f"({stats.raw_edits} raw edits, {stats.reruns} superseding records) "
        f"in {stats.seconds:.2f}s -> {args.out_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
