"""Install the subdatasets a step needs, at the commits their gitlinks record (issue 7).

What ``datalad run``/``rerun`` do before a command (reference §2, §4, §5): every
uninstalled subdataset on the way to a declared input or output is cloned and
checked out at its gitlink, level by level (all of ``s0/s1_*`` before any
``s0/s1_*/s2``), re-matching the specs after each round, so globs through
subdatasets match. Sources are tried as DataLad orders them (``datalad-url``,
then ``url`` against the superdataset's remote, then the remote plus the path,
then ``url`` against the local superdataset); a source lacking the recorded
commit is removed again and the next one tried (DataLad keeps the wrong clone).
Before all of them comes a local copy configured for the subdataset's
``datalad-id`` or URL (``rerund-source.<id or url>.path`` in the top dataset's
git config; the daemon writes it from ``[subdataset_sources]`` and the
repositories it serves).
"""

from __future__ import annotations

import fnmatch
import posixpath
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from rerund.core.gitrepo import WITHOUT_ANNEX_FILTER, GitRepo
from rerund.errors import GitError, InputError


def install_for(root: Path, specs: Sequence[str], pwd: str) -> list[str]:
    """Install what ``specs`` (relative to ``pwd``) reach through; returns the paths installed."""
    patterns = [p for spec in specs if spec.strip() and (p := _pattern(spec, pwd)) is not None]
    installed: list[str] = []
    local = configured_sources(GitRepo(root))
    while True:
        wanted = [
            (path, sha)
            for path, sha in _uninstalled(root)
            if any(_on_the_way(path, pattern) for pattern in patterns)
        ]
        if not wanted:
            return installed
        for path, sha in sorted(wanted):
            _install(root, path, sha, local)
            installed.append(path)


def _pattern(spec: str, pwd: str) -> list[str] | None:
    joined = posixpath.normpath(posixpath.join(pwd, spec))
    if joined.startswith("../") or joined == ".." or posixpath.isabs(joined):
        return None
    return [] if joined == "." else joined.split("/")


def _on_the_way(path: str, pattern: list[str]) -> bool:
    """Whether the subdataset ``path`` lies on (or is) what ``pattern`` names."""
    names = path.split("/")
    for index, name in enumerate(names):
        if index >= len(pattern):
            return False  # the spec names a folder above the subdataset
        if pattern[index] == "**":
            return True
        if not fnmatch.fnmatchcase(name, pattern[index]):
            return False
    return True


def _uninstalled(root: Path) -> list[tuple[str, str]]:
    """(path, recorded commit) of every gitlink of an installed dataset with nothing installed."""
    found: list[tuple[str, str]] = []
    if not (root / ".gitmodules").exists():
        return found
    out = GitRepo(root).run(*WITHOUT_ANNEX_FILTER, "ls-files", "-s", "-z")
    for entry in out.decode("utf-8", "replace").split("\0"):
        meta, _, path = entry.partition("\t")
        if not meta.startswith("160000 "):
            continue
        if (root / path / ".git").exists():
            found.extend((f"{path}/{inner}", sha) for inner, sha in _uninstalled(root / path))
        else:
            found.append((path, meta.split(" ")[1]))
    return found


SOURCE_SECTION = "rerund-source"


def configured_sources(repo: GitRepo) -> dict[str, str]:
    """``rerund-source.<datalad id or url>.path`` entries of ``repo``'s git config."""
    out = repo.run(
        "config", "-z", "--get-regexp", rf"^{SOURCE_SECTION}\..*\.path$", check=False
    ).decode("utf-8", "replace")
    found: dict[str, str] = {}
    for item in out.split("\0"):
        key, _, value = item.partition("\n")
        if key and value:
            found[key[len(SOURCE_SECTION) + 1 : -len(".path")]] = value
    return found


