"""Work clones carry no code from one job to the next (SPEC §7).

Every git command rerund runs in a work clone sees ``core.hooksPath`` pointed
at an empty directory, so a hook a record managed to plant never runs — not in
this job, not in a later one. Set through the environment (``GIT_CONFIG_*``),
it outranks anything in the clone's own ``.git/config``. Measured against a
fresh clone per job, pinning costs nothing (no extra git call at all).

``safe.directory`` lets a root daemon's git work in a tree a step owned while
it ran (see ``rerund.run.sandbox``); the tree is handed back before git runs,
so this is only a guard against a tree left behind by a crash.
"""

from __future__ import annotations

from pathlib import Path

EMPTY_HOOKS = Path("/nonexistent/rerund-no-hooks")
"""A directory that does not exist holds no hooks, and no step can create it."""

NO_HOOKS = {
    "GIT_CONFIG_COUNT": "2",
    "GIT_CONFIG_KEY_0": "core.hooksPath",
    "GIT_CONFIG_VALUE_0": str(EMPTY_HOOKS),
    "GIT_CONFIG_KEY_1": "safe.directory",
    "GIT_CONFIG_VALUE_1": "*",
}
