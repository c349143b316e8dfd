"""The dashboard over plain HTTP: what pages say, what they refuse, how streams end."""

from __future__ import annotations

import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import Dataset
from service_helpers import Daemon, Lab, make_lab, wait_for


@pytest.fixture
def quiet(tmp_path: Path, pipeline: Dataset) -> Iterator[tuple[Lab, Daemon]]:
    """A daemon that hears of no pushes, so what a push made stale stays stale."""
    lab = make_lab(tmp_path, pipeline, hook=False, watch=False)
    daemon = Daemon(lab).start()
    wait_for(daemon.scanned, 60, "the start-up scan")
    yield lab, daemon
    daemon.stop()


def _page(daemon: Daemon, path: str) -> str:
    with urllib.request.urlopen(daemon.base + path, timeout=30) as response:
        return str(response.read().decode())


def _status(daemon: Daemon, path: str) -> int:
    try:
        with urllib.request.urlopen(daemon.base + path, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_repositories_page_counts_the_stale_steps(quiet: tuple[Lab, Daemon]) -> None:
    """`/` lists the repository with its tip and, after a raw-data fix, three stale steps."""
    lab, daemon = quiet
    before = _page(daemon, "/")
    tip = lab.push_fix()

    after = _page(daemon, "/")

    assert '<td class="stale-count">0</td>' in before
    assert '<td class="stale-count">3</td>' in after
    assert f'title="{tip}"' in after
    assert 'src="/badge/lab.svg"' in after


def test_unknown_repository_and_job_pages_are_not_found(quiet: tuple[Lab, Daemon]) -> None:
    """Pages for names and ids nobody serves answer 404, not an error page."""
    _, daemon = quiet

    assert (404, 404, 404) == (
        _status(daemon, "/repos/nope"),
        _status(daemon, "/jobs/999"),
        _status(daemon, "/badge/nope.svg"),
    )


def test_job_stream_ends_for_a_finished_job(quiet: tuple[Lab, Daemon]) -> None:
    """A finished job's event stream sends the job, then `end`, and closes."""
    _, daemon = quiet
    job_id = daemon.jobs()[0]["id"]

    text = _page(daemon, f"/events/jobs/{job_id}")

    events = re.findall(r"^event: (\w+)$", text, flags=re.MULTILINE)
    assert ["job", "end"] == events


def test_open_event_stream_does_not_hold_up_shutdown(quiet: tuple[Lab, Daemon]) -> None:
    """SIGTERM with a jobs page open: the stream ends and the daemon exits 0 promptly."""
    _, daemon = quiet
    received: list[bytes] = []

    def listen() -> None:
        with urllib.request.urlopen(daemon.base + "/events/jobs", timeout=60) as response:
            received.extend(iter(lambda: response.read(64), b""))

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    wait_for(lambda: b"event: jobs" in b"".join(received), 10, "the first event")
    started = time.monotonic()

    code = daemon.stop()

    assert 0 == code
    assert time.monotonic() - started < 10
    listener.join(5)
    assert not listener.is_alive()
