"""A step's files inside installed subdatasets (issue 7, executor side).

git and git-annex work one repository at a time: ``git annex get
inputs/raw/scan.bin`` run in the superdataset fails, because ``scan.bin``
belongs to the annex of the subdataset ``inputs/raw``; and a command that
writes into ``sub/`` leaves the superdataset with nothing to commit until
``sub`` has committed. These helpers find the dataset holding a path, list
what a commit changed inside subdatasets (outputs to unlock), and save
subdatasets bottom-up, as ``datalad save -r`` does.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from rerund.core.dsconfig import DatasetConfig
from rerund.core.gitrepo import WITHOUT_ANNEX_FILTER, GitRepo
from rerund.errors import GitError


def holding_dataset(root: Path, path: Path) -> Path:
    """The innermost installed dataset (``root`` or a subdataset below it) holding ``path``."""
    root = root.resolve()
    current = path.parent if not path.is_dir() or path.is_symlink() else path
    current = Path(current.resolve()) if current.exists() else current
    while current != root and root in current.parents:
        if (current / ".git").exists():
            return current
        current = current.parent
    return root


def by_dataset(root: Path, paths: Iterable[str]) -> dict[Path, list[str]]:
    """``paths`` (absolute) grouped by the installed dataset holding each, in first-seen order."""
    groups: dict[Path, list[str]] = {}
    for path in paths:
        groups.setdefault(holding_dataset(root, Path(path)), []).append(path)
    return groups


def changed_inside(repo: GitRepo, commit: str) -> list[str]:
    """Files ``commit`` added or modified inside installed subdatasets, nested ones too.

    What DataLad's rerun unlocks as undeclared outputs when the original commit
    moved a gitlink: the files that changed between the two subdataset commits.
    Subdatasets that are not installed, or lack those commits, add nothing.
    """
    if not (repo.path / ".gitmodules").exists():
        return []  # no subdatasets: spare every plain step a git call
    out = repo.run(
        "diff-tree", "--root", "-r", "-z", "--no-commit-id", "--no-renames",
        "--diff-filter=AM", "-m", "--first-parent", commit,
    )  # fmt: skip
    links = [entry for entry in _diff_entries(out) if entry[2] == _GITLINK]
    return _inside(repo.path, links)


_GITLINK = "160000"

# (path, old sha if the old entry was a gitlink, new mode, new sha)
_Entry = tuple[str, str | None, str, str]


def _inside(root: Path, links: list[_Entry]) -> list[str]:
    found: list[str] = []
    for path, old, _, new in links:
        if not (root / path / ".git").exists():
            continue
        sub = GitRepo(root / path)
        try:
            if old is None:
                entries = _list_entries(sub.run("ls-tree", "-r", "-z", "--full-tree", new))
            else:
                diff = ["diff-tree", "-r", "-z", "--no-renames", "--diff-filter=AM", old, new]
                entries = _diff_entries(sub.run(*diff))
        except GitError:
            continue  # the commits are not here: nothing known to unlock
        nested = [entry for entry in entries if entry[2] == _GITLINK]
        found.extend(f"{path}/{name}" for name, _, mode, _ in entries if mode != _GITLINK)
        found.extend(f"{path}/{name}" for name in _inside(sub.path, nested))
    return found


def _diff_entries(out: bytes) -> list[_Entry]:
    fields = out.decode("utf-8", "replace").split("\0")
    entries: list[_Entry] = []
    for i in range(0, len(fields) - 1, 2):
        meta = fields[i].lstrip(":").split(" ")
        if len(meta) >= 4:
            old = meta[2] if meta[0] == _GITLINK else None
            entries.append((fields[i + 1], old, meta[1], meta[3]))
    return entries


def _list_entries(out: bytes) -> list[_Entry]:
    entries: list[_Entry] = []
    for item in out.decode("utf-8", "replace").split("\0"):
        if item:
            meta, _, name = item.partition("\t")
            mode, _, sha = meta.split(" ")
            entries.append((name, None, mode, sha))
    return entries


def commit_subdatasets(root: Path, message: str, relock: list[str]) -> list[str]:
    """Commit what changed inside installed subdatasets, deepest first, as ``datalad save -r``.

    Each subdataset that changed gets a commit with ``message`` (DataLad gives
    every dataset of a run the same record); its annexed outputs (``relock``,
    relative to ``root``) and new files are annexed by its own rules. The
    superdataset then sees the moved gitlinks as ordinary changes. Only
    subdatasets that ``git status`` reports as changed are visited. Returns
    the subdatasets committed.
    """
    committed: list[str] = []
    _commit_tree(root, "", message, relock, committed)
    return committed


def _commit_tree(
    root: Path, path: str, message: str, relock: list[str], committed: list[str]
) -> None:
    """Commit the dirty subdatasets below ``root/path``, then (unless the root) itself."""
    dataset = root / path if path else root
    repo = GitRepo(dataset)
    if (dataset / ".gitmodules").exists():
        for inner in _dirty_subdatasets(repo):
            _commit_tree(root, f"{path}/{inner}" if path else inner, message, relock, committed)
    if not path:
        return
    mine = [p[len(path) + 1 :] for p in relock if p.startswith(path + "/")]
    if _stage(repo, mine):
        repo.run(*WITHOUT_ANNEX_FILTER, "commit", "--quiet", "-F", "-", stdin=message.encode())
        committed.append(path)


def _dirty_subdatasets(repo: GitRepo) -> list[str]:
    """Installed subdatasets of ``repo`` whose content or HEAD differs from the gitlink."""
    out = repo.run(
        *WITHOUT_ANNEX_FILTER, "status", "--porcelain=v2", "-z", "--untracked-files=normal",
        "--ignore-submodules=none",
    )  # fmt: skip
    found: list[str] = []
    for entry in out.decode("utf-8", "replace").split("\0"):
        # "1 XY SUB ..." where SUB starts with "S" for a submodule; the path is last.
        fields = entry.split(" ", 8)
        submodule = len(fields) == 9 and fields[0] == "1" and fields[2].startswith("S")
        if submodule and (repo.path / fields[8] / ".git").exists():
            found.append(fields[8])
    return found


def _stage(sub: GitRepo, relock: list[str]) -> bool:
    """Stage every change in ``sub``; whether anything is staged."""
    out = sub.run(
        *WITHOUT_ANNEX_FILTER, "status", "--porcelain=v1", "-z", "--untracked-files=all",
        "--no-renames",
    )  # fmt: skip
    changed: set[str] = set()
    untracked: list[str] = []
    for entry in out.decode("utf-8", "replace").split("\0"):
        if entry:
            changed.add(entry[3:])
            if entry.startswith("??"):
                untracked.append(entry[3:])
    if not changed:
        return False
    to_annex = [p for p in dict.fromkeys([*untracked, *relock]) if p in changed]
    if to_annex and DatasetConfig.read(sub).is_annex:
        sub.annex("add", "--quiet", "--", *to_annex)
    else:
        to_annex = []
    plain = sorted(changed - set(to_annex))
    if plain:
        sub.run(*WITHOUT_ANNEX_FILTER, "add", "--all", "--", *plain)
    return not sub.succeeds(*WITHOUT_ANNEX_FILTER, "diff", "--cached", "--quiet")
