"""Globbing specs in a directory and matching tree paths, checked against DataLad 1.7.1 and glob."""

from __future__ import annotations

import glob
import posixpath
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from datalad.support.globbedpaths import GlobbedPaths
from hypothesis import given, settings
from hypothesis import strategies as st

from rerund.core.globbing import Expansion, expand_specs, spec_matcher

# When a property fails, Hypothesis imports libcst to write a patch, and libcst
# trips a DeprecationWarning in mypy_extensions that would mask the failure.
pytestmark = pytest.mark.filterwarnings(
    "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
)

TREE = ["a.txt", "b.txt", "data/x.dat", "data/sub/y.dat", "data/.hidden", ".cfg", "out/r.csv"]


def make_tree(root: Path, files: list[str]) -> Path:
    for name in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path, TREE)


# -- expand_specs ------------------------------------------------------------------------


def test_hits_sorted_per_spec_in_spec_order(tree: Path) -> None:
    """Each spec's hits are sorted; the specs keep their given order."""
    actual = expand_specs(["b.txt", "data/**/*.dat", "*.txt"], tree).hits
    expected = ["b.txt", "data/sub/y.dat", "data/x.dat", "a.txt", "b.txt"]
    assert expected == actual


def test_duplicates_are_kept(tree: Path) -> None:
    """A file matched by two specs (or one spec twice) appears twice."""
    expected = ["a.txt", "a.txt"]
    assert expected == expand_specs(["a.txt", "a.*"], tree).hits


def test_dot_goes_first_for_fetching_only(tree: Path) -> None:
    """ "." is fetched first but never appears among the command paths."""
    expansion = expand_specs(["a.txt", "."], tree)
    expected = (["a.txt"], [".", "a.txt"], True)
    assert expected == (expansion.command_paths, expansion.fetch_paths, expansion.dot)


def test_wildcards_skip_hidden_names(tree: Path) -> None:
    """'*' and '**' do not match dot files; a literal or '.*' does."""
    actual = (expand_specs(["*"], tree).hits, expand_specs([".*", "data/.hidden"], tree).hits)
    expected = (["a.txt", "b.txt", "data", "out"], [".cfg", "data/.hidden"])
    assert expected == actual


def test_leading_dot_slash_and_trailing_slash_survive(tree: Path) -> None:
    """A './' the user wrote is kept, and a directory pattern keeps its '/'."""
    expected = ["./a.txt", "data/", "out/"]
    assert expected == expand_specs(["./a.txt", "*/"], tree).hits


def test_misses_stay_literal_in_the_command(tree: Path) -> None:
    """A spec without any match is used literally in the command, and reported once."""
    expansion = expand_specs(["new*.csv", "a.txt", "new*.csv"], tree)
    expected = (["new*.csv", "a.txt", "new*.csv"], ["new*.csv"], ["a.txt"])
    assert expected == (expansion.command_paths, expansion.misses, expansion.fetch_paths)


def test_partial_hit_is_not_a_miss(tree: Path) -> None:
    """A spec whose wildcard directories match stands for those directories."""
    expansion = expand_specs(["*/missing.dat"], tree)
    expected: tuple[list[str], ...] = ([], [], ["data/", "out/"], ["data/", "out/"])
    actual = (expansion.hits, expansion.misses, expansion.partial_hits, expansion.command_paths)
    assert expected == actual


def test_partial_hit_peels_back_to_the_last_wildcard_component(tree: Path) -> None:
    """Literal components after the last wildcard directory are dropped before globbing again."""
    expected = (["data/", "out/"], ["data/sub/"])
    actual = (
        expand_specs(["*/sub/missing"], tree).partial_hits,
        expand_specs(["*/s*/missing"], tree).partial_hits,
    )
    assert expected == actual


def test_absolute_specs_are_relative_to_the_directory(tree: Path) -> None:
    """Absolute specs are globbed in the directory and reported relative to it, like DataLad."""
    expansion = expand_specs([str(tree / "data" / "*.dat"), str(tree / "none")], tree / "out")
    expected = ["../data/x.dat", "../none"]
    assert expected == expansion.command_paths


def test_subdirectory_globbing(tree: Path) -> None:
    """Globbing happens in the given directory, and results are relative to it."""
    expected = ["sub/y.dat", "x.dat"]
    assert expected == expand_specs(["**/*.dat"], tree / "data").hits


