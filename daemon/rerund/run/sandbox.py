"""A step's command under bubblewrap: what it may see, and how much it may use (SPEC §7).

Inside, the system (``/usr``, ``/etc``, ...) and the Python rerund runs on are
read-only, the step's work tree is the only writable place (its ``.git`` stays
read-only, so a record cannot plant hooks or change git's config; a run-merge
record's command, which commits by itself, gets its objects and refs writable but
never its config, hooks or info), ``/tmp`` and
``$HOME`` are fresh and private, the network is gone unless allowed, and the
daemon's own paths (state directory, settings, secrets, bare repositories) are
covered. Limits: memory (RLIMIT_AS) and processes (RLIMIT_NPROC, counted in the
step's own namespaces) through ``prlimit``; the log size is watched by the
executor; wall time is the step timeout.

RLIMIT_NPROC never binds uid 0, so a daemon running as root (it should not;
tests do) hands the work tree to an unprivileged uid for the step's duration
and the step runs as that uid: bubblewrap keeps the capability to switch,
``setpriv`` switches and drops every capability.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rerund.errors import RerundError

BWRAP = "bwrap"
_SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
_HOME = "/tmp/home"  # noqa: S108 - the sandbox's own private /tmp
NOBODY = (65534, 65534)


class SandboxUnavailableError(RerundError):
    """bubblewrap is missing or cannot create its namespaces here."""


@dataclass(frozen=True)
class Limits:
    """Set inside the sandbox; the log size is the executor's (``ExecOptions.max_log_bytes``)."""

    memory_mb: int = 4096
    max_processes: int = 512


@dataclass(frozen=True)
class Sandbox:
    """How to wrap one step's argv; built once per job from the repository's settings."""

    hidden: tuple[Path, ...] = ()
    """Paths never visible inside (state directory, settings, secrets, bare repositories)."""
    network: bool = False
    limits: Limits = field(default_factory=Limits)
    run_as: tuple[int, int] | None = None
    """Host uid and gid of the step when the daemon is root; None: the daemon's own."""
    extra_env: tuple[tuple[str, str], ...] = ()
    """Variables set inside besides PATH, HOME and the locale."""
    readable: tuple[Path, ...] = field(default_factory=lambda: python_prefixes())  # noqa: PLW0108
    """Read-only extras (the Python rerund runs on, which steps' ``python`` resolves to)."""

    def wrap(
        self,
        argv: Sequence[str],
        work_tree: Path,
        cwd: Path,
        *,
        scratch: Sequence[Path] = (),
        commits: bool = False,
    ) -> list[str]:
        """``argv`` as bubblewrap runs it, with ``work_tree`` writable and ``cwd`` current.

        ``scratch``: fresh directories made for the step (``{tmpdir}``), writable too.
        ``commits``: the command makes commits of its own (a run-merge record), so its
        repository's objects and refs are writable; its config, hooks and info stay not.
        """
        # No --new-session: the executor starts bwrap in a session of its own already,
        # so no step has a controlling terminal to inject keystrokes into.
        args = [BWRAP, "--die-with-parent", "--unshare-pid", "--unshare-ipc"]
        if not self.network:
            args.append("--unshare-net")
        if self.run_as is None:
            args.append("--unshare-user")
        args += self._filesystem(work_tree, scratch)
        if commits:
            args += _writable_git(work_tree)
        args += ["--chdir", str(cwd), "--clearenv"]
        env = [
            *step_env(home=_HOME).items(),
            *(_COMMITTING_ENV if commits else ()),
            *self.extra_env,
        ]
        for name, value in env:
            args += ["--setenv", name, value]
        if self.run_as is not None:
            uid, gid = self.run_as
            args += ["--cap-add", "CAP_SETUID,CAP_SETGID", "--"]
            args += ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
            args += ["--bounding-set=-all"]
        else:
            args.append("--")
        memory = self.limits.memory_mb * 1024 * 1024
        args += ["prlimit", f"--nproc={self.limits.max_processes}", f"--as={memory}", "--"]
        return [*args, *argv]

    def _filesystem(self, work_tree: Path, scratch: Sequence[Path]) -> list[str]:
        """System read-only, fresh /dev, /proc, /tmp and $HOME, hidden paths covered, tree."""
        args: list[str] = []
        for root in _SYSTEM:
            path = Path(root)
            if path.is_symlink():
                args += ["--symlink", str(path.readlink()), root]
            elif path.is_dir():
                args += ["--ro-bind", root, root]
        args += ["--dev", "/dev", "--proc", "/proc", "--perms", "1777", "--tmpfs", "/tmp"]  # noqa: S108
        args += ["--perms", "0777", "--dir", _HOME]
        for extra in self.readable:
            if extra.is_dir() and not _under_any(extra, _SYSTEM):
                args += [*_parents(extra), "--ro-bind", str(extra), str(extra)]
        for path in self.hidden:
            args += _cover(path)
        for directory in (*scratch, work_tree):
            args += [*_parents(directory), "--bind", str(directory), str(directory)]
        for git_dir in _git_dirs(work_tree):
            args += ["--ro-bind", str(git_dir), str(git_dir)]
        common = _linked_common_dir(work_tree)
        if common is not None:  # a scratch worktree: its git and annex live in the clone's
            args += [*_parents(common), "--ro-bind", str(common), str(common)]
        return args

    @contextmanager
    def handed_over(
        self, work_tree: Path, scratch: Sequence[Path] = (), *, commits: bool = False
    ) -> Iterator[None]:
        """The work tree (not its ``.git``) belongs to ``run_as`` while the step runs;
        with ``commits`` its git storage too, but for the config, hooks and info."""
        if self.run_as is None:
            yield
            return
        stores = git_storage(work_tree) if commits else []
        for tree in (work_tree, *scratch):
            _chown_tree(tree, *self.run_as)
        for store in stores:
            _chown_git(store, *self.run_as)
        try:
            yield
        finally:
            for tree in (work_tree, *scratch):
                _chown_tree(tree, os.getuid(), os.getgid())
            for store in stores:
                _chown_git(store, os.getuid(), os.getgid())

    def explain(self, log_tail: str) -> str | None:
        """Which limit a failed step most likely ran into, from the end of its log."""
        if _FORK_FAILED.search(log_tail):
            return f"the step hit its process limit (max_processes = {self.limits.max_processes})"
        if _NO_MEMORY.search(log_tail):
            return f"the step hit its memory limit (memory_mb = {self.limits.memory_mb})"
        return None


