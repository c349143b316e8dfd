"""Rerun one step in a work tree and save what it produced (SPEC §3).

The sequence mirrors ``datalad rerun`` for a single record: fetch the inputs,
unlock or remove the outputs, run the expanded command through ``/bin/sh -c``
with a time limit and a captured log, then commit every change with a rerun
record — or, when nothing changed, no commit at all.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from rerund.core.dsconfig import DatasetConfig
from rerund.core.gitrepo import WITHOUT_ANNEX_FILTER, GitRepo
from rerund.core.globbing import SpecMatcher, expand_specs, literal_part, spec_matcher
from rerund.core.placeholders import expand_command, format_io_specs, named_paths
from rerund.core.plan import Step
from rerund.core.records import RunRecord, encode_sidecar, format_message, sidecar_id
from rerund.errors import (
    GitError,
    InputError,
    StepCancelledError,
    StepFailedError,
)
from rerund.run.annexbatch import BatchAdd
from rerund.run.confine import Confinement
from rerund.run.process import start_group, stop_group
from rerund.run.subdatasets import by_dataset

Outcome = Literal["committed", "identical", "cut-off", "reused"]
"""``cut-off`` and ``reused`` run no command (see :mod:`rerund.run.leastwork`)."""


@dataclass(frozen=True)
class ExecOptions:
    log_dir: Path
    timeout_s: float | None = None
    cancel: threading.Event | None = None
    """Set by a shutting-down service: the running command is stopped, nothing saved."""
    max_log_bytes: int | None = None
    """A command writing more than this to its log is stopped (checked with ``cancel``)."""


@dataclass(frozen=True)
class StepContext:
    """What every step of one rerun shares: the dataset's id and configuration."""

    dsid: str | None
    config: DatasetConfig
    annex_add: BatchAdd | None = None
    """A batch ``git annex add`` shared by the steps (else each step starts its own)."""


@dataclass(frozen=True)
class StepResult:
    step: Step
    outcome: Outcome
    new_commit: str | None
    head: str
    """HEAD after the step: the new commit, or the unchanged HEAD."""
    exit_code: int
    duration_s: float
    log_path: Path
    warnings: tuple[str, ...] = ()
    """What the step could not do and did without (e.g. content of an implicit input)."""


@dataclass(frozen=True)
class _Prepared:
    command: str
    exec_dir: Path
    relock: list[str]
    """Annexed outputs that were unlocked or removed and must be annexed again."""
    warnings: tuple[str, ...] = ()


def execute_step(
    repo: GitRepo, step: Step, head: str, context: StepContext, options: ExecOptions
) -> StepResult:
    """Rerun ``step`` on ``head``, the current HEAD of ``repo``'s clean work tree.

    Raises :class:`InputError` before anything runs when inputs are missing,
    and :class:`StepFailedError` (leaving the tree as the command left it) when
    the command fails or times out.
    """
    started = time.monotonic()
    options.log_dir.mkdir(parents=True, exist_ok=True)
    log_path = options.log_dir / f"{step.commit[:12]}.log"
    prepared = _prepare(repo, step, context.config)
    exit_code = _run_command(prepared, step, log_path, options)
    if exit_code not in (0, step.record.exit):
        raise StepFailedError(
            step.commit,
            f"step {step.commit[:8]} exited with {exit_code} (recorded: {step.record.exit});"
            f" its changes were not committed, see {log_path}",
            str(log_path),
        )
    if repo.text("rev-parse", "HEAD") != head:
        raise StepFailedError(
            step.commit,
            f"step {step.commit[:8]} made commits of its own; rerund does not rerun such"
            " commands (DataLad records them as run-merges)",
            str(log_path),
        )
    new_record = step.record.rerun_of(step.commit, dsid=context.dsid, exit_code=exit_code)
    new_commit = _save(repo, step.summary, new_record, prepared.relock, context)
    return StepResult(
        step=step,
        outcome="committed" if new_commit else "identical",
        new_commit=new_commit,
        head=new_commit or head,
        exit_code=exit_code,
        duration_s=time.monotonic() - started,
        log_path=log_path,
        warnings=prepared.warnings,
    )


