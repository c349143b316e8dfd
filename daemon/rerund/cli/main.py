"""The ``rerund`` command line: a thin layer over the core.

Exit codes: 0 success, 1 a step failed or rerund refused (one clear line on
stderr), 2 a usage error, 3 the daemon could not start. A step whose command
exited with an unexpected status makes ``rerund rerun`` exit with that status,
as ``datalad rerun`` does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from rerund import __version__
from rerund.cli import verify as verify_cli
from rerund.cli.helptext import add_command
from rerund.cli.progress import Progress
from rerund.core.dsconfig import DatasetConfig, DriftPolicy
from rerund.core.gitrepo import GitRepo
from rerund.core.history import dataset_id, read_run_records
from rerund.core.placeholders import command_text
from rerund.core.plan import Plan, PlanOptions, plan_tip, since_plan
from rerund.errors import ConfigError, RerundError, RevisionError, StepFailedError

# The daemon's commands import their modules when run: aiohttp, structlog, watchdog,
# urllib and tomllib would cost every `rerund plan` about a quarter second.
from rerund.run.execute import ExecOptions, StepContext
from rerund.run.leastwork import LeastWork
from rerund.run.process import interruptible
from rerund.run.replay import ReplayReport, replay
from rerund.run.sandbox import Sandbox
from rerund.run.script import render_script

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as git and the shell's tools end


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
    except RerundError as exc:
        print(f"rerund: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return _reader_went_away()
    return code


def _reader_went_away() -> int:
    """``rerund jobs | head``: the reader stopped listening, which is no error of ours."""
    # Python would complain again when it flushes stdout at exit; point it at nothing.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_BROKEN_PIPE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rerund",
        description="Find stale DataLad run records and rerun them.",
        epilog="`rerund COMMAND --help` describes each command, with examples.",
    )
    parser.add_argument("--version", action="version", version=f"rerund {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    plan = add_command(commands, "plan")
    _repo_options(plan)
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.set_defaults(handler=_plan_command)

    rerun = add_command(commands, "rerun")
    _repo_options(rerun)
    rerun.add_argument("commits", nargs="*", metavar="COMMIT", help="rerun exactly these records")
    rerun.add_argument("--script", metavar="FILE", help="write the commands to FILE ('-': stdout)")
    rerun.add_argument("--dry-run", action="store_true", help="show the plan, run nothing")
    rerun.add_argument("--timeout", type=float, metavar="SECONDS", help="stop a step after this")
    rerun.add_argument(
        "--sandbox", action="store_true", help="run each step under bubblewrap, as the daemon does"
    )
    rerun.add_argument(
        "-J",
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="run up to N independent steps at once",
    )
    rerun.add_argument(
        "--no-reuse", action="store_true", help="never restore a step's results from history"
    )
    rerun.set_defaults(handler=_rerun_command)

    verify = add_command(commands, "verify")
    _repo_options(verify)
    verify_cli.add_options(verify)
    verify.set_defaults(handler=_verify_command)

    serve = add_command(commands, "serve")
    serve.add_argument("--config", type=Path, help="TOML settings (default: embedded defaults)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    serve.add_argument("--listen", metavar="HOST:PORT", help="override http.listen")
    serve.set_defaults(handler=_serve_command)

    hooks = add_command(commands, "hooks")
    hook_commands = hooks.add_subparsers(required=True, metavar="ACTION")
    install = hook_commands.add_parser("install", help="install into a bare repository")
    install.add_argument("bare_repo", type=Path, metavar="BARE_REPO")
    install.add_argument("--config", type=Path, help="the daemon's settings (for its spool)")
    install.set_defaults(handler=_hooks_install_command)

    for name, handler in (("jobs", _jobs_command), ("status", _status_command)):
        sub = add_command(commands, name)
        sub.add_argument("--config", type=Path, help="the daemon's settings (for its address)")
        sub.add_argument("--url", help="the daemon's address (default: from the settings)")
        sub.set_defaults(handler=handler)
    return parser


def _repo_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("-C", dest="repo", type=Path, default=Path(), help="dataset (default: .)")
    sub.add_argument("--since", metavar="REV", help="select what `datalad rerun --since` would")
    sub.add_argument(
        "--no-implicit-inputs",
        dest="implicit_inputs",
        action="store_false",
        default=None,
        help="ignore files the command names but does not declare",
    )
    sub.add_argument(
        "--drift",
        choices=["rerun", "report"],
        help="what a hand-edited output means for its record (default: rerun)",
    )


def _plan_command(args: argparse.Namespace) -> int:
    repo = GitRepo.discover(args.repo)
    plan, _ = _make_plan(repo, DatasetConfig.read(repo), args)
    if args.json:
        print(json.dumps(plan.to_json(), ensure_ascii=False))
    else:
        _print_plan(plan, "stale" if args.since is None else "selected")
    return 0


def _rerun_command(args: argparse.Namespace) -> int:
    repo = GitRepo.discover(args.repo)
    if args.commits and args.since is not None:
        raise RevisionError("give either --since or COMMITs, not both")
    config = DatasetConfig.read(repo)
    if args.commits:
        plan, dsid = _named_plan(repo, args.commits)
    else:
        plan, dsid = _make_plan(repo, config, args)
    if args.script is not None:
        text = render_script(repo, plan, _invocation(args, plan.head), dsid, config)
        if args.script == "-":
            sys.stdout.write(text)
        else:
            Path(args.script).write_text(text, encoding="utf-8")
            print(f"Script written to {args.script}", file=sys.stderr)
        return 0
    if args.dry_run or not plan.steps:
        _print_plan(plan, "would rerun" if plan.steps else "stale")
        if not plan.steps and args.since is not None and not args.dry_run:
            # Only other datasets' records in range: DataLad calls that a failure.
            raise RevisionError(
                "no run commit in the given revision range could be re-executed in this dataset"
            )
        return 0
    for item in plan.undecided:
        print(f"rerund: note: {item.commit[:8]} not run, {item.describe()}", file=sys.stderr)
    log_dir = repo.common_dir / "rerund" / "logs"
    progress = Progress(len(plan.steps), log_dir, sys.stdout, sys.stderr)
    sandbox = Sandbox() if args.sandbox else None
    # Cutoff and reuse serve the stale plan; --since and named commits run as DataLad would.
    least = None
    if args.since is None and not args.commits:
        least = LeastWork.open(repo, config, _branch(repo), reuse=not args.no_reuse)
    try:
        with interruptible() as interrupt:
            report = replay(
                repo,
                plan,
                StepContext(dsid, config),
                ExecOptions(
                    log_dir=log_dir, timeout_s=args.timeout, cancel=interrupt.event, sandbox=sandbox
                ),
                on_step=progress.step_finished,
                on_start=progress.step_started if args.jobs <= 1 else None,
                least=least,
                slots=args.jobs,
            )
    finally:
        if least is not None:
            least.close()
    return _rerun_outcome(report, progress, interrupt.signal_name)


def _rerun_outcome(report: ReplayReport, progress: Progress, signal_name: str | None) -> int:
    """Report how the rerun ended: 0 done, 1 a step failed, 130 interrupted."""
    failed = report.failed_step
    if report.interrupted:
        print(f"rerund: interrupted by {signal_name or 'a signal'}", file=sys.stderr)
    elif failed is not None:
        progress.step_failed(failed)
    for warning in report.warnings:
        print(f"rerund: warning: {warning}", file=sys.stderr)
    if report.failure is not None and not report.interrupted:
        print(f"rerund: error: {report.failure}", file=sys.stderr)
    if failed is not None:
        what = "stopped" if report.interrupted else "failed"
        print(
            f"rerund: {what} {failed.commit[:8]} ({failed.summary}): its outputs were put back"
            " as committed"
            + (f"; its partial outputs are in {report.kept}" if report.kept else ""),
            file=sys.stderr,
        )
    if report.not_run:
        skipped = ", ".join(step.commit[:8] for step in report.not_run)
        print(f"rerund: not run: {skipped}", file=sys.stderr)
    print(progress.summary(report), file=sys.stderr)
    if report.interrupted:
        return EXIT_INTERRUPTED
    return _failure_status(report.failure) if report.failure is not None else 0


def _verify_command(args: argparse.Namespace) -> int:
    repo = GitRepo.discover(args.repo)
    if args.commits and args.since is not None:
        print("rerund: error: give either --since or COMMITs, not both", file=sys.stderr)
        return EXIT_USAGE
    plan, dsid = None, None
    if args.commits:
        plan, dsid = _named_plan(repo, args.commits)
    elif args.since is not None:
        plan, dsid = _make_plan(repo, DatasetConfig.read(repo), args)
    return verify_cli.run(repo, plan, dsid, args)


def _failure_status(failure: RerundError) -> int:
    """A command that failed passes its own exit status through, as ``datalad rerun`` does."""
    code = failure.exit_code if isinstance(failure, StepFailedError) else None
    if not code:
        return EXIT_FAILED
    return 128 - code if code < 0 else code  # killed by a signal: the shell's convention


def _serve_command(args: argparse.Namespace) -> int:
    from rerund.service.lifecycle import EXIT_STARTUP_FAILED, Service  # noqa: PLC0415
    from rerund.service.logs import configure as configure_logging  # noqa: PLC0415
    from rerund.settings import load as load_settings  # noqa: PLC0415
    from rerund.settings import parse_listen  # noqa: PLC0415
    from rerund.web.api import make_app  # noqa: PLC0415

    configure_logging(args.log_level)
    try:
        settings = load_settings(args.config)
        if args.listen:
            host, port = parse_listen(args.listen)
            settings = replace(settings, listen_host=host, listen_port=port)
    except ConfigError as exc:
        print(f"rerund: error: {exc}", file=sys.stderr)
        return EXIT_STARTUP_FAILED
    service = Service(settings, make_app)
    code = service.run()
    if service.startup_error is not None:
        print(f"rerund: error: {service.startup_error}", file=sys.stderr)
    return code


def _hooks_install_command(args: argparse.Namespace) -> int:
    from rerund.settings import load as load_settings  # noqa: PLC0415
    from rerund.triggers.hookinstall import install as install_hook  # noqa: PLC0415

    settings = load_settings(args.config)
    target = install_hook(args.bare_repo, settings.spool_dir, settings.spool_group)
    print(f"installed {target}; pushes are spooled to {settings.spool_dir.resolve()}")
    return 0


def _daemon_url(args: argparse.Namespace) -> str:
    from rerund.settings import load as load_settings  # noqa: PLC0415

    if args.url:
        return str(args.url)
    settings = load_settings(args.config)
    return f"http://{settings.listen_host}:{settings.listen_port}"


def _jobs_command(args: argparse.Namespace) -> int:
    from rerund.cli.client import format_jobs, get_json  # noqa: PLC0415

    print(format_jobs(get_json(_daemon_url(args), "/api/jobs")["jobs"]))
    return 0


def _status_command(args: argparse.Namespace) -> int:
    from rerund.cli.client import format_status, get_json  # noqa: PLC0415

    print(format_status(get_json(_daemon_url(args), "/healthz")))
    return 0


def _make_plan(
    repo: GitRepo, config: DatasetConfig, args: argparse.Namespace
) -> tuple[Plan, str | None]:
    head = repo.resolve("HEAD")
    if head is None:
        raise RevisionError(f"{repo.path} has no commits yet: nothing is recorded")
    if args.since is not None:
        revisions = [head]
        if args.since.strip():
            since = repo.resolve(args.since)
            if since is None:
                raise RevisionError(f"--since {args.since!r} names no commit")
            revisions = [f"{since}..{head}"]
        dsid = dataset_id(repo, head)
        records = read_run_records(repo, revisions)
        if not any(1 <= len(found.parents) <= 2 for found in records):  # root, octopus: ignored
            # DataLad's words and exit status (1) for an empty selection
            raise RevisionError(f"No run commits found in range {_datalad_range(repo, args.since)}")
        return since_plan(head, records, dsid), dsid
    return plan_tip(repo, _branch(repo), head, _plan_options(config, args))


def _branch(repo: GitRepo) -> str:
    """The history index's name: the checked-out branch, or HEAD when detached."""
    return repo.run("symbolic-ref", "--short", "-q", "HEAD", check=False).decode().strip() or "HEAD"


