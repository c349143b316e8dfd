"""Where a served dataset's subdatasets live on this server (issue 7).

A subdataset is known by the ``datalad-id`` and URLs in its superdataset's
``.gitmodules``. On the server, the served bare repositories (their dataset id
read from ``.datalad/config`` on the served branch, their path) and the
``[subdataset_sources]`` setting map those to local repositories. The planner
reads subdataset commits from them (:func:`served_locator`); the executor's
installer clones from them (:func:`use_sources` writes the map into the work
clone's git config, where :mod:`rerund.run.install` reads it).

Blocking: run these in a thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rerund.core.gitrepo import GitRepo
from rerund.core.subdatasets import Locator, installed_locator
from rerund.run.install import SOURCE_SECTION
from rerund.settings import RepoSettings, Settings

_SOURCES_FILE = "rerund-sources.config"


@dataclass(frozen=True)
class Served:
    """One served repository seen as a dataset: its id and branch tip right now."""

    repo: RepoSettings
    path: Path
    dsid: str | None
    tip: str | None


def served_datasets(settings: Settings) -> list[Served]:
    """Every served repository that is a directory on this machine."""
    found: list[Served] = []
    for repo in settings.all_repos():
        path = repo.local_path
        if path is None or not path.is_dir():
            continue
        git = GitRepo(path)
        tip = git.resolve(f"refs/heads/{repo.branch}")
        dsid = None
        if tip is not None:
            out = git.run(
                "config", "--blob", f"{tip}:.datalad/config", "datalad.dataset.id", check=False
            )
            dsid = out.decode().strip() or None
        found.append(Served(repo, path, dsid, tip))
    return found


def served_sources(settings: Settings) -> dict[str, str]:
    """Datalad id or URL -> local path: served repositories, then ``[subdataset_sources]``."""
    sources: dict[str, str] = {}
    for served in served_datasets(settings):
        if served.dsid:
            sources[served.dsid] = str(served.path)
        for url in _spellings(str(served.path)):
            sources[url] = str(served.path)
    sources.update(settings.subdataset_sources)  # the operator's word wins
    return sources


def _spellings(path: str) -> list[str]:
    bare = path.rstrip("/")
    return [bare, bare + "/", "file://" + bare]


def submodules_at(git: GitRepo, rev: str) -> dict[str, dict[str, str]]:
    """``.gitmodules`` at ``rev``, by submodule path: its ``url``, ``datalad-id``, ..."""
    out = git.run(
        "config",
        "-z",
        "--blob",
        f"{rev}:.gitmodules",
        "--get-regexp",
        r"^submodule\.",
        check=False,
    ).decode("utf-8", "replace")
    by_name: dict[str, dict[str, str]] = {}
    for item in out.split("\0"):
        key, _, value = item.partition("\n")
        if not key:
            continue
        name, _, field = key[len("submodule.") :].rpartition(".")
        by_name.setdefault(name, {})[field] = value
    return {entry["path"]: entry for entry in by_name.values() if "path" in entry}


def source_of(entry: Mapping[str, str], sources: Mapping[str, str]) -> str | None:
    """The local path a ``.gitmodules`` entry maps to: by datalad id, else by URL."""
    for key in ("datalad-id", "datalad-url", "url"):
        value = entry.get(key)
        if value and value in sources:
            return sources[value]
    return None


def served_locator(top: GitRepo, tip: str, sources: Mapping[str, str]) -> Locator:
    """Subdataset objects from their local source (it has every pushed commit), else from
    what is installed in ``top``. Nested subdatasets are looked up in their parent's
    ``.gitmodules`` on its default branch."""
    installed = installed_locator(top)
    tables: dict[str, dict[str, dict[str, str]]] = {}

    def table(holder: str) -> dict[str, dict[str, str]]:
        if holder not in tables:
            parent = top if not holder else locate(holder)
            rev = tip if not holder else "HEAD"
            tables[holder] = submodules_at(parent, rev) if parent is not None else {}
        return tables[holder]

    def locate(path: str) -> GitRepo | None:
        parts = path.split("/")
        for end in range(len(parts) - 1, -1, -1):
            holder = "/".join(parts[:end])
            entry = table(holder).get("/".join(parts[end:]))
            if entry is not None:
                found = source_of(entry, sources)
                if found is not None and Path(found).is_dir():
                    return GitRepo(Path(found))
                break
        return installed(path)

    return locate


def use_sources(repo: GitRepo, sources: Mapping[str, str]) -> None:
    """Write ``sources`` into ``repo``'s git config (an included file, rewritten whole)."""
    lines = [
        f'[{SOURCE_SECTION} "{_quote(key)}"]\n\tpath = "{_quote(value)}"\n'
        for key, value in sorted(sources.items())
    ]
    (repo.common_dir / _SOURCES_FILE).write_text("".join(lines), encoding="utf-8")
    included = repo.run("config", "--get-all", "include.path", check=False).decode().split("\n")
    if _SOURCES_FILE not in included:
        repo.run("config", "--add", "include.path", _SOURCES_FILE)


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
