"""Placeholder expansion in commands and io specs, checked against DataLad 1.7.1 itself."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from datalad.core.local.run import _format_iospecs, format_command, normalize_command
from hypothesis import given, settings
from hypothesis import strategies as st

from rerund.core.globbing import expand_specs
from rerund.core.placeholders import command_text, expand_command, format_io_specs, shell_words
from rerund.errors import PlaceholderError

# When a property fails, Hypothesis imports libcst to write a patch, and libcst
# trips a DeprecationWarning in mypy_extensions that would mask the failure.
pytestmark = pytest.mark.filterwarnings(
    "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
)

# Errors DataLad lets escape (or turns into "impossible") for a bad template.
DATALAD_FORMAT_ERRORS = (KeyError, IndexError, ValueError, AttributeError, TypeError)


def expand(cmd: str | list[str], **overrides: Any) -> str:
    arguments: dict[str, Any] = {
        "inputs": [],
        "outputs": [],
        "pwd": "/ds/sub",
        "dspath": "/ds",
        "substitutions": {},
        "make_tmpdir": lambda: "/tmp/datalad-run-x",
    }
    arguments.update(overrides)
    return expand_command(cmd, **arguments)


# -- command_text ------------------------------------------------------------------------


def test_string_command_is_verbatim() -> None:
    """A command given as one string is recorded exactly as given."""
    expected = "echo hi > x | cat"
    assert expected == command_text("echo hi > x | cat")


def test_list_command_is_quoted_and_joined() -> None:
    """Several argv elements are shell-quoted one by one, so '>' stays a literal argument."""
    expected = "echo hi '>' f 'a b'"
    assert expected == command_text(["echo", "hi", ">", "f", "a b"])


def test_one_element_list_is_verbatim() -> None:
    """A one-element list is a quoted compound command and is not quoted again."""
    expected = "echo hi > x"
    assert expected == command_text(["echo hi > x"])


def test_leading_double_dash_is_dropped_once() -> None:
    """One leading '--' is removed and what remains is always quoted."""
    expected = ["-- ok", "'echo hi > x'", ""]
    actual = [command_text(["--", "--", "ok"]), command_text(["--", "echo hi > x"])]
    assert expected == [*actual, command_text(["--"])]


# -- expand_command ----------------------------------------------------------------------


def test_inputs_are_quoted_and_joined() -> None:
    """{inputs} is every path shell-quoted, joined by single spaces."""
    actual = expand("cat {inputs} > {outputs}", inputs=["a.txt", "b c.txt"], outputs=["o'1"])
    expected = "cat a.txt 'b c.txt' > 'o'\"'\"'1'"
    assert expected == actual


def test_dot_is_left_out_of_inputs() -> None:
    """The "." spec never appears in the command."""
    expected = "ls a"
    assert expected == expand("ls {inputs}", inputs=[".", "a"])


def test_no_inputs_give_empty_text() -> None:
    """{inputs} with no inputs expands to the empty string."""
    expected = "ls "
    assert expected == expand("ls {inputs}")


def test_index_selects_one_quoted_element() -> None:
    """{inputs[1]} is the second path, already quoted."""
    expected = "cp 'b c' x"
    assert expected == expand("cp {inputs[1]} x", inputs=["a", "b c"])


def test_format_spec_applies_to_each_element() -> None:
    """A format spec pads each element, not the joined text."""
    expected = "[   a    b]"
    assert expected == expand("[{inputs:>4}]", inputs=["a", "b"])


def test_escaped_braces_are_literal() -> None:
    """'{{inputs}}' is the literal text '{inputs}'."""
    expected = "echo {inputs} }{"
    assert expected == expand("echo {{inputs}} }}{{", inputs=["a"])


def test_pwd_and_dspath() -> None:
    """{pwd} and {dspath} are the absolute execution and dataset directories."""
    expected = "/ds/sub /ds"
    assert expected == expand("{pwd} {dspath}")


def test_tmpdir_is_made_only_when_named() -> None:
    """The temporary directory is created only if '{tmpdir}' occurs literally."""
    made: list[str] = []

    def make() -> str:
        made.append("/tmp/t")
        return "/tmp/t"

    without = expand("x", make_tmpdir=make)
    calls_without = len(made)
    with_tmpdir = expand("cd {tmpdir}", make_tmpdir=make)
    expected = ("x", 0, "cd /tmp/t", 1)
    assert expected == (without, calls_without, with_tmpdir, len(made))


def test_default_tmpdir_is_a_fresh_datalad_run_directory() -> None:
    """Without make_tmpdir, a new 'datalad-run-*' directory is created in the temp location."""
    root = "/"
    path = Path(
        expand_command("{tmpdir}", inputs=[], outputs=[], pwd=root, dspath=root, substitutions={})
    )
    try:
        expected = (True, True, Path(tempfile.gettempdir()))
        assert expected == (path.is_dir(), path.name.startswith("datalad-run-"), path.parent)
    finally:
        path.rmdir()


def test_unnamed_tmpdir_is_empty() -> None:
    """Without the literal '{tmpdir}' the key exists but is empty, as in DataLad."""
    expected = "[  ]"
    assert expected == expand("[{tmpdir:^2}]")


def test_tmpdir_error_propagates() -> None:
    """An error raised by make_tmpdir reaches the caller unchanged."""

    def refuse() -> str:
        raise PlaceholderError("no tmpdir here")

    with pytest.raises(PlaceholderError, match="no tmpdir here"):
        expand("{tmpdir}", make_tmpdir=refuse)


def test_custom_substitution_lists_are_joined() -> None:
    """A multi-valued substitution renders as its values joined by spaces."""
    subs = {"n": "3", "multi": ("a", "b c")}
    expected = "run 3 a b c"
    assert expected == expand("run {n} {multi}", substitutions=subs)


def test_standard_names_override_substitutions_and_extra() -> None:
    """pwd, dspath, inputs and outputs win over custom and extra keys of the same name."""
    subs = {"pwd": "custom", "inputs": "custom"}
    extra = {"pwd": "extra", "dspath": "extra"}
    actual = expand("{pwd} {dspath} {inputs}", inputs=["a"], substitutions=subs, extra=extra)
    expected = "/ds/sub /ds a"
    assert expected == actual


def test_extra_overrides_substitutions() -> None:
    """Record fields (script mode) win over custom substitutions, as in DataLad."""
    subs = {"exit": "9", "x": "s"}
    actual = expand("{exit} [{chain}] {x}", substitutions=subs, extra={"exit": 0, "chain": []})
    expected = "0 [] s"
    assert expected == actual


def test_unknown_placeholder_message() -> None:
    """An unknown name fails with DataLad's message, naming the placeholder."""
    with pytest.raises(PlaceholderError) as caught:
        expand("echo {x}")
    expected = "command has an unrecognized placeholder: 'x'"
    assert expected == str(caught.value)


