"""Read and write DataLad run records, byte for byte as DataLad 1.7 does.

A run record is a commit message::

    [DATALAD RUNCMD] <summary>

    === Do not change lines below ===
    <JSON object, or a JSON string naming a sidecar file>
    ^^^ Do not change lines above ^^^

This module is pure: it turns text into :class:`RunRecord` values and back and
knows nothing about git. Fields DataLad does not know are kept and written back.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rerund.errors import RecordError

TAG = "[DATALAD RUNCMD] "
BEGIN = "=== Do not change lines below ==="
END = "^^^ Do not change lines above ^^^"
SIDECAR_DIR = ".datalad/runinfo"

# Anchored at the start, greedy on both captures: when the delimiters appear
# twice DataLad takes the last ones, and so do we.
_MESSAGE = re.compile(
    re.escape(TAG) + r"(.*)" + re.escape(BEGIN) + r"\n(.*)\n" + re.escape(END),
    re.DOTALL,
)
_SIDECAR_ID = re.compile(r"[0-9a-f]{32}")
_LIST_FIELDS = ("inputs", "outputs", "extra_inputs", "chain")
MAX_SIDECAR_BYTES = 64 << 20
"""The most a sidecar record may expand to: a million inputs fit, an xz bomb does not."""


@dataclass(frozen=True)
class RunRecord:
    """The JSON object of a run record, with typed access to the known fields."""

    fields: Mapping[str, Any]

    @property
    def cmd(self) -> str | list[str]:
        cmd: str | list[str] = self.fields["cmd"]
        return cmd

    @property
    def inputs(self) -> list[str]:
        return list(self.fields.get("inputs") or [])

    @property
    def outputs(self) -> list[str]:
        return list(self.fields.get("outputs") or [])

    @property
    def extra_inputs(self) -> list[str]:
        return list(self.fields.get("extra_inputs") or [])

    @property
    def chain(self) -> list[str]:
        return list(self.fields.get("chain") or [])

    @property
    def pwd(self) -> str:
        # DataLad cannot rerun a record without pwd; "." is what it means.
        return str(self.fields.get("pwd") or ".")

    @property
    def exit(self) -> int:
        return int(self.fields.get("exit") or 0)

    @property
    def dsid(self) -> str | None:
        dsid = self.fields.get("dsid")
        return str(dsid) if dsid else None

    def rerun_of(self, commit: str, *, dsid: str | None, exit_code: int = 0) -> RunRecord:
        """The record of a rerun of this record's commit ``commit``.

        Unknown fields travel along untouched (DataLad drops them; we keep them).
        """
        new = dict(self.fields)
        mark = new.get("rerund")
        if isinstance(mark, dict) and "reused" in mark:  # this rerun is an execution of its own
            mark = {key: value for key, value in mark.items() if key != "reused"}
            if mark:
                new["rerund"] = mark
            else:
                del new["rerund"]
        new["chain"] = [*self.chain, commit]
        new["exit"] = exit_code
        new.setdefault("pwd", ".")
        for name in ("inputs", "outputs", "extra_inputs"):
            new.setdefault(name, [])
        if dsid is not None:
            new["dsid"] = dsid
        return RunRecord(new)


@dataclass(frozen=True)
class RunMessage:
    """A parsed run-record commit message.

    Exactly one of ``record`` and ``sidecar_id`` is set: sidecar records keep
    their JSON in ``.datalad/runinfo/<id>`` inside the commit's tree.
    """

    summary: str
    record: RunRecord | None = None
    sidecar_id: str | None = None


def parse_message(message: str, commit: str) -> RunMessage | None:
    """Parse a commit message; ``None`` when it is not a run record at all.

    Raises :class:`RecordError` (naming ``commit``) when the message carries the
    tag and delimiters but the record in between is unusable.
    """
    if not message.startswith(TAG):
        return None
    match = _MESSAGE.match(message)
    if match is None:
        return None
    summary = match.group(1).rstrip()
    body = match.group(2)
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise RecordError(commit, f"is not valid JSON ({exc})") from exc
    if isinstance(value, str):
        if not _SIDECAR_ID.fullmatch(value):
            raise RecordError(commit, f"names a sidecar file with a malformed id {value!r}")
        return RunMessage(summary, sidecar_id=value)
    if not isinstance(value, dict):
        raise RecordError(commit, f"holds a JSON {type(value).__name__}, not an object")
    return RunMessage(summary, record=record_from_json(value, commit))


def record_from_json(value: dict[str, Any], commit: str) -> RunRecord:
    """Validate the JSON object of a record (inline or from a sidecar file)."""
    where = _unencodable(value)
    if where is not None:
        # JSON's "\udcff" escape yields a lone surrogate, which no UTF-8 file, git
        # message or SQLite text can hold: the record is unusable, not the repository.
        raise RecordError(commit, f"holds text that is not valid Unicode in {where}")
    if "cmd" not in value:
        raise RecordError(commit, "has no command ('cmd')")
    cmd = value["cmd"]
    if not isinstance(cmd, str) and not (
        isinstance(cmd, list) and all(isinstance(part, str) for part in cmd)
    ):
        raise RecordError(commit, "has a 'cmd' that is neither a string nor a list of strings")
    for name in _LIST_FIELDS:
        items = value.get(name)
        if items is not None and not (
            isinstance(items, list) and all(isinstance(item, str) for item in items)
        ):
            raise RecordError(commit, f"has a {name!r} that is not a list of strings")
    pwd = value.get("pwd")
    if pwd is not None and not isinstance(pwd, str):
        raise RecordError(commit, "has a 'pwd' that is not a string")
    exit_code = value.get("exit")
    if exit_code is not None and (isinstance(exit_code, bool) or not isinstance(exit_code, int)):
        raise RecordError(commit, "has an 'exit' that is not an integer")
    return RunRecord(value)


def _unencodable(value: object, where: str = "the record") -> str | None:
    """Where ``value`` holds a string UTF-8 cannot encode (a lone surrogate), if anywhere."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _unencodable(key, where) or _unencodable(item, f"{key!r}")
            if found is not None:
                return found
    elif isinstance(value, list):
        for item in value:
            found = _unencodable(item, where)
            if found is not None:
                return found
    return None


