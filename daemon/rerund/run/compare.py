"""Compare what a rerun produced with what the record's commit holds.

Two trees are compared by git object ids — no file is hashed for the
verdict. Only for the report are the differing blobs read: a unified diff
(capped) for text, size and SHA-256 for binary content, the two keys for
annexed files (and a diff when both contents are at hand).
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rerund.core.gitrepo import NULL_SHA, GitRepo

MAX_DIFF_LINES = 300
_ANNEX_MARK = b"/annex/objects/"
_SYMLINK_MODE = "120000"
_GITLINK_MODE = "160000"

ChangeKind = Literal["text", "binary", "annex", "subdataset"]


@dataclass(frozen=True)
class Side:
    """One version of a differing output: absent, or its size and checksum or annex key."""

    present: bool
    size: int | None = None
    sha256: str | None = None
    annex_key: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"present": self.present}
        for name in ("size", "sha256", "annex_key"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        return data

    def describe(self) -> str:
        if not self.present:
            return "absent"
        if self.annex_key is not None:
            return f"annex key {self.annex_key}"
        return f"{self.size} bytes, sha256 {(self.sha256 or '')[:16]}"


@dataclass(frozen=True)
class OutputDiff:
    path: str
    kind: ChangeKind
    recorded: Side
    rerun: Side
    diff: str | None = None
    """A unified diff (recorded → rerun), capped at ``MAX_DIFF_LINES`` lines."""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "path": self.path,
            "kind": self.kind,
            "recorded": self.recorded.to_json(),
            "rerun": self.rerun.to_json(),
        }
        if self.diff is not None:
            data["diff"] = self.diff
        return data


def compare_trees(
    repo: GitRepo,
    recorded: str,
    rerun: str,
    *,
    ignore_prefix: str,
    recorded_annex: GitRepo | None = None,
) -> list[OutputDiff]:
    """Every path whose content differs between commits ``recorded`` and ``rerun``.

    ``ignore_prefix`` (the sidecar record directory) is left out: a rerun's
    record differs from the original's by design. ``recorded_annex`` is the
    repository that may hold the recorded commit's annexed content.
    """
    out = repo.run("diff-tree", "-r", "-z", "--no-renames", recorded, rerun)
    fields = out.decode("utf-8", "surrogateescape").split("\0")
    diffs: list[OutputDiff] = []
    for meta, path in zip(fields[0::2], fields[1::2], strict=False):
        if not meta.startswith(":"):
            continue
        if ignore_prefix and (path == ignore_prefix or path.startswith(ignore_prefix + "/")):
            continue
        old_mode, new_mode, old_oid, new_oid, _status = meta[1:].split(" ")
        found = _describe(
            repo, path, (old_mode, old_oid), (new_mode, new_oid), recorded_annex or repo
        )
        if found is not None:
            diffs.append(found)
    return diffs


def _describe(
    repo: GitRepo,
    path: str,
    old: tuple[str, str],
    new: tuple[str, str],
    recorded_annex: GitRepo,
) -> OutputDiff | None:
    """The difference at ``path``; ``None`` when only the annex mode (locked or not) changed."""
    if _GITLINK_MODE in (old[0], new[0]):
        return OutputDiff(
            path, "subdataset", _gitlink_side(old[1]), _gitlink_side(new[1]), diff=None
        )
    old_data = _blob(repo, old[1])
    new_data = _blob(repo, new[1])
    old_key = _annex_key(old_data)
    new_key = _annex_key(new_data)
    if old_key is not None and old_key == new_key:
        return None
    if old_key is not None or new_key is not None:
        old_content = _annex_content(recorded_annex, old_key, old_data)
        new_content = _annex_content(repo, new_key, new_data)
        text = _text_diff(path, old_content, new_content)
        return OutputDiff(
            path, "annex", _annex_side(old_key, old_data), _annex_side(new_key, new_data), text
        )
    if _is_binary(old_data) or _is_binary(new_data):
        return OutputDiff(path, "binary", _side(old_data), _side(new_data))
    return OutputDiff(
        path, "text", _side(old_data), _side(new_data), _text_diff(path, old_data, new_data)
    )


def _blob(repo: GitRepo, oid: str) -> bytes | None:
    if oid == NULL_SHA:
        return None
    return repo.run("cat-file", "blob", oid)


def _annex_key(data: bytes | None) -> str | None:
    """The key an annex symlink target or pointer file names, if it is one."""
    if data is None or len(data) > 1024 or _ANNEX_MARK not in data:
        return None
    target = data.decode("utf-8", "replace").strip()
    return target.rsplit("/", 1)[-1] or None


def _annex_content(repo: GitRepo, key: str | None, data: bytes | None) -> bytes | None:
    """The annexed content of ``key`` if this repository has it (else ``None``)."""
    if key is None:
        return data
    out = repo.annex("contentlocation", key, check=False).decode().strip()
    if not out:
        return None
    location = Path(out)
    location = location if location.is_absolute() else repo.path / location
    return location.read_bytes() if location.is_file() else None


def _side(data: bytes | None) -> Side:
    if data is None:
        return Side(present=False)
    return Side(True, size=len(data), sha256=hashlib.sha256(data).hexdigest())


def _annex_side(key: str | None, data: bytes | None) -> Side:
    if key is None:
        return _side(data)
    size = next((part[1:] for part in key.split("-") if part.startswith("s")), "")
    return Side(True, size=int(size) if size.isdigit() else None, annex_key=key)


def _gitlink_side(oid: str) -> Side:
    return Side(oid != NULL_SHA, annex_key=None, sha256=None, size=None)


def _is_binary(data: bytes | None) -> bool:
    if data is None:
        return False
    if b"\0" in data[:8000]:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _text_diff(path: str, old: bytes | None, new: bytes | None) -> str | None:
    if (old is not None and _is_binary(old)) or (new is not None and _is_binary(new)):
        return None
    if old is None and new is None:
        return None
    lines = list(
        difflib.unified_diff(
            (old or b"").decode("utf-8").splitlines(keepends=True),
            (new or b"").decode("utf-8").splitlines(keepends=True),
            fromfile=f"recorded/{path}" if old is not None else "/dev/null",
            tofile=f"rerun/{path}" if new is not None else "/dev/null",
        )
    )
    lines = [line if line.endswith("\n") else line + "\n" for line in lines]
    if len(lines) > MAX_DIFF_LINES:
        cut = len(lines) - MAX_DIFF_LINES
        lines = [*lines[:MAX_DIFF_LINES], f"... ({cut} more lines)\n"]
    return "".join(lines)
