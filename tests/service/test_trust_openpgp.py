"""``trust = "signed"`` with OpenPGP: git verify-commit against the keyring in ``gpg_home``."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import CLEAN
from helpers import Dataset, datalad, git, run
from rerund.core.gitrepo import GitRepo
from rerund.core.plan import PlanOptions, plan_tip
from rerund.security import RepoSecurity
from rerund.service.trust import check


@pytest.fixture
def homes() -> Iterator[Path]:
    """A short directory for keyrings (gpg-agent's socket path must stay short); agents stop."""
    root = Path(tempfile.mkdtemp(prefix="rerund-gpg-"))
    yield root
    for home in root.iterdir():
        run("gpgconf", "--homedir", str(home), "--kill", "all", check=False)
    shutil.rmtree(root, ignore_errors=True)


def _keyring(home: Path, uid: str) -> str:
    home.mkdir(mode=0o700)
    run("gpg", "--homedir", str(home), "--batch", "--passphrase", "", "--quick-gen-key", uid,
        "ed25519", "sign", "never")  # fmt: skip
    out = run("gpg", "--homedir", str(home), "--list-keys", "--with-colons").stdout
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr"))


def _verdict(ds: Dataset, security: RepoSecurity) -> str | None:
    repo = GitRepo(ds.path)
    plan, _ = plan_tip(repo, "trust-test", ds.head(), PlanOptions())
    assert plan.steps
    refusal = check(repo, "lab", security, plan, base=None, target=ds.head(), own=(), pushers=())
    return None if refusal is None else refusal.reason


def test_openpgp_signatures_verify_against_gpg_home(
    tmp_path: Path, homes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alice's signed history runs; an unsigned input change, or a stranger's keyring, does not."""
    alice_home = homes / "alice"
    fingerprint = _keyring(alice_home, "Alice <alice@lab.example>")
    monkeypatch.setenv("GNUPGHOME", str(alice_home))
    path = tmp_path / "ds"
    datalad("create", "-c", "text2git", str(path))
    git("config", "user.signingkey", fingerprint, cwd=path)
    git("config", "commit.gpgsign", "true", cwd=path)
    ds = Dataset(path)
    ds.write("raw/data.txt", "3\n1\n")
    ds.write("code/clean.sh", CLEAN)
    datalad("save", "-m", "data and code", cwd=path)
    ds.run_step("clean", "raw/data.txt", "work/clean.txt", "sh code/clean.sh {inputs} {outputs}")
    ds.write("raw/data.txt", "3\n1\n2\n")
    ds.git("commit", "-qam", "signed fix")

    trusting_alice = RepoSecurity(trust="signed", gpg_home=alice_home)
    assert _verdict(ds, trusting_alice) is None

    stranger_home = homes / "stranger"
    _keyring(stranger_home, "Stranger <s@elsewhere.example>")
    refusal = _verdict(ds, RepoSecurity(trust="signed", gpg_home=stranger_home))
    assert refusal is not None
    assert '"signed"' in refusal

    ds.write("raw/data.txt", "3\n1\n2\n4\n")
    ds.git("-c", "commit.gpgsign=false", "commit", "-qam", "unsigned fix")
    refusal = _verdict(ds, trusting_alice)
    assert refusal is not None
    assert ds.head()[:12] in refusal
