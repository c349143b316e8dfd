"""`rerund verify`: rerun records in a scratch clone and say whether they reproduce."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import xmlschema

from helpers import Dataset, datalad, git, rerund

SCHEMA = Path(__file__).parent.parent / "fixtures" / "junit" / "junit.xsd"


def _verify(ds: Dataset, *args: str, check: bool = False) -> tuple[int, dict[str, Any]]:
    done = rerund("verify", "--json", *args, cwd=ds.path, check=check)
    return done.returncode, json.loads(done.stdout)


def _states(report: dict[str, Any]) -> dict[str, str]:
    return {record["summary"]: record["state"] for record in report["records"]}


def _untouched(ds: Dataset) -> tuple[str, str, str]:
    """What verification must leave alone: HEAD, the tree's status, every ref."""
    return ds.head(), ds.status(), ds.git("for-each-ref")


def _time_and_failure(ds: Dataset) -> None:
    """A dataset with a deterministic step, one embedding the time, one that cannot rerun."""
    ds.write("raw/data.txt", "3\n1\n2\n")
    ds.save("raw data")
    ds.run_step("sort", "raw/data.txt", "sorted.txt", "sort -n raw/data.txt > sorted.txt")
    datalad("run", "-m", "stamp", "-o", "stamp.txt", "date +%s%N > stamp.txt", cwd=ds.path)
    # Reads a file the lab member had lying around, never committed: fails elsewhere.
    (ds.path / "local.cfg").write_text("site A\n")
    datalad(
        "run", "--explicit", "-m", "site", "-o", "site.txt",
        "echo about to read; cat local.cfg > site.txt", cwd=ds.path,
    )  # fmt: skip
    (ds.path / "local.cfg").unlink()


def test_deterministic_pipeline_is_identical_and_untouched(pipeline: Dataset) -> None:
    """Every step of a deterministic pipeline verifies identical; the user's repo is unchanged."""
    before = _untouched(pipeline)

    code, report = _verify(pipeline)

    assert 0 == code
    assert {"clean": "identical", "stats": "identical", "report": "identical"} == _states(report)
    assert (3, 3) == (report["reproducible"], report["total"])
    assert before == _untouched(pipeline)
    assert 1 == len(pipeline.git("worktree", "list").splitlines())


def test_human_output_has_one_line_per_record_and_a_summary(pipeline: Dataset) -> None:
    """Without --json: one line per record (sha, state, summary) and `3/3 reproducible`."""
    out = rerund("verify", "-J", "2", cwd=pipeline.path).stdout.splitlines()

    assert "3/3 reproducible" == out[-1]
    assert ["identical"] * 3 == [line.split()[1] for line in out[:-1]]
    assert {"clean", "stats", "report"} == {line.split()[2] for line in out[:-1]}


def test_time_step_differs_with_diff_and_failing_step_fails(dataset: Dataset) -> None:
    """A step embedding the time differs (with a diff); one that cannot rerun fails with its log."""
    _time_and_failure(dataset)
    before = _untouched(dataset)

    code, report = _verify(dataset, "-J", "3")

    assert 1 == code
    assert {"sort": "identical", "stamp": "differs", "site": "failed"} == _states(report)
    stamp = next(r for r in report["records"] if r["summary"] == "stamp")
    (difference,) = stamp["differences"]
    assert ("stamp.txt", "text") == (difference["path"], difference["kind"])
    recorded = dataset.git("show", f"{stamp['commit']}:stamp.txt")
    assert f"-{recorded}\n" in difference["diff"]
    assert difference["diff"].startswith("--- recorded/stamp.txt\n+++ rerun/stamp.txt\n")
    site = next(r for r in report["records"] if r["summary"] == "site")
    assert 1 == site["exit_code"]
    assert "about to read" in site["log_tail"]
    assert "local.cfg" in site["log_tail"]
    assert before == _untouched(dataset)


def test_binary_difference_reports_size_and_checksum(dataset: Dataset) -> None:
    """A binary output that changes is reported by size and SHA-256, not as a diff."""
    attributes = dataset.read(".gitattributes") + "*.bin annex.largefiles=nothing\n"
    dataset.write(".gitattributes", attributes)
    dataset.save("binary files in git")
    datalad(
        "run", "-m", "noise", "-o", "noise.bin",
        "head -c 64 /dev/urandom > noise.bin; printf '\\000' >> noise.bin", cwd=dataset.path,
    )  # fmt: skip

    code, report = _verify(dataset)

    assert 1 == code
    (difference,) = report["records"][0]["differences"]
    assert "binary" == difference["kind"]
    assert "diff" not in difference
    assert 65 == difference["recorded"]["size"] == difference["rerun"]["size"]
    assert difference["recorded"]["sha256"] != difference["rerun"]["sha256"]


