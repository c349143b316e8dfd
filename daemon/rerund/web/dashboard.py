"""The dashboard at ``/``: server-rendered pages a data manager keeps open (issue 11).

Pages: the repositories; one repository with its run-record graph (inline
SVG laid out by Graphviz ``dot``), step durations and verdicts; the jobs, kept
live by server-sent events; one job with its steps on a timeline and its log
streaming while a step runs. Jinja2 templates and the one script and style
sheet ship in the package; reading needs no token, as with the API's GETs.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import aiohttp_jinja2
import jinja2
from aiohttp import web

from rerund import __version__
from rerund.core.plan import Plan
from rerund.errors import GitError, RerundError
from rerund.service.recordgraph import GraphView, repo_graph
from rerund.service.store import Job, StepRow, Store
from rerund.service.verification import Verification
from rerund.service.workspace import read_remote_tip
from rerund.settings import RepoSettings, Settings
from rerund.web import plots
from rerund.web.graphsvg import GraphLayoutError, graph_svg
from rerund.web.verification_api import summary

STATIC_DIR = Path(__file__).with_name("static")
_FINAL = ("succeeded", "failed", "refused")
_POLL_S = 0.25
_STREAM_MAX_S = 300.0
"""An event stream ends after this; the browser's EventSource reconnects on its own."""


