"""Slurm settings: [slurm] defaults under a repository's own, and per-step .rerund.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import Dataset
from rerund.core.gitrepo import GitRepo
from rerund.core.plan import Step
from rerund.core.records import record_from_json
from rerund.errors import ConfigError
from rerund.run.slurm import JobInfo, killed_for_memory
from rerund.run.slurmres import StepResources
from rerund.settings import SlurmSettings, load


def test_repository_slurm_table_overrides_the_defaults(tmp_path: Path) -> None:
    """A repository's slurm = {...} replaces only the keys it names; executor defaults local."""
    config = tmp_path / "rerund.toml"
    config.write_text(
        '[slurm]\npartition = "normal"\ntime = "10"\nmem = "1G"\nextra_args = ["--qos=x"]\n'
        'workdir = "shared"\npoll_interval_s = 2\n'
        '[[repos]]\nname = "a"\nremote = "/a.git"\nexecutor = "slurm"\n'
        'slurm = { time = "2:00:00", cpus_per_task = 4 }\n'
        '[[repos]]\nname = "b"\nremote = "/b.git"\n'
    )
    settings = load(config)
    a, b = settings.repos
    assert a.executor == "slurm" and b.executor == "local"
    assert a.slurm == SlurmSettings(
        partition="normal",
        time="2:00:00",
        mem="1G",
        cpus_per_task=4,
        extra_args=("--qos=x",),
        workdir=(tmp_path / "shared").resolve(),
        poll_interval_s=2.0,
    )
    assert b.slurm.time == "10"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("executor = 'pbs'", "repos[0].executor must be 'local' or 'slurm'"),
        ("slurm = { nodes = 3 }", "unknown setting repos[0].slurm.nodes"),
        ("slurm = { cpus_per_task = 0 }", "repos[0].slurm.cpus_per_task must be an integer"),
        ("slurm = { extra_args = [1] }", "repos[0].slurm.extra_args must be a list of strings"),
    ],
)
def test_bad_slurm_settings_are_refused(tmp_path: Path, text: str, message: str) -> None:
    """Each bad Slurm setting is refused at start, naming the key."""
    config = tmp_path / "rerund.toml"
    config.write_text(f'[[repos]]\nname = "a"\nremote = "/a.git"\n{text}\n')
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load(config)


def _step(summary: str, outputs: list[str]) -> Step:
    record = record_from_json({"cmd": "true", "outputs": outputs, "pwd": "."}, "0" * 40)
    return Step("0" * 40, summary, record, ())


def test_dataset_file_sets_resources_per_step(dataset: Dataset) -> None:
    """Committed .rerund.toml entries match summaries or outputs and apply in order."""
    dataset.write(
        ".rerund.toml",
        '[[slurm.steps]]\nsummary = "preprocess *"\ntime = "2:00:00"\nmem = "8G"\n'
        '[[slurm.steps]]\noutputs = "deriv/*"\ncpus_per_task = 8\nmem = "16G"\n',
    )
    head = dataset.save("resources", ".rerund.toml")
    resources = StepResources.read(GitRepo(dataset.path), head)
    base = SlurmSettings(time="10", mem="1G")
    both = resources.for_step(_step("preprocess sub-01", ["deriv/sub-01"]), base)
    assert (both.time, both.mem, both.cpus_per_task) == ("2:00:00", "16G", 8)
    other = resources.for_step(_step("report", ["report.txt"]), base)
    assert other == base


def test_scontrol_line_maps_to_state_exit_and_queue_wait() -> None:
    """The fields rerund needs are read from one `scontrol show job -o` line."""
    line = (
        "JobId=2 JobName=x JobState=FAILED Reason=JobLaunchFailure ExitCode=0:9"
        " SubmitTime=2026-11-29T06:09:56 StartTime=2026-11-29T06:09:59 NodeList=n1"
    )
    info = JobInfo.parse(line)
    assert (info.state, info.reason, info.node, info.exit_code, info.signal) == (
        "FAILED",
        "JobLaunchFailure",
        "n1",
        0,
        9,
    )
    assert info.queued_s == 3.0
    pending = JobInfo.parse("JobId=3 JobState=PENDING StartTime=Unknown NodeList=(null)")
    assert pending.queued_s is None and pending.node is None


def test_memory_kill_seen_in_the_output_wins_over_the_exit_status() -> None:
    """A job FAILED with exit 137 and no signal is a memory kill when slurmstepd said so."""
    killed = JobInfo("FAILED", "NonZeroExitCode", "n1", 137, 0)
    said = "slurmstepd-n1: error: StepId=1.batch exceeded memory limit (437 > 52), being killed\n"
    assert killed_for_memory(killed, said)
    assert not killed_for_memory(killed, "python3: Killed\n")
    assert killed_for_memory(JobInfo("OUT_OF_MEMORY", "", "n1", 0, 9), "")
