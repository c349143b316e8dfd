"""The daemon's settings: one TOML file, validated once, frozen afterwards.

``config/rerund.toml`` is the shipped default and documents every key. Any
invalid value is refused at start with one message naming the key.
"""

from __future__ import annotations

import grp
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from rerund.core.dsconfig import DriftPolicy
from rerund.errors import ConfigError
from rerund.security import RepoSecurity, SandboxMode, read_sandbox, read_security

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")
OnFailure = Literal["publish-independent", "publish-nothing"]
_SECRETS = ("github_secret", "gitlab_token", "gitea_secret", "forgejo_secret")


@dataclass(frozen=True)
class SlurmSettings:
    """How steps are handed to Slurm (the ``[slurm]`` table, a repository's ``slurm``)."""

    partition: str | None = None
    time: str | None = None
    """Slurm's own syntax (``30``, ``2:00:00``, ``1-0``); ``None``: the partition's default."""
    mem: str | None = None
    cpus_per_task: int | None = None
    extra_args: tuple[str, ...] = ()
    workdir: Path | None = None
    """A directory the compute nodes share; Slurm-run steps' work trees live there."""
    poll_interval_s: float = 5.0


Executor = Literal["local", "slurm"]


@dataclass(frozen=True)
class RepoSettings:
    name: str
    """Used in URLs: webhooks arrive at ``/hooks/<provider>/<name>``."""
    remote: str
    """Where rerund fetches from and pushes to (a path or a URL)."""
    branch: str = "main"
    secrets: Mapping[str, str] = field(default_factory=dict)
    """Webhook secrets by key (``github_secret``, ``gitlab_token``, ...)."""
    implicit_inputs: bool = True
    drift: DriftPolicy = "rerun"
    watch: bool = True
    """Watch the remote's refs on disk (only for local bare repositories)."""
    forge_name: str | None = None
    """The repository as the forge names it (``owner/name``); deliveries must name it."""
    executor: Executor = "local"
    slurm: SlurmSettings = field(default_factory=SlurmSettings)
    """The top-level ``[slurm]`` defaults with this repository's ``slurm`` on top."""
    follow_subdatasets: bool = True
    """A push to a served subdataset of this dataset moves its gitlink and reruns (issue 7)."""
    reuse: bool = True
    """Restore a step's outputs from an earlier run of it on the same inputs (issue 10)."""
    max_parallel_steps: int = 4
    """Independent steps of one plan run side by side, up to this (and the global limit)."""
    on_failure: OnFailure = "publish-independent"
    """Publish the steps independent of a failed one, or keep all on the side ref only."""

    @property
    def slug(self) -> str:
        """The name as one path component, injectively: names never hold '+'.

        ``grp/x`` and ``grp_x`` get their own work clone, mirror and kept trees.
        """
        return self.name.replace("/", "+")

    verify_every_s: float | None = None
    """Queue a verification of every current record this often (``verify_every``); off if None."""
    security: RepoSecurity = RepoSecurity()  # noqa: RUF009 - frozen, so shared safely
    """Who may cause execution here, and the sandbox's limits (``rerund.security``)."""

    @property
    def local_path(self) -> Path | None:
        """The remote as a directory on this machine, if it is one."""
        if "://" in self.remote or re.match(r"^[^/]+@[^/]+:", self.remote):
            return None
        return Path(self.remote.removeprefix("file://"))


