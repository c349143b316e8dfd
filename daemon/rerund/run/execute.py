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
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, Literal, Protocol

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
from rerund.run.annexbatch import ANNEX_DOTFILES, BatchAdd
from rerund.run.confine import Confinement
from rerund.run.install import install_for
from rerund.run.pointers import unlocked_pointers
from rerund.run.process import start_group, stop_group
from rerund.run.runmerge import REMAINING_MESSAGE, check_commits, current_branch, merge_record
from rerund.run.sandbox import Sandbox, scrub_log
from rerund.run.subdatasets import (
    by_dataset,
    changed_inside,
    commit_subdatasets,
    holding_dataset,
)

Outcome = Literal["committed", "identical", "cut-off", "reused"]
"""``cut-off`` and ``reused`` run no command (see :mod:`rerund.run.leastwork`)."""


@dataclass(frozen=True)
class StepScope:
    """Which job and step of the daemon's a step is (executors that keep state use it)."""

    repo: str
    branch: str
    job_id: int
    position: int
    superseded: Callable[[], bool] = lambda: False
    """True once a newer push made this job's work moot (cluster work is then cancelled)."""


class CommandRunner(Protocol):
    """Runs a prepared step's command somewhere; the local default is a child process."""

    def attached(self, step: Step, head: str) -> PreparedStep | None:
        """A command already started for this step on ``head`` (before a restart), if any."""

    def run(self, prepared: PreparedStep, step: Step, log_path: Path, options: ExecOptions) -> int:
        """Run (or wait for) the command; its output goes to ``log_path``; the exit code."""


@dataclass(frozen=True)
class ExecOptions:
    log_dir: Path
    timeout_s: float | None = None
    cancel: threading.Event | None = None
    """Set by a shutting-down service: the running command is stopped, nothing saved."""
    sandbox: Sandbox | None = None
    """Run the command under bubblewrap (the daemon does; ``rerund rerun --sandbox``)."""
    env: Mapping[str, str] | None = None
    """The command's whole environment (None: this process's)."""
    max_log_bytes: int | None = None
    """A command writing more output than this is stopped."""
    scrub: tuple[str, ...] = ()
    """Secret values replaced by ``***`` in the log once the command ended."""
    runner: CommandRunner | None = None
    """Where the command runs; ``None``: a local process (the executor sets it)."""
    scope: StepScope | None = None


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
class PreparedStep:
    command: str
    exec_dir: Path
    relock: list[str]
    """Annexed outputs that were unlocked or removed and must be annexed again."""
    warnings: tuple[str, ...] = ()
    scratch: tuple[Path, ...] = ()
    """Directories made for ``{tmpdir}`` (a sandbox must show them too)."""
    work_tree: Path | None = None
    """The dataset's root, the one place a sandboxed command may write."""
    commits: bool = False
    """The command makes commits of its own (a run-merge record): its git is writable."""


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
    runner = options.runner
    prepared = runner.attached(step, head) if runner is not None else None
    if prepared is None:
        prepared = _prepare(repo, step, context.config)
    if len(repo.text("rev-list", "--parents", "-n", "1", step.commit).split()) > 2:
        prepared = replace(prepared, commits=True)  # a run-merge: its command commits
    branch = current_branch(repo)
    run = runner.run if runner is not None else _run_command
    try:
        exit_code = run(prepared, step, log_path, options)
    finally:
        scrub_log(log_path, options.scrub)
    if exit_code not in (0, step.record.exit):
        why = _limit_hit(options.sandbox, log_path)
        raise StepFailedError(
            step.commit,
            f"step {step.commit[:8]} exited with {exit_code} (recorded: {step.record.exit});"
            f"{why} its changes were not committed, see {log_path}",
            str(log_path),
            exit_code=exit_code,
        )
    merge_onto = None
    if repo.text("rev-parse", "HEAD") != head:  # the command committed: a run-merge
        check_commits(repo, step.commit, head, branch, str(log_path))
        merge_onto = head
    new_record = step.record.rerun_of(step.commit, dsid=context.dsid, exit_code=exit_code)
    new_commit = _save(
        repo, step.summary, new_record, prepared.relock, context, merge_onto=merge_onto
    )
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