def test_dropped_annexed_input_cannot_run(annexed_pipeline: Dataset, tmp_path: Path) -> None:
    """An annexed input whose only copy was dropped makes its record cannot-run, naming it."""
    annexed_pipeline.git("annex", "drop", "--force", "raw/data.txt")
    junit = tmp_path / "verify.xml"

    code, report = _verify(annexed_pipeline, "--junit", str(junit))

    assert 1 == code
    assert {"clean": "cannot-run", "stats": "identical", "report": "identical"} == _states(report)
    clean = next(r for r in report["records"] if r["summary"] == "clean")
    assert ["raw/data.txt"] == clean["missing"]
    xmlschema.XMLSchema(SCHEMA).validate(junit)
    skipped = ET.parse(junit).getroot().findall(".//testcase/skipped")  # noqa: S314 - ours
    assert ["cannot run: raw/data.txt"] == [element.get("message") for element in skipped]


def test_content_on_the_users_remote_is_fetched_from_there(
    annexed_pipeline: Dataset, tmp_path: Path
) -> None:
    """A clone without annexed content verifies: its scratch clones get it from its remote."""
    server = tmp_path / "server"
    git("clone", "-q", str(annexed_pipeline.path), str(server), cwd=tmp_path)
    git("annex", "get", "--quiet", ".", cwd=server)
    clone = Dataset(tmp_path / "clone")
    git("clone", "-q", "../server", str(clone.path), cwd=tmp_path / "server")
    clone.git("annex", "init", "-q", "a clone without content")

    code, report = _verify(clone)

    assert "" == clone.git("annex", "find")  # the user's clone still holds no content
    assert (0, {"identical"}) == (code, set(_states(report).values()))


def test_annexed_output_difference_names_both_keys(annexed_pipeline: Dataset) -> None:
    """A changed annexed output is reported with the recorded and the rerun annex key."""
    datalad(
        "run", "-m", "stamp", "-o", "stamp.txt", "date +%s%N > stamp.txt", cwd=annexed_pipeline.path
    )

    code, report = _verify(annexed_pipeline, annexed_pipeline.head())

    assert 1 == code
    (difference,) = report["records"][0]["differences"]
    assert "annex" == difference["kind"]
    recorded_key = Path(annexed_pipeline.git("show", "HEAD:stamp.txt")).name
    assert recorded_key == difference["recorded"]["annex_key"]
    assert difference["rerun"]["annex_key"] not in (None, recorded_key)
    assert "-" + (annexed_pipeline.path / "stamp.txt").read_text() in difference["diff"]


def test_junit_report_validates_against_the_forge_schema(dataset: Dataset, tmp_path: Path) -> None:
    """--junit writes schema-valid JUnit XML: differs is a failure, failed an error."""
    _time_and_failure(dataset)
    junit = tmp_path / "verify.xml"

    rerund("verify", "--junit", str(junit), cwd=dataset.path, check=False)

    xmlschema.XMLSchema(SCHEMA).validate(junit)
    suite = ET.parse(junit).getroot().find("testsuite")  # noqa: S314 - written by us
    assert suite is not None
    assert ("3", "1", "1") == (suite.get("tests"), suite.get("failures"), suite.get("errors"))
    outcomes = {
        case.get("name", "").split(" ", 1)[1]: [child.tag for child in case]
        for case in suite.iter("testcase")
    }
    assert {
        "sort": ["system-out"],
        "stamp": ["failure", "system-out"],
        "site": ["error", "system-out"],
    } == outcomes


def test_since_and_commits_select_records_as_rerun_does(dataset: Dataset) -> None:
    """COMMITs verify exactly those records; --since the range; both at once is a usage error."""
    _time_and_failure(dataset)
    sort = dataset.record_commit("sort")
    stamp = dataset.record_commit("stamp")

    code, named = _verify(dataset, sort)
    _, since = _verify(dataset, "--since", stamp)
    both = rerund("verify", "--since", sort, stamp, cwd=dataset.path, check=False)

    assert (0, {"sort": "identical"}) == (code, _states(named))
    assert {"site": "failed"} == _states(since)
    assert 2 == both.returncode
    assert "either --since or COMMITs" in both.stderr
