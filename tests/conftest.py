"""Shared fixtures: real DataLad datasets built with the real ``datalad run``.

Building a dataset costs about half a second per ``datalad run``, so each kind
is built once per session as a template and copied for every test that needs it.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import Dataset, datalad, git
from slurm_cluster import SlurmCluster, slurm_cluster
from yoda import Lab, build_lab

IDENTITY = {
    "GIT_AUTHOR_NAME": "Lab Member",
    "GIT_AUTHOR_EMAIL": "member@lab.example",
    "GIT_COMMITTER_NAME": "Lab Member",
    "GIT_COMMITTER_EMAIL": "member@lab.example",
}


# A test using one of these builds or copies a DataLad dataset, or starts the daemon:
# seconds, not milliseconds. Marked here so new tests are marked without remembering to.
SLOW_FIXTURES = frozenset(
    {"dataset", "pipeline", "annexed_pipeline", "_pipeline_template", "_annex_pipeline_template"}
    | {"lab", "annex_lab"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``slow`` every test that uses a dataset or daemon fixture."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def _git_identity() -> Iterator[None]:
    """Every git, git-annex and datalad process in the tests commits as one person.

    The interpreter's own bin directory goes first on PATH, so `datalad` and
    `rerund` are the ones pip just installed even where no shim points to them.
    """
    saved = {key: os.environ.get(key) for key in [*IDENTITY, "PATH"]}
    os.environ.update(IDENTITY)
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ.setdefault("GIT_CONFIG_NOSYSTEM", "1")
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


# SLOW_STEP_S lets service tests hold a step open (to race or crash it); 0 otherwise.
CLEAN = (
    'sleep "${SLOW_STEP_S:-0}"\nmkdir -p "$(dirname "$2")"\ngrep -v \'^#\' "$1" | sort -n > "$2"\n'
)
STATS = 'awk \'{s += $1} END {print NR, s}\' "$1" > "$2"\n'
REPORT = 'printf \'rows and total: %s\\n\' "$(cat "$1")" > "$2"\n'


def _build_pipeline(path: Path, *, annex_everything: bool) -> Dataset:
    """raw/data.txt -> clean -> stats -> report, each step a real ``datalad run``."""
    if annex_everything:
        datalad("create", str(path))
    else:
        datalad("create", "-c", "text2git", str(path))
    ds = Dataset(path)
    ds.write("raw/data.txt", "# measurements\n3\n1\n2\n")
    ds.write("code/clean.sh", CLEAN)
    ds.write("code/stats.sh", STATS)
    ds.write("code/report.sh", REPORT)
    datalad("save", "-m", "add raw data and code", cwd=path)
    ds.run_step("clean", "raw/data.txt", "work/clean.txt", "sh code/clean.sh {inputs} {outputs}")
    ds.run_step("stats", "work/clean.txt", "work/stats.txt", "sh code/stats.sh {inputs} {outputs}")
    ds.run_step("report", "work/stats.txt", "report.txt", "sh code/report.sh {inputs} {outputs}")
    return ds


@pytest.fixture(scope="session")
def _pipeline_template(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return _build_pipeline(tmp_path_factory.mktemp("tpl") / "pipeline", annex_everything=False)


@pytest.fixture(scope="session")
def _annex_pipeline_template(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return _build_pipeline(tmp_path_factory.mktemp("tpl") / "annexed", annex_everything=True)


def _copy(template: Dataset, dest: Path) -> Dataset:
    shutil.copytree(template.path, dest, symlinks=True)
    return Dataset(dest)


@pytest.fixture
def pipeline(_pipeline_template: Dataset, tmp_path: Path) -> Dataset:
    """A fresh copy of the three-step text2git pipeline."""
    return _copy(_pipeline_template, tmp_path / "pipeline")


@pytest.fixture
def annexed_pipeline(_annex_pipeline_template: Dataset, tmp_path: Path) -> Dataset:
    """A fresh copy of the three-step pipeline with every file annexed."""
    return _copy(_annex_pipeline_template, tmp_path / "annexed")


@pytest.fixture
def dataset(tmp_path: Path) -> Dataset:
    """An empty text2git dataset."""
    datalad("create", "-c", "text2git", str(tmp_path / "ds"))
    return Dataset(tmp_path / "ds")


@pytest.fixture(scope="session")
def _yoda_template(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return build_lab(tmp_path_factory.mktemp("tpl") / "lab")


@pytest.fixture
def yoda(_yoda_template: Lab, tmp_path: Path) -> Lab:
    """A fresh copy of the YODA lab, its subdatasets' remotes pointing into the copy."""
    copy = Lab(tmp_path / "lab")
    shutil.copytree(_yoda_template.root, copy.root, symlinks=True)
    for sub in ("", "/deep"):
        installed = copy.ana.path / f"inputs/raw{sub}"
        git("remote", "set-url", "origin", f"{copy.raw.path}{sub}", cwd=installed)
    return copy


@pytest.fixture(scope="session")
def slurm() -> Iterator[SlurmCluster]:
    """A running single-node Slurm cluster; fails (never skips) when Slurm cannot start."""
    with slurm_cluster() as cluster:
        yield cluster
