"""Per-step Slurm resources from the dataset's own, committed ``.rerund.toml``.

The file is reviewed like code, so it may ask for more time or memory for the
steps that need it; entries match a record's summary or one of its outputs
(shell globs) and apply in order, later ones over earlier ones::

    [[slurm.steps]]
    summary = "preprocess *"    # the run record's summary (first line of the message)
    time = "2:00:00"
    mem = "8G"

    [[slurm.steps]]
    outputs = "derivatives/fmriprep/*"
    cpus_per_task = 8
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass, replace
from typing import Any

from rerund.core.gitrepo import GitRepo
from rerund.core.plan import Step
from rerund.errors import ConfigError
from rerund.settings import SlurmSettings

FILE = ".rerund.toml"
_RESOURCES = ("partition", "time", "mem", "cpus_per_task")


@dataclass(frozen=True)
class StepResources:
    entries: tuple[dict[str, Any], ...] = ()

    @classmethod
    def read(cls, repo: GitRepo, commit: str) -> StepResources:
        """The file as committed at ``commit`` (none there: no overrides)."""
        raw = repo.run("show", f"{commit}:{FILE}", check=False)
        if not raw:
            return cls()
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{FILE} at {commit[:8]} is not valid TOML: {exc}") from exc
        steps = data.get("slurm", {}).get("steps", [])
        if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
            raise ConfigError(f"{FILE}: slurm.steps must be an array of tables")
        for position, entry in enumerate(steps):
            unknown = set(entry) - {"summary", "outputs", *_RESOURCES}
            if unknown:
                raise ConfigError(f"{FILE}: slurm.steps[{position}] has unknown {sorted(unknown)}")
        return cls(tuple(steps))

    def for_step(self, step: Step, base: SlurmSettings) -> SlurmSettings:
        settings = base
        for entry in self.entries:
            if _matches(entry, step):
                fields = {key: entry[key] for key in _RESOURCES if key in entry}
                if "cpus_per_task" in fields:
                    fields["cpus_per_task"] = int(fields["cpus_per_task"])
                settings = replace(settings, **fields)
        return settings


def _matches(entry: dict[str, Any], step: Step) -> bool:
    summary = entry.get("summary")
    if isinstance(summary, str) and fnmatch.fnmatchcase(step.summary, summary):
        return True
    outputs = entry.get("outputs")
    if isinstance(outputs, str):
        return any(fnmatch.fnmatchcase(out, outputs) for out in step.record.outputs)
    return False
