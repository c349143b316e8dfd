"""The on-disk history index: read once, then only new commits; rebuilt after rewrites."""

from __future__ import annotations

from helpers import Dataset
from rerund.core.gitrepo import GitRepo
from rerund.core.history import HistoryIndex


def _index(ds: Dataset) -> HistoryIndex:
    return HistoryIndex.open(GitRepo(ds.path), "main")


def test_index_reads_only_new_commits(pipeline: Dataset) -> None:
    """A second update after two new commits reads exactly those two."""
    index = _index(pipeline)
    first = index.update(pipeline.head())
    pipeline.write("a", "1\n")
    pipeline.save("a")
    pipeline.write("b", "1\n")
    pipeline.save("b")

    reopened = _index(pipeline)

    assert first == int(pipeline.git("rev-list", "--count", "HEAD")) - 2
    assert 2 == reopened.update(pipeline.head())
    assert 0 == reopened.update(pipeline.head())
    assert ["clean", "stats", "report"] == [r.summary for r in reopened.records()]


def test_index_rebuilds_after_history_rewrite(pipeline: Dataset) -> None:
    """When the branch is rewritten (no longer extends the indexed tip) the index starts over."""
    index = _index(pipeline)
    index.update(pipeline.head())
    pipeline.git("reset", "-q", "--hard", "HEAD~1")
    pipeline.write("x", "1\n")
    pipeline.save("x")

    read = index.update(pipeline.head())

    assert int(pipeline.git("rev-list", "--count", "HEAD")) == read
    assert ["clean", "stats"] == [r.summary for r in index.records()]
    assert pipeline.head() == index.commit_at(index.tip_seq)