def record_json(record: RunRecord) -> str:
    """The inline JSON text exactly as DataLad writes it (and hashes it)."""
    return json.dumps(dict(record.fields), indent=1, sort_keys=True, ensure_ascii=False)


def sidecar_id(record: RunRecord) -> str:
    """The sidecar file name DataLad would give this record."""
    return hashlib.md5(record_json(record).encode("utf-8"), usedforsecurity=False).hexdigest()


def format_message(summary: str, record: RunRecord, *, sidecar: bool = False) -> str:
    """The full commit message of a run record, as handed to ``git commit``."""
    body = json.dumps(sidecar_id(record)) if sidecar else record_json(record)
    return f"{TAG}{summary}\n\n{BEGIN}\n{body}\n{END}\n"


def encode_sidecar(record: RunRecord) -> bytes:
    """Sidecar file content: an xz stream holding one compact JSON line."""
    line = json.dumps(
        dict(record.fields), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return lzma.compress(
        (line + "\n").encode("utf-8"), format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64
    )


def decode_sidecar(data: bytes, commit: str) -> RunRecord:
    """Read a sidecar file (xz-compressed JSON stream; the first document counts)."""
    try:
        text = _first_line(data, commit).decode("utf-8")
    except (lzma.LZMAError, EOFError, UnicodeDecodeError) as exc:
        raise RecordError(
            commit, f"has a sidecar file that is not an xz JSON stream ({exc})"
        ) from exc
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise RecordError(commit, f"has a sidecar file that is not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise RecordError(commit, "has a sidecar file that does not hold a JSON object")
    return record_from_json(value, commit)


def _first_line(data: bytes, commit: str) -> bytes:
    """The first non-blank line of the xz data, decompressing no more than needed.

    A few kilobytes of xz can expand to gigabytes: output beyond
    :data:`MAX_SIDECAR_BYTES` without a finished line makes the record unusable.
    """
    decompressor = lzma.LZMADecompressor()
    text = bytearray()
    while True:
        if decompressor.eof:  # concatenated streams, as lzma.decompress reads them
            if not decompressor.unused_data:
                return bytes(text.lstrip())
            data, decompressor = decompressor.unused_data, lzma.LZMADecompressor()
        room = MAX_SIDECAR_BYTES + 1 - len(text)
        chunk = decompressor.decompress(data, max_length=min(room, 1 << 20))
        data = b""
        start = len(text)
        text += chunk
        end = text.find(b"\n", start)
        while end != -1 and not text[:end].strip():  # blank lines before the record
            end = text.find(b"\n", end + 1)
        if end != -1:
            return bytes(text[:end].lstrip())
        if len(text) > MAX_SIDECAR_BYTES:
            raise RecordError(
                commit, f"has a sidecar file that expands to more than {MAX_SIDECAR_BYTES} bytes"
            )
        if not chunk and decompressor.needs_input and not decompressor.eof:
            raise EOFError("compressed data ended before the end of the stream")
