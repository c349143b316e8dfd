"""Who may cause execution, and what a running step may use (SPEC §7): the settings.

Every key may be set in the top-level ``[security]`` table (the default for
all repositories, including those found under ``repos_dir``) and again in a
``[[repos]]`` table for that repository. A repository without ``trust`` runs
nothing: its jobs are refused with a message naming the key to set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from rerund.errors import ConfigError

Trust = Literal["signed", "pushers", "any"]
SandboxMode = Literal["bwrap", "none"]
TRUST_VALUES: tuple[Trust, ...] = ("signed", "pushers", "any")

MIB = 1024 * 1024


@dataclass(frozen=True)
class RepoSecurity:
    trust: Trust | None = None
    """None: nothing runs until the configuration says who is trusted."""
    allowed_signers_file: Path | None = None
    """SSH signers in git's ``gpg.ssh.allowedSignersFile`` format (``trust = "signed"``)."""
    gpg_home: Path | None = None
    """The OpenPGP keyring (a GNUPGHOME) for ``trust = "signed"``."""
    trusted_pushers: tuple[str, ...] = ()
    network: bool = False
    """Whether a step may open network connections."""
    memory_mb: int = 4096
    """Address space of each process of a step (RLIMIT_AS)."""
    max_processes: int = 512
    """Processes and threads a step may have at once (RLIMIT_NPROC)."""
    max_log_bytes: int = 100 * MIB
    """A step writing more output than this is stopped."""
    pass_env: tuple[str, ...] = ()
    """Variables of the daemon's environment a step sees too (none by default)."""


class KeyReader(Protocol):
    """The settings reader's typed access to one table (see ``rerund.settings``)."""

    where: str

    def optional_string(self, key: str) -> str | None: ...

    def boolean(self, key: str, default: bool) -> bool: ...

    def integer(self, key: str, default: int, *, minimum: int = 0) -> int: ...

    def string_list(self, key: str) -> tuple[str, ...] | None: ...


def read_security(reader: KeyReader, base: Path, default: RepoSecurity) -> RepoSecurity:
    """The security keys of one table, falling back to ``default`` for each."""
    trust = reader.optional_string("trust")
    if trust is not None and trust not in TRUST_VALUES:
        raise ConfigError(
            f"{reader.where}trust must be 'signed', 'pushers' or 'any', not {trust!r}"
        )
    signers = reader.optional_string("allowed_signers_file")
    gpg_home = reader.optional_string("gpg_home")
    pushers = reader.string_list("trusted_pushers")
    signers_path = (base / signers).resolve() if signers else default.allowed_signers_file
    security = RepoSecurity(
        trust=_trust(trust) if trust is not None else default.trust,
        allowed_signers_file=signers_path,
        gpg_home=(base / gpg_home).resolve() if gpg_home else default.gpg_home,
        trusted_pushers=pushers if pushers is not None else default.trusted_pushers,
        network=reader.boolean("network", default.network),
        memory_mb=reader.integer("memory_mb", default.memory_mb, minimum=16),
        max_processes=reader.integer("max_processes", default.max_processes, minimum=1),
        max_log_bytes=reader.integer("max_log_bytes", default.max_log_bytes, minimum=1024),
        pass_env=reader.string_list("pass_env") or default.pass_env,
    )
    if security.trust == "signed" and not (security.allowed_signers_file or security.gpg_home):
        raise ConfigError(f"{reader.where}trust = 'signed' needs allowed_signers_file or gpg_home")
    if security.trust == "pushers" and not security.trusted_pushers:
        raise ConfigError(f"{reader.where}trust = 'pushers' needs trusted_pushers = [...]")
    return security


def read_sandbox(reader: KeyReader) -> SandboxMode:
    mode = reader.optional_string("sandbox") or "bwrap"
    if mode not in ("bwrap", "none"):
        raise ConfigError(f"{reader.where}sandbox must be 'bwrap' or 'none', not {mode!r}")
    return "none" if mode == "none" else "bwrap"


def _trust(value: str) -> Trust:
    return "signed" if value == "signed" else "pushers" if value == "pushers" else "any"