def _prepare(repo: GitRepo, step: Step, config: DatasetConfig) -> _Prepared:
    record = step.record
    confine = Confinement(repo.path, step.commit, repo.common_dir)
    root = confine.root
    exec_dir = confine.check(record.pwd, "its working directory")
    io_mapping = {**config.substitutions, **_io_lists(record)}
    input_specs = format_io_specs(record.inputs, io_mapping)
    extra_specs = format_io_specs(record.extra_inputs, io_mapping)
    output_specs = format_io_specs(record.outputs, io_mapping)
    _confine_specs(confine, exec_dir, input_specs, extra_specs, output_specs)
    inputs = expand_specs(input_specs, exec_dir)
    extra = expand_specs(extra_specs, exec_dir)
    missing = inputs.misses + extra.misses
    if missing:
        raise InputError(
            f"step {step.commit[:8]}: input did not match an existing file: {missing[0]}"
        )
    outputs = expand_specs(output_specs, exec_dir)
    for what, found in (("input", inputs), ("input", extra), ("output", outputs)):
        for hit in [*found.hits, *found.partial_hits]:
            confine.check(hit, f"an {what} matching", base=exec_dir, leaf=False)
    command = expand_command(
        record.cmd,
        inputs=inputs.command_paths,
        outputs=outputs.command_paths,
        pwd=str(exec_dir),
        dspath=str(root),
        substitutions=config.substitutions,
    )
    automatic = _automatic_outputs(repo, step.commit)
    for path in automatic:
        confine.check(path, "a file its commit wrote,", leaf=False)
    if config.record_sidecar:
        confine.check(config.record_dir, "(by configuration) a record directory")
    warnings: list[str] = []
    if config.is_annex:
        # Files the command names (its script, say) are inputs too: a fresh clone needs them.
        rel_exec = _relative(exec_dir, root)
        written = {posixpath.normpath(posixpath.join(rel_exec, hit)) for hit in outputs.hits}
        written.update(automatic)
        named = [
            p
            for p in named_paths(command, rel_exec)
            if p not in written and confine.inside(p, leaf=False)
        ]
        declared = [str(exec_dir / p) for p in [*inputs.fetch_paths, *extra.fetch_paths]]
        _get_content(confine, declared, step)
        warnings = _get_implicit(confine, [root / p for p in named])
    relock = _clear_outputs(
        repo, confine, step, exec_dir, outputs.hits, command=command, automatic=automatic
    )
    return _Prepared(command, exec_dir, relock, tuple(warnings))


def _confine_specs(confine: Confinement, exec_dir: Path, *spec_lists: list[str]) -> None:
    """Refuse specs whose literal part leads outside, before globbing reads anything there.

    A literal part followed by wildcards is a directory glob will list, so a
    link there is followed; a whole literal spec may name a link itself.
    """
    for what, specs in zip(("input", "extra input", "output"), spec_lists, strict=True):
        for spec in specs:
            literal = literal_part(spec)
            if literal:
                leaf = literal.rstrip("/") != spec.rstrip("/")
                confine.check(literal, f"an {what}", base=exec_dir, leaf=leaf, shown=spec)


def _io_lists(record: RunRecord) -> dict[str, list[str]]:
    lists = {
        "inputs": record.inputs,
        "outputs": record.outputs,
        "extra_inputs": record.extra_inputs,
    }
    return {name: value for name, value in lists.items() if value}


def _get_content(confine: Confinement, paths: list[str], step: Step) -> None:
    """Fetch annexed inputs whose content is absent; everything else is already here."""
    absent = [path for path in dict.fromkeys(paths) if _lacks_content(confine, Path(path))]
    if not absent:
        return
    for wait_s in _GET_RETRIES_S:
        try:
            _get_once(confine, absent)
        except GitError:
            # Steps side by side may get the same key at once: the loser fails while
            # the winner still transfers it. Once it is here, nothing is missing.
            time.sleep(wait_s)
            absent = [path for path in absent if _lacks_content(confine, Path(path))]
            if not absent:
                return
        else:
            return
    try:
        _get_once(confine, absent)
    except GitError as exc:
        raise InputError(
            f"step {step.commit[:8]}: could not get the content of its inputs: {exc}"
        ) from exc


_GET_RETRIES_S = (0.5, 2.0)


def _get_once(confine: Confinement, absent: list[str]) -> None:
    # Each annex serves its own files: those inside a subdataset are got there.
    for dataset, group in by_dataset(confine.root, absent).items():
        runner = GitRepo(dataset)
        runner.annex("get", "--quiet", "--", *group)
        if any(not Path(path).is_symlink() for path in group):
            # Unlocked files whose content was already here keep their pointer text
            # after `get` (rerund checks out without git-annex's filter): fill them in.
            runner.annex("smudge", "--update")


def _get_implicit(confine: Confinement, paths: list[Path]) -> list[str]:
    """Get what can be got of the files the command names; say what could not.

    Implicit inputs serve staleness. DataLad gets none of them, so a directory
    (``cd .``) or content no remote has must not fail a step DataLad would run.
    """
    wanted = [path for path in paths if not _is_dir(path) and _lacks_content(confine, path)]
    if not wanted:
        return []
    runner = GitRepo(confine.root)
    runner.annex("get", "--quiet", "--", *map(str, wanted), check=False)
    if any(not path.is_symlink() for path in wanted):
        runner.annex("smudge", "--update", check=False)  # see _get_content
    return [
        f"could not get the content of {_relative(path, confine.root)}, which the command"
        " names; it ran without it"
        for path in wanted
        if _lacks_content(confine, path)
    ]


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _lacks_content(confine: Confinement, path: Path) -> bool:
    """An annexed file (or one inside a directory) without its content here."""
    if _is_dir(path):
        return any(_lacks_content(confine, file) for file in _files_under(path))
    if path.is_symlink():
        return confine.is_annexed(path) and not path.exists()
    return confine.is_annexed(path)  # an unlocked file still holding its pointer text