def _datalad_range(repo: GitRepo, since: str) -> str:
    """The range as ``datalad rerun --since`` names it in its message."""
    branch = repo.run("symbolic-ref", "--short", "-q", "HEAD", check=False).decode().strip()
    revision = branch or "HEAD"
    if not repo.resolve(f"{revision}^") or not since.strip():
        return revision
    return f"{since}..{revision}"


def _named_plan(repo: GitRepo, commits: Sequence[str]) -> tuple[Plan, str | None]:
    """A plan of exactly the named records, in the order given."""
    head = repo.resolve("HEAD") or ""
    shas = []
    for name in commits:
        sha = repo.resolve(name)
        if sha is None:
            raise RevisionError(f"{name!r} names no commit")
        shas.append(sha)
    dsid = dataset_id(repo, head)
    selected = []
    for sha in shas:
        found = read_run_records(repo, ["--no-walk", sha])
        if not found:
            raise RevisionError(f"{sha[:8]} is not a run record")
        selected.append(found[0])
    plan = since_plan(head, selected, dsid, why="requested")
    if plan.notices:
        raise RevisionError(f"{plan.notices[0].commit[:8]} {plan.notices[0].message}")
    return plan, dsid


def _plan_options(config: DatasetConfig, args: argparse.Namespace) -> PlanOptions:
    """Command-line flags first, then the repository's ``rerund.*`` git config."""
    implicit = config.implicit_inputs if args.implicit_inputs is None else args.implicit_inputs
    drift: DriftPolicy = args.drift or config.drift
    return PlanOptions(implicit_inputs=implicit, drift=drift)