def test_hand_built_expansion_orders_hits_first() -> None:
    """An Expansion built without expand_specs lists hits, partial hits, then misses."""
    expected = ["a", "d/", "m"]
    assert expected == Expansion(hits=["a"], misses=["m"], partial_hits=["d/"]).command_paths


# -- spec_matcher ------------------------------------------------------------------------


def covered(spec: str, paths: list[str], workdir: str = ".") -> list[str]:
    matcher = spec_matcher(spec, workdir)
    return [path for path in paths if matcher.covers(path)]


def test_dot_covers_everything_in_its_directory() -> None:
    """'.' covers every path under the working directory, hidden ones included."""
    expected = TREE
    assert expected == covered(".", TREE)
    expected = ["data/x.dat", "data/sub/y.dat", "data/.hidden"]
    assert expected == covered(".", TREE, workdir="data")


def test_literal_directory_covers_what_lies_under_it() -> None:
    """A literal directory spec covers its whole subtree, but not names that merely start alike."""
    expected = ["data/sub/y.dat"]
    assert expected == covered("data/sub", [*TREE, "data/subway"])


def test_spec_is_joined_with_pwd_and_normalised() -> None:
    """Specs are relative to the record's pwd; './' and '..' are resolved."""
    expected = ["a.txt"]
    assert expected == covered("../a.txt", TREE, workdir="data")
    expected = ["data/x.dat"]
    assert expected == covered("./x.dat", TREE, workdir="data")


def test_outside_the_dataset_covers_nothing() -> None:
    """A spec that leaves the dataset, or is empty, covers nothing."""
    expected: list[str] = []
    assert expected == covered("../a.txt", TREE) + covered("", TREE)


def test_trailing_slash_needs_a_directory() -> None:
    """'x/' does not cover a file x, only what lies under a directory x."""
    expected = ["data/x.dat", "data/sub/y.dat", "data/.hidden"]
    assert expected == covered("data/", TREE) + covered("a.txt/", TREE)


def test_star_does_not_cross_slashes_or_match_hidden() -> None:
    """'*.dat' covers only the current directory's non-hidden names; '**' recurses."""
    expected = ["data/x.dat"]
    assert expected == covered("*.dat", TREE, workdir="data")
    expected = ["a.txt", "b.txt", "data/x.dat", "data/sub/y.dat", "data/.hidden", "out/r.csv"]
    assert expected == covered("*", TREE)
    expected = ["data/x.dat", "data/sub/y.dat"]
    assert expected == covered("**/*.dat", TREE)


def test_glob_matching_a_directory_covers_its_hidden_files() -> None:
    """A wildcard that matches a directory covers all of it, as fetching it would."""
    expected = ["data/x.dat", "data/sub/y.dat", "data/.hidden"]
    assert expected == covered("d*", TREE)


def test_double_star_after_a_literal_file_name() -> None:
    """'file/**' covers the file itself: glob returns 'file/' for it."""
    expected: tuple[list[str], ...] = (["a.txt"], [])
    assert expected == (covered("a.txt/**", TREE), covered("*.txt/**", TREE))


def test_directory_entries() -> None:
    """With is_dir, a directory itself can be covered, also by a pattern ending in '/'."""
    matcher = spec_matcher("*/", ".")
    expected = (True, False)
    assert expected == (matcher.covers("sub", is_dir=True), matcher.covers("sub"))


def test_literal_prefix_and_is_glob() -> None:
    """The literal prefix is the path before the first wildcard component."""
    cases = [("raw/in*.csv", "data"), ("out/r.csv", "."), ("*", "."), (".", "."), ("[x]/a", "p[1]")]
    actual = [(m.literal_prefix, m.is_glob) for m in (spec_matcher(*c) for c in cases)]
    expected = [("data/raw", True), ("out/r.csv", False), ("", True), ("", False), ("p[1]", True)]
    assert expected == actual


def test_pwd_is_taken_literally() -> None:
    """Wildcard characters in pwd are not wildcards (DataLad globs inside pwd)."""
    expected = ["p[1]/a"]
    assert expected == covered("a", ["p[1]/a", "p1/a"], workdir="p[1]")


def test_absolute_spec_needs_dspath() -> None:
    """An absolute spec is related to tree paths through dspath, else it covers nothing."""
    with_dspath = spec_matcher("/ds/data/*.dat", "out", dspath="/ds")
    expected = (True, False)
    assert expected == (with_dspath.covers("data/x.dat"), spec_matcher("/ds/a", ".").covers("a"))


