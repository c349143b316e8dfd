"""Continuous verification in the daemon: queued by token or schedule, stored, badged, measured."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import Dataset, datalad, git
from rerund.errors import ConfigError
from rerund.settings import load
from service_helpers import API_TOKEN, Daemon, Lab, make_lab, wait_for

TOKEN = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def lab(tmp_path: Path, annexed_pipeline: Dataset) -> Lab:
    """An annex lab: content lives on the server, none in rerund's clones."""
    return make_lab(tmp_path, annexed_pipeline, annex_remote=True)


@pytest.fixture
def daemon(lab: Lab) -> Iterator[Daemon]:
    running = Daemon(lab).start()
    wait_for(running.scanned, 60, "the start-up scan")
    yield running
    running.stop()


def _finished(daemon: Daemon, after: int = 0) -> dict[str, Any] | None:
    found: dict[str, Any] = daemon.get("/api/repos/lab/verification")
    latest = found["latest"]
    return found if latest is not None and latest["id"] > after else None


def _raw(daemon: Daemon, path: str) -> tuple[str, str]:
    with urllib.request.urlopen(daemon.base + path, timeout=10) as response:
        return response.headers["Content-Type"], response.read().decode()


def test_verification_needs_the_token_and_stores_a_verdict_per_record(
    lab: Lab, daemon: Daemon
) -> None:
    """POST /verify needs the token; the job judges every record and publishes nothing."""
    refs_before = git("for-each-ref", cwd=lab.bare)

    assert 401 == daemon.post("/api/repos/lab/verify", b"", {})[0]
    status, answer = daemon.post("/api/repos/lab/verify", b"", TOKEN)
    found = wait_for(lambda: _finished(daemon), 120, "the verification")

    assert 202 == status
    assert answer["job"] == found["latest"]["id"]
    assert (3, 3, lab.tip()) == (
        found["latest"]["reproducible"],
        found["latest"]["total"],
        found["latest"]["head"],
    )
    states = {record["summary"]: record["state"] for record in found["records"]}
    assert {"clean": "identical", "stats": "identical", "report": "identical"} == states
    assert refs_before == git("for-each-ref", cwd=lab.bare)
    kind, svg = _raw(daemon, "/badge/lab.svg")
    assert kind.startswith("image/svg+xml")
    assert "reproducible: 3/3" in svg
    assert 'data-state="reproducible"' in svg
    metrics = daemon.get("/metrics")
    assert 'rerund_reproducible_records{repo="lab"} 3.0' in metrics
    assert 'rerund_verified_records{repo="lab"} 3.0' in metrics


def test_a_record_that_differs_turns_the_badge_red(lab: Lab, daemon: Daemon) -> None:
    """A pushed record embedding the time verifies as differs: 3/4, badge state differs."""
    user = lab.user
    datalad("run", "-m", "stamp", "-o", "stamp.txt", "date +%s%N > stamp.txt", cwd=user.path)
    git("annex", "copy", "--quiet", "--to", "origin", "stamp.txt", cwd=user.path)
    git("annex", "sync", "--quiet", "--only-annex", "--no-content", "origin", cwd=user.path)
    user.git("push", "-q", "origin", "HEAD:main")
    wait_for(lambda: daemon.idle() and lab.tip() == user.head(), 60, "the push to be handled")

    daemon.post("/api/repos/lab/verify", b"", TOKEN)
    found = wait_for(lambda: _finished(daemon), 120, "the verification")

    assert (3, 4) == (found["latest"]["reproducible"], found["latest"]["total"])
    stamp = next(record for record in found["records"] if record["summary"] == "stamp")
    assert "differs" == stamp["state"]
    assert ["stamp.txt"] == [difference["path"] for difference in stamp["differences"]]
    _, svg = _raw(daemon, "/badge/lab.svg")
    assert "reproducible: 3/4" in svg
    assert 'data-state="differs"' in svg


def test_unverified_repository_has_a_grey_badge_and_no_scheduled_job(daemon: Daemon) -> None:
    """Without verify_every nothing is verified on its own; the badge says unknown."""
    found = daemon.get("/api/repos/lab/verification")

    assert (None, []) == (found["latest"], found["recent"])
    assert 'data-state="unknown"' in _raw(daemon, "/badge/lab.svg")[1]


def test_verify_every_queues_a_verification_on_its_own(tmp_path: Path, pipeline: Dataset) -> None:
    """With verify_every set, the daemon verifies without being asked, once per period."""
    lab = make_lab(tmp_path, pipeline, extra='verify_every = "7d"\n')
    daemon = Daemon(lab).start()
    try:
        found = wait_for(lambda: _finished(daemon), 120, "the scheduled verification")
    finally:
        daemon.stop()

    assert "schedule" == found["latest"]["source"]
    assert 1 == len(found["recent"])
    assert (3, 3) == (found["latest"]["reproducible"], found["latest"]["total"])


def test_verify_every_reads_spans(tmp_path: Path) -> None:
    """verify_every takes '7d', '12h', '30m' or seconds; anything else names the key."""
    config = tmp_path / "rerund.toml"
    template = '[[repos]]\nname = "lab"\nremote = "/srv/lab.git"\nverify_every = {}\n'
    spans = {'"7d"': 7 * 86400.0, '"12h"': 43200.0, '"30m"': 1800.0, "90": 90.0}
    for text, seconds in spans.items():
        config.write_text(template.format(text))
        assert seconds == load(config).repos[0].verify_every_s
    config.write_text(template.format('"soon"'))
    with pytest.raises(ConfigError, match=r"repos\[0\]\.verify_every"):
        load(config)