@dataclass(frozen=True)
class Settings:
    state_dir: Path = Path("var")
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    api_token: str | None = None
    repos: tuple[RepoSettings, ...] = ()
    repos_dir: Path | None = None
    repos_dir_branch: str = "main"
    max_concurrent_steps: int = 2
    step_timeout_s: float = 3600.0
    job_max_attempts: int = 3
    lease_s: float = 600.0
    shutdown_timeout_s: float = 60.0
    max_body_bytes: int = 5 * 1024 * 1024
    max_log_bytes: int = 100 * 1024 * 1024
    """A step writing more output than this is stopped (and fails)."""
    spool_group: str | None = None
    """The group that may write the hook spool (default: the repositories' own group)."""
    source: Path | None = None
    """The file these settings came from (reloaded on SIGHUP)."""
    subdataset_sources: Mapping[str, str] = field(default_factory=dict)
    """Where subdatasets are installed from: a datalad id or URL mapped to a local path."""
    discovered: tuple[RepoSettings, ...] | None = None
    """Repositories found under ``repos_dir`` by :func:`discover`; ``None``: look each time."""
    read_token: str | None = None
    """Bearer token for reading job details and logs (``http.token`` also works)."""
    sandbox: SandboxMode = "bwrap"
    security: RepoSecurity = RepoSecurity()  # noqa: RUF009 - frozen, so shared safely
    """The ``[security]`` defaults, used by repositories found under ``repos_dir``."""

    def repo(self, name: str) -> RepoSettings | None:
        return next((repo for repo in self.all_repos() if repo.name == name), None)

    def all_repos(self) -> tuple[RepoSettings, ...]:
        """Listed repositories plus every bare repository under ``repos_dir``."""
        if self.repos_dir is None:
            return self.repos
        listed = {repo.name for repo in self.repos}
        found = self.discovered if self.discovered is not None else _found(self)
        return (*self.repos, *(repo for repo in found if repo.name not in listed))

    @property
    def spool_dir(self) -> Path:
        """Where the post-receive hook drops ref updates for the daemon."""
        return self.state_dir / "spool"


def discover(settings: Settings) -> Settings:
    """``settings`` with ``repos_dir`` walked once (blocking: the daemon runs it in a thread)."""
    if settings.repos_dir is None:
        return settings
    return replace(settings, discovered=_found(settings))


def _found(settings: Settings) -> tuple[RepoSettings, ...]:
    if settings.repos_dir is None:
        return ()
    return tuple(
        RepoSettings(
            name=name,
            remote=str(path),
            branch=settings.repos_dir_branch,
            security=settings.security,
        )
        for name, path in _bare_repositories(settings.repos_dir)
    )


def load(path: Path | None) -> Settings:
    """Settings from ``path`` (or the embedded defaults); ``ConfigError`` names the bad key."""
    if path is None:
        return Settings(state_dir=Path("var").resolve())
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    base = path.parent.resolve()
    return replace(_settings(data, base), source=path.resolve())


def _settings(data: Mapping[str, Any], base: Path) -> Settings:
    reader = _Reader(data, "")
    http = _Reader(reader.table("http"), "http.")
    limits = _Reader(reader.table("limits"), "limits.")
    guard = _Reader(reader.table("security"), "security.")
    security = read_security(guard, base, RepoSecurity())
    host, port = parse_listen(http.string("listen", "127.0.0.1:8080"))
    repos_dir = reader.optional_string("repos_dir")
    slurm = _slurm(reader.table("slurm"), "slurm.", base, SlurmSettings())
    repos = tuple(
        _repo(item, i, base, security, slurm) for i, item in enumerate(reader.array("repos"))
    )
    names = [repo.name for repo in repos]
    duplicate = next((name for name in names if names.count(name) > 1), None)
    if duplicate is not None:
        raise ConfigError(f"repos: the name {duplicate!r} is used twice")
    settings = Settings(
        state_dir=(base / reader.string("state_dir", "var")).resolve(),
        listen_host=host,
        listen_port=port,
        api_token=_api_token(_secret(http, "token", base)),
        repos=repos,
        repos_dir=(base / repos_dir).resolve() if repos_dir else None,
        repos_dir_branch=reader.string("repos_dir_branch", "main"),
        max_concurrent_steps=limits.integer("max_concurrent_steps", 2, minimum=1),
        step_timeout_s=limits.number("step_timeout_s", 3600.0),
        job_max_attempts=limits.integer("job_max_attempts", 3, minimum=1),
        lease_s=limits.number("lease_s", 600.0),
        shutdown_timeout_s=limits.number("shutdown_timeout_s", 60.0),
        max_log_bytes=limits.integer("max_log_bytes", 100 * 1024 * 1024, minimum=1024),
        max_body_bytes=http.integer("max_body_bytes", 5 * 1024 * 1024, minimum=1024),
        spool_group=_group(reader.optional_string("spool_group")),
        read_token=_secret(http, "read_token", base),
        sandbox=read_sandbox(guard),
        security=security,
        subdataset_sources=_sources(reader.table("subdataset_sources"), base),
    )
    guard.reject_unknown()
    reader.reject_unknown()
    http.reject_unknown()
    limits.reject_unknown()
    return settings


