"""Records that attack the daemon, pushed through the real hook to a real daemon (SPEC §7).

One daemon serves every attack in turn; each attack is a hand-written run
record made stale by a change of its own input, so it is the only step of its
job. Each must be denied or stopped, the daemon must stay healthy, nothing may
be published, the job must say why, and no secret may reach a log.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import Dataset
from service_helpers import Daemon, Lab, make_lab, push_record, wait_for

LIMITS = "memory_mb = 512\nmax_processes = 100\nmax_log_bytes = 1048576\n"
SECRETS = ("gh-secret", "gl-token", "gt-secret", "api-token", "file-secret-sentinel")


@pytest.fixture(scope="module")
def served(
    _pipeline_template: Dataset, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Lab, Daemon]]:
    lab = make_lab(tmp_path_factory.mktemp("isolation"), _pipeline_template, extra=LIMITS)
    (lab.root / "secrets").mkdir()
    (lab.root / "secrets" / "token").write_text("file-secret-sentinel\n", encoding="utf-8")
    daemon = Daemon(lab).start()
    wait_for(daemon.scanned, timeout_s=90, what="the start-up scan to finish")
    # Another repository's work clone, as a second served repository would leave it.
    other = lab.root / "state" / "work" / "other"
    other.mkdir(parents=True)
    (other / "private.txt").write_text("file-secret-sentinel\n", encoding="utf-8")
    yield lab, daemon
    daemon.stop()


def finished_job(daemon: Daemon, target: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        for job in daemon.jobs():
            if job["target"] == target and job["state"] not in ("queued", "running"):
                return job
        return None

    job: dict[str, Any] = wait_for(done, timeout_s=120, what=f"the job for {target[:8]}")
    return job


def attack(lab: Lab, daemon: Daemon, name: str, cmd: str, why: str) -> dict[str, Any]:
    """Push the attack; it must be contained; then revert its input so it is stale no more."""
    job = assert_contained(lab, daemon, push_record(lab, name, cmd), why)
    lab.user.write(f"attack/{name}.in", "1\n")
    lab.user.git("commit", "-qam", f"revert the input of {name}")
    lab.user.git("push", "-q", "origin", "HEAD:main")
    assert "succeeded" == finished_job(daemon, lab.user.head())["state"]
    return job


def assert_contained(lab: Lab, daemon: Daemon, target: str, why: str) -> dict[str, Any]:
    """Stopped, saying ``why``; nothing published; daemon healthy; no secret in the log."""
    job = finished_job(daemon, target)
    assert "failed" == job["state"], job
    assert why in job["error"]
    assert target == lab.tip()
    assert "ok" == daemon.get("/healthz")["status"]
    text = daemon.get(f"/api/jobs/{job['id']}/log")
    assert not [secret for secret in SECRETS if secret in text]
    return job


def test_cannot_read_the_settings_file(served: tuple[Lab, Daemon]) -> None:
    """The settings file (tokens, webhook secrets) does not exist inside the sandbox."""
    lab, daemon = served
    cmd = f"cat {lab.config} > attack/settings.out"
    job = attack(lab, daemon, "settings", cmd, "exited with 1")
    assert "No such file or directory" in daemon.get(f"/api/jobs/{job['id']}/log")


def test_cannot_read_a_secret_file_or_another_work_clone(served: tuple[Lab, Daemon]) -> None:
    """Secret files beside the settings, and other repositories' clones, are out of sight."""
    lab, daemon = served
    cmd = (
        f"cat {lab.root}/secrets/token > attack/files.out;"
        f" cat {lab.root}/state/work/other/private.txt >> attack/files.out;"
        f" cat {lab.root}/state/rerund.sqlite >> attack/files.out; test -s attack/files.out"
    )
    attack(lab, daemon, "files", cmd, "exited with 1")


def test_cannot_read_the_bare_repositories(served: tuple[Lab, Daemon]) -> None:
    """The served bare repository cannot be read or cloned from inside a step."""
    lab, daemon = served
    cmd = f"git clone -q {lab.bare} attack/clone && ls {lab.bare}/refs > attack/bare.out"
    attack(lab, daemon, "bare", cmd, "exited with")


def test_cannot_write_outside_the_work_tree(served: tuple[Lab, Daemon]) -> None:
    """Host /tmp is not the step's /tmp, and another repository's hooks/ cannot be written."""
    lab, daemon = served
    host_file = Path("/tmp") / f"rerund-escape-{uuid.uuid4().hex}"
    cmd = (
        f"echo escaped > {host_file}; echo escaped > {lab.bare}/hooks/post-update"
        " && echo done > attack/write.out"
    )
    attack(lab, daemon, "write", cmd, "exited with")
    assert not host_file.exists()
    assert not (lab.bare / "hooks" / "post-update").exists()


