"""Dashboard figures: a repository page with 1,000 run records, served and rendered.

    python bench/bench_dashboard.py [--quick] [--records N] [--repeats N]

A history of N records (``make_history.py``: ten pipelines, superseded
records among them) is served by a real ``rerund serve``. Served: wall time of
``GET /repos/<name>`` (the first, cold view — mirror clone, history index,
``dot`` layout — and the median of warm views after it). Rendered: Debian's
Chromium through Playwright, from navigation start to the ``load`` event
(the graph is inline SVG, so it is drawn by then), median of fresh pages.
The served page must hold the record graph's nodes and Chromium must draw
them, or the run fails. ``--quick``: 500 records, 3 repeats.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_service
from bench_service import Daemon, _config, free_port
from benchlib import (
    fmt_s,
    git,
    machine_info,
    markdown_table,
    progress,
    require,
    scratch_dir,
    write_results,
)
from make_history import make_history

CHROMIUM = "/usr/bin/chromium"
# `python -m rerund` runs the package on sys.path (PYTHONPATH), whatever the console
# script installed next to the interpreter was generated for.
bench_service.RERUND = Path(__file__).resolve().parent / "rerund-module.sh"


def _get_s(url: str) -> tuple[float, bytes]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as response:  # noqa: S310 - loopback http
        body = response.read()
    return time.perf_counter() - started, body


def bench(root: Path, records: int, repeats: int) -> dict[str, Any]:
    progress(f"building a history of {records} records")
    source = root / "history"
    make_history(source, records=records, noise=records, pipelines=10)
    bare = root / "lab.git"
    git(root, "clone", "-q", "--bare", str(source), str(bare))
    port = free_port()
    repos = f'[[repos]]\nname = "lab"\nremote = "{bare}"\nbranch = "main"\nwatch = false\n'
    daemon = Daemon(root, _config(root, port, repos), port)
    try:
        scanned = lambda: bool((daemon.get("/api/jobs") or {}).get("jobs")) and daemon.idle()  # noqa: E731
        daemon.wait(scanned, 120)
        url = f"http://127.0.0.1:{port}/repos/lab"
        cold, body = _get_s(url)
        nodes = body.count(b'class="node ')
        require(nodes > 0, f"the page of {records} records shows no graph node")
        warm = [_get_s(url)[0] for _ in range(repeats)]
        index = [_get_s(f"http://127.0.0.1:{port}/")[0] for _ in range(repeats)]
        rendered = _render(url, repeats)
    finally:
        daemon.stop()
    return {
        "records": records,
        "nodes": nodes,
        "served_cold_s": cold,
        "served_warm_s": warm,
        "repos_page_s": index,
        "rendered_s": rendered,
    }


def _render(url: str, repeats: int) -> list[float]:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    samples = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for _ in range(repeats):
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(url, wait_until="load")
            load_ms = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
            count = page.eval_on_selector_all(".record-graph .node", "els => els.length")
            require(count > 0, "the graph did not render in Chromium")
            samples.append(load_ms / 1000)
            page.close()
        browser.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 records, 3 repeats")
    parser.add_argument("--records", type=int)
    parser.add_argument("--repeats", type=int)
    args = parser.parse_args()
    args.records = args.records or (500 if args.quick else 1000)
    args.repeats = args.repeats or (3 if args.quick else 5)
    with scratch_dir("dashboard") as root:
        result = bench(root, args.records, args.repeats)
    write_results("dashboard", {"machine": machine_info(), **result})
    med = statistics.median
    print(
        markdown_table(
            ["run records", "graph nodes", "page served, cold", "served, warm (median)",
             "`/` served (median)", "rendered in Chromium (median)"],
            [[
                f"{result['records']:,}",
                f"{result['nodes']:,}",
                fmt_s(result["served_cold_s"]),
                f"{fmt_s(med(result['served_warm_s']))} (min {fmt_s(min(result['served_warm_s']))},"
                f" n={len(result['served_warm_s'])})",
                fmt_s(med(result["repos_page_s"])),
                f"{fmt_s(med(result['rendered_s']))} (min {fmt_s(min(result['rendered_s']))},"
                f" n={len(result['rendered_s'])})",
            ]],
        )
    )  # fmt: skip


if __name__ == "__main__":
    main()