def _prepare(repo: GitRepo, step: Step, config: DatasetConfig) -> PreparedStep:
    record = step.record
    confine = Confinement(repo.path, step.commit, repo.common_dir)
    root = confine.root
    exec_dir = confine.check(record.pwd, "its working directory")
    io_mapping = {**config.substitutions, **_io_lists(record)}
    input_specs = format_io_specs(record.inputs, io_mapping)
    extra_specs = format_io_specs(record.extra_inputs, io_mapping)
    output_specs = format_io_specs(record.outputs, io_mapping)
    _confine_specs(confine, exec_dir, input_specs, extra_specs, output_specs)
    # Subdatasets on the way to inputs and outputs are installed first, as DataLad does.
    install_for(root, [*input_specs, *extra_specs, *output_specs], record.pwd)
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
    scratch: list[Path] = []
    command = expand_command(
        record.cmd,
        inputs=inputs.command_paths,
        outputs=outputs.command_paths,
        pwd=str(exec_dir),
        dspath=str(root),
        substitutions=config.substitutions,
        make_tmpdir=lambda: _new_scratch(scratch),
    )
    automatic = [*_automatic_outputs(repo, step.commit), *changed_inside(repo, step.commit)]
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
    return PreparedStep(command, exec_dir, relock, tuple(warnings), tuple(scratch), root)


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


def _new_scratch(made: list[Path]) -> str:
    made.append(Path(tempfile.mkdtemp(prefix="datalad-run-")))
    return str(made[-1])


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
        _fill_pointers(runner, confine, [Path(path) for path in group])


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
    _fill_pointers(runner, confine, wanted)
    return [
        f"could not get the content of {_relative(path, confine.root)}, which the command"
        " names; it ran without it"
        for path in wanted
        if _lacks_content(confine, path)
    ]


def _fill_pointers(runner: GitRepo, confine: Confinement, paths: list[Path]) -> None:
    """Write the content into unlocked files that still hold pointer text after ``get``.

    rerund checks out without git-annex's filter, so an unlocked file arrives as
    its pointer. git-annex fills such files in only for index entries it has not
    seen yet: a file unlocked, locked and unlocked again, whose content is here,
    keeps its pointer through ``get`` and ``smudge --update`` alike. The index is
    then refreshed (with the filter) so the filled file does not count as changed.
    """
    files = [file for path in paths for file in (_files_under(path) if path.is_dir() else [path])]
    pointers = [file for file in files if not file.is_symlink() and confine.is_annexed(file)]
    for file in pointers:
        key = file.read_bytes().decode("utf-8", "replace").strip().rsplit("/", 1)[-1]
        if not key or key.startswith("-"):  # not a key, and never an option
            continue
        location = runner.annex("contentlocation", key, check=False).decode().strip()
        if location:  # else the content is still missing, and the step will say so
            shutil.copyfile(runner.path / location, file)
            # Older than the index about to be written, or git deems the entry racily
            # clean and a filter-less `git status` re-hashes it as changed.
            stamp = file.stat().st_mtime - 2
            os.utime(file, (stamp, stamp))
    if pointers:
        runner.run("update-index", "-q", "--refresh", "--", *map(str, pointers), check=False)


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
    unlocked: list[tuple[Path, str]] = []
    targets = {
        path: confine.check(path, "an output", leaf=False)  # exactly what is touched
        for path in dict.fromkeys(candidates)
        if path not in (".", "") and not path.startswith((".git/", ".datalad/"))
    }
    # Unlocked outputs holding pointer text get their content first: a command that
    # reads or appends to one must see what it would see in a DataLad dataset.
    _fill_pointers(repo, confine, list(targets.values()))
    already_unlocked = _unlocked_in_index(repo, confine, list(targets))
    for path, target in targets.items():
        if not target.is_symlink() and not target.is_file():
            continue
        if path in already_unlocked:  # annexed, unlocked, content here: as it is
            annexed.append(path)
        elif confine.is_annexed(target):
            annexed.append(path)
            content = confine.annex_object(target) if target.is_symlink() else None
            if content is not None and content.exists():  # the command gets a copy
                unlocked.append((target, content.name))
                _unlock(target, content)
            else:  # no content here (a pointer file left so: its content is nowhere here)
                target.unlink()
        elif path not in keep and path not in named and not _covered(path, read_specs):
            target.unlink()
    # Each dataset's own index: a subdataset's file staged in ours would replace its gitlink.
    holders: dict[Path, list[tuple[str, str]]] = {}
    for target, key in unlocked:
        holder = holding_dataset(root, target)
        holders.setdefault(holder, []).append((_relative(target, holder), key))
    for holder, entries in holders.items():
        _stage_unlocked(repo if holder == root else GitRepo(holder), entries)
    return annexed


