"""Reading and writing run-record messages exactly as DataLad 1.7 does."""

from __future__ import annotations

import json
import lzma
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rerund.core.records import (
    RunRecord,
    decode_sidecar,
    encode_sidecar,
    format_message,
    parse_message,
    record_json,
    sidecar_id,
)
from rerund.errors import RecordError

SHA = "a" * 40

# The inline example of the reference notes, produced by `datalad run` 1.7.1.
DATALAD_MESSAGE = """[DATALAD RUNCMD] concat inputs

=== Do not change lines below ===
{
 "chain": [],
 "cmd": "cat {inputs} > {outputs}",
 "dsid": "6f7cc9ec-c346-434e-b539-3c4e3350c483",
 "exit": 0,
 "extra_inputs": [],
 "inputs": [
  "in*.txt"
 ],
 "outputs": [
  "out.txt"
 ],
 "pwd": "."
}
^^^ Do not change lines above ^^^
"""


def test_datalad_message_parses_and_writes_back_byte_for_byte() -> None:
    """A DataLad message parses into its fields and formats back to the same bytes."""
    parsed = parse_message(DATALAD_MESSAGE, SHA)

    assert parsed is not None and parsed.record is not None
    assert "concat inputs" == parsed.summary
    assert ["in*.txt"] == parsed.record.inputs
    assert DATALAD_MESSAGE == format_message(parsed.summary, parsed.record)


def test_message_without_tag_is_not_a_record() -> None:
    """Ordinary commit messages are simply not run records (no error)."""
    assert None is parse_message("fix raw data\n\n=== Do not change lines below ===\n", SHA)


def test_record_without_cmd_is_an_error_naming_the_commit() -> None:
    """A record with no command is refused with the commit in the message."""
    message = DATALAD_MESSAGE.replace(' "cmd": "cat {inputs} > {outputs}",\n', "")

    with pytest.raises(RecordError, match=r"aaaaaaaaaaaa .*no command"):
        parse_message(message, SHA)


def test_broken_json_is_an_error_naming_the_commit() -> None:
    """Broken JSON between the delimiters is refused, naming the commit."""
    with pytest.raises(RecordError, match=r"aaaaaaaaaaaa is not valid JSON"):
        parse_message(DATALAD_MESSAGE.replace('"exit": 0,', '"exit": 0'), SHA)


def test_wrongly_typed_fields_are_errors() -> None:
    """Fields of the wrong type are refused before anything could run."""
    message = DATALAD_MESSAGE.replace('"in*.txt"', "42")
    with pytest.raises(RecordError, match="'inputs' that is not a list of strings"):
        parse_message(message, SHA)


def test_last_delimiters_win_and_compact_json_is_accepted() -> None:
    """Like DataLad, the greedy match takes the last delimiters; one-line JSON is fine."""
    message = (
        "[DATALAD RUNCMD] a\n\n=== Do not change lines below ===\nnot json\n"
        "^^^ Do not change lines above ^^^\n=== Do not change lines below ===\n"
        '{"cmd": "true"}\n^^^ Do not change lines above ^^^\n'
    )
    parsed = parse_message(message, SHA)
    assert parsed is not None and parsed.record is not None
    assert "true" == parsed.record.cmd


def test_sidecar_message_names_the_record_file() -> None:
    """A JSON string between the delimiters is the id of a sidecar file."""
    message = format_message("x", RunRecord({"cmd": "true"}), sidecar=True)
    parsed = parse_message(message, SHA)

    assert parsed is not None
    assert sidecar_id(RunRecord({"cmd": "true"})) == parsed.sidecar_id


def test_rerun_record_extends_chain_and_keeps_unknown_fields() -> None:
    """A rerun record appends the old sha to the chain and keeps fields DataLad drops."""
    record = RunRecord({"cmd": "x", "chain": ["c0"], "exit": 3, "container": {"img": "a.sif"}})

    rerun = record.rerun_of("c1", dsid="id", exit_code=0)

    assert ["c0", "c1"] == rerun.chain
    assert {"img": "a.sif"} == rerun.fields["container"]
    assert 0 == rerun.exit
    assert ["c0"] == record.chain


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)
paths = st.lists(st.text(min_size=1), max_size=4)
records = st.fixed_dictionaries(
    {
        "cmd": st.text(min_size=1) | st.lists(st.text(), min_size=1, max_size=3),
        "chain": st.lists(st.text(alphabet="0123456789abcdef", min_size=40, max_size=40)),
        "inputs": paths,
        "outputs": paths,
        "extra_inputs": paths,
        "pwd": st.sampled_from([".", "sub", "sub/dir", "../.."]),
        "exit": st.integers(min_value=0, max_value=255),
    },
    optional={"dsid": st.uuids().map(str), "extra": json_values},
)


@settings(max_examples=150)
@given(summary=st.text().map(lambda s: s.strip() or "x"), fields=records)
def test_round_trip_of_any_record(summary: str, fields: dict[str, Any]) -> None:
    """Any record formats to the text DataLad's serialisation gives and parses back equal."""
    record = RunRecord(fields)
    text = format_message(summary, record)
    expected_json = json.dumps(fields, indent=1, sort_keys=True, ensure_ascii=False)

    assert expected_json == record_json(record)
    parsed = parse_message(text, SHA)
    assert parsed is not None and parsed.record is not None
    assert fields == dict(parsed.record.fields)
    assert summary.rstrip() == parsed.summary


@settings(max_examples=100)
@given(fields=records)
def test_sidecar_round_trip(fields: dict[str, Any]) -> None:
    """Sidecar files are one compact JSON line in an xz stream, and read back equal."""
    data = encode_sidecar(RunRecord(fields))

    line = lzma.decompress(data).decode("utf-8")
    assert line.endswith("\n") and line.count("\n") == 1
    assert fields == json.loads(line)
    assert fields == dict(decode_sidecar(data, SHA).fields)


def test_sidecar_garbage_is_an_error() -> None:
    """A sidecar file that is not xz is refused with a clear message."""
    with pytest.raises(RecordError, match="not an xz JSON stream"):
        decode_sidecar(b"plain text", SHA)
