"""Only trusted pushes execute: ``trust`` with a real daemon, real hook and webhooks (SPEC §7)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import CLEAN
from helpers import Dataset, datalad, git, run
from rerund.triggers.webhooks import sign
from service_helpers import Daemon, Lab, make_lab, wait_for

RERUNS = ["[DATALAD RUNCMD] clean", "[DATALAD RUNCMD] stats", "[DATALAD RUNCMD] report"]


def _keygen(directory: Path, name: str) -> Path:
    key = directory / name
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key))
    return key


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Alice's key is in the allowed signers, Mallory's is not."""
    directory = tmp_path_factory.mktemp("keys")
    alice, mallory = _keygen(directory, "alice"), _keygen(directory, "mallory")
    signers = directory / "allowed_signers"
    public = alice.with_suffix(".pub").read_text(encoding="utf-8")
    signers.write_text(f'member@lab.example namespaces="git" {public}', encoding="utf-8")
    return {"alice": alice, "mallory": mallory, "signers": signers}


def _sign_with(repo: Path, key: Path | None) -> None:
    if key is None:
        git("config", "commit.gpgsign", "false", cwd=repo)
        return
    git("config", "gpg.format", "ssh", cwd=repo)
    git("config", "user.signingkey", str(key), cwd=repo)
    git("config", "commit.gpgsign", "true", cwd=repo)


@pytest.fixture(scope="module")
def signed_template(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Path]) -> Dataset:
    """A one-step dataset whose data, code and record commits Alice signed."""
    path = tmp_path_factory.mktemp("signed") / "ds"
    datalad("create", "-c", "text2git", str(path))
    _sign_with(path, keys["alice"])
    ds = Dataset(path)
    ds.write("raw/data.txt", "# measurements\n3\n1\n2\n")
    ds.write("code/clean.sh", CLEAN)
    datalad("save", "-m", "add raw data and code", cwd=path)
    ds.run_step("clean", "raw/data.txt", "work/clean.txt", "sh code/clean.sh {inputs} {outputs}")
    return ds


def _signed_lab(tmp_path: Path, template: Dataset, keys: dict[str, Path]) -> Lab:
    extra = f'allowed_signers_file = "{keys["signers"]}"\n'
    return make_lab(tmp_path, template, trust="signed", extra=extra)


def _push(lab: Lab, text: str, *, env: dict[str, str] | None = None) -> str:
    """Commit a raw-data change in the user's clone and push it (through the hook)."""
    user = lab.user
    user.git("pull", "-q", "--ff-only", "origin", "main")
    user.write("raw/data.txt", text)
    user.git("commit", "-qam", "fix raw data")
    subprocess.run(
        ["git", "push", "-q", "origin", "HEAD:main"],
        cwd=user.path,
        env={**os.environ, **(env or {})},
        check=True,
        capture_output=True,
    )
    return user.head()


