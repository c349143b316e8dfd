"""The executor backends' common interface, and the local one: a step as a process here.

The daemon hands each step to an ``Executor``; getting inputs, saving and
committing stay with the caller, so git keeps one writer whatever the backend.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from rerund.core.gitrepo import GitRepo
from rerund.core.plan import Step
from rerund.run.execute import ExecOptions, StepContext, StepResult, execute_step


class Executor(Protocol):
    """Where a step's command runs."""

    async def run_step(
        self, repo: GitRepo, step: Step, head: str, context: StepContext, options: ExecOptions
    ) -> StepResult: ...


class LocalExecutor:
    """Runs each step as a local process in a worker thread."""

    async def run_step(
        self, repo: GitRepo, step: Step, head: str, context: StepContext, options: ExecOptions
    ) -> StepResult:
        return await asyncio.to_thread(execute_step, repo, step, head, context, options)