@pytest.mark.parametrize(
    "cmd", ["echo {", "echo }", "echo {}", "{0}", "{inputs[5]}", "{pwd.real}", "{pwd:d}", "{a!z}"]
)
def test_malformed_templates_raise_placeholder_error(cmd: str) -> None:
    """Malformed templates, bad indices and bad format specs all raise PlaceholderError."""
    with pytest.raises(PlaceholderError):
        expand(cmd, inputs=["a"])


# -- format_io_specs ---------------------------------------------------------------------


def test_whole_list_placeholder_is_spliced() -> None:
    """['{outputs}'] with a list value becomes that list."""
    expected = ["a*.t", "b"]
    assert expected == format_io_specs(["{outputs}"], {"outputs": ["a*.t", "b"]})


def test_tuple_value_is_not_spliced() -> None:
    """Only lists are spliced; a tuple (multi-valued config) renders as its repr."""
    expected = ["('a', 'b')"]
    assert expected == format_io_specs(["{m}"], {"m": ("a", "b")})


def test_embedded_list_renders_as_repr() -> None:
    """A list inside a longer spec is plain str.format, i.e. its Python repr."""
    expected = ["x['a']"]
    assert expected == format_io_specs(["x{outputs}"], {"outputs": ["a"]})


def test_spec_substitution_and_escapes() -> None:
    """Each spec is str.format-ed with the mapping; doubled braces are literal."""
    expected = ["in/x.t", "{b}"]
    assert expected == format_io_specs(["in/{name}", "{{b}}"], {"name": "x.t"})


