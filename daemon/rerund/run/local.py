"""The executor backends' common interface, and the local one: a step as a process here.

The daemon hands each step to an ``Executor``; getting inputs, saving and
committing stay with the caller, so git keeps one writer whatever the backend.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from concurrent.futures import ThreadPoolExecutor
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
    """Runs each step as a local process, waited for in a thread of its own pool.

    Not the event loop's default pool: steps last minutes and would leave no
    thread for the store, health checks and lease renewals.
    """

    def __init__(self, max_steps: int = 1) -> None:
        self._pool = ThreadPoolExecutor(max_steps, thread_name_prefix="rerund-step")

    async def run_step(
        self, repo: GitRepo, step: Step, head: str, context: StepContext, options: ExecOptions
    ) -> StepResult:
        loop = asyncio.get_running_loop()
        call = functools.partial(execute_step, repo, step, head, context, options)
        return await loop.run_in_executor(self._pool, contextvars.copy_context().run, call)
