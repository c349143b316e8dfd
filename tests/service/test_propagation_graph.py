"""Which served datasets hear of a push to a subdataset: by id or URL, once, never in a loop."""

from __future__ import annotations

from pathlib import Path

from helpers import git
from rerund.service.propagate import dependents, notify_dependents
from rerund.service.store import Job, Notification, Store
from rerund.settings import RepoSettings, Settings

FAKE = "1" * 40  # gitlinks name commits of other repositories; these need not exist


def _served(root: Path, name: str, uses: dict[str, str], *, by_url: bool = False) -> RepoSettings:
    """A bare repository ``name`` whose dataset has a subdataset per entry of ``uses``."""
    work = root / "work" / name
    git("init", "-q", "-b", "main", str(work), cwd=root)
    (work / ".datalad").mkdir()
    (work / ".datalad/config").write_text(f'[datalad "dataset"]\n\tid = id-{name}\n')
    modules = ""
    for path, used in uses.items():
        git("update-index", "--add", "--cacheinfo", f"160000,{FAKE},{path}", cwd=work)
        modules += f'[submodule "{path}"]\n\tpath = {path}\n\turl = {root / "srv" / used}.git\n'
        if not by_url:
            modules += f"\tdatalad-id = id-{used}\n"
    (work / ".gitmodules").write_text(modules)
    git("add", ".datalad/config", ".gitmodules", cwd=work)
    git("commit", "-q", "-m", "dataset", cwd=work)
    bare = root / "srv" / f"{name}.git"
    git("clone", "-q", "--bare", str(work), str(bare), cwd=root)
    return RepoSettings(name=name, remote=str(bare))


def test_each_user_hears_once_and_a_user_of_a_user_waits(tmp_path: Path) -> None:
    """raw is used by analysis and paper; paper also uses analysis: only analysis hears first."""
    repos = (
        _served(tmp_path, "raw", {}),
        _served(tmp_path, "analysis", {"inputs/raw": "raw"}),
        _served(tmp_path, "paper", {"inputs/raw": "raw", "inputs/analysis": "analysis"}),
        _served(tmp_path, "other", {}),
    )
    settings = Settings(state_dir=tmp_path / "state", repos=repos)

    assert ["analysis"] == [s.repo.name for s in dependents(settings, "raw", ())]
    assert ["paper"] == [s.repo.name for s in dependents(settings, "analysis", ("raw",))]


def test_a_subdataset_is_matched_by_url_without_a_datalad_id(tmp_path: Path) -> None:
    """A .gitmodules entry with no datalad-id names the served repository by its URL."""
    repos = (_served(tmp_path, "raw", {}), _served(tmp_path, "ana", {"in": "raw"}, by_url=True))

    found = dependents(Settings(state_dir=tmp_path / "s", repos=repos), "raw", ())

    assert ["ana"] == [s.repo.name for s in found]


def test_datasets_using_each_other_do_not_loop(tmp_path: Path) -> None:
    """A uses B and B uses A: a push to A queues B (caused by A), B's publish queues nothing."""
    repos = (_served(tmp_path, "a", {"b": "b"}), _served(tmp_path, "b", {"a": "a"}))
    settings = Settings(state_dir=tmp_path / "state", repos=repos)
    store = Store(tmp_path / "state" / "rerund.sqlite")
    try:
        queued = notify_dependents(settings, store, _job(store, "a", None), FAKE, 1.0)
        assert ["b"] == queued
        job_b = store.jobs(limit=1)[0]
        assert (job_b.repo, job_b.cause, job_b.chain) == ("b", f"a@{FAKE[:12]}", "a")
        assert [] == notify_dependents(settings, store, job_b, FAKE, 2.0)
    finally:
        store.close()


def test_follow_subdatasets_false_opts_out(tmp_path: Path) -> None:
    """A repository with follow_subdatasets = false gets no propagated job."""
    raw = _served(tmp_path, "raw", {})
    ana = _served(tmp_path, "ana", {"in": "raw"})
    off = RepoSettings(name="ana", remote=ana.remote, follow_subdatasets=False)

    assert [] == dependents(Settings(state_dir=tmp_path / "s", repos=(raw, off)), "raw", ())


def _job(store: Store, repo: str, chain: str | None) -> Job:
    store.record_event(Notification(repo, "main", FAKE, FAKE, "test", chain=chain), now=0.0)
    return store.jobs(limit=1)[0]
