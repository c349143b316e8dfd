"""Verification over HTTP: queue one, read the verdicts, show the badge (issue 11).

``POST /api/repos/<name>/verify`` (token) queues a verification job, which
never publishes; ``GET /api/repos/<name>/verification`` returns the newest
finished one with a verdict per record; ``GET /badge/<name>.svg`` is the
``reproducible 11/12`` badge for a README.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from rerund.service.verification import Verification
from rerund.settings import RepoSettings
from rerund.web.access import refuse_writer
from rerund.web.badge import badge_state, badge_svg


def routes(service_key: web.AppKey[Any]) -> list[web.RouteDef]:
    """The routes, reading the daemon from ``app[service_key]``."""

    def parts(request: web.Request) -> tuple[Any, RepoSettings | None]:
        service = request.app[service_key]
        return service, service.settings.repo(request.match_info["name"])

    async def request_verification(request: web.Request) -> web.Response:
        service, repo = parts(request)
        refused = refuse_writer(request, service.settings.api_token)
        if refused is not None:
            return refused
        if repo is None:
            return _unknown(request)
        verification: Verification = service.verification
        job_id, new = await verification.request(repo.name, source="api")
        return web.json_response(
            {"job": job_id, "outcome": "queued" if new else "coalesced"}, status=202
        )

    async def verification_state(request: web.Request) -> web.Response:
        service, repo = parts(request)
        if repo is None:
            return _unknown(request)
        return web.json_response(await summary(service.verification, repo.name))

    async def badge(request: web.Request) -> web.Response:
        service, repo = parts(request)
        if repo is None:
            return _unknown(request)
        found = await summary(service.verification, repo.name)
        return web.Response(
            text=render_badge(found),
            content_type="image/svg+xml",
            headers={"Cache-Control": "no-cache, max-age=0"},
        )

    return [
        web.post("/api/repos/{name:.+}/verify", request_verification),
        web.get("/api/repos/{name:.+}/verification", verification_state),
        web.get("/badge/{name:.+}.svg", badge),
    ]


async def summary(verification: Verification, repo: str) -> dict[str, Any]:
    """The newest finished verification of ``repo`` and the jobs after it."""
    store = verification.store
    latest = await asyncio.to_thread(store.latest_done, repo)
    recent = await asyncio.to_thread(store.jobs, repo, limit=5)
    records = [] if latest is None else await asyncio.to_thread(store.verdicts, latest.id)
    return {
        "repo": repo,
        "latest": None if latest is None else latest.to_json(),
        "records": records,
        "pending": [job.to_json() for job in recent if job.state in ("queued", "running")],
        "recent": [job.to_json() for job in recent],
    }


def render_badge(found: dict[str, Any]) -> str:
    latest = found["latest"]
    if latest is None:
        return badge_svg("reproducible", "unknown", "unknown")
    states = [record["state"] for record in found["records"]]
    value = f"{latest['reproducible']}/{latest['total']}"
    return badge_svg("reproducible", value, badge_state(states) if states else "reproducible")


def _unknown(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    return web.json_response({"error": f"no repository named {name!r} is served here"}, status=404)
