"""`rerund hooks install`: the hook lands where the server runs it, and never breaks a push."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from helpers import git, run
from service_helpers import rerund_cli


def _bare(tmp_path: Path) -> Path:
    bare = tmp_path / "lab.git"
    git("init", "-q", "--bare", str(bare), cwd=tmp_path)
    return bare


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "rerund.toml"
    config.write_text('state_dir = "state"\n')
    return config


def test_install_writes_the_hook_and_points_it_at_the_spool(tmp_path: Path) -> None:
    """The hook is executable, and the repository's rerund.spool names the daemon's spool."""
    bare = _bare(tmp_path)

    rerund_cli("hooks", "install", str(bare), "--config", str(_config(tmp_path)), cwd=tmp_path)

    hook = bare / "hooks" / "post-receive"
    assert hook.stat().st_mode & 0o111
    assert str(tmp_path / "state" / "spool") == git("config", "rerund.spool", cwd=bare)


def test_a_foreign_hook_is_kept_and_ours_goes_to_post_receive_d(tmp_path: Path) -> None:
    """An existing post-receive of someone else's stays; ours goes beside it (GitLab, Gitea)."""
    bare = _bare(tmp_path)
    theirs = bare / "hooks" / "post-receive"
    theirs.write_text("#!/bin/sh\necho mirror to backup\n")

    rerund_cli("hooks", "install", str(bare), "--config", str(_config(tmp_path)), cwd=tmp_path)

    assert "#!/bin/sh\necho mirror to backup\n" == theirs.read_text()
    assert "rerund post-receive hook" in (bare / "hooks" / "post-receive.d" / "rerund").read_text()


def test_hook_is_fast_and_harmless_without_a_spool(tmp_path: Path) -> None:
    """The hook spools a push in milliseconds, and exits 0 even when its spool is gone."""
    bare = _bare(tmp_path)
    rerund_cli("hooks", "install", str(bare), "--config", str(_config(tmp_path)), cwd=tmp_path)
    hook = bare / "hooks" / "post-receive"
    line = f"{'0' * 40} {'a' * 40} refs/heads/main\n"

    started = time.monotonic()
    done = subprocess.run([str(hook)], cwd=bare, input=line, text=True, check=False)
    elapsed = time.monotonic() - started

    assert 0 == done.returncode
    spooled = list((tmp_path / "state" / "spool").glob("*.push"))
    pusher = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout
    expected = f"repo {bare.resolve()}\npusher {pusher.strip()}\n{line}"
    assert [expected] == [path.read_text() for path in spooled]
    assert elapsed < 0.5
    run("rm", "-rf", str(tmp_path / "state"))
    assert 0 == subprocess.run([str(hook)], cwd=bare, input=line, text=True, check=False).returncode


def test_install_refuses_what_is_not_a_bare_repository(tmp_path: Path) -> None:
    """Pointing the installer at a plain directory is one clear error."""
    config = _config(tmp_path)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rerund.cli.main",
            "hooks",
            "install",
            str(tmp_path),
            "--config",
            str(config),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (1, f"rerund: error: {tmp_path} is not a bare git repository\n") == (
        done.returncode,
        done.stderr,
    )
