"""Steps that need no command run: cut off, or their results reused (issue 10).

Just before a step would run on ``head``:

1. **Early cutoff** — a step stale only through upstream steps
   (:attr:`~rerund.core.plan.Step.may_cut_off`) whose inputs at ``head`` are
   identical to those at its own record's commit (upstream reproduced them) is
   not run. The caller notes it as reproduced
   (:func:`rerund.core.verified.mark_reproduced`), like a step that ran and
   changed nothing, so the next plan agrees.
2. **Reuse** — a step whose command already ran on exactly these inputs
   somewhere in the branch's history (:mod:`rerund.core.reuseindex`) gets its
   outputs restored from that commit, if their content is here, and a rerun
   record saying so: ``"rerund": {"reused": "<commit>"}``. ``datalad rerun``
   ignores the field and runs the command as usual.

Both fall back to running the step whenever anything is in doubt.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from rerund.core.dsconfig import DatasetConfig
from rerund.core.fingerprint import fingerprint, read_set, reuse_key, written_by
from rerund.core.gitrepo import WITHOUT_ANNEX_FILTER, GitRepo
from rerund.core.globbing import spec_matcher
from rerund.core.history import HistoryIndex
from rerund.core.plan import Step
from rerund.core.records import RunRecord, format_message
from rerund.core.reuseindex import ReuseIndex, ReusePolicy, key_at, read_policy
from rerund.errors import GitError
from rerund.run.execute import ExecOptions, StepContext, StepResult, save_changes

_ANNEX_MARK = "/annex/objects/"
_LINK_MODE = "120000"
_POINTER_MAX = 1024


@dataclass
class LeastWork:
    """Cutoff and reuse for the steps of one rerun in one repository."""

    repo: GitRepo
    config: DatasetConfig
    policy: ReusePolicy
    index: ReuseIndex | None
    """``None``: reuse is off."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _keys: dict[str, str] = field(default_factory=dict)
    """Each step's reuse key, from the inputs it was checked (and then run) with."""

    @classmethod
    def open(cls, repo: GitRepo, config: DatasetConfig, branch: str, *, reuse: bool) -> LeastWork:
        """Ready for ``repo``'s checked-out tip; files the branch's records for reuse.

        ``branch`` names the history index the planner keeps (its records are filed).
        """
        policy = read_policy(repo.path, enabled=reuse and config.reuse)
        if not policy.enabled:
            return cls(repo, config, policy, None)
        index = ReuseIndex.open(repo, branch)
        history = HistoryIndex.open(repo, branch)
        try:
            head = repo.text("rev-parse", "HEAD")
            if history.tip != head:
                history.update(head)
            index.update(history, config.substitutions, policy)
        finally:
            history.close()
        return cls(repo, config, policy, index)

    def close(self) -> None:
        if self.index is not None:
            self.index.close()

    def shortcut(
        self, work: GitRepo, step: Step, head: str, context: StepContext, options: ExecOptions
    ) -> StepResult | None:
        """The step's result without running it, or ``None``: it must run.

        ``work`` is a clean work tree of the repository at ``head`` (restored outputs
        are committed there). Safe to call from several threads.
        """
        started = time.monotonic()
        if _writes_over_its_inputs(step.record):
            return None  # what it read is among what it writes: no identity tells the inputs
        reads = read_set(step.record, written_by(self.repo, step.commit), self.config.substitutions)
        now = fingerprint(self.repo, head, reads)
        key = reuse_key(step.record, now, self.config.substitutions)
        with self._lock:  # the step's outputs never count as its inputs: the key stays true
            self._keys[step.commit] = key
        if step.may_cut_off and now == fingerprint(self.repo, step.commit, reads):
            note = f"rerund: cut off: every input is as {step.commit[:8]} read it\n"
            return self._result(step, "cut-off", None, head, started, options, note)
        if self.index is None or not self.policy.allows(step.record):
            return None
        with self._lock:
            found = self.index.lookup(key)
        if found is None:
            return None
        new_commit = self._restore(work, step, found, head, context)
        if new_commit is None:
            return None
        note = f"rerund: reused the outputs of {found}, which ran this command on these inputs\n"
        return self._result(step, "reused", new_commit, head, started, options, note)

    def note_commit(self, step: Step, commit: str | None) -> None:
        """File a new rerun commit of ``step``, so a later step (or rerun) may reuse it."""
        if self.index is None or commit is None or not self.policy.allows(step.record):
            return
        with self._lock:
            key = self._keys.get(step.commit)
        if key is None:
            key = key_at(self.repo, step.record, commit, self.config.substitutions)
        with self._lock:
            self.index.add(key, commit)

    def _result(  # noqa: PLR0917 - one private call shape for both shortcuts
        self,
        step: Step,
        outcome: str,
        new_commit: str | None,
        head: str,
        started: float,
        options: ExecOptions,
        note: str,
    ) -> StepResult:
        options.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = options.log_dir / f"{step.commit[:12]}.log"
        log_path.write_text(note, encoding="utf-8")
        return StepResult(
            step=step,
            outcome="cut-off" if outcome == "cut-off" else "reused",
            new_commit=new_commit,
            head=new_commit or head,
            exit_code=step.record.exit,
            duration_s=time.monotonic() - started,
            log_path=log_path,
        )

    def _restore(
        self, work: GitRepo, step: Step, source: str, head: str, context: StepContext
    ) -> str | None:
        """Put ``source``'s outputs in the work tree and commit them; ``None``: cannot."""
        writes = read_set(step.record, (), self.config.substitutions).writes
        written = set(written_by(self.repo, source))
        prefixes = [m.literal_prefix for m in writes]
        where = sorted(written | set(prefixes)) if all(prefixes) else []

        def outputs(commit: str) -> dict[str, tuple[str, str]]:
            found = _entries_of(self.repo, commit, where, recursive_all=not where)
            return {
                path: entry
                for path, entry in found.items()
                if path in written or any(m.covers(path) for m in writes)
            }

        at_source, at_head = outputs(source), outputs(head)
        if not self._content_here(at_source):
            return None
        bring = sorted(path for path, entry in at_source.items() if at_head.get(path) != entry)
        drop = sorted(path for path in at_head if path not in at_source)
        if not bring and not drop:
            return None  # nothing to restore: let the step run and decide
        git = (*WITHOUT_ANNEX_FILTER, "--literal-pathspecs")
        try:
            if bring:
                work.run(*git, "checkout", source, "--", *bring)
            if drop:
                work.run(*git, "rm", "--quiet", "--", *drop)
        except GitError:
            work.run(*WITHOUT_ANNEX_FILTER, "reset", "--hard", "--quiet", head)
            return None
        rerun = step.record.rerun_of(step.commit, dsid=context.dsid, exit_code=step.record.exit)
        record = RunRecord({**rerun.fields, "rerund": {"reused": source}})
        if self.config.record_sidecar:
            return save_changes(work, step.summary, record, [], context)
        # Everything is staged already and the tree was clean: commit the index as it is.
        skip_hooks = ("--no-verify",) if self.config.only_annex_hooks else ()
        message = format_message(step.summary, record, sidecar=False)
        work.run(*git, "commit", "--quiet", *skip_hooks, "-F", "-", stdin=message.encode())
        return work.text("rev-parse", "HEAD")

    def _content_here(self, entries: dict[str, tuple[str, str]]) -> bool:
        """Every annexed file among ``entries`` has its content in this repository."""
        if not self.config.is_annex or not entries:
            return True
        texts = self.repo.read_objects(sorted({oid for _, oid in entries.values()}))
        objects = self.repo.common_dir / "annex" / "objects"
        for mode, oid in entries.values():
            info = texts.get(oid)
            data = info.data if info is not None else b""
            if mode == _LINK_MODE and _ANNEX_MARK.encode() in data:
                located = objects / data.decode("utf-8", "surrogateescape").split(_ANNEX_MARK)[1]
                if not located.is_file():
                    return False
            elif data.startswith(_ANNEX_MARK.encode()) and len(data) < _POINTER_MAX:
                key = PurePosixPath(data.decode("utf-8", "replace").strip()).name
                if not self.repo.annex("contentlocation", key, check=False).strip():
                    return False  # an unlocked file whose content is not here
        return True


def _entries_of(
    repo: GitRepo, commit: str, paths: list[str], *, recursive_all: bool = False
) -> dict[str, tuple[str, str]]:
    """(mode, object id) of the files at or under ``paths`` in ``commit``."""
    if not paths and not recursive_all:
        return {}
    out = repo.run(
        "--literal-pathspecs", "ls-tree", "-r", "-z", "--full-tree", commit, "--", *paths
    )
    found: dict[str, tuple[str, str]] = {}
    for entry in out.decode("utf-8", "surrogateescape").split("\0"):
        meta, _, path = entry.partition("\t")
        parts = meta.split()
        if len(parts) == 3 and parts[1] == "blob":
            found[path] = (parts[0], parts[2])
    return found


def _writes_over_its_inputs(record: RunRecord) -> bool:
    """Whether an output (``.``, a directory, a glob) covers one of the declared inputs."""
    outputs = [spec_matcher(spec, record.pwd) for spec in record.outputs]
    inputs = [spec_matcher(spec, record.pwd) for spec in [*record.inputs, *record.extra_inputs]]
    return any(out.covers(inp.literal_prefix or ".") for out in outputs for inp in inputs)
