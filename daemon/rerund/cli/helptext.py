"""What ``rerund COMMAND --help`` says: one line on what it does, more on how, and examples."""

from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True)
class HelpText:
    summary: str
    """The one line shown in ``rerund --help``."""
    description: str
    examples: tuple[str, ...]


TEXTS = {
    "plan": HelpText(
        "show what is stale now, in order, and why",
        "List the run records whose inputs changed since they ran (and everything\n"
        "downstream of them), in the order a rerun would take, each with its command\n"
        "and the reason. Reads only git history: nothing is run or written.",
        ("rerund plan", "rerund plan -C ~/data/study --json", "rerund plan --since HEAD~10"),
    ),
    "rerun": HelpText(
        "rerun the stale plan (or named records) here",
        "Rerun the stale steps in this (clean) work tree and commit each result as a\n"
        "DataLad rerun record; a step that reproduces its outputs makes no commit.\n"
        "A failing step stops the rerun and the tree is put back to the last commit.\n"
        "Ctrl-C stops the running command and everything it started.",
        (
            "rerund rerun",
            "rerund rerun --dry-run",
            "rerund rerun 1a2b3c4d --timeout 600",
            "rerund rerun --since= --script rerun.sh",
        ),
    ),
    "verify": HelpText(
        "rerun records in a scratch clone and compare",
        "Rerun each current record (or those --since or the named commits select) in a\n"
        "scratch clone of its commit's parent and compare the outputs with what the\n"
        "record's commit holds: identical, differs, failed or cannot-run. Commits\n"
        "nothing and leaves this work tree alone; exits 1 when any record differs or fails.",
        (
            "rerund verify",
            "rerund verify -J 2 --junit reproducibility.xml",
            "rerund verify --since HEAD~20 --json",
        ),
    ),
    "serve": HelpText(
        "run the daemon (in the foreground)",
        "Watch the configured repositories, rerun what each push made stale, and push\n"
        "the results back. Logs are JSON lines on stderr. SIGTERM drains, SIGHUP\n"
        "reloads the repository list.",
        ("rerund serve --config /etc/rerund/rerund.toml", "rerund serve --listen 127.0.0.1:9090"),
    ),
    "hooks": HelpText(
        "install the post-receive hook",
        "Manage the server-side hook that tells the daemon about pushes.",
        ("rerund hooks install /srv/git/lab.git --config /etc/rerund/rerund.toml",),
    ),
    "jobs": HelpText(
        "list a running daemon's jobs",
        "Ask a running daemon for its jobs: state, target, what each published or\n"
        "where a failed job's finished commits are kept.",
        ("rerund jobs --config /etc/rerund/rerund.toml", "rerund jobs --url http://lab:8080"),
    ),
    "status": HelpText(
        "ask a running daemon how it is",
        "One line from a running daemon: its version, health, and job counts.",
        ("rerund status --config /etc/rerund/rerund.toml",),
    ),
}


def add_command(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    name: str,
) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` carries its description and examples."""
    text = TEXTS[name]
    examples = "\n".join(f"  {example}" for example in text.examples)
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=text.summary,
        description=f"{text.summary[0].upper()}{text.summary[1:]}.\n\n{text.description}",
        epilog=f"examples:\n{examples}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser
