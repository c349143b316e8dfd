"""The shipped systemd unit is valid, hardened, and leaves the sandbox what it needs (SPEC §6, §7).

``systemd-analyze`` reads unit files without a running systemd, so both checks
run anywhere systemd is installed.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

from helpers import run
from rerund.run.sandbox import Sandbox

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "rerund.service"
MAX_EXPOSURE = 2.5

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def _unit_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this interpreter (verify wants a real binary)."""
    text = UNIT.read_text(encoding="utf-8")
    text = re.sub(
        r"^ExecStart=\S+", f"ExecStart={sys.executable} -m rerund", text, flags=re.MULTILINE
    )
    copy = tmp_path / "rerund.service"
    copy.write_text(text, encoding="utf-8")
    return copy


def _settings(key: str) -> list[str]:
    pattern = re.compile(rf"^{key}=(.*)$", re.MULTILINE)
    return pattern.findall(UNIT.read_text(encoding="utf-8"))


def test_the_unit_verifies(tmp_path: Path) -> None:
    """``systemd-analyze verify`` finds nothing wrong with the unit."""
    done = run("systemd-analyze", "verify", str(_unit_copy(tmp_path)), check=False)
    assert 0 == done.returncode, done.stderr
    assert "" == done.stderr.strip()


def test_the_exposure_score_is_at_most_2_5(tmp_path: Path) -> None:
    """``systemd-analyze security --offline=yes`` rates the unit's exposure 2.5 or lower."""
    done = run(
        "systemd-analyze", "security", "--offline=yes", str(_unit_copy(tmp_path)), check=False
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
    assert match is not None, done.stdout + done.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE


def test_the_unit_allows_what_the_sandbox_uses(tmp_path: Path) -> None:
    """Every namespace bubblewrap is asked for is allowed, /proc is not overmounted, no root."""
    allowed = set(" ".join(_settings("RestrictNamespaces")).split())
    argv = Sandbox().wrap(["true"], tmp_path, tmp_path)
    wanted = {"mnt"} | {
        arg.removeprefix("--unshare-") for arg in argv if arg.startswith("--unshare-")
    }
    assert wanted <= allowed
    for covers_proc in ("ProtectKernelTunables", "ProtectKernelLogs", "ProcSubset"):
        assert [] == _settings(covers_proc)
    assert ["rerund"] == _settings("User")
    assert "@mount" in " ".join(_settings("SystemCallFilter"))
