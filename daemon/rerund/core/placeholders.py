"""Placeholder expansion in run-record commands and input/output specs.

Mirrors what DataLad does when it (re)runs a record: ``str.format`` semantics,
with list values rendered element by element and joined by spaces. Nothing
here touches the file system except creating the ``{tmpdir}`` directory.
"""

from __future__ import annotations

import posixpath
import shlex
import string
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rerund.errors import PlaceholderError

_COMMAND = "command"
_IO_SPEC = "input/output specification"

# The container types DataLad's formatter renders element-wise.
_SEQUENCES = (list, tuple, set, frozenset)


def command_text(cmd: str | list[str]) -> str:
    """The command string DataLad records and runs for ``cmd``.

    A one-element list is taken verbatim (the common ``datalad run "a | b"``
    case); longer lists lose one leading ``--`` and are shell-quoted and joined.
    """
    if isinstance(cmd, str):
        return cmd
    if len(cmd) == 1 and cmd[0] != "--":
        return cmd[0]
    args = cmd[1:] if cmd and cmd[0] == "--" else cmd
    return " ".join(shlex.quote(arg) for arg in args)


def expand_command(
    cmd: str | list[str],
    *,
    inputs: Sequence[str],
    outputs: Sequence[str],
    pwd: str,
    dspath: str,
    substitutions: Mapping[str, str | Sequence[str]],
    extra: Mapping[str, object] | None = None,
    make_tmpdir: Callable[[], str] | None = None,
) -> str:
    """The shell command to execute for a record's ``cmd``.

    ``inputs``/``outputs`` are the already globbed paths (see
    ``Expansion.command_paths``); each is shell-quoted and a "." is left out.
    Precedence, lowest first: ``substitutions`` (``datalad.run.substitutions.*``),
    ``extra`` (record fields in script mode, or ``extra_inputs``), then the
    standard names ``pwd``, ``dspath``, ``tmpdir``, ``inputs``, ``outputs``.
    ``make_tmpdir`` is called only when the literal text ``{tmpdir}`` occurs
    (DataLad's test, so ``{{tmpdir}}`` makes one too); otherwise it is "".
    """
    text = command_text(cmd)
    tmpdir = ""
    if "{tmpdir}" in text:
        tmpdir = (make_tmpdir or _new_tmpdir)()
    values: dict[str, object] = {
        key: value if isinstance(value, str) else list(value)
        for key, value in substitutions.items()
    }
    values.update(extra or {})
    values.update(
        pwd=pwd,
        dspath=dspath,
        tmpdir=tmpdir,
        inputs=_quoted(inputs),
        outputs=_quoted(outputs),
    )
    return _format(_Formatter(_COMMAND, join_sequences=True), text, values)


def format_io_specs(specs: Sequence[str], mapping: Mapping[str, str | Sequence[str]]) -> list[str]:
    """Expand placeholders in ``--input``/``--output`` specs before globbing.

    ``mapping`` is what DataLad offers there: the custom substitutions plus the
    raw, non-empty ``inputs``/``outputs``/``extra_inputs`` spec lists. A spec list
    that is exactly ``["{name}"]`` with a *list* value becomes that list (so
    ``-i '{outputs}'`` reuses the output specs); anything else is plain
    ``str.format``, where a list or tuple renders as its Python repr. DataLad
    reads multi-valued config as tuples, which therefore are not spliced.
    """
    if len(specs) == 1:
        spec = specs[0]
        if spec.startswith("{") and spec.endswith("}"):
            whole = mapping.get(spec[1:-1])
            if isinstance(whole, list):
                return list(whole)
    formatter = _Formatter(_IO_SPEC, join_sequences=False)
    return [_format(formatter, spec, mapping) for spec in specs]


def shell_words(command: str) -> list[str]:
    """Best-effort words of a shell command, for spotting the files it names.

    Operators such as ``>``, ``|`` and ``;`` become words of their own, so
    ``>out.txt`` yields ``out.txt``. ``#`` is not treated as a comment: ``a#b``
    is one word in sh, and words from a real comment are harmless extra
    candidates. Unbalanced quotes fall back to splitting on whitespace.
    """
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        return list(lexer)
    except ValueError:
        return command.split()


def _new_tmpdir() -> str:
    return tempfile.mkdtemp(prefix="datalad-run-")


def _quoted(paths: Sequence[str]) -> list[str]:
    # DataLad treats a spec that strips to "." as "the whole directory" and
    # never puts it into the command.
    return [shlex.quote(path) for path in paths if path.strip() != "."]


def _format(formatter: _Formatter, text: str, values: Mapping[str, Any]) -> str:
    try:
        return formatter.vformat(text, (), values)
    except ValueError as exc:  # raised while parsing, e.g. a lone "{" or "}"
        raise PlaceholderError(f"{formatter.what} {text!r} is not a valid template: {exc}") from exc


class _Formatter(string.Formatter):
    """``str.format`` semantics with errors turned into :class:`PlaceholderError`.

    With ``join_sequences``, a list value renders as its elements, each with
    the field's format spec, joined by single spaces.
    """

    def __init__(self, what: str, *, join_sequences: bool) -> None:
        self.what = what
        self.join_sequences = join_sequences

    def get_value(self, key: int | str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        if isinstance(key, int):
            raise PlaceholderError(
                f"{self.what} has a positional placeholder ({{}} or {{{key}}});"
                " only named placeholders exist"
            )
        if key not in kwargs:
            raise PlaceholderError(f"{self.what} has an unrecognized placeholder: {key!r}")
        return kwargs[key]

    def get_field(
        self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> tuple[Any, int | str]:
        try:
            found: tuple[Any, int | str] = super().get_field(field_name, args, kwargs)
        except (IndexError, KeyError, AttributeError, TypeError) as exc:
            # An index or attribute after a known name: {inputs[3]}, {pwd.x}
            raise PlaceholderError(
                f"{self.what} placeholder {{{field_name}}} cannot be resolved: {exc!r}"
            ) from exc
        return found

    def format_field(self, value: Any, format_spec: str) -> str:
        try:
            if self.join_sequences and isinstance(value, _SEQUENCES):
                return " ".join(format(item, format_spec) for item in value)
            return format(value, format_spec)
        except (ValueError, TypeError) as exc:
            raise PlaceholderError(
                f"{self.what} has a placeholder with an unusable format spec {format_spec!r}: {exc}"
            ) from exc


# Linux's NAME_MAX and PATH_MAX: a longer word names no file (and lstat would fail on it).
_NAME_MAX = 255
_PATH_MAX = 4095


def _could_be_a_path(word: str) -> bool:
    encoded = word.encode("utf-8", "replace")
    return len(encoded) <= _PATH_MAX and all(len(name) <= _NAME_MAX for name in encoded.split(b"/"))


def named_paths(command: str, pwd: str) -> list[str]:
    """Dataset-relative paths a command's words name (candidates for implicit inputs).

    ``pwd`` is the command's directory relative to the dataset root. Options,
    unexpanded placeholders and paths outside the dataset are left out.
    """
    found: list[str] = []
    for word in shell_words(command):
        if "{" in word or word.startswith("-") or "\0" in word or word.startswith("/"):
            continue
        if not _could_be_a_path(word):
            continue
        path = posixpath.normpath(posixpath.join(pwd, word.removeprefix("./")))
        if not (path.startswith("../") or path in ("..", ".")) and path not in found:
            found.append(path)
    return found
