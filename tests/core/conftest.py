"""Fixtures for core tests: the YODA lab of :mod:`yoda`, built once and copied per test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers import git
from yoda import Lab, build_lab


@pytest.fixture(scope="session")
def _lab_template(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return build_lab(tmp_path_factory.mktemp("tpl") / "lab")


@pytest.fixture
def lab(_lab_template: Lab, tmp_path: Path) -> Lab:
    """A fresh copy of the YODA lab, its subdatasets' remotes pointing into the copy."""
    copy = Lab(tmp_path / "lab")
    shutil.copytree(_lab_template.root, copy.root, symlinks=True)
    for sub in ("", "/deep"):
        installed = copy.ana.path / f"inputs/raw{sub}"
        git("remote", "set-url", "origin", f"{copy.raw.path}{sub}", cwd=installed)
    return copy