class DashboardDaemon(Protocol):
    """What the pages read from the running daemon."""

    settings: Settings

    @property
    def db(self) -> Store: ...

    @property
    def verification(self) -> Verification: ...

    async def current_plan(self, repo: RepoSettings) -> Plan: ...


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Dashboard:
    def __init__(self, service_key: web.AppKey[Any]) -> None:
        self._key = service_key
        self._closing = asyncio.Event()

    def setup(self, app: web.Application) -> None:
        env = aiohttp_jinja2.setup(
            app,
            loader=jinja2.PackageLoader("rerund.web", "templates"),
            autoescape=jinja2.select_autoescape(default=True),
        )
        env.globals["version"] = __version__
        app.on_shutdown.append(self._on_shutdown)
        app.add_routes(
            [
                web.get("/", self.repos_page),
                web.get("/repos/{name:.+}", self.repo_page),
                web.get("/jobs", self.jobs_page),
                web.get("/jobs/{job:\\d+}", self.job_page),
                web.get("/events/jobs", self.jobs_events),
                web.get("/events/jobs/{job:\\d+}", self.job_events),
                web.static("/static", STATIC_DIR),
            ]
        )

    async def _on_shutdown(self, _app: web.Application) -> None:
        self._closing.set()  # open event streams end, so shutdown need not wait for them

    def _service(self, request: web.Request) -> DashboardDaemon:
        service: DashboardDaemon = request.app[self._key]
        return service

    # -- pages ------------------------------------------------------------------------

    async def repos_page(self, request: web.Request) -> web.Response:
        service = self._service(request)
        rows = await asyncio.gather(
            *(self._repo_row(service, repo) for repo in service.settings.all_repos())
        )
        return aiohttp_jinja2.render_template("repos.html", request, {"repos": rows})

    async def _repo_row(self, service: DashboardDaemon, repo: RepoSettings) -> dict[str, Any]:
        row: dict[str, Any] = {"name": repo.name, "remote": repo.remote, "branch": repo.branch}
        try:
            row["tip"] = await asyncio.to_thread(read_remote_tip, repo)
        except GitError as exc:
            row["tip"], row["tip_error"] = None, f"cannot read: {exc}"
        jobs = await asyncio.to_thread(service.db.jobs, repo=repo.name, limit=1)
        row["job"] = _job_view(jobs[0]) if jobs else None
        try:
            row["stale"] = len((await service.current_plan(repo)).steps)
        except (RerundError, OSError) as exc:
            row["stale"], row["plan_error"] = None, f"cannot plan: {exc}"
        return row

    async def repo_page(self, request: web.Request) -> web.Response:
        service = self._service(request)
        repo = service.settings.repo(request.match_info["name"])
        if repo is None:
            raise web.HTTPNotFound(text=f"no repository named {request.match_info['name']!r}")
        verification = await summary(service.verification, repo.name)
        verdicts = await asyncio.to_thread(service.verification.store.record_states, repo.name)
        jobs = await asyncio.to_thread(service.db.jobs, repo=repo.name, limit=50)
        steps_by_job = await asyncio.to_thread(_steps_of, service.db, jobs)
        marks = {step.record: step.state for step in (steps_by_job[0][1] if steps_by_job else [])}
        context: dict[str, Any] = {
            "repo": repo,
            "verification": verification,
            "jobs": [_job_view(job) for job in jobs[:10]],
            "duration_plot": plots.line_chart(
                _durations(steps_by_job), y_label="seconds", css="durations"
            ),
            "graph_error": None,
        }
        try:
            view = await asyncio.to_thread(
                repo_graph, service.settings.state_dir, repo, verdicts, marks
            )
            context.update(await asyncio.to_thread(_graph_context, view))
        except (RerundError, GraphLayoutError, OSError) as exc:
            context.update(
                tip="", nodes=[], stale_count=0, graph_svg="", node_json="{}", graph_error=str(exc)
            )
        return aiohttp_jinja2.render_template("repo.html", request, context)

    async def jobs_page(self, request: web.Request) -> web.Response:
        service = self._service(request)
        context = await asyncio.to_thread(_jobs_payload, service.db)
        return aiohttp_jinja2.render_template("jobs.html", request, context)

    async def job_page(self, request: web.Request) -> web.Response:
        service = self._service(request)
        job_id = int(request.match_info["job"])
        job = await asyncio.to_thread(service.db.job, job_id)
        if job is None:
            raise web.HTTPNotFound(text=f"no job {job_id}")
        steps = await asyncio.to_thread(service.db.steps, job_id)
        context = {
            "job": job,
            "steps": [_step_view(step) for step in steps],
            "timeline": plots.timeline(_bars(steps)),
            "log_text": "",
        }
        return aiohttp_jinja2.render_template("job.html", request, context)

    # -- live updates -----------------------------------------------------------------

    async def jobs_events(self, request: web.Request) -> web.StreamResponse:
        store = self._service(request).db
        response = await _open_stream(request)
        last = None
        deadline = time.monotonic() + _STREAM_MAX_S
        while not self._closing.is_set() and time.monotonic() < deadline:
            payload = await asyncio.to_thread(_jobs_payload, store)
            text = json.dumps(payload)
            if text != last:
                if not await _send(response, "jobs", text):
                    break
                last = text
            await self._pause()
        return response

    async def job_events(self, request: web.Request) -> web.StreamResponse:
        service = self._service(request)
        job_id = int(request.match_info["job"])
        response = await _open_stream(request)
        offsets: dict[int, int] = {}
        last = None
        deadline = time.monotonic() + _STREAM_MAX_S
        while not self._closing.is_set() and time.monotonic() < deadline:
            job = await asyncio.to_thread(service.db.job, job_id)
            if job is None:
                await _send(response, "end", "{}")
                break
            steps = await asyncio.to_thread(service.db.steps, job_id)
            state = json.dumps([job.state, [(s.state, s.finished_at) for s in steps]])
            if state != last or job.state == "running":
                payload = {
                    "job": job.to_json(),
                    "steps": [_step_view(step) for step in steps],
                    "timeline": plots.timeline(_bars(steps)),
                }
                if not await _send(response, "job", json.dumps(payload)):
                    break
                last = state
            logs = service.settings.state_dir / "logs" / f"job-{job_id}"
            for step in steps:
                chunk = await asyncio.to_thread(_read_new, _log_path(step, logs), step, offsets)
                if chunk is not None and not await _send(response, "log", json.dumps(chunk)):
                    return response
            if job.state in _FINAL:
                await _send(response, "end", "{}")
                break
            await self._pause()
        return response

    async def _pause(self) -> None:
        try:
            await asyncio.wait_for(self._closing.wait(), timeout=_POLL_S)
        except TimeoutError:
            return


