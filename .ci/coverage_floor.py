"""The coverage floor only rises on main: fail if fail_under is below any floor main had.

``coverage report`` enforces ``[tool.coverage.report] fail_under`` on each run; this
check keeps the figure itself from being lowered to let a drop through. It reads
every version of pyproject.toml on main's first-parent history (a few dozen,
milliseconds): work merged from a side branch brings its floor with the merge
commit, which is measured on the merged code as a whole.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def floor(text: str) -> float:
    """``fail_under`` of one pyproject.toml text; 0 when it has none."""
    report = tomllib.loads(text).get("tool", {}).get("coverage", {}).get("report", {})
    return float(report.get("fail_under", 0))


def committed_floors() -> list[tuple[str, float]]:
    """``(commit, fail_under)`` for every commit on main's line that changed pyproject.toml."""
    log = subprocess.run(
        ["git", "log", "--first-parent", "--format=%h", "--", "pyproject.toml"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    floors = []
    for commit in log.stdout.split():
        shown = subprocess.run(
            ["git", "show", f"{commit}:pyproject.toml"],
            cwd=ROOT, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if shown.returncode == 0:
            try:
                floors.append((commit, floor(shown.stdout)))
            except tomllib.TOMLDecodeError:
                continue
    return floors


def main() -> int:
    current = floor((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    highest = max(committed_floors(), key=lambda pair: pair[1], default=("-", 0.0))
    print(f"coverage floor (fail_under): {current:g} %; highest committed: {highest[1]:g} %")
    if current < highest[1]:
        print(
            f"the coverage floor was lowered from {highest[1]:g} % (commit {highest[0]})"
            f" to {current:g} %: raise coverage instead",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