def _is_dir(path: Path) -> bool:
    """A real directory (not a link to one); a name too long to look up is none."""
    try:
        return path.is_dir() and not path.is_symlink()
    except OSError:
        return False


def _files_under(directory: Path) -> Iterator[Path]:
    """Every file below ``directory``, leaving out any ``.git``."""
    for dirpath, dirnames, names in os.walk(directory):
        if ".git" in dirnames:
            dirnames.remove(".git")
        for name in names:
            yield Path(dirpath, name)


def _clear_outputs(
    repo: GitRepo,
    confine: Confinement,
    step: Step,
    exec_dir: Path,
    declared_hits: list[str],
    *,
    command: str,
    automatic: list[str],
) -> list[str]:
    """Unlock annexed outputs and remove plain ones, so no stale content survives.

    Outputs are the declared ones plus what the original commit added or
    modified. A file the command also reads (a declared input, or a path its
    command names) is kept in place, as ``echo x$(cat f) > f`` needs it. The
    dataset root as an output only unlocks: removing everything is never meant.
    Returns the annexed outputs, which must be annexed again when saved.
    """
    root = confine.root
    record = step.record
    rel_exec = exec_dir.relative_to(root).as_posix()
    candidates: list[str] = []
    keep: set[str] = set()
    for hit in declared_hits:
        path = posixpath.normpath(posixpath.join(rel_exec, hit))
        files = _tracked_files_under(root, path)
        candidates.extend(files)
        if path == ".":
            keep.update(files)
    candidates.extend(automatic)
    read_specs = [spec_matcher(spec, record.pwd) for spec in [*record.inputs, *record.extra_inputs]]
    named = set(named_paths(command, rel_exec))
    annexed: list[str] = []
    for path in dict.fromkeys(candidates):
        if path in (".", "") or path.startswith(".git/") or path.startswith(".datalad/"):
            continue
        target = confine.check(path, "an output", leaf=False)  # exactly what is touched
        if not target.is_symlink() and not target.is_file():
            continue
        if confine.is_annexed(target):
            annexed.append(path)
            if target.is_symlink():  # an unlocked pointer file stays, to be overwritten
                content = confine.annex_object(target)
                if content is not None and content.exists():
                    _unlock(target, content)  # content present: the command writes a copy
                else:
                    target.unlink()
        elif path not in keep and path not in named and not _covered(path, read_specs):
            target.unlink()
    return annexed


def _unlock(link: Path, content: Path) -> None:
    """Replace an annex symlink by a private copy of its content.

    What ``git annex unlock`` does for the command's sake, without starting
    git-annex: the command may read and rewrite the file, and the object in
    the annex is never written through (which root could do to a locked file).
    The file is annexed and locked again when the step is saved.
    """
    copy = link.with_name(f".{link.name}.rerund-unlock")
    shutil.copyfile(content, copy)
    copy.chmod(0o644)
    copy.replace(link)


def _covered(path: str, specs: list[SpecMatcher]) -> bool:
    return any(spec.covers(path) for spec in specs)


def _automatic_outputs(repo: GitRepo, commit: str) -> list[str]:
    """Files the original commit added or modified (against its first parent)."""
    out = repo.run(
        "diff-tree",
        "--root",
        "-r",
        "-z",
        "--no-commit-id",
        "--no-renames",
        "--diff-filter=AM",
        "--name-only",
        "-m",
        "--first-parent",
        commit,
    )
    return [path for path in out.decode("utf-8").split("\0") if path]


def _tracked_files_under(root: Path, path: str) -> list[str]:
    target = root / path
    if target.is_dir() and not target.is_symlink():
        return [file.relative_to(root).as_posix() for file in _files_under(target)]
    return [path]