_FORK_FAILED = re.compile(
    r"cannot fork|can't fork|fork: retry|fork: resource temporarily unavailable"
    r"|BlockingIOError: \[Errno 11\]|Resource temporarily unavailable",
    re.IGNORECASE,
)
_NO_MEMORY = re.compile(
    r"MemoryError|Cannot allocate memory|out of memory|bad_alloc|memory exhausted",
    re.IGNORECASE,
)


def step_env(home: str) -> dict[str, str]:
    """All a step's environment holds: a search path, the locale and a home of its own."""
    env = {"PATH": _search_path(), "HOME": home, "TMPDIR": "/tmp"}  # noqa: S108
    for name in ("LANG", "LC_ALL", "LC_CTYPE", "TZ"):
        if name in os.environ:
            env[name] = os.environ[name]
    env.setdefault("LANG", "C.UTF-8")
    return env


def _search_path() -> str:
    # The interpreter's own bin directory first: "python" in a record means this one.
    dirs = [str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]
    return ":".join(dict.fromkeys(dirs))


def python_prefixes() -> tuple[Path, ...]:
    return tuple(Path(p).resolve() for p in dict.fromkeys([sys.prefix, sys.base_prefix]))


def check_available(run_as: tuple[int, int] | None) -> None:
    """Start ``true`` in a sandbox; :class:`SandboxUnavailableError` says why that failed."""
    if shutil.which(BWRAP) is None:
        raise SandboxUnavailableError(
            "bubblewrap (bwrap) is not installed; install it (apt-get install bubblewrap)"
            ' or set sandbox = "none" under [security]'
        )
    with tempfile.TemporaryDirectory(prefix="rerund-probe-") as scratch:
        argv = Sandbox(run_as=run_as, readable=()).wrap(["/bin/true"], Path(scratch), Path("/"))
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    if done.returncode != 0:
        raise SandboxUnavailableError(
            f"bubblewrap cannot start a sandbox here ({done.stderr.strip() or done.returncode});"
            ' allow user namespaces, or set sandbox = "none" under [security] to run'
            " steps unconfined"
        )


def _parents(path: Path) -> list[str]:
    """``--dir`` for each ancestor, world-traversable (bubblewrap makes them 0700)."""
    args: list[str] = []
    for parent in reversed(path.parents):
        if str(parent) not in ("/", "/tmp") and not _under_any(parent, _SYSTEM):  # noqa: S108
            args += ["--perms", "0755", "--dir", str(parent)]
    return args


def _cover(path: Path) -> list[str]:
    """Hide ``path`` if the sandbox would otherwise show it."""
    visible = _under_any(path, _SYSTEM) or any(
        path == p or p in path.parents or path in p.parents for p in python_prefixes()
    )
    if not visible or not path.exists():
        return []
    if path.is_dir():
        return ["--tmpfs", str(path)]
    return ["--ro-bind", "/dev/null", str(path)]


def _under_any(path: Path, roots: Sequence[str]) -> bool:
    return any(path == Path(root) or Path(root) in path.parents for root in roots)