def _install(root: Path, path: str, sha: str, local: Mapping[str, str]) -> None:
    """Clone the subdataset at ``path`` (relative to ``root``) and check out ``sha``."""
    holder = _holder(root, path)
    inner = path[len(holder) + 1 :] if holder else path
    parent = root / holder if holder else root
    dest = root / path
    tried: list[str] = []
    for source in _sources(GitRepo(parent), inner, local):
        tried.append(source)
        if _clone_at(source, dest, sha, parent):
            return
    raise InputError(
        f"cannot install subdataset {path} at {sha[:8]}: tried {', '.join(tried) or 'no source'}"
    )


def _holder(root: Path, path: str) -> str:
    """The installed dataset (relative to ``root``, "" for root) directly holding ``path``."""
    parts = path.split("/")
    for end in range(len(parts) - 1, 0, -1):
        candidate = "/".join(parts[:end])
        if (root / candidate / ".git").exists():
            return candidate
    return ""


def _sources(parent: GitRepo, path: str, local: Mapping[str, str]) -> list[str]:
    """Clone sources for ``parent``'s subdataset ``path``: a configured local copy first,
    then DataLad's candidates in its order of cost."""
    config = parent.path / ".gitmodules"
    values: dict[str, str] = {}
    for key in ("datalad-id", "datalad-url", "url"):
        out = parent.run("config", "-f", str(config), f"submodule.{path}.{key}", check=False)
        if out.strip():
            values[key] = out.decode().strip()
    remote = parent.run("config", "remote.origin.url", check=False).decode().strip()
    candidates: list[str] = [
        local[value]
        for key in ("datalad-id", "datalad-url", "url")
        if (value := values.get(key)) is not None and value in local
    ]
    if "datalad-url" in values:
        candidates.append(_resolve(values["datalad-url"], str(parent.path)))
    url = values.get("url")
    if url and remote:
        candidates.append(_resolve(url, _local(remote, parent.path)))
    if remote:
        candidates.append(_local(remote, parent.path).rstrip("/") + "/" + path)
    if url:
        candidates.append(_resolve(url, str(parent.path)))
    return list(dict.fromkeys(candidates))


def _local(url: str, base: Path) -> str:
    """A remote URL as a path when it is a relative local path."""
    if url.startswith(("./", "../")):
        return str((base / url).resolve())
    return url


def _resolve(url: str, base: str) -> str:
    if not url.startswith(("./", "../")):
        return url
    if "://" in base or (":" in base and not base.startswith("/")):
        return base.rstrip("/") + "/" + url  # git resolves it on the far side
    return str((Path(base) / url).resolve())


def _clone_at(source: str, dest: Path, sha: str, parent: Path) -> bool:
    """Clone ``source`` into ``dest`` at ``sha``; on failure leave nothing behind."""
    created = not dest.exists()
    try:
        GitRepo(parent).run("clone", "--quiet", "--no-checkout", source, str(dest))
        sub = GitRepo(dest)
        if sub.resolve(sha) is None:
            sub.run("fetch", "--quiet", "origin", sha, check=False)
        if sub.resolve(sha) is not None:
            _check_out(sub, sha)
            return True
    except GitError:
        pass
    if dest.exists():
        shutil.rmtree(dest)
        if not created:
            dest.mkdir()  # the empty folder git checks out for an uninstalled subdataset
    return False


def _check_out(sub: GitRepo, sha: str) -> None:
    """Check out ``sha``: on the default branch when it is an ancestor of it, else detached."""
    branch = sub.run("symbolic-ref", "--short", "-q", "HEAD", check=False).decode().strip()
    tip = sub.resolve(branch) if branch else None
    if branch and (tip is None or sub.succeeds("merge-base", "--is-ancestor", sha, tip)):
        sub.run("checkout", "--quiet", "-B", branch, sha)
    else:
        sub.run("checkout", "--quiet", "--detach", sha)
    if sub.resolve("origin/git-annex") is not None:
        sub.annex("init", "--quiet")
