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

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")
OnFailure = Literal["publish-independent", "publish-nothing"]
_SECRETS = ("github_secret", "gitlab_token", "gitea_secret", "forgejo_secret")


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
    discovered: tuple[RepoSettings, ...] | None = None
    """Repositories found under ``repos_dir`` by :func:`discover`; ``None``: look each time."""

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
        RepoSettings(name=name, remote=str(path), branch=settings.repos_dir_branch)
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
    host, port = parse_listen(http.string("listen", "127.0.0.1:8080"))
    repos_dir = reader.optional_string("repos_dir")
    repos = tuple(_repo(item, i, base) for i, item in enumerate(reader.array("repos")))
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
    )
    reader.reject_unknown()
    http.reject_unknown()
    limits.reject_unknown()
    return settings


def _repo(item: object, position: int, base: Path) -> RepoSettings:
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
        reuse=reader.boolean("reuse", True),
        max_parallel_steps=reader.integer("max_parallel_steps", 4, minimum=1),
        on_failure=_on_failure(reader.string("on_failure", "publish-independent"), where),
    )
    reader.reject_unknown()
    return repo


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
