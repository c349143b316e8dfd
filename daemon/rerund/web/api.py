"""The HTTP side of the daemon: forge webhooks and a small JSON API (SPEC §5, §6).

Webhooks are verified, parsed, stored durably and answered 202 — the work
happens after the answer. Mutating API endpoints need the bearer token from
the configuration.
"""

from __future__ import annotations

import asyncio
import hmac
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from rerund import __version__
from rerund.core.plan import Plan
from rerund.errors import GitError, RerundError
from rerund.service.metrics import Metrics
from rerund.service.store import EventResult, StepRow, Store
from rerund.service.workspace import read_remote_tip
from rerund.settings import RepoSettings, Settings
from rerund.triggers.webhooks import PROVIDERS, Ignored, Ping, WebhookError, parse, verify
from rerund.web.access import refuse_reader


class Daemon(Protocol):
    """What the HTTP side needs from the running daemon, and nothing more."""

    settings: Settings
    metrics: Metrics

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


SERVICE: web.AppKey[Daemon] = web.AppKey("service")
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
        ]
    )
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
    repo = service.settings.repo(request.match_info["name"])
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


# -- API ------------------------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    service = _service(request)
    counts = await asyncio.to_thread(service.db.counts)
    return web.json_response({"status": "ok", "version": __version__, "jobs": counts})


async def metrics(request: web.Request) -> web.Response:
    service = _service(request)
    counts = await asyncio.to_thread(service.db.counts)
    service.metrics.queued.set(counts.get("queued", 0))
    body = generate_latest(service.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def list_jobs(request: web.Request) -> web.Response:
    store = _service(request).db
    try:
        limit = min(int(request.query.get("limit", "50")), 1000)
    except ValueError:
        return _error(400, "limit must be a number")
    jobs = await asyncio.to_thread(
        store.jobs, repo=request.query.get("repo"), state=request.query.get("state"), limit=limit
    )
    return web.json_response({"jobs": [job.to_json() for job in jobs]})


async def job_detail(request: web.Request) -> web.Response:
    if (refused := refuse_reader(request, _service(request).settings)) is not None:
        return refused
    store = _service(request).db
    job_id = _job_id(request)
    job = await asyncio.to_thread(store.job, job_id)
    if job is None:
        return _error(404, f"no job {job_id}")
    steps = await asyncio.to_thread(store.steps, job_id)
    return web.json_response({**job.to_json(), "steps": [step.to_json() for step in steps]})


async def job_log(request: web.Request) -> web.Response:
    if (refused := refuse_reader(request, _service(request).settings)) is not None:
        return refused
    store = _service(request).db
    job_id = _job_id(request)
    if await asyncio.to_thread(store.job, job_id) is None:
        return _error(404, f"no job {job_id}")
    steps = await asyncio.to_thread(store.steps, job_id)
    return web.Response(
        text=await asyncio.to_thread(_job_log_text, steps), content_type="text/plain"
    )


def _job_log_text(steps: list[StepRow]) -> str:
    """Every step's log in order, each under a header line."""
    parts = []
    for step in steps:
        text = "(no output)\n"
        if step.log_path and Path(step.log_path).is_file():
            text = Path(step.log_path).read_text(encoding="utf-8", errors="replace")
        parts.append(f"=== step {step.position + 1} {step.record[:12]} [{step.state}]\n{text}")
    return "".join(parts)


async def list_repos(request: web.Request) -> web.Response:
    repos = _service(request).settings.all_repos()
    return web.json_response({"repos": [_repo_json(repo) for repo in repos]})


async def repo_plan(request: web.Request) -> web.Response:
    service = _service(request)
    repo = service.settings.repo(request.match_info["name"])
    if repo is None:
        return _error(404, f"no repository named {request.match_info['name']!r} is served here")
    try:
        plan = await service.current_plan(repo)
    except (RerundError, GitError) as exc:
        return _error(502, f"cannot plan {repo.name}: {exc}")
    return web.json_response(plan.to_json())


async def trigger(request: web.Request) -> web.Response:
    service = _service(request)
    refused = _refuse_without_token(request, service.settings.api_token)
    if refused is not None:
        return refused
    repo = service.settings.repo(request.match_info["name"])
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


def _refuse_without_token(request: web.Request, token: str | None) -> web.Response | None:
    if token is None:
        return _error(403, "no API token is configured (http.token); mutating endpoints are off")
    given = request.headers.get("Authorization", "")
    if not given.startswith("Bearer "):
        return _error(401, "send 'Authorization: Bearer <token>'")
    if not hmac.compare_digest(given[7:].encode(), token.encode()):
        return _error(403, "wrong token")
    return None


def _job_id(request: web.Request) -> int:
    try:
        return int(request.match_info["job"])
    except ValueError:
        raise web.HTTPBadRequest(text='{"error": "job ids are numbers"}') from None


def _repo_json(repo: RepoSettings) -> dict[str, Any]:
    return {
        "name": repo.name,
        "remote": repo.remote,
        "branch": repo.branch,
        "webhooks": sorted(p for p in PROVIDERS if any(k in repo.secrets for k in _SECRET_KEYS[p])),
    }
