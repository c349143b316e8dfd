"""Fixtures for the service tests: a real Slurm cluster, started once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from slurm_cluster import SlurmCluster, slurm_cluster


@pytest.fixture(scope="session")
def slurm() -> Iterator[SlurmCluster]:
    """A running single-node Slurm cluster; fails (never skips) when Slurm cannot start."""
    with slurm_cluster() as cluster:
        yield cluster
