"""Where a step's files live when the dataset has subdatasets (issue 7, executor side).

git-annex works one repository at a time: ``git annex get inputs/raw/scan.bin``
run in the superdataset fails, because ``scan.bin`` belongs to the annex of
the installed subdataset ``inputs/raw``. These helpers find the innermost
installed dataset that holds a path, so each command runs where it belongs.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


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
