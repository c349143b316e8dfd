"""``rerund verify``: the report of a verification, for people, machines and forges.

Human output is one line per record and a summary; ``--json`` the whole
report; ``--junit`` a JUnit XML file where each record is a test case — a
difference is a ``failure``, a failing command an ``error``, a record that
could not run ``skipped`` — which every forge's CI shows natively.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

from rerund.core.gitrepo import GitRepo
from rerund.core.history import dataset_id
from rerund.core.plan import Plan
from rerund.errors import RevisionError
from rerund.run.verify import Verdict, VerifyOptions, VerifyReport, current_steps, verify

EXIT_DIFFERS = 1


def add_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("commits", nargs="*", metavar="COMMIT", help="verify exactly these records")
    sub.add_argument("--json", action="store_true", help="print the report as JSON")
    sub.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report to FILE")
    sub.add_argument("-J", dest="jobs", type=_positive, default=1, help="verify N records at once")
    sub.add_argument("--timeout", type=float, metavar="SECONDS", help="stop a step after this")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def run(repo: GitRepo, plan: Plan | None, dsid: str | None, args: argparse.Namespace) -> int:
    """Verify ``plan``'s steps (or, without one, every current record at HEAD)."""
    if plan is None:
        head = repo.resolve("HEAD")
        if head is None:
            raise RevisionError(f"{repo.path} has no commits yet: nothing is recorded")
        branch = repo.run("symbolic-ref", "--short", "-q", "HEAD", check=False).decode().strip()
        steps = current_steps(repo, branch or "HEAD", head)
        dsid = dataset_id(repo, head)
    else:
        head, steps = plan.head, list(plan.steps)
    options = VerifyOptions(jobs=args.jobs, timeout_s=args.timeout)
    on_verdict = None if args.json else _print_line
    report = verify(repo, head, steps, dsid, options=options, on_verdict=on_verdict)
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False))
    else:
        for verdict in report.verdicts:
            _print_details(verdict)
        print(report.summary())
    if args.junit:
        Path(args.junit).write_bytes(junit_xml(report))
    return 0 if report.ok else EXIT_DIFFERS


def _print_line(verdict: Verdict) -> None:
    print(f"{verdict.commit[:8]}  {verdict.state:<10}  {verdict.summary}", flush=True)


def _print_details(verdict: Verdict) -> None:
    """What a person needs to see for a record that is not identical (to stderr)."""
    if verdict.state == "identical":
        return
    lines = [f"--- {verdict.commit[:8]} {verdict.summary}: {verdict.describe()}"]
    for diff in verdict.differences:
        if diff.diff:
            lines.append(diff.diff.rstrip("\n"))
        else:
            lines.append(
                f"{diff.path}: recorded {diff.recorded.describe()}, rerun {diff.rerun.describe()}"
            )
    if verdict.log_tail:
        lines.append(verdict.log_tail)
    print("\n".join(lines), file=sys.stderr)


def junit_xml(report: VerifyReport) -> bytes:
    """The report as JUnit XML: one ``testsuite``, one ``testcase`` per record."""
    counts = {state: 0 for state in ("differs", "failed", "cannot-run")}
    for verdict in report.verdicts:
        counts[verdict.state] = counts.get(verdict.state, 0) + 1
    total_s = f"{sum(v.duration_s for v in report.verdicts):.3f}"
    attributes = {
        "name": "rerund verify",
        "tests": str(len(report.verdicts)),
        "failures": str(counts["differs"]),
        "errors": str(counts["failed"]),
        "skipped": str(counts["cannot-run"]),
        "time": total_s,
    }
    root = ET.Element("testsuites", attributes)
    suite = ET.SubElement(
        root,
        "testsuite",
        {
            **attributes,
            "name": f"reproducibility at {report.head[:12]}",
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
            "hostname": socket.gethostname(),
        },
    )
    for verdict in report.verdicts:
        case = ET.SubElement(
            suite,
            "testcase",
            {
                "classname": "rerund.verify",
                "name": f"{verdict.commit[:12]} {verdict.summary}",
                "time": f"{verdict.duration_s:.3f}",
            },
        )
        if verdict.state == "differs":
            failure = ET.SubElement(case, "failure", {"type": "differs"})
            failure.set("message", verdict.describe())
            failure.text = "\n".join(
                d.diff or f"{d.path}: {d.recorded.describe()} -> {d.rerun.describe()}"
                for d in verdict.differences
            )
        elif verdict.state == "failed":
            error = ET.SubElement(case, "error", {"type": "failed"})
            error.set("message", verdict.describe())
            error.text = verdict.log_tail or ""
        elif verdict.state == "cannot-run":
            ET.SubElement(case, "skipped", {"message": verdict.describe()})
        out = ET.SubElement(case, "system-out")
        out.text = f"$ {verdict.cmd}"
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data
