"""Shared helpers of the benchmark scripts: timing, machine facts, tables, results.

The benchmarks always start the real console scripts installed next to the
running interpreter (``rerund``, ``datalad``), never a pyenv shim, whose bash
wrapper alone costs about 70 ms per call.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

PYTHON = Path(sys.executable)
DATALAD = PYTHON.with_name("datalad")
BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"


def _console_script(name: str) -> Path:
    """``name``'s console script as pip writes it, from this tree's pyproject entry point.

    The installed script may come from another checkout (or an older layout); this
    one imports whatever ``rerund`` the interpreter finds (``PYTHONPATH`` first), at
    the same start-up cost as the installed one.
    """
    entry = tomllib.loads((BENCH_DIR.parent / "pyproject.toml").read_text(encoding="utf-8"))
    module, _, function = entry["project"]["scripts"][name].partition(":")
    script = OUT_DIR / "bin" / name
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(
        f"#!{PYTHON}\nimport sys\nfrom {module} import {function}\n"
        f"if __name__ == '__main__':\n    sys.exit({function}())\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    return script


RERUND = _console_script("rerund")

Argv = Sequence[str | Path]


class DisagreementError(RuntimeError):
    """rerund and DataLad (or a check of rerund's own work) disagree: the figures are void."""


def require(holds: bool, message: str) -> None:
    """Raise :class:`DisagreementError` unless ``holds``: a check ``python -O`` cannot strip."""
    if not holds:
        raise DisagreementError(message)


@dataclass(frozen=True)
class Run:
    """One timed process: wall-clock seconds and what it printed."""

    seconds: float
    returncode: int | None  # None: stopped at the timeout
    stdout: str
    stderr: str

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


@dataclass
class Timing:
    """Repeated wall-clock measurements of one thing."""

    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    def to_json(self) -> dict[str, Any]:
        return {"median_s": self.median, "min_s": self.min, "samples_s": self.samples}


def run_timed(
    argv: Argv,
    cwd: Path,
    *,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> Run:
    """Run ``argv`` in ``cwd``, timing it with ``time.perf_counter``.

    With a ``timeout`` the process runs in its own session and the whole
    process group (git children included) is killed when time is up.
    """
    args = [str(a) for a in argv]
    if timeout is None:
        start = time.perf_counter()
        done = subprocess.run(
            args,
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        run = Run(time.perf_counter() - start, done.returncode, done.stdout, done.stderr)
    else:
        run = _run_with_timeout(args, cwd, timeout, env)
    if check and run.returncode not in (0, None):
        raise RuntimeError(
            f"{' '.join(args)} failed ({run.returncode}) in {cwd}:\n{run.stderr[-2000:]}"
        )
    return run


def _run_with_timeout(
    args: list[str], cwd: Path, timeout: float, env: Mapping[str, str] | None
) -> Run:
    # Output goes to files: a killed process group can leave no pipe half-open.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        code: int | None
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
            _kill_group(proc.pid)
            proc.wait()
        seconds = time.perf_counter() - start
        _kill_group(proc.pid)  # any git child still running
        out.seek(0)
        err.seek(0)
        return Run(
            seconds,
            code,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )


def _kill_group(pgid: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def repeat(times: int, measure: Callable[[], float]) -> Timing:
    """Call ``measure`` (which returns seconds) ``times`` times."""
    return Timing([measure() for _ in range(times)])


def run(argv: Argv, cwd: Path, *, env: Mapping[str, str] | None = None) -> str:
    """Run an untimed helper command; return its stdout, raise on failure."""
    return run_timed(argv, cwd, env=env).stdout


def git(cwd: Path, *args: str) -> str:
    return run(["git", *args], cwd).strip()


def _first_line(argv: Argv) -> str:
    try:
        done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False)
    except OSError as exc:
        return f"unavailable ({exc.strerror})"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return "unknown"


def machine_info() -> dict[str, str]:
    """Facts about the machine and the tools under test."""
    try:
        rerund_version = metadata.version("rerund")
    except metadata.PackageNotFoundError:
        rerund_version = "unknown"
    return {
        "nproc": _first_line(["nproc"]),
        "cpu": _cpu_model(),
        "memory": _memory(),
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_version()} ({PYTHON})",
        "git": _first_line(["git", "--version"]).removeprefix("git version "),
        "git-annex": _first_line(["git", "annex", "version", "--raw"]),
        "datalad": _first_line([DATALAD, "--version"]).removeprefix("datalad "),
        "rerund": f"{rerund_version} ({_rerund_commit()})",
    }


def rerund_commit() -> str:
    """The commit of rerund being measured (``-dirty`` when the tree has changes)."""
    return _rerund_commit()


def _rerund_commit() -> str:
    done = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        cwd=BENCH_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "no git"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table, columns padded for reading as text."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "| " + " | ".join("-" * w for w in widths) + " |"
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def machine_table(info: Mapping[str, str]) -> str:
    return markdown_table(["machine", ""], [[key, value] for key, value in info.items()])


def fmt_s(seconds: float) -> str:
    """Seconds for a table: ms below one second, s above."""
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 100:
        return f"{seconds:.2f} s"
    return f"{seconds:.0f} s"


def fmt_timing(timing: Timing) -> str:
    """``median (min …)`` of a timing."""
    if len(timing.samples) == 1:
        return f"{fmt_s(timing.median)} (1 run)"
    return f"{fmt_s(timing.median)} (min {fmt_s(timing.min)}, n={len(timing.samples)})"


def write_results(name: str, results: Mapping[str, Any]) -> Path:
    """Write ``bench/out/<name>.json`` and return its path."""
    OUT_DIR.mkdir(exist_ok=True)
    path = OUT_DIR / f"{name}.json"
    path.write_text(json.dumps(results, indent=2, default=_jsonable) + "\n", encoding="utf-8")
    return path


def _jsonable(value: object) -> object:
    if isinstance(value, Timing):
        return value.to_json()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)  # type: ignore[call-overload]
    raise TypeError(f"not JSON serialisable: {value!r}")


def remove_tree(path: Path) -> None:
    """Remove ``path`` even where git-annex made directories read-only."""
    if not path.exists():
        return
    subprocess.run(["chmod", "-R", "u+w", str(path)], check=False, capture_output=True)
    shutil.rmtree(path)


@contextmanager
def scratch_dir(prefix: str, *, keep: bool = False) -> Iterator[Path]:
    """A temporary directory under /tmp, removed at the end unless ``keep``."""
    path = Path(tempfile.mkdtemp(prefix=f"rerund-{prefix}-", dir="/tmp"))
    try:
        yield path
    finally:
        if keep:
            print(f"(kept {path})", file=sys.stderr)
        else:
            remove_tree(path)


def progress(message: str) -> None:
    """A progress line on stderr (stdout carries only the tables)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
