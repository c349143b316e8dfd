"""Helpers for driving real git, datalad and the real ``rerund`` command line."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def run(
    *argv: str, cwd: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr}")
    return done


def git(*args: str, cwd: Path) -> str:
    return run("git", *args, cwd=cwd).stdout.strip()


def datalad(*args: str, cwd: Path | None = None) -> str:
    return run("datalad", *args, cwd=cwd).stdout


def rerund(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The real command line, as a user runs it."""
    return run(sys.executable, "-m", "rerund", *args, cwd=cwd, check=check)


@dataclass(frozen=True)
class Dataset:
    path: Path

    def write(self, relpath: str, text: str) -> None:
        target = self.path / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink():
            target.unlink()
        target.write_text(text, encoding="utf-8")

    def read(self, relpath: str) -> str:
        return (self.path / relpath).read_text(encoding="utf-8")

    def git(self, *args: str) -> str:
        return git(*args, cwd=self.path)

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")

    def save(self, message: str, *paths: str) -> str:
        datalad("save", "-m", message, *paths, cwd=self.path)
        return self.head()

    def run_step(self, message: str, inputs: str, outputs: str, cmd: str) -> str:
        datalad("run", "-m", message, "-i", inputs, "-o", outputs, cmd, cwd=self.path)
        return self.head()

    def commit_record(self, summary: str, body: str) -> str:
        """Commit (empty) a hand-written run record with ``body`` between the delimiters."""
        message = (
            f"[DATALAD RUNCMD] {summary}\n\n=== Do not change lines below ===\n{body}\n"
            "^^^ Do not change lines above ^^^"
        )
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.head()

    def record(self, rev: str = "HEAD") -> dict[str, Any]:
        message = self.git("log", "-1", "--format=%B", rev)
        body = message.split("=== Do not change lines below ===\n", 1)[1]
        parsed: dict[str, Any] = json.loads(body.split("\n^^^ Do not change lines above ^^^")[0])
        return parsed

    def record_commit(self, summary: str, rev: str = "HEAD") -> str:
        """The newest run record (up to ``rev``) whose summary is exactly ``summary``."""
        for line in self.git("log", "--format=%H %s", rev).splitlines():
            sha, _, subject = line.partition(" ")
            if subject == f"[DATALAD RUNCMD] {summary}":
                return sha
        raise AssertionError(f"no run record {summary!r}")

    def subjects(self, rev_range: str) -> list[str]:
        return self.git("log", "--reverse", "--format=%s", rev_range).splitlines()

    def plan(self, *args: str) -> dict[str, Any]:
        out = rerund("plan", "--json", *args, cwd=self.path).stdout
        parsed: dict[str, Any] = json.loads(out)
        return parsed

    def status(self) -> str:
        return self.git("status", "--porcelain")


def xz_bomb(mebibytes: int) -> bytes:
    """A few hundred bytes of xz per MiB of output: concatenated streams of one MiB each."""
    import lzma  # noqa: PLC0415

    return lzma.compress(b"a" * (1 << 20), preset=9) * mebibytes


def commit_sidecar_record(ds: Dataset, sidecar: bytes, summary: str = "sidecar") -> str:
    """A run record whose JSON lives in the given sidecar file (kept in git, not the annex)."""
    record_id = "0123456789abcdef0123456789abcdef"
    path = ds.path / ".datalad" / "runinfo" / record_id
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(sidecar)
    ds.git("-c", "annex.largefiles=nothing", "add", str(path))
    ds.git("commit", "-qm", "sidecar")
    ds.git("reset", "-q", "--soft", "HEAD~1")
    return ds.commit_record(summary, json.dumps(record_id))