def _run_command(
    prepared: _Prepared,
    step: Step,
    log_path: Path,
    options: ExecOptions,
) -> int:
    timeout_s, cancel = options.timeout_s, options.cancel
    with log_path.open("wb") as log:
        for warning in prepared.warnings:
            log.write(f"rerund: warning: {warning}\n".encode())
        log.write(f"$ {prepared.command}\n".encode())
        log.flush()
        # Its own process group, so stopping it reaches every child it started.
        process = start_group(["/bin/sh", "-c", prepared.command], prepared.exec_dir, log)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        # Without a cancel event or a log cap one blocking wait suffices; else look often.
        slice_s = timeout_s if cancel is None and options.max_log_bytes is None else _POLL_S
        while True:
            try:
                return process.wait(timeout=slice_s)
            except subprocess.TimeoutExpired:
                pass
            if cancel is not None and cancel.is_set():
                _stop(process, log, "rerund: stopped because rerund was asked to stop")
                raise StepCancelledError(
                    step.commit, f"step {step.commit[:8]} was interrupted", str(log_path)
                )
            cap = options.max_log_bytes
            if cap is not None and os.fstat(log.fileno()).st_size > cap:
                stop_group(process, grace_s=0)
                log.truncate(cap)  # the log shares its offset with the killed command
                log.seek(cap)
                log.write(f"\nrerund: stopped after writing more than {cap} bytes\n".encode())
                raise StepFailedError(
                    step.commit,
                    f"step {step.commit[:8]} wrote more than {cap} bytes of output and was"
                    f" stopped; nothing was committed, see {log_path}",
                    str(log_path),
                )
            if deadline is not None and time.monotonic() > deadline:
                _stop(process, log, f"rerund: stopped after {timeout_s} s")
                raise StepFailedError(
                    step.commit,
                    f"step {step.commit[:8]} ran longer than {timeout_s} s and was stopped;"
                    f" its changes were not committed, see {log_path}",
                    str(log_path),
                )


_POLL_S = 0.05


def _stop(process: subprocess.Popen[bytes], log: BinaryIO, why: str) -> None:
    stop_group(process)
    log.write(f"\n{why}\n".encode())


def save_changes(
    repo: GitRepo, summary: str, record: RunRecord, relock: list[str], context: StepContext
) -> str | None:
    """Commit the work tree's changes with ``record``, as a step's run does."""
    return _save(repo, summary, record, relock, context)


def _save(
    repo: GitRepo, summary: str, record: RunRecord, relock: list[str], context: StepContext
) -> str | None:
    """Commit every change as DataLad's ``save`` would; ``None`` when nothing changed.

    git-annex sees only the files that are its business — new files (it decides
    by ``annex.largefiles``) and formerly annexed ones (locked again). Files
    already in git stay in git and are staged without starting git-annex, which
    keeps a step's own cost to a few git calls.
    """
    config = context.config
    changed = _changed_paths(repo)
    if not changed:
        return None
    to_annex = [path for path in [*changed.untracked, *relock] if path in changed.all]
    if not config.is_annex:
        to_annex = []
    elif to_annex and context.annex_add is not None:
        context.annex_add.add(to_annex)  # ingested now; staged below with the rest
        to_annex = []
    elif to_annex:
        repo.annex("add", "--quiet", "--", *to_annex)
    plain = sorted(changed.all - set(to_annex))
    if plain:
        repo.run(*WITHOUT_ANNEX_FILTER, "add", "--all", "--", *plain)
    if repo.succeeds(*WITHOUT_ANNEX_FILTER, "diff", "--cached", "--quiet"):
        return None  # e.g. unlocked outputs rewritten identically and locked again
    if config.record_sidecar:
        _write_sidecar(repo, record, config)
    message = format_message(summary, record, sidecar=config.record_sidecar)
    # git-annex's own pre-commit hook only fixes symlinks moved between directories;
    # ours are fresh from `git annex add`. Any other hook of the user's still runs.
    skip_hooks = ("--no-verify",) if config.only_annex_hooks else ()
    repo.run(
        *WITHOUT_ANNEX_FILTER, "commit", "--quiet", *skip_hooks, "-F", "-", stdin=message.encode()
    )
    return repo.text("rev-parse", "HEAD")


@dataclass(frozen=True)
class _Changes:
    all: set[str]
    untracked: list[str]


def _changed_paths(repo: GitRepo) -> _Changes | None:
    out = repo.run(
        *WITHOUT_ANNEX_FILTER,
        "status",
        "--porcelain=v1",
        "-z",
        "--untracked-files=all",
        "--no-renames",
    )
    paths: set[str] = set()
    untracked: list[str] = []
    for entry in out.decode("utf-8").split("\0"):
        if not entry:
            continue
        path = entry[3:]
        paths.add(path)
        if entry.startswith("??"):
            untracked.append(path)
    return _Changes(paths, untracked) if paths else None


def _write_sidecar(repo: GitRepo, record: RunRecord, config: DatasetConfig) -> None:
    path = repo.path / config.record_dir / sidecar_id(record)
    if not path.exists():  # identical records share one file, as in DataLad
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_sidecar(record))
        if config.is_annex:
            repo.annex("add", "--quiet", "--", str(path.relative_to(repo.path)))
        repo.run("add", "--", str(path.relative_to(repo.path)))