# -- DataLad and glob as oracles ---------------------------------------------------------

NAMES = ["a", "b", "ab", ".h", "c.txt", "d d", "[x]", "x"]
PATTERN_PARTS = ["a", "b", "*", "?", "**", "a*", "*b", ".h", ".*", "[ab]", "c.txt", "nope", "[x]"]

files = st.lists(
    st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join),
    min_size=1,
    max_size=8,
)
patterns = st.builds(
    lambda prefix, parts, slash: prefix + "/".join(parts) + slash,
    st.sampled_from(["", "", "./"]),
    st.lists(st.sampled_from(PATTERN_PARTS), min_size=1, max_size=3),
    st.sampled_from(["", "", "/"]),
)


def consistent(paths: list[str]) -> list[str]:
    """Drop paths that would need an existing file to be a directory."""
    kept: list[str] = []
    for path in sorted(set(paths), key=lambda p: p.count("/")):
        parents = {"/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1)}
        if not any(other in parents or other.startswith(path + "/") for other in kept):
            kept.append(path)
    return kept


@contextmanager
def tree_on_disk(paths: list[str]) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        yield make_tree(Path(tmp), paths)


def directories(paths: list[str]) -> list[str]:
    return sorted({path.rsplit("/", i)[0] for path in paths for i in range(1, path.count("/") + 1)})


@settings(max_examples=200, deadline=None)
@given(paths=files, specs=st.lists(patterns | st.just("."), max_size=4), in_sub=st.booleans())
def test_expand_specs_agrees_with_globbedpaths(
    paths: list[str], specs: list[str], in_sub: bool
) -> None:
    """Every view of the expansion equals the matching view of DataLad's GlobbedPaths."""
    paths = consistent(paths)
    with tree_on_disk(paths) as root:
        subdirs = directories(paths)
        pwd = root / subdirs[0] if in_sub and subdirs else root
        ours = expand_specs(specs, pwd)
        theirs = GlobbedPaths(specs, pwd=str(pwd))
        expected = (
            theirs.expand(dot=False),
            theirs.expand_strict(),
            theirs.expand(),
            theirs.misses,
            theirs.partial_hits,
        )
        actual = (
            ours.command_paths,
            ours.fetch_paths,
            ours.expanded_paths,
            ours.misses,
            ours.partial_hits,
        )
    assert expected == actual


def glob_coverage(pattern: str, root: Path, pwd: str, entries: list[str]) -> list[str]:
    """Entries glob returns for ``pattern`` in ``pwd``, or that lie under a returned directory."""
    found = glob.glob(pattern, root_dir=root / pwd, recursive=True)  # noqa: PTH207
    hits = {posixpath.normpath(posixpath.join(pwd, hit)) for hit in found}
    return [
        entry
        for entry in entries
        if any(hit in (".", entry) or entry.startswith(hit + "/") for hit in hits)
    ]


@settings(max_examples=200, deadline=None)
@given(paths=files, pattern=patterns, pwd_choice=st.integers(min_value=-1, max_value=3))
def test_spec_matcher_agrees_with_glob(paths: list[str], pattern: str, pwd_choice: int) -> None:
    """covers() says yes exactly for the files and directories glob returns or descends into."""
    paths = consistent(paths)
    dirs = directories(paths)
    pwd = dirs[pwd_choice] if 0 <= pwd_choice < len(dirs) else "."
    matcher = spec_matcher(pattern, pwd)
    with tree_on_disk(paths) as root:
        expected = (
            glob_coverage(pattern, root, pwd, paths),
            glob_coverage(pattern, root, pwd, dirs),
        )
    actual = (
        [path for path in paths if matcher.covers(path)],
        [path for path in dirs if matcher.covers(path, is_dir=True)],
    )
    assert expected == actual
    prefix = matcher.literal_prefix
    beyond_prefix = [p for p in actual[0] + actual[1] if not _under(p, prefix)]
    nothing: list[str] = []
    assert nothing == beyond_prefix


def _under(path: str, prefix: str) -> bool:
    return not prefix or path == prefix or path.startswith(prefix + "/")


def test_oracle_helpers_see_the_tree() -> None:
    """The glob oracle itself finds files, so the property tests compare something."""
    with tree_on_disk(TREE) as root:
        expected = ["data/x.dat", "data/sub/y.dat"]
        assert expected == glob_coverage("**/*.dat", root, ".", TREE)
