"""The HTTP side of the daemon: forge webhooks and a small JSON API (SPEC §5, §6).

Webhooks are verified, parsed, stored durably and answered 202 — the work
happens after the answer. Mutating API endpoints need the bearer token from
the configuration.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from rerund import __version__
from rerund.core.plan import Plan
from rerund.errors import GitError, RerundError
from rerund.service.metrics import Metrics
from rerund.service.slurmjournal import SlurmJournalStore
from rerund.service.store import EventResult, StepRow, Store
from rerund.service.verification import Verification
from rerund.service.workspace import read_remote_tip
from rerund.settings import RepoSettings, Settings
from rerund.triggers.webhooks import (
    PROVIDERS,
    Ignored,
    Ping,
    PushEvent,
    WebhookError,
    parse,
    verify,
)
from rerund.web import verification_api
from rerund.web.access import refuse_reader, refuse_writer
from rerund.web.dashboard import Dashboard


class Daemon(Protocol):
    """What the HTTP side needs from the running daemon, and nothing more."""

    settings: Settings
    metrics: Metrics
    slurm_journal: SlurmJournalStore | None

    @property
    def db(self) -> Store: ...

    async def record_event(
        self,
        repo: str,
        branch: str,
        old: str,
        new: str,
        *,
        source: str,
        delivery_id: str | None = None,
        force: bool = False,
        pusher: str | None = None,
    ) -> EventResult: ...

    async def current_plan(self, repo: RepoSettings) -> Plan: ...

    def down_tasks(self) -> list[str]: ...

    async def find_repo(self, name: str) -> RepoSettings | None: ...

    @property
    def verification(self) -> Verification: ...


SERVICE: web.AppKey[Daemon] = web.AppKey("service")
MAX_LIST = 1000
_DIGITS = re.compile(r"[0-9]+")
_MAX_ID_DIGITS = 18  # below 2**63: SQLite's INTEGER
_LOG_CHUNK = 64 * 1024
_SECRET_KEYS = {
    "github": ("github_secret",),
    "gitlab": ("gitlab_token",),
    "gitea": ("gitea_secret",),
    "forgejo": ("forgejo_secret", "gitea_secret"),
}


def make_app(service: Daemon) -> web.Application:
    app = web.Application(client_max_size=service.settings.max_body_bytes)
    app[SERVICE] = service
    app.add_routes(
        [
            web.get("/healthz", health),
            web.get("/metrics", metrics),
            web.get("/api/jobs", list_jobs),
            web.get("/api/jobs/{job}", job_detail),
            web.get("/api/jobs/{job}/log", job_log),
            web.get("/api/repos", list_repos),
            web.get("/api/repos/{name:.+}/plan", repo_plan),
            web.post("/api/repos/{name:.+}/trigger", trigger),
            web.post("/hooks/{provider}/{name:.+}", webhook),
            *verification_api.routes(SERVICE),
        ]
    )
    Dashboard(SERVICE).setup(app)
    return app


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _service(request: web.Request) -> Daemon:
    return request.app[SERVICE]


# -- webhooks -------------------------------------------------------------------------------


async def webhook(request: web.Request) -> web.Response:  # noqa: PLR0911 - one answer per refusal
    service = _service(request)
    provider = request.match_info["provider"]
    if provider not in PROVIDERS:
        return _error(404, f"unknown provider {provider!r}; use one of {', '.join(PROVIDERS)}")
    repo = await service.find_repo(request.match_info["name"])
    if repo is None:
        return _error(404, f"no repository named {request.match_info['name']!r} is served here")
    secret = next((repo.secrets[k] for k in _SECRET_KEYS[provider] if k in repo.secrets), None)
    if secret is None:
        return _error(403, f"repository {repo.name} has no {provider} secret configured")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        service.metrics.deliveries.labels(provider, "too-large").inc()
        return _error(413, f"body larger than {service.settings.max_body_bytes} bytes")
    try:
        limit = service.settings.max_body_bytes
        verify(provider, request.headers, body, secret, max_bytes=limit)
        event = parse(provider, request.headers, body, max_bytes=limit)
    except WebhookError as exc:
        service.metrics.deliveries.labels(provider, f"rejected-{exc.status}").inc()
        return _error(exc.status, str(exc))
    if isinstance(event, Ping):
        service.metrics.deliveries.labels(provider, "ping").inc()
        return web.json_response({"pong": True})
    if isinstance(event, PushEvent):
        mismatch = _names_other_repository(service.settings, repo, event.repository)
        if mismatch is not None:
            service.metrics.deliveries.labels(provider, "rejected-409").inc()
            return _error(409, mismatch)
    if isinstance(event, Ignored) or event.branch != repo.branch or event.deleted:
        service.metrics.deliveries.labels(provider, "ignored").inc()
        what = event.event if isinstance(event, Ignored) else f"push to {event.ref}"
        return web.json_response({"ignored": what}, status=202)
    result = await service.record_event(
        repo.name,
        repo.branch,
        event.before,
        event.after,
        source=provider,
        delivery_id=event.delivery_id,
        pusher=event.pusher,
    )
    service.metrics.deliveries.labels(provider, result.outcome).inc()
    return web.json_response({"outcome": result.outcome, "job": result.job_id}, status=202)


def _names_other_repository(settings: Settings, repo: RepoSettings, named: str) -> str | None:
    """Why a delivery for ``named`` must not count for ``repo``; ``None`` when it may.

    With ``forge_name`` set the payload must name exactly it. Without, a payload that
    names another served repository, or comes with a secret other repositories share,
    must name this one: a signature proves who sent it, not where it was meant to go.
    """
    if repo.forge_name is not None:
        ok = named == repo.forge_name
    else:
        others = [other for other in settings.all_repos() if other.name != repo.name]
        names_other = any(named in (other.name, other.forge_name) for other in others)
        shared = any(set(other.secrets.values()) & set(repo.secrets.values()) for other in others)
        ok = named == repo.name or not (names_other or shared)
    if ok:
        return None
    return f"the delivery is about repository {named[:200]!r}, not {repo.name!r} (forge_name)"


# -- API ------------------------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    service = _service(request)
    down = service.down_tasks()
    if down:  # intake or a worker died: the process is about to exit non-zero
        answer = {"status": "unhealthy", "version": __version__, "down": down}
        return web.json_response(answer, status=503)
    counts = await asyncio.to_thread(service.db.counts)
    return web.json_response({"status": "ok", "version": __version__, "jobs": counts})


async def metrics(request: web.Request) -> web.Response:
    service = _service(request)
    counts = await asyncio.to_thread(service.db.counts)
    service.metrics.queued.set(counts.get("queued", 0))
    if service.slurm_journal is not None:
        pending = await asyncio.to_thread(service.slurm_journal.pending)
        service.metrics.slurm_pending.set(pending)
    body = generate_latest(service.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def list_jobs(request: web.Request) -> web.Response:
    store = _service(request).db
    text = request.query.get("limit", "50")
    if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= MAX_LIST:
        return _error(400, f"limit must be a number from 1 to {MAX_LIST}")
    limit = int(text)
    jobs = await asyncio.to_thread(
        store.jobs, repo=request.query.get("repo"), state=request.query.get("state"), limit=limit
    )
    state_dir = _service(request).settings.state_dir
    slurm = await _slurm_steps(_service(request), [job.id for job in jobs])
    answer = {"jobs": [_with_slurm(job.to_json(), slurm.get(job.id)) for job in jobs]}
    return web.json_response(_without_server_paths(answer, state_dir))


async def job_detail(request: web.Request) -> web.Response:
    if (refused := refuse_reader(request, _service(request).settings)) is not None:
        return refused
    store = _service(request).db
    job_id = _job_id(request)
    job = await asyncio.to_thread(store.job, job_id)
    if job is None:
        return _error(404, f"no job {job_id}")
    steps = await asyncio.to_thread(store.steps, job_id)
    state_dir = _service(request).settings.state_dir
    detail = {**job.to_json(), "steps": [_step_json(step, state_dir) for step in steps]}
    by_position = {
        entry["position"]: entry
        for entry in (await _slurm_steps(_service(request), [job_id])).get(job_id, [])
    }
    for step_json in detail["steps"]:
        if step_json["position"] in by_position:
            step_json["slurm"] = by_position[step_json["position"]]
    return web.json_response(_without_server_paths(detail, state_dir))


async def job_log(request: web.Request) -> web.StreamResponse:
    """Every step's log in order, each under a header line, streamed in chunks.

    ``?step=N`` picks one step; ``?tail=BYTES`` sends only the end of each log,
    ``?offset=BYTES`` only what follows that point (to follow a log as it grows).
    """
    if (refused := refuse_reader(request, _service(request).settings)) is not None:
        return refused
    store = _service(request).db
    job_id = _job_id(request)
    if await asyncio.to_thread(store.job, job_id) is None:
        return _error(404, f"no job {job_id}")
    steps = await asyncio.to_thread(store.steps, job_id)
    try:
        only = _optional_number(request, "step")
        tail = _optional_number(request, "tail")
        offset = _optional_number(request, "offset")
    except ValueError as exc:
        return _error(400, str(exc))
    if only is not None:
        steps = [step for step in steps if step.position + 1 == only]
    response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    await response.prepare(request)
    for step in steps:
        header = f"=== step {step.position + 1} {step.record[:12]} [{step.state}]\n"
        await response.write(header.encode())
        await stream_log(response, step, tail, offset)
    await response.write_eof()
    return response


async def stream_log(
    response: web.StreamResponse, step: StepRow, tail: int | None, offset: int | None
) -> None:
    path = Path(step.log_path) if step.log_path else None
    try:
        handle = await asyncio.to_thread(open, path, "rb") if path else None
    except OSError:
        handle = None
    if handle is None:
        await response.write(b"(no output)\n")
        return
    try:
        if tail is not None:
            size = await asyncio.to_thread(handle.seek, 0, 2)
            await asyncio.to_thread(handle.seek, max(size - tail, 0))
        elif offset is not None:
            await asyncio.to_thread(handle.seek, offset)
        while chunk := await asyncio.to_thread(handle.read, _LOG_CHUNK):
            await response.write(chunk)
    finally:
        handle.close()


def _optional_number(request: web.Request, name: str) -> int | None:
    text = request.query.get(name)
    if text is None:
        return None
    if not _DIGITS.fullmatch(text) or len(text) > _MAX_ID_DIGITS:
        raise ValueError(f"{name} must be a non-negative number")
    return int(text)


async def list_repos(request: web.Request) -> web.Response:
    repos = _service(request).settings.all_repos()
    return web.json_response({"repos": [_repo_json(repo) for repo in repos]})


async def repo_plan(request: web.Request) -> web.Response:
    service = _service(request)
    repo = await service.find_repo(request.match_info["name"])
    if repo is None:
        return _error(404, f"no repository named {request.match_info['name']!r} is served here")
    try:
        plan = await service.current_plan(repo)
    except (RerundError, GitError) as exc:
        return _error(502, f"cannot plan {repo.name}: {exc}")
    return web.json_response(plan.to_json())


async def trigger(request: web.Request) -> web.Response:
    service = _service(request)
    refused = refuse_writer(request, service.settings.api_token)
    if refused is not None:
        return refused
    repo = await service.find_repo(request.match_info["name"])
    if repo is None:
        return _error(404, f"no repository named {request.match_info['name']!r} is served here")
    try:
        tip = await asyncio.to_thread(read_remote_tip, repo)
    except GitError as exc:
        return _error(502, f"cannot read {repo.name}'s remote: {exc}")
    if tip is None:
        return _error(409, f"{repo.name} has no branch {repo.branch}")
    result = await service.record_event(
        repo.name, repo.branch, tip, tip, source="manual", force=True
    )
    return web.json_response({"outcome": result.outcome, "job": result.job_id}, status=202)


def _job_id(request: web.Request) -> int:
    text = request.match_info["job"]
    if not _DIGITS.fullmatch(text):  # ASCII digits only: int() also reads "١٢"
        raise web.HTTPBadRequest(
            text='{"error": "job ids are numbers"}', content_type="application/json"
        )
    if len(text) > _MAX_ID_DIGITS:  # beyond SQLite's integers: no such job
        raise web.HTTPNotFound(text='{"error": "no such job"}', content_type="application/json")
    return int(text)


async def _slurm_steps(service: Daemon, job_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """The Slurm jobs of these jobs' steps (id, state, node, time queued)."""
    if service.slurm_journal is None:
        return {}
    return await asyncio.to_thread(service.slurm_journal.for_jobs, job_ids)


