"""Run a plan's independent steps side by side; publish as one after another (issue 10).

* **Order.** Step *i* waits for an earlier step *j* when *j* is among its
  upstream steps, or when what either writes overlaps what the other reads or
  writes (by path, conservatively). Everything else may run at once, up to
  ``slots`` steps (and whatever shared limit ``slot`` enforces).
* **Isolation.** Each step runs in a scratch work tree of its own
  (``git worktree add``), checked out at its *base*: the plan's base commit with
  the commits of its finished dependencies laid on top. No step sees another's
  half-written files; objects (and annex content) are shared.
* **Publication.** The finished steps' commits are laid, in plan order, onto
  the plan's base (:mod:`rerund.run.linearize`): linear history, one commit per
  step, the trees running them one after another gives.
* **Failure.** A failing step stops only its dependants; independent steps
  finish. Its scratch tree is kept next to its log.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

from rerund.core.fingerprint import read_set, written_by
from rerund.core.gitrepo import WITHOUT_ANNEX_FILTER, GitRepo
from rerund.core.plan import Plan, Step
from rerund.errors import RerundError, StepCancelledError
from rerund.run.execute import ExecOptions, StepContext, StepResult, execute_step
from rerund.run.leastwork import LeastWork
from rerund.run.linearize import Made, linearize
from rerund.run.restore import partial_dir

RunStep = Callable[[GitRepo, Step, str, StepContext, ExecOptions], StepResult]
_WORKTREE_LOCK = threading.Lock()


@dataclass
class Outcome:
    """What happened to each step (by position in the plan)."""

    results: dict[int, StepResult] = field(default_factory=dict)
    made: dict[int, Made] = field(default_factory=dict)
    """Steps that committed: their commit and the base it was made on."""
    failures: dict[int, RerundError] = field(default_factory=dict)
    not_run: set[int] = field(default_factory=set)
    kept: dict[int, Path] = field(default_factory=dict)
    interrupted: bool = False


def dependencies(repo: GitRepo, steps: Sequence[Step]) -> list[set[int]]:
    """For each step, the earlier steps it must wait for."""
    by_commit = {step.commit: position for position, step in enumerate(steps)}
    touches = [_paths(repo, step) for step in steps]
    deps: list[set[int]] = []
    for position, step in enumerate(steps):
        mine = {by_commit[c] for c in step.after if by_commit.get(c, position) < position}
        reads, writes = touches[position]
        for earlier in range(position):
            their_reads, their_writes = touches[earlier]
            if (
                _overlap(writes, their_writes)
                or _overlap(reads, their_writes)
                or _overlap(writes, their_reads)
            ):
                mine.add(earlier)
        deps.append(mine)
    return deps


def is_chain(deps: Sequence[set[int]]) -> bool:
    """Every step waits for the one before it: nothing could run side by side."""
    return all(position - 1 in mine for position, mine in enumerate(deps) if position)


def related(deps: Sequence[set[int]], positions: set[int]) -> set[int]:
    """``positions`` with everything upstream and downstream of them."""
    up = set(positions)
    changed = True
    while changed:
        changed = False
        for position in sorted(up):
            new = deps[position] - up
            if new:
                up |= new
                changed = True
    down = set(positions)
    for position, mine in enumerate(deps):
        if mine & down:
            down.add(position)
    return up | down


class Scheduler:
    """Runs one plan on ``repo`` (whose HEAD is the plan's base) with ``slots`` at once."""

    def __init__(
        self,
        repo: GitRepo,
        plan: Plan,
        context: StepContext,
        options: ExecOptions,
        *,
        slots: int,
        base: str,
        run_step: RunStep = execute_step,
        least: LeastWork | None = None,
        slot: Callable[[], AbstractContextManager[object]] = nullcontext,
        on_start: Callable[[int, Step], None] | None = None,
        on_step: Callable[[int, StepResult], None] | None = None,
        on_failure: Callable[[int, RerundError], None] | None = None,
        scratch_dir: Path | None = None,
    ) -> None:
        self.repo, self.plan, self.options = repo, plan, options
        # A batch `git annex add` belongs to one work tree; each scratch tree adds its own.
        self.context = replace(context, annex_add=None)
        self.slots, self.base = max(1, slots), base
        self.run_step, self.least, self.slot = run_step, least, slot
        self.on_start, self.on_step, self.on_failure = on_start, on_step, on_failure
        self.deps = dependencies(repo, plan.steps)
        self._lock = threading.Lock()
        self._scratch_root = scratch_dir
        self._idle: dict[str, Path] = {}
        """Clean scratch trees of finished steps, by the commit they hold."""
        self._scratch = Path()

    def run(self) -> Outcome:
        outcome = Outcome()
        pending = list(range(len(self.plan.steps)))
        running: dict[Future[None], int] = {}
        cancel = self.options.cancel
        # Outside the repository: rerund never runs a command inside a .git directory.
        self._scratch = Path(tempfile.mkdtemp(prefix="rerund-steps-", dir=self._scratch_root))
        try:
            self._loop(outcome, pending, running)
        finally:
            _remove(self._scratch)
            _prune(self.repo)
        outcome.interrupted = any(
            isinstance(exc, StepCancelledError) for exc in outcome.failures.values()
        ) or (cancel is not None and cancel.is_set())
        return outcome

    def _loop(self, outcome: Outcome, pending: list[int], running: dict[Future[None], int]) -> None:
        cancel = self.options.cancel
        with ThreadPoolExecutor(self.slots, thread_name_prefix="rerund-step") as pool:
            while pending or running:
                stopping = cancel is not None and cancel.is_set()
                for position in list(pending):
                    if stopping or len(running) >= self.slots:
                        break
                    mine = self.deps[position]
                    if mine & (set(outcome.failures) | outcome.not_run):
                        pending.remove(position)
                        outcome.not_run.add(position)
                    elif mine <= set(outcome.results):
                        pending.remove(position)
                        base = self._base_for(position, outcome)
                        if self.on_start is not None:
                            self.on_start(position, self.plan.steps[position])
                        future = pool.submit(self._one, position, base, outcome)
                        running[future] = position
                if stopping:
                    outcome.not_run.update(pending)
                    pending.clear()
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    running.pop(future)
                    future.result()  # _one reports into outcome; a bug surfaces here

    def finish(self, outcome: Outcome, positions: set[int] | None = None) -> list[str]:
        """Lay the commits of ``positions`` (default: all finished) on the base, in plan order.

        Returns the new commits; each step's result is updated to its commit there.
        """
        chosen = sorted(p for p in outcome.made if positions is None or p in positions)
        commits = linearize(self.repo, self.base, [outcome.made[p] for p in chosen])
        final = dict(zip(chosen, commits, strict=True))
        head = self.base
        for position in sorted(outcome.results):
            if positions is not None and position not in positions:
                continue
            result = outcome.results[position]
            if position in final:
                head = final[position]
                outcome.results[position] = replace(result, new_commit=head, head=head)
            else:
                outcome.results[position] = replace(result, head=head)
        return commits

    def _base_for(self, position: int, outcome: Outcome) -> str:
        """The plan's base with the commits of this step's (transitive) dependencies."""
        closure = related_up(self.deps, position)
        made = [outcome.made[p] for p in sorted(closure) if p in outcome.made]
        if not made:
            return self.base
        return linearize(self.repo, self.base, made)[-1]

    def _one(self, position: int, base: str, outcome: Outcome) -> None:
        step = self.plan.steps[position]
        with self.slot():
            with self._lock:  # a finished step's clean tree at this base saves a checkout
                tree = self._idle.pop(base, None) or self._scratch / f"{step.commit[:12]}"
            try:
                work = GitRepo(tree, env=self.repo.env) if tree.exists() else None
                work = work or self._checkout(tree, base)
                result = self._run(work, step, base)
            except RerundError as exc:
                kept = self._keep(tree, step) if tree.exists() else None
                with self._lock:
                    outcome.failures[position] = exc
                    if kept is not None:
                        outcome.kept[position] = kept
                if self.on_failure is not None:
                    self.on_failure(position, exc)
                return
        with self._lock:
            self._idle[result.head] = tree  # removed with the scratch directory
            outcome.results[position] = result
            if result.new_commit is not None:
                outcome.made[position] = Made(base, result.new_commit)
        if self.on_step is not None:
            self.on_step(position, result)

    def _run(self, work: GitRepo, step: Step, base: str) -> StepResult:
        if self.least is not None:
            shortcut = self.least.shortcut(work, step, base, self.context, self.options)
            if shortcut is not None:
                return shortcut
        return self.run_step(work, step, base, self.context, self.options)

    def _checkout(self, tree: Path, base: str) -> GitRepo:
        _remove(tree)
        tree.parent.mkdir(parents=True, exist_ok=True)
        with _WORKTREE_LOCK:  # git reads every worktree's files while adding one
            self.repo.run(
            *WITHOUT_ANNEX_FILTER, "-c", "core.hooksPath=/dev/null",
                "worktree", "add", "--quiet", "--detach", str(tree), base,
            )  # fmt: skip
        return GitRepo(tree, env=self.repo.env)

    def _keep(self, tree: Path, step: Step) -> Path:
        """The failed step's scratch tree goes next to its log, for inspection."""
        keep = partial_dir(self.options.log_dir / f"{step.commit[:12]}.log")
        _remove(keep)
        shutil.move(tree, keep)
        return keep


def related_up(deps: Sequence[set[int]], position: int) -> set[int]:
    """Every step ``position`` waits for, directly or not."""
    found: set[int] = set()
    todo = list(deps[position])
    while todo:
        earlier = todo.pop()
        if earlier not in found:
            found.add(earlier)
            todo.extend(deps[earlier])
    return found


def _paths(repo: GitRepo, step: Step) -> tuple[list[str], list[str]]:
    """Path prefixes a step reads and writes ("" is everything)."""
    written = written_by(repo, step.commit)
    reads = read_set(step.record, written)
    read = [m.literal_prefix for m in reads.reads] + list(reads.named)
    write = [m.literal_prefix for m in reads.writes] + written
    return read, write


def _overlap(ours: list[str], theirs: list[str]) -> bool:
    return any(_nested(a, b) for a in ours for b in theirs)


def _nested(a: str, b: str) -> bool:
    if not a or not b or a == b:
        return True
    return a.startswith(b + "/") or b.startswith(a + "/")


def _remove(tree: Path) -> None:
    if tree.exists() or tree.is_symlink():
        shutil.rmtree(tree, onerror=_writable)


def _writable(func: Callable[[str], object], path: str, _: object) -> None:
    parent = Path(path).parent
    parent.chmod(0o755)
    func(path)


def _prune(repo: GitRepo) -> None:
    repo.run("worktree", "prune", check=False)
