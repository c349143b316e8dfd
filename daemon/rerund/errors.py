"""The one exception hierarchy of rerund.

Everything rerund raises on purpose derives from :class:`RerundError`, so the
command line and the service can turn any of them into one clear line.
"""

from __future__ import annotations


class RerundError(Exception):
    """Root of every error rerund raises deliberately."""


class RecordError(RerundError):
    """A commit looks like a run record but cannot be used as one."""

    def __init__(self, commit: str, problem: str) -> None:
        super().__init__(f"run record in commit {commit[:12]} {problem}")
        self.commit = commit
        self.problem = problem


class PlaceholderError(RerundError):
    """A command or an input/output spec names a placeholder nobody defines."""


class GitError(RerundError):
    """A git or git-annex invocation failed."""

    def __init__(self, args: list[str], returncode: int, stderr: str) -> None:
        detail = _reason(stderr) or f"exit {returncode}"
        super().__init__(f"`{' '.join(args[:3])}` failed: {detail}")
        self.args_run = args
        self.returncode = returncode
        self.stderr = stderr

    @property
    def transient(self) -> bool:
        """Whether retrying the same call later may succeed (network, locks)."""
        text = self.stderr.lower()
        if any(marker in text for marker in _PERMANENT_MARKERS):
            return False  # git adds "could not read from remote" to these too
        return any(marker in text for marker in _TRANSIENT_MARKERS)


def _reason(stderr: str) -> str:
    """git's first ``fatal:``/``error:`` line, else its last line: the cause, not advice.

    git ends many failures with advice ("... and the repository exists.") after
    the line that names what went wrong.
    """
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return next((line for line in lines if line.startswith(("fatal:", "error:"))), "") or (
        lines[-1] if lines else ""
    )


_PERMANENT_MARKERS = (
    "does not appear to be a git repository",
    "repository not found",
    "authentication failed",
    "permission denied",
    "couldn't find remote ref",
)

_TRANSIENT_MARKERS = (
    "could not read from remote",
    "connection timed out",
    "connection reset",
    "connection refused",
    "temporary failure",
    "early eof",
    "the remote end hung up",
    "index.lock",
    "unable to lock",
    "cannot lock ref",
)


class RevisionError(RerundError):
    """A revision the user named does not exist or is not usable."""


class NotADatasetError(RerundError):
    """The directory is not a git repository rerund can work in."""


class DirtyTreeError(RerundError):
    """The work tree has changes, so a rerun could not attribute its results."""


class InputError(RerundError):
    """A declared input does not exist or its content cannot be obtained."""


class StepFailedError(RerundError):
    """A rerun command exited with an unexpected code or ran out of time."""

    def __init__(
        self,
        commit: str,
        message: str,
        log_path: str | None = None,
        *,
        exit_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.commit = commit
        self.log_path = log_path
        self.exit_code = exit_code
        """The command's own exit status when it ran to its end; ``None`` when it was stopped."""


class ConfigError(RerundError):
    """The configuration file is unreadable or holds an invalid value."""


class PublishError(RerundError):
    """Regenerated commits could not be pushed back."""


class StepCancelledError(StepFailedError):
    """A step was stopped because the service is shutting down; its job runs again later."""


class StepSupersededError(StepFailedError):
    """A newer push made the step's job moot; its cluster work was cancelled."""