def _invocation(args: argparse.Namespace, head: str) -> str:
    since = f" --since={args.since}" if args.since is not None else ""
    return f"rerund rerun --script={args.script}{since} {head}"


def _print_plan(plan: Plan, label: str) -> None:
    for notice in plan.notices:
        print(f"rerund: note: {notice.commit[:8]} {notice.message}", file=sys.stderr)
    if not plan.steps and not plan.undecided:
        print(f"nothing is {label} at {plan.head[:8]}")
        return
    if plan.steps:
        print(f"{len(plan.steps)} step(s) {label} at {plan.head[:8]}:")
    for number, step in enumerate(plan.steps, 1):
        why = "; ".join(reason.describe() for reason in step.reasons)
        maybe = "  (may be cut off)" if step.may_cut_off else ""
        print(f"{number:>3}. {step.commit[:8]}  {step.summary}{maybe}  <- {why}")
        command = command_text(step.record.cmd).replace("\n", "\n         ")
        print(f"       $ {command}")
    _print_undecided(plan)


def _print_undecided(plan: Plan) -> None:
    if not plan.undecided:
        return
    print(f"{len(plan.undecided)} step(s) undecided at {plan.head[:8]}:")
    for item in plan.undecided:
        print(f"  ?  {item.commit[:8]}  {item.summary}  <- {item.describe()}")


if __name__ == "__main__":
    sys.exit(main())
