"""``rerund hooks install``: put the post-receive hook into a bare repository."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from rerund.core.gitrepo import GitRepo
from rerund.errors import RerundError
from rerund.triggers.spool import prepare_spool, spool_gid

MARKER = "rerund post-receive hook"


def hook_source() -> str:
    """The hook script shipped with rerund (``hooks/post-receive``)."""
    packaged = importlib.resources.files("rerund").joinpath("data/post-receive")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    # Running from a checkout: the script lives at the top of the repository.
    return (Path(__file__).resolve().parents[2] / "hooks" / "post-receive").read_text("utf-8")


def install(bare_repo: Path, spool_dir: Path, spool_group: str | None = None) -> Path:
    """Install the hook (or add it to ``post-receive.d/``) and point it at ``spool_dir``.

    An existing post-receive hook that is not rerund's is left alone: ours goes
    into ``hooks/post-receive.d/rerund`` beside it, as GitLab and Gitea expect.
    The spool becomes writable by ``spool_group``, or else by the repository's group.
    """
    if not (bare_repo / "objects").is_dir() or not (bare_repo / "refs").is_dir():
        raise RerundError(f"{bare_repo} is not a bare git repository")
    hooks = bare_repo / "hooks"
    target = hooks / "post-receive"
    if target.exists() and MARKER not in target.read_text(encoding="utf-8", errors="replace"):
        target = hooks / "post-receive.d" / "rerund"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(hook_source(), encoding="utf-8")
    target.chmod(0o755)
    gid = spool_gid(spool_group, ()) if spool_group else bare_repo.stat().st_gid
    prepare_spool(spool_dir, gid)
    GitRepo(bare_repo).run("config", "rerund.spool", str(spool_dir.resolve()))
    return target