def _unlocked_in_index(repo: GitRepo, confine: Confinement, paths: list[str]) -> set[str]:
    """Those of ``paths`` that are unlocked annexed files holding their content.

    The work tree shows their content, so only the index (a pointer to a key)
    tells them from files kept in git.
    """
    root = repo.path
    files = [
        path
        for path in dict.fromkeys(paths)
        if "\n" not in path
        and (root / path).is_file()
        and not (root / path).is_symlink()
        and not confine.is_annexed(root / path)
    ]
    found = repo.read_objects(f":{path}" for path in files)
    return {
        path
        for path in files
        if (info := found.get(f":{path}")) is not None and info.data.startswith(b"/annex/objects/")
    }


def _stage_unlocked(repo: GitRepo, unlocked: list[tuple[str, str]]) -> None:
    """Stage unlocked files as ``git annex unlock`` does: as pointers to their keys.

    A command that commits by itself then commits what it would under DataLad.
    """
    if not unlocked:
        return
    entries = []
    for path, key in unlocked:
        pointer = f"/annex/objects/{key}\n".encode()
        blob = repo.run("hash-object", "-w", "--stdin", stdin=pointer).decode().strip()
        entries.append(f"100644 {blob}\t{path}\n")
    repo.run("update-index", "--index-info", stdin="".join(entries).encode())


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


def _limit_hit(sandbox: Sandbox | None, log_path: Path) -> str:
    if sandbox is None:
        return ""
    with log_path.open("rb") as log:
        log.seek(max(0, log_path.stat().st_size - 4096))
        why = sandbox.explain(log.read().decode("utf-8", "replace"))
    return f" {why};" if why else ""


def _run_command(prepared: PreparedStep, step: Step, log_path: Path, options: ExecOptions) -> int:
    sandbox = options.sandbox
    argv = ["/bin/sh", "-c", prepared.command]
    work_tree = prepared.work_tree
    if sandbox is None or work_tree is None:
        return _run_logged(argv, prepared, step, log_path, options)
    commits = prepared.commits
    with sandbox.handed_over(work_tree, prepared.scratch, commits=commits):
        argv = sandbox.wrap(
            argv, work_tree, prepared.exec_dir, scratch=prepared.scratch, commits=commits
        )
        code = _run_logged(argv, prepared, step, log_path, options)
    if sandbox.run_as is not None:
        # Handing the tree over and back (chown) changed every file's ctime, so git
        # re-hashes them; without git-annex's filter a filled-in unlocked input would
        # count as changed (its content is not its pointer) and be committed as content.
        # Refreshed through the filter, unchanged files are clean again.
        GitRepo(work_tree).run("update-index", "-q", "--refresh", check=False)
    return code


