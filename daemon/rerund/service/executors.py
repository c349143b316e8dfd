"""The executor of each repository: ``executor = "local" | "slurm"`` in its settings."""

from __future__ import annotations

from collections.abc import Callable

from rerund.core.gitrepo import GitRepo
from rerund.core.plan import Step
from rerund.run.execute import ExecOptions, StepContext, StepResult
from rerund.run.local import Executor
from rerund.settings import Settings


class ByRepository:
    """Hands each step to its repository's executor (local unless configured otherwise)."""

    def __init__(self, settings: Callable[[], Settings], local: Executor, slurm: Executor) -> None:
        self._settings = settings
        self._local = local
        self._slurm = slurm

    async def run_step(
        self, repo: GitRepo, step: Step, head: str, context: StepContext, options: ExecOptions
    ) -> StepResult:
        scope = options.scope
        configured = self._settings().repo(scope.repo) if scope is not None else None
        if configured is not None and configured.executor == "slurm":
            return await self._slurm.run_step(repo, step, head, context, options)
        return await self._local.run_step(repo, step, head, context, options)