def _slurm(data: Mapping[str, Any], where: str, base: Path, under: SlurmSettings) -> SlurmSettings:
    """``data`` over ``under``: every key given replaces the default's value."""
    reader = _Reader(data, where)
    extra = reader.array("extra_args")
    if not all(isinstance(arg, str) for arg in extra):
        raise ConfigError(f"{where}extra_args must be a list of strings")
    workdir = reader.optional_string("workdir")
    cpus = reader.integer("cpus_per_task", 0, minimum=1) if "cpus_per_task" in data else None
    settings = SlurmSettings(
        partition=reader.optional_string("partition") or under.partition,
        time=reader.optional_string("time") or under.time,
        mem=reader.optional_string("mem") or under.mem,
        cpus_per_task=cpus or under.cpus_per_task,
        extra_args=tuple(str(arg) for arg in extra) if "extra_args" in data else under.extra_args,
        workdir=(base / workdir).resolve() if workdir else under.workdir,
        poll_interval_s=reader.number("poll_interval_s", under.poll_interval_s),
    )
    reader.reject_unknown()
    return settings


def _repo(
    item: object, position: int, base: Path, default: RepoSecurity, slurm: SlurmSettings
) -> RepoSettings:
    where = f"repos[{position}]."
    if not isinstance(item, dict):
        raise ConfigError(f"repos[{position}] must be a table")
    reader = _Reader(item, where)
    name = reader.required_string("name")
    if not _NAME.fullmatch(name):
        raise ConfigError(f"{where}name {name!r} may hold only letters, digits, '.', '_', '-', '/'")
    remote = reader.required_string("remote")
    if "://" not in remote and not remote.startswith("/") and ":" not in remote:
        remote = str((base / remote).resolve())
    drift = reader.string("drift", "rerun")
    if drift not in ("rerun", "report"):
        raise ConfigError(f"{where}drift must be 'rerun' or 'report', not {drift!r}")
    secrets = {key: value for key in _SECRETS if (value := _secret(reader, key, base))}
    repo = RepoSettings(
        name=name,
        remote=remote,
        branch=reader.string("branch", "main"),
        secrets=secrets,
        implicit_inputs=reader.boolean("implicit_inputs", True),
        drift="report" if drift == "report" else "rerun",
        watch=reader.boolean("watch", True),
        forge_name=reader.optional_string("forge_name"),
        verify_every_s=_duration(reader, "verify_every"),
        security=read_security(reader, base, default),
        executor=_executor(reader.string("executor", "local"), where),
        slurm=_slurm(reader.table("slurm"), f"{where}slurm.", base, slurm),
        follow_subdatasets=reader.boolean("follow_subdatasets", True),
        reuse=reader.boolean("reuse", True),
        max_parallel_steps=reader.integer("max_parallel_steps", 4, minimum=1),
        on_failure=_on_failure(reader.string("on_failure", "publish-independent"), where),
    )
    reader.reject_unknown()
    return repo


def _executor(value: str, where: str) -> Executor:
    if value == "local":
        return "local"
    if value == "slurm":
        return "slurm"
    raise ConfigError(f"{where}executor must be 'local' or 'slurm', not {value!r}")


def _sources(table: Mapping[str, Any], base: Path) -> dict[str, str]:
    """``[subdataset_sources]``: datalad id or URL = local path (relative to this file)."""
    sources: dict[str, str] = {}
    for key, value in table.items():
        if not isinstance(value, str) or not value:
            raise ConfigError(f"subdataset_sources.{key} must be a path")
        sources[key] = str((base / value).resolve()) if "://" not in value else value
    return sources


def _on_failure(value: str, where: str) -> OnFailure:
    if value == "publish-independent":
        return "publish-independent"
    if value == "publish-nothing":
        return "publish-nothing"
    raise ConfigError(
        f"{where}on_failure must be 'publish-independent' or 'publish-nothing', not {value!r}"
    )


def _group(name: str | None) -> str | None:
    if name is None or name.isdecimal():
        return name
    try:
        grp.getgrnam(name)
    except KeyError:
        raise ConfigError(f"spool_group: no group named {name!r} on this machine") from None
    return name