def test_cannot_plant_a_git_hook(served: tuple[Lab, Daemon]) -> None:
    """The work clone's .git is read-only inside the step: no hook can be planted."""
    lab, daemon = served
    sentinel = lab.root / "hook-ran"
    cmd = (
        f"printf '#!/bin/sh\\ntouch {sentinel}\\n' > .git/hooks/post-commit"
        " && chmod +x .git/hooks/post-commit && echo x > attack/hook.out"
    )
    attack(lab, daemon, "hook", cmd, "exited with")
    assert not sentinel.exists()


def test_cannot_connect_to_a_local_listener(served: tuple[Lab, Daemon]) -> None:
    """Without ``network = true`` a step has no network, not even 127.0.0.1."""
    lab, daemon = served
    accepted: list[object] = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.2)
        port = listener.getsockname()[1]
        stop = threading.Event()

        def accept() -> None:
            while not stop.is_set():
                try:
                    accepted.append(listener.accept())
                except TimeoutError:
                    continue

        thread = threading.Thread(target=accept)
        thread.start()
        try:
            cmd = (
                "python3 -c \"import socket; socket.create_connection(('127.0.0.1', "
                f'{port}), timeout=5)" && echo connected > attack/net.out'
            )
            attack(lab, daemon, "net", cmd, "exited with 1")
        finally:
            stop.set()
            thread.join()
    assert [] == accepted


def test_a_fork_bomb_hits_the_process_limit(served: tuple[Lab, Daemon]) -> None:
    """Forking 10,000 processes stops at max_processes and the job names that limit."""
    lab, daemon = served
    cmd = "i=0; while [ $i -lt 10000 ]; do sleep 60 & i=$((i+1)); done; wait"
    attack(lab, daemon, "forks", cmd, "process limit")


def test_allocating_too_much_memory_hits_the_memory_limit(served: tuple[Lab, Daemon]) -> None:
    """A step allocating past memory_mb fails and the job names the memory limit."""
    lab, daemon = served
    cmd = "python3 -c 'b = bytearray(2 * 1024 ** 3)' && echo x > attack/mem.out"
    attack(lab, daemon, "mem", cmd, "memory limit")


def test_killing_its_parent_leaves_the_daemon_alone(served: tuple[Lab, Daemon]) -> None:
    """``kill -9 $PPID`` and ``kill -9 -1`` reach only the step's own processes."""
    lab, daemon = served
    pid = daemon.process.pid if daemon.process else 0
    cmd = f"kill -9 $PPID; kill -9 {pid}; kill -9 -1; exit 3"
    attack(lab, daemon, "parent", cmd, "exited with")
    assert daemon.process is not None
    assert daemon.process.poll() is None


def test_a_gigabyte_of_output_is_cut_at_the_log_limit(served: tuple[Lab, Daemon]) -> None:
    """Writing 1 GB of output stops the step at max_log_bytes; the log stays that small."""
    lab, daemon = served
    cmd = "head -c 1000000000 /dev/zero | tr '\\0' x && echo x > attack/log.out"
    job = attack(lab, daemon, "log", cmd, "max_log_bytes")
    logs = list((lab.root / "state" / "logs" / f"job-{job['id']}").glob("*.log"))
    assert logs
    assert all(log.stat().st_size < 2 * 1048576 for log in logs)


def test_secret_values_are_scrubbed_from_step_logs(served: tuple[Lab, Daemon]) -> None:
    """A secret's value printed by a step is stored as *** in its log."""
    lab, daemon = served
    job = attack(lab, daemon, "scrub", "echo token gh-secret; exit 1", "exited with 1")
    assert "token ***" in daemon.get(f"/api/jobs/{job['id']}/log")


def test_job_details_and_logs_need_the_token(served: tuple[Lab, Daemon]) -> None:
    """With http.token set, a job's details and log answer 401 without it, 403 with a wrong one."""
    _, daemon = served
    job_id = daemon.jobs()[0]["id"]
    for path in (f"/api/jobs/{job_id}", f"/api/jobs/{job_id}/log"):
        with pytest.raises(OSError, match="401"):
            daemon.get(path, token=None)
        with pytest.raises(OSError, match="403"):
            daemon.get(path, token="wrong")  # noqa: S106


def test_a_planted_hook_never_runs_even_without_the_sandbox(
    _pipeline_template: Dataset, tmp_path: Path
) -> None:
    """With sandbox = "none" a record can write .git/hooks; rerund's git never runs them."""
    lab = make_lab(tmp_path, _pipeline_template)
    with lab.config.open("a", encoding="utf-8") as config:
        config.write('[security]\nsandbox = "none"\n')
    sentinel = tmp_path / "hook-ran"
    hook = f"#!/bin/sh\\ntouch {sentinel}\\n"
    plant = " && ".join(
        f"printf '{hook}' > .git/hooks/{name} && chmod +x .git/hooks/{name}"
        for name in ("pre-commit", "post-commit", "post-checkout", "post-merge")
    )
    daemon = Daemon(lab).start()
    try:
        wait_for(daemon.scanned, timeout_s=90, what="the start-up scan to finish")
        planted = push_record(lab, "plant", f"{plant} && echo x > attack/plant.out")
        wait_for(lambda: lab.subjects_since(planted) == ["[DATALAD RUNCMD] plant"], what="it")
        assert (lab.root / "state" / "work" / "lab" / ".git" / "hooks" / "post-commit").exists()
        fix = lab.push_fix()  # a later, unrelated job in the same work clone
        wait_for(lambda: len(lab.subjects_since(fix)) == 3, what="the later job's reruns")
        assert not sentinel.exists()
        assert any(e["event"] == "sandbox is off: steps run with the daemon's own rights"
                   for e in daemon.events())  # fmt: skip
    finally:
        daemon.stop()


