"""Retries for short transient git operations (fetch, push, annex copy), as data.

Only errors :class:`~rerund.errors.GitError` classifies as transient are
retried; each retry waits a jittered, capped, growing delay; attempts are few.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tenacity import (
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from rerund.errors import GitError

T = TypeVar("T")

ATTEMPTS = 4
WAIT_MULTIPLIER_S = 0.5
WAIT_MAX_S = 8.0


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, GitError) and exc.transient


def transient_git(operation: Callable[[], T]) -> Callable[[], T]:
    """``operation`` wrapped to retry transient git failures a few times."""
    wrapped: Callable[[], T] = retry(
        retry=retry_if_exception(_is_transient),
        stop=stop_after_attempt(ATTEMPTS),
        wait=wait_random_exponential(multiplier=WAIT_MULTIPLIER_S, max=WAIT_MAX_S),
        reraise=True,
    )(operation)
    return wrapped