def _secret(reader: _Reader, key: str, base: Path) -> str | None:
    """A secret given inline (``key``) or in a file (``key_file``), never both."""
    inline = reader.optional_string(key)
    from_file = reader.optional_string(f"{key}_file")
    if inline and from_file:
        raise ConfigError(f"{reader.where}{key} and {key}_file are both set; keep one")
    if from_file:
        try:
            return (base / from_file).read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            raise ConfigError(f"{reader.where}{key}_file: cannot read {from_file}") from exc
    return inline or None


MIN_TOKEN_CHARS = 16
# Stand-ins that documentation and examples use; a daemon must never accept one.
_PLACEHOLDER_WORDS = ("changeme", "replaceme", "example", "placeholder", "yourtoken", "secret")


def _api_token(token: str | None) -> str | None:
    """Refuse tokens anyone could guess: placeholders and anything short."""
    if token is None:
        return None
    squashed = re.sub(r"[^a-z0-9]", "", token.lower())
    if any(word in squashed for word in _PLACEHOLDER_WORDS):
        raise ConfigError(
            "http.token is a placeholder; generate one, e.g. with"
            " `python3 -c 'import secrets; print(secrets.token_urlsafe(24))'`"
        )
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(f"http.token must be at least {MIN_TOKEN_CHARS} characters long")
    return token


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _duration(reader: _Reader, key: str) -> float | None:
    """A span like ``"7d"``, ``"12h"``, ``"30m"`` (or seconds as a number); ``None`` if unset."""
    value = reader._get(key)
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    match = _DURATION.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None or float(match.group(1)) <= 0:
        raise ConfigError(f"{reader.where}{key} must be a span like '7d', '12h' or '30m'")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def parse_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"http.listen must look like '127.0.0.1:8080', not {value!r}")
    return host.strip("[]"), int(port)


def _bare_repositories(root: Path) -> list[tuple[str, Path]]:
    """Every bare repository below ``root``, named by its path without ``.git``."""
    found: list[tuple[str, Path]] = []
    if not root.is_dir():
        return found
    for directory, subdirs, files in os.walk(root):
        here = Path(directory)
        if "HEAD" in files and {"objects", "refs"} <= set(subdirs) and here != root:
            subdirs.clear()  # never walk a repository's objects
            name = here.relative_to(root).as_posix().removesuffix(".git")
            if _NAME.fullmatch(name):
                found.append((name, here))
        subdirs.sort()
    return sorted(found)


class _Reader:
    """Typed access to one TOML table that remembers which keys were read."""

    def __init__(self, data: Mapping[str, Any], where: str) -> None:
        self._data = data
        self.where = where
        self._seen: set[str] = set()

    def _get(self, key: str) -> object:
        self._seen.add(key)
        return self._data.get(key)

    def table(self, key: str) -> Mapping[str, Any]:
        value = self._get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"{self.where}{key} must be a table")
        return value

    def array(self, key: str) -> list[object]:
        value = self._get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise ConfigError(f"{self.where}{key} must be an array of tables ([[{key}]])")
        return value

    def optional_string(self, key: str) -> str | None:
        value = self._get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{self.where}{key} must be a string")
        return value

    def string(self, key: str, default: str) -> str:
        value = self.optional_string(key)
        return default if value is None else value

    def required_string(self, key: str) -> str:
        value = self.optional_string(key)
        if not value:
            raise ConfigError(f"{self.where}{key} is required")
        return value

    def string_list(self, key: str) -> tuple[str, ...] | None:
        value = self._get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{self.where}{key} must be an array of non-empty strings")
        return tuple(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ConfigError(f"{self.where}{key} must be true or false")
        return value

    def integer(self, key: str, default: int, *, minimum: int = 0) -> int:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"{self.where}{key} must be an integer of at least {minimum}")
        return value

    def number(self, key: str, default: float) -> float:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"{self.where}{key} must be a positive number")
        return float(value)

    def reject_unknown(self) -> None:
        unknown = sorted(set(self._data) - self._seen)
        if unknown:
            raise ConfigError(f"unknown setting {self.where}{unknown[0]}")
