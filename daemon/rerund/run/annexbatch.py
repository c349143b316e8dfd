"""One ``git annex add --batch`` process serving every step of a rerun.

Starting git-annex for each step's ``git annex add`` costs ~65 ms (it runs some
thirty git processes); a batch process answers each further file in ~10 ms.
In batch mode git-annex ingests a file at once (the file becomes its symlink,
the location log is journalled) but stages it only when the batch ends, so
the caller stages the resulting symlinks itself before committing. When the
batch ends, git-annex stages the same symlinks again — a no-op — and commits
its journal.
"""

from __future__ import annotations

import json
import subprocess
from types import TracebackType
from typing import IO

from rerund.core.gitrepo import GitRepo
from rerund.errors import GitError

ANNEX_DOTFILES = ("-c", "annex.dotfiles=true")
"""DataLad adds with this: files under dot-directories (``.datalad/runinfo``) follow
``annex.largefiles`` like any other instead of always going to git."""


class BatchAdd:
    def __init__(self, repo: GitRepo) -> None:
        self._repo = repo
        self._process: subprocess.Popen[str] | None = None

    def add(self, paths: list[str]) -> dict[str, str | None]:
        """Annex (or, for small files under ``annex.largefiles``, leave for git) each path.

        Returns each path's annex key, ``None`` for a file left for git (or not known).
        """
        single = [path for path in paths if "\n" in path]  # cannot travel on a batch line
        if single:
            self._repo.annex("add", "--quiet", *ANNEX_DOTFILES, "--", *single)
        return {path: self._add_one(path) for path in paths if "\n" not in path}

    def _add_one(self, path: str) -> str | None:
        process, stdin, stdout = self._started()
        stdin.write(path + "\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise GitError(["git", "annex", "add", "--batch"], process.wait(), "ended early")
        answer = json.loads(line)
        if not answer.get("success", False):
            problem = "; ".join(answer.get("error-messages") or []) or f"could not add {path}"
            raise GitError(["git", "annex", "add", "--batch"], 1, problem)
        key = answer.get("key")
        return str(key) if key else None

    def _started(self) -> tuple[subprocess.Popen[str], IO[str], IO[str]]:
        if self._process is None:
            self._process = subprocess.Popen(
                ["git", "annex", "add", *ANNEX_DOTFILES, "--batch", "--json"],
                cwd=self._repo.path,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                # Out of the terminal's process group: Ctrl-C stops rerund's step,
                # while this batch lives on to stage and journal what was already added.
                start_new_session=True,
            )
        process = self._process
        if process.stdin is None or process.stdout is None:  # cannot happen with PIPE
            raise GitError(["git", "annex", "add", "--batch"], -1, "no pipes")
        return process, process.stdin, process.stdout

    def close(self) -> None:
        """End the batch: git-annex stages what it added and commits its journal."""
        if self._process is None:
            return
        process, stdin, stdout = self._started()
        self._process = None
        stdin.close()
        stdout.read()
        stdout.close()
        if process.wait() != 0:
            raise GitError(["git", "annex", "add", "--batch"], process.returncode, "")

    def __enter__(self) -> BatchAdd:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