_SUBMODULE_PATH = re.compile(r"^\s*path\s*=\s*(.+?)\s*$", re.MULTILINE)


def _git_dirs(work_tree: Path) -> list[Path]:
    """The work tree's ``.git`` and its subdatasets' (read-only inside the sandbox)."""
    found = [work_tree / ".git"]
    modules = work_tree / ".gitmodules"
    if modules.is_file():
        text = modules.read_text(encoding="utf-8", errors="replace")
        found += [work_tree / path / ".git" for path in _SUBMODULE_PATH.findall(text)]
    root = work_tree.resolve()
    return [path for path in found if path.exists() and root in path.resolve().parents]


# What a committing step must not change in its repository: code git would run, settings.
_GIT_GUARDED = ("config", "config.worktree", "hooks", "info")
# A committing step's git: owned files differ from the worktree's .git file (safe.directory),
# hooks never run, and its commits carry rerund's name as the daemon's own do.
_COMMITTING_ENV = (
    ("GIT_CONFIG_COUNT", "2"),
    ("GIT_CONFIG_KEY_0", "safe.directory"),
    ("GIT_CONFIG_VALUE_0", "*"),
    ("GIT_CONFIG_KEY_1", "core.hooksPath"),
    ("GIT_CONFIG_VALUE_1", "/dev/null"),
    ("GIT_AUTHOR_NAME", "rerund"),
    ("GIT_AUTHOR_EMAIL", "rerund@localhost"),
    ("GIT_COMMITTER_NAME", "rerund"),
    ("GIT_COMMITTER_EMAIL", "rerund@localhost"),
)


def _linked_common_dir(work_tree: Path) -> Path | None:
    """The repository's own git directory when ``work_tree`` is a linked worktree.

    A step running side by side works in such a tree: its ``.git`` (a file, or the link
    git-annex makes of it) leads into the clone's git directory, where its annex
    objects are, read-only for the step like any ``.git``.
    """
    dot_git = work_tree / ".git"
    if not dot_git.is_symlink() and not dot_git.is_file():
        return None
    stores = git_storage(work_tree) if dot_git.is_file() else [dot_git.resolve()]
    git_dir = stores[0]
    common = git_dir / "commondir"
    if not common.is_file():
        return None
    return (git_dir / common.read_text(encoding="utf-8").strip()).resolve()


def git_storage(work_tree: Path) -> list[Path]:
    """Where the work tree's git keeps its data: ``.git``, or a linked worktree's own
    git directory and the repository's common one (possibly inside the hidden state)."""
    dot_git = work_tree / ".git"
    if dot_git.is_dir():
        return [dot_git]
    if not dot_git.is_file():
        return []
    text = dot_git.read_text(encoding="utf-8", errors="replace").strip()
    if not text.startswith("gitdir:"):
        return []
    git_dir = (work_tree / text.removeprefix("gitdir:").strip()).resolve()
    stores = [git_dir]
    common = git_dir / "commondir"
    if common.is_file():
        stores.append((git_dir / common.read_text(encoding="utf-8").strip()).resolve())
    return stores


def _writable_git(work_tree: Path) -> list[str]:
    """Bind the git storage writable, with its config, hooks and info read-only on top."""
    args: list[str] = []
    for store in git_storage(work_tree):
        args += [*_parents(store), "--bind", str(store), str(store)]
        for name in _GIT_GUARDED:
            guarded = store / name
            if guarded.exists():
                args += ["--ro-bind", str(guarded), str(guarded)]
    return args


def _chown_git(store: Path, uid: int, gid: int) -> None:
    """Hand over a git directory but for what :data:`_GIT_GUARDED` names."""
    os.lchown(store, uid, gid)
    for entry in store.iterdir():
        if entry.name in _GIT_GUARDED:
            continue
        if entry.is_dir() and not entry.is_symlink():
            _chown_tree(entry, uid, gid)
        elif entry.lstat().st_uid != uid:
            os.lchown(entry, uid, gid)


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.lchown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        if ".git" in dirnames:  # git's own files, here and in subdatasets, stay the daemon's
            dirnames.remove(".git")
        for name in [*dirnames, *filenames]:
            if name == ".git":
                continue
            path = Path(dirpath, name)
            if path.lstat().st_uid != uid:
                os.lchown(path, uid, gid)


def scrub_log(log_path: Path, secrets: Sequence[str]) -> None:
    """Replace every configured secret's value in a step's log by ``***``."""
    values = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)
    if not values or not log_path.is_file():
        return
    data = log_path.read_bytes()
    scrubbed = data
    for value in values:
        scrubbed = scrubbed.replace(value.encode(), b"***")
    if scrubbed != data:
        log_path.write_bytes(scrubbed)
