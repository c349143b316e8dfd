"""A real single-node Slurm cluster for the tests, from Debian's ``slurm-wlm`` and ``munge``.

Everything lives in a private directory (configuration, state, logs, munge's
socket and key) and listens on free ports, so two test workers can each run
one. It is started once per session and stopped by PID; it never skips: a
machine without Slurm fails the tests that need it with the reason.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_TOOLS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel")


class SlurmUnavailableError(RuntimeError):
    """Slurm could not be started here; the message says what to install or read."""


@dataclass(frozen=True)
class SlurmCluster:
    root: Path
    conf: Path
    node: str

    @property
    def env(self) -> dict[str, str]:
        """What Slurm's commands need to reach this cluster (add to a child's environment)."""
        return {"SLURM_CONF": str(self.conf)}

    def run(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            args, env={**os.environ, **self.env}, capture_output=True, text=True, check=False
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def jobs_named(self, name: str) -> list[str]:
        """Ids of every job of that name Slurm still knows (finished ones for MinJobAge)."""
        out = self.run("squeue", "--noheader", "--states=all", "--name", name, "--format=%i")
        return out.split()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_CONF = """\
ClusterName=rerundtest
SlurmctldHost={host}(127.0.0.1)
MailProg=/bin/true
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
AuthInfo=socket={munge_socket}
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/ctld
SlurmdSpoolDir={root}/slurmd
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=100
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
MinJobAge=300
ReturnToService=2
MpiDefault=none
SlurmdParameters=config_overrides
NodeName={node} NodeAddr=127.0.0.1 NodeHostname=127.0.0.1 CPUs=16 RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


@contextmanager
def slurm_cluster() -> Iterator[SlurmCluster]:
    """Start munged, slurmctld and slurmd; yield once the node takes jobs; stop them."""
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    if missing:
        raise SlurmUnavailableError(
            f"Slurm is not installed ({', '.join(missing)} missing): run"
            " `apt-get install -y --no-install-recommends slurm-wlm munge` (.ci/run does)"
        )
    # Under /tmp, not pytest's 0700 tree: munged runs as `munge` and must reach its files.
    root = Path(tempfile.mkdtemp(prefix="rerund-slurm-"))
    root.chmod(0o755)
    node = f"n{os.getpid()}"
    munge_dir = root / "munge"
    munge_dir.mkdir(mode=0o700)
    munge = pwd.getpwnam("munge")
    key = munge_dir / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    for path in (munge_dir, key):
        os.chown(path, munge.pw_uid, munge.pw_gid)
    for sub in ("ctld", "slurmd"):
        (root / sub).mkdir()
    conf = root / "slurm.conf"
    conf.write_text(
        _CONF.format(
            node=node,
            host=socket.gethostname().split(".")[0],
            root=root,
            ctld_port=_free_port(),
            slurmd_port=_free_port(),
            munge_socket=munge_dir / "munge.socket",
        )
    )
    env = {**os.environ, "SLURM_CONF": str(conf)}
    cluster = SlurmCluster(root, conf, node)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(
            _start(
                [
                    "runuser", "-u", "munge", "--", "munged", "--foreground", "--force",
                    f"--socket={munge_dir / 'munge.socket'}", f"--key-file={key}",
                    f"--pid-file={munge_dir / 'munged.pid'}", f"--log-file={munge_dir / 'log'}",
                    f"--seed-file={munge_dir / 'seed'}",
                ],
                env,
            )
        )  # fmt: skip
        _wait_for((munge_dir / "munge.socket").exists, 10, "munged", munge_dir / "log")
        processes.append(_start(["slurmctld", "-D", "-i"], env))
        processes.append(_start(["slurmd", "-D", "-N", node], env))
        _wait_for(lambda: _node_idle(cluster), 30, "slurmd", root / "slurmd.log")
        yield cluster
    finally:
        for process in reversed(processes):
            _stop(process)
        shutil.rmtree(root, ignore_errors=True)


def _start(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stderr is not None:
        process.stderr.close()


def _node_idle(cluster: SlurmCluster) -> bool:
    try:
        out = cluster.run("sinfo", "--noheader", "--format=%T", check=False)
    except OSError:
        return False
    return out.strip() in ("idle", "mixed", "allocated")


def _wait_for(ready: object, timeout_s: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(ready) and ready():
            return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
    raise SlurmUnavailableError(f"{what} did not come up within {timeout_s} s; its log:\n{tail}")
