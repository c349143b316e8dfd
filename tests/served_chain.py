"""A lab server serving three nested datasets: raw.git, analysis.git, paper.git (YODA).

Built with the real ``datalad``: ``analysis`` has ``raw`` (cloned from ``raw.git``) at
``inputs/raw`` and a record ``clean.csv`` <- ``inputs/raw/survey.csv``; ``paper`` has
``analysis`` (from ``analysis.git``) at ``inputs/analysis`` and a record ``figure.txt``
<- ``inputs/analysis/clean.csv``. Each is published to its bare repository with the real
post-receive hook, and one rerund settings file serves all three.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from helpers import Dataset, datalad, git, run
from service_helpers import API_TOKEN, Lab, free_port, rerund_cli

NAMES = ("raw", "analysis", "paper")


@dataclass(frozen=True)
class Chain:
    root: Path
    lab: Lab

    def bare(self, name: str) -> Path:
        return self.root / "srv" / f"{name}.git"

    def tip(self, name: str) -> str:
        return git("rev-parse", "refs/heads/main", cwd=self.bare(name))

    def subjects(self, name: str, since: str) -> list[str]:
        out = git("log", "--reverse", "--format=%s", f"{since}..main", cwd=self.bare(name))
        return out.splitlines()

    def pushes(self, name: str) -> int:
        """How often the branch of ``name`` has moved since the build."""
        return len(git("reflog", "refs/heads/main", cwd=self.bare(name)).splitlines())

    def show(self, name: str, path: str, rev: str = "main") -> str:
        return git("show", f"{rev}:{path}", cwd=self.bare(name))

    def gitlink(self, name: str, path: str, rev: str = "main") -> str:
        return git("rev-parse", f"{rev}:{path}", cwd=self.bare(name))

    def push_raw_fix(self, text: str, *, branch: str = "main") -> str:
        """A lab member fixes ``survey.csv`` in a clone of raw.git and pushes it."""
        user = self.root / "raw-user"
        if not user.exists():
            datalad("clone", str(self.bare("raw")), str(user))
        ds = Dataset(user)
        ds.git("checkout", "-q", "-B", branch, "origin/main")
        ds.write("survey.csv", text)
        datalad("save", "-m", f"raw: fix survey ({branch})", cwd=user)
        ds.git("push", "-q", "origin", f"HEAD:refs/heads/{branch}")
        return ds.head()


def publish(ds: Path, bare: Path) -> None:
    git("init", "-q", "--bare", str(bare), cwd=ds)
    git("symbolic-ref", "HEAD", "refs/heads/main", cwd=bare)
    git("push", "-q", str(bare), "HEAD:refs/heads/main", "git-annex", cwd=ds)
    run("git", "annex", "init", "-q", "server", cwd=bare)
    git("config", "core.logAllRefUpdates", "always", cwd=bare)  # a reflog counts pushes


def build_chain(root: Path, *, extra: str = "") -> Chain:
    """Build, publish and configure the three datasets under ``root``; hooks installed."""
    srv = root / "srv"
    srv.mkdir(parents=True)
    work = root / "build"
    raw = work / "raw"
    datalad("create", "-c", "text2git", str(raw))
    Dataset(raw).write("survey.csv", "id,score\n2,5\n1,3\n")
    datalad("save", "-m", "raw data", cwd=raw)
    publish(raw, srv / "raw.git")

    ana = work / "analysis"
    datalad("create", "-c", "text2git", str(ana))
    datalad("clone", "-d", ".", str(srv / "raw.git"), "inputs/raw", cwd=ana)
    Dataset(ana).run_step(
        "clean", "inputs/raw/survey.csv", "clean.csv", "sort {inputs} > {outputs}"
    )
    publish(ana, srv / "analysis.git")

    paper = work / "paper"
    datalad("create", "-c", "text2git", str(paper))
    datalad("clone", "-d", ".", str(srv / "analysis.git"), "inputs/analysis", cwd=paper)
    Dataset(paper).run_step(
        "figure", "inputs/analysis/clean.csv", "figure.txt", "wc -l < {inputs} > {outputs}"
    )
    publish(paper, srv / "paper.git")

    port = free_port()
    config = root / "rerund.toml"
    repos = "".join(
        f'[[repos]]\nname = "{name}"\nremote = "{srv / name}.git"\nbranch = "main"\ntrust = "any"\n'
        for name in NAMES
    )
    config.write_text(
        f'state_dir = "state"\n[http]\nlisten = "127.0.0.1:{port}"\ntoken = "{API_TOKEN}"\n'
        f"[limits]\nshutdown_timeout_s = 20\n{repos}{extra}",
        encoding="utf-8",
    )
    for name in NAMES:
        rerund_cli("hooks", "install", str(srv / f"{name}.git"), "--config", str(config), cwd=root)
    lab = Lab(root, srv / "paper.git", Dataset(paper), config, port)
    return Chain(root, lab)