def _run_logged(
    argv: list[str], prepared: PreparedStep, step: Step, log_path: Path, options: ExecOptions
) -> int:
    timeout_s, cancel, max_log = options.timeout_s, options.cancel, options.max_log_bytes
    with log_path.open("wb") as log:
        for warning in prepared.warnings:
            log.write(f"rerund: warning: {warning}\n".encode())
        log.write(f"$ {prepared.command}\n".encode())
        log.flush()
        # Its own process group, so stopping it reaches every child it started.
        process = start_group(argv, prepared.exec_dir, log, env=options.env)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        # Without a cancel event or a log cap one blocking wait suffices; else look often.
        slice_s = timeout_s if cancel is None and max_log is None else _POLL_S
        while True:
            try:
                code = process.wait(timeout=slice_s)
            except subprocess.TimeoutExpired:
                pass
            else:
                # A fast flood can end between two looks; the cap holds for it too.
                if max_log is None or os.fstat(log.fileno()).st_size <= max_log:
                    return code
            if cancel is not None and cancel.is_set():
                _stop(process, log, "rerund: stopped because rerund was asked to stop")
                raise StepCancelledError(
                    step.commit, f"step {step.commit[:8]} was interrupted", str(log_path)
                )
            if max_log is not None and os.fstat(log.fileno()).st_size > max_log:
                stop_group(process, grace_s=0)
                log.truncate(max_log)  # the log shares its offset with the killed command
                log.seek(max_log)
                log.write(f"\nrerund: stopped after writing more than {max_log} bytes\n".encode())
                raise StepFailedError(
                    step.commit,
                    f"step {step.commit[:8]} wrote more than {max_log} bytes of output and was"
                    f" stopped (max_log_bytes); its changes were not committed, see {log_path}",
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
    repo: GitRepo,
    summary: str,
    record: RunRecord,
    relock: list[str],
    context: StepContext,
    *,
    merge_onto: str | None = None,
) -> str | None:
    """Commit every change as DataLad's ``save`` would; ``None`` when nothing changed.

    With ``merge_onto`` (the command made commits of its own) what is left is
    committed as "remaining changes" and the record goes on a run-merge.
    """
    config = context.config
    # Outputs inside subdatasets: those commit first, then their gitlinks move here.
    commit_subdatasets(repo.path, format_message(summary, record), relock)
    message = format_message(summary, record, sidecar=config.record_sidecar)
    if merge_onto is not None:
        if config.record_sidecar:  # DataLad writes it before saving: it joins the remains
            _write_sidecar(repo, record, config)
        if _stage(repo, relock, context):
            _commit(repo, REMAINING_MESSAGE + "\n", config)
        return merge_record(repo, merge_onto, message)
    if not _stage(repo, relock, context):
        return None
    if config.record_sidecar:
        _write_sidecar(repo, record, config)
    _commit(repo, message, config)
    return repo.text("rev-parse", "HEAD")


def _stage(repo: GitRepo, relock: list[str], context: StepContext) -> bool:
    """Stage every change; whether anything differs from HEAD.

    git-annex sees only the files that are its business — new files (it decides
    by ``annex.largefiles``) and formerly annexed ones (locked again). Files
    already in git stay in git and are staged without starting git-annex, which
    keeps a step's own cost to a few git calls.
    """
    config = context.config
    changed = _changed_paths(repo)
    if not changed:
        return False
    to_annex = [path for path in [*changed.untracked, *relock] if path in changed.all]
    if not config.is_annex:
        to_annex = []
    elif to_annex and context.annex_add is not None:
        keys = context.annex_add.add(to_annex)  # ingested now; staged below with the rest
        # Annexed but unlocked (annex.addunlocked): staged as their pointers, not content.
        root = repo.path
        pointers = [(p, k) for p, k in keys.items() if k and not (root / p).is_symlink()]
        _stage_unlocked(repo, pointers)
        to_annex = [path for path, _ in pointers]
    elif to_annex:
        repo.annex("add", "--quiet", *ANNEX_DOTFILES, "--", *to_annex)
    plain = sorted(changed.all - set(to_annex))
    if config.is_annex:
        # Unlocked annexed files go through git-annex's filter, else their content enters git.
        unlocked = unlocked_pointers(repo, [p for p in plain if p not in changed.untracked])
        if unlocked:
            repo.run("add", "--", *unlocked)
            plain = [p for p in plain if p not in set(unlocked)]
    if plain:
        repo.run(*WITHOUT_ANNEX_FILTER, "add", "--all", "--", *plain)
    # False e.g. when unlocked outputs were rewritten identically and locked again
    return not repo.succeeds(*WITHOUT_ANNEX_FILTER, "diff", "--cached", "--quiet")


def _commit(repo: GitRepo, message: str, config: DatasetConfig) -> None:
    # git-annex's own pre-commit hook only fixes symlinks moved between directories;
    # ours are fresh from `git annex add`. Any other hook of the user's still runs.
    skip_hooks = ("--no-verify",) if config.only_annex_hooks else ()
    repo.run(
        *WITHOUT_ANNEX_FILTER, "commit", "--quiet", *skip_hooks, "-F", "-", stdin=message.encode()
    )


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
            # DataLad annexes dotfiles too: the sidecar goes where annex.largefiles says
            repo.annex("add", "--quiet", *ANNEX_DOTFILES, "--", str(path.relative_to(repo.path)))
        repo.run("add", "--", str(path.relative_to(repo.path)))