def test_empty_spec_list() -> None:
    """No specs give no specs."""
    expected = []
    assert expected == format_io_specs([], {"a": "b"})


def test_unknown_spec_placeholder_message() -> None:
    """An unknown name fails with DataLad's io-spec message."""
    with pytest.raises(PlaceholderError) as caught:
        format_io_specs(["{pwd}/x"], {"inputs": ["a"]})
    expected = "input/output specification has an unrecognized placeholder: 'pwd'"
    assert expected == str(caught.value)


# -- shell_words -------------------------------------------------------------------------


def test_shell_words_split_operators() -> None:
    """Redirections and pipes separate words even without spaces."""
    actual = shell_words("python 'my script.py' <in.txt >out.txt 2>>err|sort;x&&y")
    redirections = ["python", "my script.py", "<", "in.txt", ">", "out.txt", "2", ">>", "err"]
    expected = [*redirections, "|", "sort", ";", "x", "&&", "y"]
    assert expected == actual


def test_shell_words_keep_hash_inside_words() -> None:
    """'#' inside a word does not start a comment, as in sh."""
    expected = ["cp", "in#1.txt", "out.txt"]
    assert expected == shell_words("cp in#1.txt out.txt")


def test_shell_words_fall_back_on_bad_quotes() -> None:
    """Unbalanced quotes fall back to whitespace splitting."""
    expected = ["echo", "'oops", "x"]
    assert expected == shell_words("echo 'oops x")


# -- DataLad as the oracle ---------------------------------------------------------------


class _Config:
    def __init__(self, subs: dict[str, str | tuple[str, ...]]) -> None:
        self.subs = subs

    def items(self, section: str) -> list[tuple[str, str | tuple[str, ...]]]:
        return [(f"{section}.{key}", value) for key, value in self.subs.items()]


class _Dataset:
    """Just what DataLad's format_command reads from a dataset: its config."""

    def __init__(self, subs: dict[str, str | tuple[str, ...]]) -> None:
        self.config = _Config(subs)


AWKWARD = " '\"{}$*?[]\\!;&|<>`~#éü✓\n-.ab"
# No "/": the oracle globs in an empty directory, and "/" would let patterns
# reach the real file system above it.
names = st.text(st.sampled_from(AWKWARD), max_size=8) | st.sampled_from(
    ["a b.txt", "it's", '"q"', "{inputs}", "{{x}}", "ünï cödé", ".", " . ", "..", "-n", "*.t"]
)
sub_values = st.text(st.sampled_from(AWKWARD), max_size=6) | st.lists(
    st.text(st.sampled_from(AWKWARD), max_size=4), max_size=3
).map(tuple)
substitutions = st.dictionaries(
    st.sampled_from(["name", "multi", "pwd", "inputs", "exit", "x"]), sub_values, max_size=4
)
text_chunks = st.text(st.sampled_from(AWKWARD.replace("{", "").replace("}", "")), max_size=6)
fields = st.sampled_from(
    [
        "{inputs}",
        "{outputs}",
        "{inputs[0]}",
        "{inputs[1]}",
        "{outputs[0]}",
        "{pwd}",
        "{dspath}",
        "{tmpdir}",
        "{name}",
        "{multi}",
        "{exit}",
        "{inputs:>9}",
        "{inputs!r}",
        "{pwd[0]}",
        "{dspath:.3}",
        "{{",
        "}}",
        "{{tmpdir}}",
    ]
)
broken_fields = st.sampled_from(["{nope}", "{", "}", "{}", "{x}", "{pwd:d}"])
commands = st.lists(text_chunks | fields | fields | broken_fields, max_size=8).map("".join)