def _with_slurm(job: dict[str, Any], slurm: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {**job, "slurm": slurm} if slurm else job


def _step_json(step: StepRow, state_dir: Path) -> dict[str, Any]:
    data = step.to_json()
    if step.log_path:
        path = Path(step.log_path)
        data["log_path"] = (
            path.relative_to(state_dir).as_posix() if path.is_relative_to(state_dir) else path.name
        )
    return data


def _without_server_paths(detail: dict[str, Any], state_dir: Path) -> dict[str, Any]:
    """Error texts name logs and trees by their place in the state directory only."""
    prefix = f"{state_dir}/"

    def scrub(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace(prefix, "")
        if isinstance(value, list):
            return [scrub(item) for item in value]
        if isinstance(value, dict):
            return {key: scrub(item) for key, item in value.items()}
        return value

    scrubbed: dict[str, Any] = scrub(detail)
    return scrubbed


def _public_remote(repo: RepoSettings) -> str:
    """A URL without credentials; a path on this server as its last component only."""
    if repo.local_path is not None:
        return repo.local_path.name
    return re.sub(r"^([a-z+]+://)[^/@]*@", r"\1", repo.remote)


def _repo_json(repo: RepoSettings) -> dict[str, Any]:
    return {
        "name": repo.name,
        "remote": _public_remote(repo),
        "branch": repo.branch,
        "webhooks": sorted(p for p in PROVIDERS if any(k in repo.secrets for k in _SECRET_KEYS[p])),
    }