def test_without_a_working_sandbox_the_daemon_refuses_to_start(
    _pipeline_template: Dataset, tmp_path: Path
) -> None:
    """If bubblewrap cannot create namespaces, `serve` exits 3 naming sandbox = "none"."""
    lab = make_lab(tmp_path, _pipeline_template)
    stub = tmp_path / "no-userns"
    stub.mkdir()
    # What bubblewrap says on a kernel without unprivileged user namespaces.
    (stub / "bwrap").write_text(
        "#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n"
    )
    (stub / "bwrap").chmod(0o755)
    env = {**os.environ, "PATH": f"{stub}:{os.environ['PATH']}"}
    done = subprocess.run(
        [sys.executable, "-m", "rerund", "serve", "--config", str(lab.config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert 3 == done.returncode
    assert "No permissions to create new namespace" in done.stderr
    assert 'sandbox = \\"none\\"' in done.stderr
    with lab.config.open("a", encoding="utf-8") as config:
        config.write('[security]\nsandbox = "none"\n')
    daemon = Daemon(lab, env={"PATH": env["PATH"]}).start()
    assert "ok" == daemon.get("/healthz")["status"]
    daemon.stop()


def test_a_well_behaved_step_has_a_private_tmp_and_home(served: tuple[Lab, Daemon]) -> None:
    """Inside the sandbox /tmp and $HOME are writable, the environment is bare; it publishes."""
    lab, _ = served
    cmd = (
        'echo a > /tmp/scratch && echo b > $HOME/.cache-file && test -z "$GIT_CONFIG_COUNT"'
        ' && env | cut -d= -f1 | sort | tr "\\n" " " > attack/fine.out'
    )
    target = push_record(lab, "fine", cmd)
    wait_for(lambda: lab.subjects_since(target) == ["[DATALAD RUNCMD] fine"], what="the rerun")
    lab.user.git("pull", "-q", "--ff-only", "origin", "main")
    names = set(lab.user.read("attack/fine.out").split())
    assert names <= {"HOME", "LANG", "LC_ALL", "LC_CTYPE", "PATH", "PWD", "SHLVL", "TMPDIR", "TZ",
                     "_", "OLDPWD"}  # fmt: skip


def test_a_tmpdir_placeholder_is_usable_inside_the_sandbox(served: tuple[Lab, Daemon]) -> None:
    """DataLad's ``{tmpdir}`` names a fresh directory the sandboxed step can write."""
    lab, _ = served
    cmd = "echo scratch > {tmpdir}/a && cp {tmpdir}/a attack/tmpdir.out"
    target = push_record(lab, "tmpdir", cmd)
    wait_for(lambda: lab.subjects_since(target) == ["[DATALAD RUNCMD] tmpdir"], what="the rerun")
    lab.user.git("pull", "-q", "--ff-only", "origin", "main")
    assert "scratch\n" == lab.user.read("attack/tmpdir.out")


def _processes_running(needle: str) -> list[str]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            line = stat.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in line:
            found.append(line)
    return found


def test_a_step_dies_with_the_daemon(_pipeline_template: Dataset, tmp_path: Path) -> None:
    """SIGKILL to the daemon mid-step takes the sandboxed step's processes with it."""
    lab = make_lab(tmp_path, _pipeline_template)
    marker = f"{37 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 1000:03d}"  # a unique sleep
    daemon = Daemon(lab, env={"SLOW_STEP_S": marker}).start()
    wait_for(daemon.scanned, timeout_s=90, what="the start-up scan to finish")
    lab.push_fix()
    wait_for(lambda: _processes_running(f"sleep {marker}"), what="the step to be sleeping")
    daemon.stop(signal.SIGKILL)
    wait_for(lambda: not _processes_running(f"sleep {marker}"), timeout_s=10, what="it to die")


def test_trust_any_is_announced_at_start(served: tuple[Lab, Daemon]) -> None:
    """``trust = "any"`` is an explicit opt-in, and the daemon says so when it starts."""
    _, daemon = served
    warnings = [e for e in daemon.events() if e["event"].startswith("trust = any")]
    assert [("warning", "lab")] == [(e["level"], e["repo"]) for e in warnings]