def _job_for(daemon: Daemon, target: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        for job in daemon.jobs():
            if job["target"] == target and job["state"] not in ("queued", "running"):
                return job
        return None

    job: dict[str, Any] = wait_for(done, timeout_s=120, what=f"the job for {target[:8]}")
    return job


def _assert_refused(lab: Lab, daemon: Daemon, target: str, *words: str) -> dict[str, Any]:
    """Refused, saying which commit or pusher and which rule; nothing ran or was published."""
    job = _job_for(daemon, target)
    assert "refused" == job["state"], job
    for word in words:
        assert word in job["error"]
    assert target == lab.tip()
    steps = daemon.get(f"/api/jobs/{job['id']}")["steps"]
    assert steps
    assert {"not-run"} == {step["state"] for step in steps}
    return job


def test_without_a_trust_key_nothing_runs_and_the_key_is_named(
    _pipeline_template: Dataset, tmp_path: Path
) -> None:
    """A configuration without ``trust`` refuses the job, names the key, counts it, shows it."""
    lab = make_lab(tmp_path, _pipeline_template, trust=None)
    daemon = Daemon(lab).start()
    try:
        wait_for(daemon.scanned, timeout_s=90, what="the start-up scan to finish")
        target = _push(lab, "# measurements\n3\n1\n2\n10\n")
        _assert_refused(lab, daemon, target, 'set trust = "signed", "pushers" or "any"')
        metrics = daemon.get("/metrics")
        assert 'rerund_jobs_finished_total{state="refused"} 1.0' in metrics
        listing = run(
            sys.executable, "-m", "rerund", "jobs", "--url", daemon.base, cwd=tmp_path
        ).stdout
        assert "refused" in listing
        assert "no trust policy" in listing
        assert any(e["event"] == "repository runs nothing" for e in daemon.events())
    finally:
        daemon.stop()


def test_unsigned_and_wrongly_signed_pushes_are_refused(
    signed_template: Dataset, keys: dict[str, Path], tmp_path: Path
) -> None:
    """Under "signed", an unsigned push and one signed by a stranger's key run nothing."""
    lab = _signed_lab(tmp_path, signed_template, keys)
    daemon = Daemon(lab).start()
    try:
        wait_for(daemon.scanned, timeout_s=90, what="the start-up scan to finish")
        _sign_with(lab.user.path, None)
        unsigned = _push(lab, "# measurements\n3\n1\n2\n10\n")
        _assert_refused(lab, daemon, unsigned, unsigned[:12], '"signed"')

        _sign_with(lab.user.path, keys["mallory"])
        forged = _push(lab, "# measurements\n3\n1\n2\n11\n")
        _assert_refused(lab, daemon, forged, '"signed"')

        # A later good push does not run what the refused ones changed: they are checked again.
        _sign_with(lab.user.path, keys["alice"])
        good = _push(lab, "# measurements\n3\n1\n2\n12\n")
        _assert_refused(lab, daemon, good, '"signed"')
        assert "ok" == daemon.get("/healthz")["status"]
    finally:
        daemon.stop()


def test_a_signed_push_runs(
    signed_template: Dataset, keys: dict[str, Path], tmp_path: Path
) -> None:
    """Under "signed", a push whose every acted-upon commit Alice signed is rerun and published."""
    lab = _signed_lab(tmp_path, signed_template, keys)
    daemon = Daemon(lab).start()
    try:
        wait_for(daemon.scanned, timeout_s=90, what="the start-up scan to finish")
        _sign_with(lab.user.path, keys["alice"])
        fix = _push(lab, "# measurements\n3\n1\n2\n10\n")
        wait_for(lambda: lab.subjects_since(fix) == RERUNS[:1], what="the rerun to land")
        assert "succeeded" == _job_for(daemon, fix)["state"]
        # rerund's own (unsigned) rerun is its own: the next signed push reruns it again.
        again = _push(lab, "# measurements\n3\n1\n2\n20\n")
        wait_for(lambda: lab.subjects_since(again) == RERUNS[:1], what="the second rerun")
    finally:
        daemon.stop()


def test_pushers_named_by_the_hook(_pipeline_template: Dataset, tmp_path: Path) -> None:
    """Under "pushers", the hook's GL_USERNAME or Unix user decides; strangers block."""
    extra = 'trusted_pushers = ["alice"]\n'
    lab = make_lab(tmp_path, _pipeline_template, trust="pushers", extra=extra)
    daemon = Daemon(lab).start()
    try:
        wait_for(daemon.scanned, timeout_s=90, what="the start-up scan to finish")
        fix = _push(lab, "# measurements\n3\n1\n2\n10\n", env={"GL_USERNAME": "alice"})
        wait_for(lambda: lab.subjects_since(fix) == RERUNS, what="alice's push to be rerun")

        unix_user = run("id", "-un").stdout.strip()
        stranger = _push(lab, "# measurements\n3\n1\n2\n11\n")
        _assert_refused(lab, daemon, stranger, repr(unix_user), "trusted_pushers")

        later = _push(lab, "# measurements\n3\n1\n2\n12\n", env={"GITEA_PUSHER_NAME": "alice"})
        _assert_refused(lab, daemon, later, repr(unix_user))
    finally:
        daemon.stop()


def _webhook(daemon: Daemon, lab: Lab, provider: str, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    status, answer = daemon.post(
        f"/hooks/{provider}/lab", body, sign(provider, body, lab.secrets[provider])
    )
    assert 202 == status, answer


def test_pushers_named_by_webhooks(_pipeline_template: Dataset, tmp_path: Path) -> None:
    """Under "pushers", GitHub's sender and GitLab's user_username decide who pushed."""
    extra = 'trusted_pushers = ["alice"]\n'
    lab = make_lab(
        tmp_path, _pipeline_template, hook=False, watch=False, trust="pushers", extra=extra
    )
    daemon = Daemon(lab).start()
    try:
        wait_for(daemon.scanned, timeout_s=90, what="the start-up scan to finish")
        before = lab.tip()
        fix = _push(lab, "# measurements\n3\n1\n2\n10\n")
        _webhook(
            daemon,
            lab,
            "github",
            {
                "ref": "refs/heads/main",
                "before": before,
                "after": fix,
                "repository": {"full_name": "lab/lab"},
                "pusher": {"name": "alice"},
                "sender": {"login": "alice"},
            },
        )
        wait_for(lambda: lab.subjects_since(fix) == RERUNS, what="alice's push to be rerun")

        before = lab.tip()
        stranger = _push(lab, "# measurements\n3\n1\n2\n11\n")
        _webhook(
            daemon,
            lab,
            "gitlab",
            {
                "object_kind": "push",
                "ref": "refs/heads/main",
                "before": before,
                "after": stranger,
                "project": {"path_with_namespace": "lab/lab"},
                "user_username": "mallory",
            },
        )
        _assert_refused(lab, daemon, stranger, "'mallory'", "trusted_pushers")
    finally:
        daemon.stop()