async def _open_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    await response.write(b"retry: 1000\n\n")
    return response


async def _send(response: web.StreamResponse, event: str, data: str) -> bool:
    """Send one event; ``False`` when the browser has gone."""
    try:
        await response.write(f"event: {event}\ndata: {data}\n\n".encode())
    except (ConnectionError, RuntimeError):
        return False
    return True


def _log_path(step: StepRow, logs: Path) -> Path:
    """A finished step's log, or where the running step is writing it."""
    return Path(step.log_path) if step.log_path else logs / f"{step.record[:12]}.log"


def _read_new(path: Path, step: StepRow, offsets: dict[int, int]) -> dict[str, str] | None:
    """What ``path`` gained since the last read (headed by the step on its first read)."""
    if step.state == "pending" or not path.is_file():
        return None
    start = offsets.get(step.position)
    with path.open("rb") as handle:
        handle.seek(start or 0)
        data = handle.read(1 << 20)
    if not data and start is not None:
        return None
    offsets[step.position] = (start or 0) + len(data)
    label = f"step {step.position + 1} {step.record[:10]} {step.summary}"
    header = f"=== {label}\n" if start is None else ""
    return {"step": label, "text": header + data.decode("utf-8", "replace")}


def _steps_of(store: Store, jobs: list[Job]) -> list[tuple[Job, list[StepRow]]]:
    return [(job, store.steps(job.id)) for job in jobs]


def _durations(
    steps_by_job: list[tuple[Job, list[StepRow]]],
) -> dict[str, list[tuple[float, float]]]:
    """Step durations over time, one series per record summary."""
    series: dict[str, list[tuple[float, float]]] = {}
    for _, steps in steps_by_job:
        for step in steps:
            if step.started_at is not None and step.finished_at is not None:
                series.setdefault(step.summary or step.record[:8], []).append(
                    (step.finished_at, step.finished_at - step.started_at)
                )
    return series


def _graph_context(view: GraphView) -> dict[str, Any]:
    graph = view.graph
    nodes = {
        node.commit: {
            "summary": node.summary,
            "cmd": node.cmd,
            "outputs": list(node.outputs),
            "reasons": list(node.stale_reasons),
        }
        for node in graph.nodes
    }
    return {
        "tip": graph.tip,
        "nodes": graph.nodes,
        "stale_count": sum(1 for state in view.states.values() if state == "stale"),
        "graph_svg": graph_svg(graph, view.states),
        # Safe inside <script>: no "</" can close the element early.
        "node_json": json.dumps(nodes).replace("</", "<\\/"),
    }


def _jobs_payload(store: Store) -> dict[str, Any]:
    jobs = store.jobs(limit=100)
    now = time.time()
    spans = [(job.created_at, job.started_at or job.finished_at) for job in jobs]
    queue = plots.queue_lengths(spans, now=now)
    return {
        "jobs": [_job_view(job) for job in jobs],
        "queue_plot": plots.line_chart(
            {"queued": queue}, y_label="jobs waiting", css="queue", step=True
        ),
    }


def _job_view(job: Job) -> dict[str, Any]:
    view = job.to_json()
    view["when"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(job.created_at))
    end = job.finished_at or (time.time() if job.started_at else None)
    view["duration"] = f"{end - job.started_at:.1f} s" if job.started_at and end else ""
    return view


def _step_view(step: StepRow) -> dict[str, Any]:
    view = step.to_json()
    if step.started_at is not None:
        end = step.finished_at or time.time()
        view["duration"] = f"{end - step.started_at:.2f} s"
    else:
        view["duration"] = ""
    return view


def _bars(steps: list[StepRow]) -> list[plots.Bar]:
    return [
        plots.Bar(
            f"{step.position + 1}. {step.summary}", step.state, step.started_at, step.finished_at
        )
        for step in steps
    ]
