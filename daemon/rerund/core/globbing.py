"""DataLad-compatible globbing of input/output specs.

Two views of the same rules (Python's ``glob.glob(recursive=True)``):

* :func:`expand_specs` globs specs in a real directory, as DataLad does before
  running a command;
* :func:`spec_matcher` decides whether a dataset-relative path from a git tree
  falls under a spec, without touching the file system.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# --------------------------------------------------------------------------------------
# Globbing in a directory


@dataclass(frozen=True)
class Expansion:
    """What a list of specs expands to in one directory.

    ``hits`` are real matches (spec order, each spec's matches sorted, duplicates
    kept); ``misses`` are the specs that matched nothing, not even partially
    (each named once, like DataLad's "Input did not match" errors). ``dot`` says
    whether "." was among the specs; it is in none of the lists.
    """

    hits: list[str]
    misses: list[str]
    partial_hits: list[str] = field(default_factory=list)
    dot: bool = False
    # Each spec's contribution in spec order (hits, else partial hits, else the
    # spec itself); set by expand_specs, derived when an Expansion is built by hand.
    ordered: list[str] | None = None

    @property
    def command_paths(self) -> list[str]:
        """The paths ``{inputs}``/``{outputs}`` stand for; never "."."""
        if self.ordered is None:
            return [*self.hits, *self.partial_hits, *self.misses]
        return list(self.ordered)

    @property
    def fetch_paths(self) -> list[str]:
        """Paths whose content must be present (or unlocked): "." first, then the hits."""
        return (["."] if self.dot else []) + self.hits

    @property
    def expanded_paths(self) -> list[str]:
        """The form ``--expand`` writes into a record: "." first, then the command paths."""
        return (["."] if self.dot else []) + self.command_paths


def expand_specs(specs: Sequence[str], directory: Path) -> Expansion:
    """Glob ``specs`` in ``directory`` the way DataLad's run does.

    A spec with no match whose leading directories contain wildcards is globbed
    again with trailing components peeled off; a match there is a "partial
    hit" (DataLad's sign of an uninstalled subdataset). DataLad then installs
    those subdatasets and globs again; rerund does not: it works on datasets
    whose subdatasets are already in place, so a partial hit is only reported.
    """
    patterns = [_relative(spec, directory) for spec in specs if spec.strip() != "."]
    results: dict[str, _Result] = {}
    for pattern in patterns:
        if pattern not in results:
            results[pattern] = _expand_one(pattern, directory)
    return Expansion(
        hits=[path for pattern in patterns for path in results[pattern].hits],
        misses=[pattern for pattern, result in results.items() if result.missed],
        partial_hits=[path for result in results.values() for path in result.partial_hits],
        dot=len(patterns) < len(specs),
        ordered=[path for pattern in patterns for path in results[pattern].paths(pattern)],
    )


@dataclass(frozen=True)
class _Result:
    hits: list[str]
    partial_hits: list[str]

    @property
    def missed(self) -> bool:
        return not (self.hits or self.partial_hits)

    def paths(self, pattern: str) -> list[str]:
        return self.hits or self.partial_hits or [pattern]


def literal_part(spec: str) -> str:
    """The leading components of ``spec`` without wildcards ("" when it starts with one)."""
    leading: list[str] = []
    for name in spec.split("/"):
        if glob.has_magic(name):
            break
        leading.append(name)
    return "/".join(leading) or ("/" if spec.startswith("/") else "")


def _relative(spec: str, directory: Path) -> str:
    # Absolute specs are globbed, and reported, relative to the directory.
    return os.path.relpath(spec, directory) if posixpath.isabs(spec) else spec


def _expand_one(pattern: str, directory: Path) -> _Result:
    hits = _glob(pattern, directory)
    if hits:
        return _Result(hits, [])
    for head in _wildcard_heads(pattern):
        partial = _glob(head + "/", directory)
        if partial:
            return _Result([], partial)
    return _Result([], [])


def _glob(pattern: str, directory: Path) -> list[str]:
    # Path.glob differs (hidden names, "**" on files); DataLad uses glob.glob.
    found = glob.glob(pattern, root_dir=directory, recursive=True)  # noqa: PTH207
    if not found:
        return []
    # DataLad globs after chdir and relpath()s each hit against the physical cwd.
    base = os.path.realpath(directory)
    return sorted(_tidy_hit(hit, base) for hit in found)


def _tidy_hit(hit: str, base: str) -> str:
    tidy = os.path.relpath(posixpath.join(base, hit), base)
    if hit.endswith("/"):
        tidy += "/"
    # A "./" the user wrote in front of a name survives.
    return hit if hit == "./" + tidy else tidy


def _wildcard_heads(pattern: str) -> list[str]:
    """Leading parts of ``pattern`` worth globbing when the whole has no match.

    Longest first: every proper leading part that contains a wildcard, except
    that when the last component is literal, the search starts at the leading
    part ending in the last wildcard component.
    """
    head, last = posixpath.split(pattern.rstrip("/") or pattern)
    heads: list[str] = []
    while head and head != "/":
        heads.append(head)
        head = posixpath.split(head)[0]
    candidates = [h for h in heads if glob.has_magic(h)]
    if not glob.has_magic(last):
        while candidates and not glob.has_magic(posixpath.basename(candidates[0])):
            candidates.pop(0)
    return candidates


# --------------------------------------------------------------------------------------
# Matching tree paths


@dataclass(frozen=True)
class _Part:
    text: str
    regex: re.Pattern[str] | None  # None: a literal name
    recursive: bool  # a whole "**" component


@dataclass(frozen=True)
class SpecMatcher:
    """Decides which dataset-relative paths a spec covers.

    A path is covered when glob would return it, or a directory above it, with
    the spec in the record's working directory. Every covered path equals
    ``literal_prefix`` or lies below it (any path, when it is "").
    """

    spec: str
    literal_prefix: str
    is_glob: bool
    _parts: tuple[_Part, ...] = field(repr=False)
    # The spec ends in "/" (or "/." ...): glob only returns directories.
    _dir_only: bool = field(repr=False)
    # An empty spec, or one pointing outside the dataset.
    _nothing: bool = field(repr=False)
    # glob drops the match of zero names for patterns starting with "**", so
    # "**" does not return the working directory itself (but "./**" does).
    _skipped_end: int | None = field(repr=False)

    def covers(self, path: str, *, is_dir: bool = False) -> bool:
        """Whether ``path`` (from a git tree, no "./") matches, or lies below a match.

        Tree entries are files; pass ``is_dir`` for a directory (e.g. a
        subdataset), which glob also returns for patterns ending in "/".
        """
        if self._nothing:
            return False
        prefix = self.literal_prefix
        if prefix and not (path == prefix or path.startswith(prefix + "/")):
            return False
        if not self._parts:  # "." (or the working directory itself)
            return True
        names = path.split("/")
        for end, usable_as_dir in self._match_ends(names):
            if end < len(names):  # a directory above the path matched
                return True
            if end == len(names) and (is_dir or (usable_as_dir and not self._dir_only)):
                return True
        return False

    def _match_ends(self, names: list[str]) -> set[tuple[int, bool]]:
        """How many leading ``names`` the whole pattern can consume.

        The flag tells whether glob would return the last consumed name even if
        it were a file: true after a literal component (glob only checks that it
        exists) or after the final component; false after a wildcard component
        that glob matched in "directories only" mode. A "**" matching nothing
        keeps the flag, which is how ``file/**`` returns ``file/``.
        """
        states = {(0, True)}
        last = len(self._parts) - 1
        for index, part in enumerate(self._parts):
            final = index == last and not self._dir_only
            following: set[tuple[int, bool]] = set()
            for start, flag in states:
                if part.recursive:
                    following.add((start, flag))
                    end = start
                    while end < len(names) and not names[end].startswith("."):
                        end += 1
                        following.add((end, final))
                elif start < len(names) and _part_matches(part, names[start]):
                    following.add((start + 1, final or part.regex is None))
            states = following
        return {(end, flag) for end, flag in states if end != self._skipped_end}


def spec_matcher(spec: str, pwd: str, *, dspath: str | None = None) -> SpecMatcher:
    """A matcher for ``spec`` as written in a record whose working directory is ``pwd``.

    ``pwd`` is dataset-relative ("." for the root) and taken literally, even if
    it contains wildcard characters. An absolute spec needs ``dspath`` (the
    dataset's absolute path) to be related to tree paths; without it, or when
    it points outside the dataset, the matcher covers nothing.

    "." and ".." are resolved before matching, like ``posixpath.normpath``; so
    ``*/../x`` means ``x`` here, while glob would also require some directory.
    """
    is_dot = spec.strip() == "."
    if is_dot:
        spec_text, base = ".", pwd
    elif posixpath.isabs(spec):
        spec_text, base = (posixpath.relpath(spec, dspath) if dspath else spec), "."
    else:
        spec_text, base = spec, pwd
    base_parts = _normalise([(name, False) for name in base.split("/")])
    parts = _normalise(base_parts + [(name, glob.has_magic(name)) for name in spec_text.split("/")])
    outside = posixpath.isabs(spec_text) or (bool(parts) and parts[0][0] == "..")
    leading: list[str] = []
    for name, magic in parts:
        if magic:
            break
        leading.append(name)
    # "d/", "d/." and "d/e/.." only match when d is a directory.
    last = spec_text.rsplit("/", 1)[-1]
    return SpecMatcher(
        spec=spec,
        literal_prefix="/".join(leading),
        is_glob=any(magic for _, magic in parts),
        _parts=tuple(_compile(name, magic) for name, magic in parts),
        _dir_only=not is_dot and last in ("", ".", ".."),
        _nothing=spec == "" or outside,
        _skipped_end=len(base_parts) if spec_text.startswith("**") else None,
    )


def _normalise(parts: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
    """Drop empty and "." components and let ".." cancel its predecessor."""
    kept: list[tuple[str, bool]] = []
    for name, magic in parts:
        if name in ("", "."):
            continue
        if name == ".." and kept and kept[-1][0] != "..":
            kept.pop()
        else:
            kept.append((name, magic))
    return kept


def _compile(name: str, magic: bool) -> _Part:
    if not magic:
        return _Part(name, None, recursive=False)
    return _Part(name, re.compile(fnmatch.translate(name)), recursive=name == "**")


def _part_matches(part: _Part, name: str) -> bool:
    if part.regex is None:
        return name == part.text
    # Wildcards skip hidden names unless the pattern itself starts with ".".
    if name.startswith(".") and not part.text.startswith("."):
        return False
    return part.regex.match(name) is not None
