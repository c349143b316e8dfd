"""The git configuration of a dataset, as rerund and DataLad read it.

Read once per plan or rerun with a single ``git config --list`` so that no step
pays for its own config lookups.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rerund.core.gitrepo import GitRepo
from rerund.core.records import SIDECAR_DIR
from rerund.errors import RerundError

DriftPolicy = Literal["rerun", "report"]

_SUBSTITUTION = "datalad.run.substitutions."
_FALSE = {"false", "no", "off", "0", "disable"}
_TRUE = {"true", "yes", "on", "1", "enable"}


@dataclass(frozen=True)
class DatasetConfig:
    is_annex: bool
    substitutions: dict[str, str | tuple[str, ...]]
    """Custom placeholders; several values form a tuple, as in DataLad."""
    record_sidecar: bool
    record_dir: str
    implicit_inputs: bool
    drift: DriftPolicy
    only_annex_hooks: bool
    """No commit hook but git-annex's own pre-commit (so reruns may commit without hooks)."""
    reuse: bool = True
    """``git config rerund.reuse false``: never restore results from history (issue 10)."""

    @classmethod
    def read(cls, repo: GitRepo) -> DatasetConfig:
        values: dict[str, list[str]] = {}
        # DataLad reads the committed .datalad/config ("branch" scope) under git's own.
        out = _committed_config(repo) + repo.run("config", "-z", "--list", check=False).decode(
            "utf-8", "replace"
        )
        for entry in out.split("\0"):
            key, _, value = entry.partition("\n")
            if key:
                values.setdefault(key, []).append(value)

        def last(key: str, default: str) -> str:
            return values.get(key, [default])[-1]

        substitutions: dict[str, str | tuple[str, ...]] = {
            key[len(_SUBSTITUTION) :]: found[0] if len(found) == 1 else tuple(found)
            for key, found in values.items()
            if key.startswith(_SUBSTITUTION)
        }
        drift = last("rerund.drift", "rerun").lower()
        if drift not in ("rerun", "report"):
            raise RerundError(f"git config rerund.drift must be 'rerun' or 'report', not {drift!r}")
        return cls(
            is_annex="annex.version" in values,
            substitutions=substitutions,
            record_sidecar=last("datalad.run.record-sidecar", "false").lower() in _TRUE,
            record_dir=last("datalad.run.record-directory", SIDECAR_DIR).strip("/"),
            implicit_inputs=last("rerund.implicit-inputs", "true").lower() not in _FALSE,
            drift="report" if drift == "report" else "rerun",
            only_annex_hooks=_only_annex_hooks(repo),
            reuse=last("rerund.reuse", "true").lower() not in _FALSE,
        )


def _committed_config(repo: GitRepo) -> str:
    """The ``datalad.*`` settings of the dataset's committed ``.datalad/config``, as
    ``git config -z --list`` entries (with a trailing NUL); empty without the file.

    Only DataLad's own keys: a committed file must not set git's or git-annex's.
    """
    path = repo.path / ".datalad" / "config"
    if not path.is_file():
        return ""
    out = repo.run("config", "-z", "--list", "--no-includes", "--file", str(path), check=False)
    entries = out.decode("utf-8", "replace").split("\0")
    return "".join(f"{entry}\0" for entry in entries if entry.startswith("datalad."))


_ANNEX_PRE_COMMIT = "# automatically configured by git-annex\ngit annex pre-commit .\n"


def _only_annex_hooks(repo: GitRepo) -> bool:
    hooks = Path(repo.text("rev-parse", "--git-path", "hooks"))
    hooks = hooks if hooks.is_absolute() else repo.path / hooks
    for name in ("pre-commit", "commit-msg"):  # the hooks --no-verify skips
        hook = hooks / name
        if not hook.is_file():
            continue
        text = hook.read_text(encoding="utf-8", errors="replace")
        if name != "pre-commit" or text.replace("#!/bin/sh\n", "", 1) != _ANNEX_PRE_COMMIT:
            return False
    return True
