"""A thin, typed runner for git and git-annex in one repository.

The core calls ``git`` directly rather than through GitPython: a plan must
answer in tens of milliseconds and GitPython alone costs ~80 ms to import.
Every failure becomes a :class:`~rerund.errors.GitError`, which classifies
itself as transient or permanent in one place.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from rerund.errors import GitError, NotADatasetError

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
NULL_SHA = "0" * 40

# Options for git calls that touch only plain git content: without them, every
# git call in an annex repository starts a git-annex filter process (~40 ms).
WITHOUT_ANNEX_FILTER = (
    "-c",
    "filter.annex.process=",
    "-c",
    "filter.annex.clean=",
    "-c",
    "filter.annex.smudge=",
)

# Commits rerund writes must not depend on the user's editor, pager or locale.
_BASE_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "LC_ALL": "C.UTF-8"}


@dataclass(frozen=True)
class ObjectInfo:
    """What ``git cat-file --batch`` says about one object."""

    oid: str
    kind: str
    data: bytes


class GitRepo:
    """One git repository (work tree or bare) and the commands run in it."""

    def __init__(self, path: Path, env: Mapping[str, str] | None = None) -> None:
        self.path = path
        self._env = {**os.environ, **_BASE_ENV, **(env or {})}

    @property
    def env(self) -> Mapping[str, str]:
        """The environment every command in this repository runs with."""
        return self._env

    @classmethod
    def discover(cls, path: Path) -> GitRepo:
        """The repository containing ``path``: its top level, or the bare repository itself."""
        if not path.is_dir():
            problem = "is not a directory" if path.exists() else "does not exist"
            raise NotADatasetError(f"{path} {problem}")
        probe = subprocess.run(
            ["git", "rev-parse", "--is-bare-repository", "--absolute-git-dir"],
            cwd=path,
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode != 0:
            raise NotADatasetError(f"{path} is not inside a git repository")
        bare, git_dir = probe.stdout.split("\n")[:2]
        if bare == "true":
            return cls(Path(git_dir))
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=path,
            capture_output=True,
            text=True,
            check=True,
        )
        return cls(Path(top.stdout.strip()))

    def run(
        self,
        *args: str,
        stdin: bytes | None = None,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> bytes:
        """Run ``git ARGS`` and return its standard output."""
        return self._run(["git", *args], stdin=stdin, check=check, env=env)

    def annex(self, *args: str, check: bool = True) -> bytes:
        """Run ``git annex ARGS`` and return its standard output."""
        return self._run(["git", "annex", *args], stdin=None, check=check, env=None)

    def _run(
        self,
        argv: list[str],
        *,
        stdin: bytes | None,
        check: bool,
        env: Mapping[str, str] | None,
    ) -> bytes:
        done = subprocess.run(
            argv,
            cwd=self.path,
            input=stdin,
            capture_output=True,
            check=False,
            env={**self._env, **env} if env else self._env,
        )
        if check and done.returncode != 0:
            raise GitError(argv, done.returncode, done.stderr.decode("utf-8", "replace"))
        return done.stdout

    def succeeds(self, *args: str) -> bool:
        """Whether ``git ARGS`` exits 0 (for the commands that answer by exit code)."""
        done = subprocess.run(
            ["git", *args], cwd=self.path, capture_output=True, check=False, env=self._env
        )
        return done.returncode == 0

    def text(self, *args: str) -> str:
        """Run ``git ARGS`` and return its output as text without the last newline."""
        return self.run(*args).decode("utf-8").rstrip("\n")

    def resolve(self, rev: str) -> str | None:
        """Full sha of the commit ``rev`` names, or ``None`` when there is none."""
        out = self.run("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
        return out.decode().strip() or None

    @cached_property
    def common_dir(self) -> Path:
        """The repository's shared git directory (the same for all its work trees)."""
        common = Path(self.text("rev-parse", "--git-common-dir"))
        return common if common.is_absolute() else (self.path / common).resolve()

    def read_objects(self, names: Iterable[str]) -> dict[str, ObjectInfo | None]:
        """Read many objects (``<rev>:<path>`` names or shas) with one git process."""
        wanted = list(dict.fromkeys(names))
        if not wanted:
            return {}
        payload = "".join(f"{name}\n" for name in wanted).encode("utf-8")
        out = self.run("cat-file", "--batch", stdin=payload)
        found: dict[str, ObjectInfo | None] = {}
        pos = 0
        for name in wanted:
            end = out.index(b"\n", pos)
            header = out[pos:end].decode("utf-8")
            pos = end + 1
            if header.endswith(" missing") or header.endswith(" ambiguous"):
                found[name] = None
                continue
            oid, kind, size = header.split(" ")
            data = out[pos : pos + int(size)]
            pos += int(size) + 1
            found[name] = ObjectInfo(oid, kind, data)
        return found

    def status_porcelain(self) -> str:
        """``git status`` as DataLad judges cleanliness (untracked files count)."""
        return self.text(
            "status", "--porcelain", "--untracked-files=normal", "--ignore-submodules=none"
        )