def _datalad_or_error(call: Any) -> str | type[Exception]:
    try:
        result: str = call()
    except DATALAD_FORMAT_ERRORS:
        return PlaceholderError
    return result


def _ours_or_error(call: Any) -> str | type[Exception]:
    try:
        result: str = call()
    except PlaceholderError:
        return PlaceholderError
    return result


@settings(max_examples=200, deadline=None)
@given(
    cmd=commands,
    inputs=st.lists(names, max_size=4),
    outputs=st.lists(names, max_size=3),
    subs=substitutions,
    script_mode=st.booleans(),
)
def test_expand_command_agrees_with_datalad(
    cmd: str,
    inputs: list[str],
    outputs: list[str],
    subs: dict[str, str | tuple[str, ...]],
    script_mode: bool,
) -> None:
    """Globbing plus expansion give DataLad's command, or fail where DataLad fails."""
    with tempfile.TemporaryDirectory() as pwd:
        dspath = "/data/set with space"
        tmpdir = "/tmp/datalad-run-x y"
        if script_mode:
            # rerun --script: the record's fields are placeholders too, and no tmpdir
            cmd = cmd.replace("tmpdir", "exit")
            record = {"exit": 0, "chain": [], "dsid": "id-1"}
            kwds: dict[str, Any] = {**record, "pwd": pwd, "dspath": dspath}
        else:
            record = {}
            kwds = {"pwd": pwd, "dspath": dspath, "tmpdir": tmpdir if "{tmpdir}" in cmd else ""}
        expected = _datalad_or_error(
            lambda: format_command(_Dataset(subs), cmd, inputs=inputs, outputs=outputs, **kwds)
        )
        actual = _ours_or_error(
            lambda: expand_command(
                cmd,
                inputs=expand_specs(inputs, Path(pwd)).command_paths,
                outputs=expand_specs(outputs, Path(pwd)).command_paths,
                pwd=pwd,
                dspath=dspath,
                substitutions=subs,
                extra=record,
                make_tmpdir=lambda: tmpdir,
            )
        )
    assert expected == actual


@settings(max_examples=200, deadline=None)
@given(argv=st.lists(names | st.sampled_from(["--", ">", "|", "{inputs}"]), max_size=5) | names)
def test_command_text_agrees_with_datalad(argv: list[str] | str) -> None:
    """Command normalisation matches DataLad's for strings and argv lists."""
    assert normalize_command(argv) == command_text(argv)


spec_pieces = st.sampled_from(
    ["{inputs}", "{outputs}", "{name}", "{multi}", "{inputs[0]}", "{nope}", "{{", "}}", "{"]
)
io_values = st.text(st.sampled_from(AWKWARD), max_size=5) | st.lists(
    st.text(st.sampled_from(AWKWARD), max_size=4), max_size=3
)
io_mappings = st.fixed_dictionaries(
    {}, optional={"inputs": io_values, "outputs": io_values, "name": io_values, "multi": sub_values}
)
io_specs = st.lists(st.lists(text_chunks | spec_pieces, max_size=4).map("".join), max_size=3)


@settings(max_examples=200, deadline=None)
@given(specs=io_specs | spec_pieces.map(lambda p: [p]), mapping=io_mappings)
def test_format_io_specs_agrees_with_datalad(specs: list[str], mapping: dict[str, Any]) -> None:
    """Io-spec formatting gives DataLad's specs, or fails where DataLad fails."""
    expected = _datalad_or_error(lambda: _format_iospecs(specs, **mapping) or [])
    actual = _ours_or_error(lambda: format_io_specs(specs, mapping))
    assert expected == actual
