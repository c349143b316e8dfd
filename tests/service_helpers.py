"""Run the real daemon as a subprocess on a free port, with a real bare repository."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers import Dataset, git, run

API_TOKEN = "lab-api-token-0123456789"  # noqa: S105 - a test's own token


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], Any], timeout_s: float = 60, what: str = "") -> Any:
    """Poll ``condition`` until it returns something truthy, or fail the test."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what or condition}")


@dataclass
class Lab:
    """A lab server in a temp dir: a bare repository, a user's clone, rerund's settings."""

    root: Path
    bare: Path
    user: Dataset
    config: Path
    port: int
    secrets: dict[str, str] = field(default_factory=dict)

    def tip(self) -> str:
        return git("rev-parse", "refs/heads/main", cwd=self.bare)

    def subjects_since(self, rev: str) -> list[str]:
        out = git("log", "--reverse", "--format=%s", f"{rev}..refs/heads/main", cwd=self.bare)
        return out.splitlines()

    def push_fix(self, text: str = "# measurements\n3\n1\n2\n10\n") -> str:
        self.user.git("pull", "-q", "--ff-only", "origin", "main")
        self.user.write("raw/data.txt", text)
        self.user.git("commit", "-qam", "fix raw data")
        self.user.git("push", "-q", "origin", "HEAD:main")
        return self.user.head()


def make_lab(
    root: Path,
    template: Dataset,
    *,
    hook: bool = True,
    watch: bool = True,
    annex_remote: bool = False,
    extra: str = "",
    shutdown_timeout_s: int = 20,
    trust: str | None = "any",
) -> Lab:
    """Publish ``template`` to a bare repository and write rerund's settings for it."""
    bare = root / "srv" / "lab.git"
    bare.parent.mkdir(parents=True)
    git("init", "-q", "--bare", str(bare), cwd=root)
    git("symbolic-ref", "HEAD", "refs/heads/main", cwd=bare)
    git("config", "core.logAllRefUpdates", "always", cwd=bare)  # a reflog shows every tip
    user = root / "user"
    if annex_remote:
        # As a lab would: an annex on the server, content uploaded from a user's clone.
        run("git", "annex", "init", "-q", "lab server", cwd=bare)
        git("clone", "-q", str(template.path), str(user), cwd=root)
        run("git", "annex", "init", "-q", "user", cwd=user)
        run("git", "annex", "get", "--quiet", ".", cwd=user)
        git("remote", "rename", "origin", "template", cwd=user)
        git("remote", "add", "origin", str(bare), cwd=user)
        git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=user)
        run("git", "annex", "copy", "--quiet", "--to", "origin", ".", cwd=user)
        run("git", "annex", "sync", "--quiet", "--only-annex", "--no-content", "origin", cwd=user)
        git("fetch", "-q", "origin", cwd=user)
        git("branch", "-q", "--set-upstream-to", "origin/main", cwd=user)
    else:
        annex = ["git-annex"] if template.git("branch", "--list", "git-annex") else []
        git("push", "-q", str(bare), "HEAD:refs/heads/main", *annex, cwd=template.path)
        git("clone", "-q", str(bare), str(user), cwd=root)
    port = free_port()
    secrets = {"github": "gh-secret", "gitlab": "gl-token", "gitea": "gt-secret"}
    trust_line = f'trust = "{trust}"\n' if trust else ""
    trust_line += 'pass_env = ["SLOW_STEP_S", "STEP_MARK"]\n'
    config = root / "rerund.toml"
    config.write_text(
        f'state_dir = "state"\n[http]\nlisten = "127.0.0.1:{port}"\ntoken = "{API_TOKEN}"\n'
        "max_body_bytes = 65536\n"
        f"[limits]\nshutdown_timeout_s = {shutdown_timeout_s}\n"
        f'[[repos]]\nname = "lab"\nremote = "{bare}"\nbranch = "main"\n'
        f'github_secret = "{secrets["github"]}"\ngitlab_token = "{secrets["gitlab"]}"\n'
        f'gitea_secret = "{secrets["gitea"]}"\nwatch = {"true" if watch else "false"}\n'
        f"{trust_line}{extra}",
        encoding="utf-8",
    )
    if hook:
        rerund_cli("hooks", "install", str(bare), "--config", str(config), cwd=root)
    return Lab(root, bare, Dataset(user), config, port, secrets)


def rerund_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, "-m", "rerund", *args, cwd=cwd)


class Daemon:
    """``rerund serve`` as a real process; stderr (JSON log lines) goes to a file.

    Each instance writes its own file (``daemon.log``, ``daemon-2.log``, ...), so a
    restarted daemon's :meth:`events` are its own, never its predecessor's.
    """

    def __init__(self, lab: Lab, env: dict[str, str] | None = None) -> None:
        self.lab = lab
        self.base = f"http://127.0.0.1:{lab.port}"
        self.log_path = _unused(lab.root / "daemon.log")
        self._env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Daemon:
        with self.log_path.open("xb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "rerund", "serve", "--config", str(self.lab.config)],
                cwd=self.lab.root,
                stdout=log,
                stderr=log,
                env=self._env,
            )
        wait_for(self._healthy, 30, "the daemon to answer /healthz")
        return self

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"daemon exited {self.process.returncode}:\n{self.log()}")
        try:
            return self.get("/healthz")["status"] == "ok"
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout_s)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log().splitlines() if line.startswith("{")]

    def get(self, path: str, token: str | None = API_TOKEN) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(self.base + path, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body.startswith((b"{", b"[")) else body.decode()

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        request = urllib.request.Request(self.base + path, data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def jobs(self) -> list[dict[str, Any]]:
        jobs: list[dict[str, Any]] = self.get("/api/jobs")["jobs"]
        return jobs

    def idle(self) -> bool:
        """No job queued or running."""
        return not any(job["state"] in ("queued", "running") for job in self.jobs())

    def scanned(self) -> bool:
        """The start-up scan has run its job and nothing is left to do."""
        jobs = self.jobs()
        return bool(jobs) and not any(job["state"] in ("queued", "running") for job in jobs)


def _unused(path: Path) -> Path:
    """``path``, or ``name-2.ext``, ``name-3.ext``... the first that does not exist yet."""
    number = 1
    candidate = path
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
    return candidate


def push_record(lab: Lab, name: str, cmd: str) -> str:
    """Push a record running ``cmd`` (never run), then a change of its input: it is stale."""
    user = lab.user
    user.git("pull", "-q", "--ff-only", "origin", "main")
    dsid = user.record(user.record_commit("clean"))["dsid"]
    user.write(f"attack/{name}.in", "1\n")
    user.git("add", f"attack/{name}.in")
    user.git("commit", "-qm", f"input of {name}")
    record = {
        "chain": [],
        "cmd": cmd,
        "dsid": dsid,
        "exit": 0,
        "extra_inputs": [],
        "inputs": [f"attack/{name}.in"],
        "outputs": [f"attack/{name}.out"],
        "pwd": ".",
    }
    user.commit_record(name, json.dumps(record, indent=1, sort_keys=True))
    user.write(f"attack/{name}.in", "2\n")
    user.git("commit", "-qam", f"change the input of {name}")
    user.git("push", "-q", "origin", "HEAD:main")
    return user.head()
