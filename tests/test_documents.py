"""Bytes -> values: every kind of unreadable input gets a DocumentSyntaxError with a position."""

from __future__ import annotations

import pytest

from coverlookup.documents import parse_document, parse_json
from coverlookup.errors import DocumentSyntaxError, SpecError


@pytest.mark.parametrize(
    ("data", "line", "column", "words"),
    [
        (b"", 1, 1, "empty"),
        (b"   \n\t ", 1, 1, "empty"),
        (b'{"a": 1,}', 1, 8, "trailing comma"),
        (b'{\n  "a": [1, 2,\n  ]\n}', 2, 13, "trailing comma"),
        (b'{"a": NaN}', 1, 7, "NaN and Infinity"),
        (b'{"a": Infinity}', 1, 7, "NaN and Infinity"),
        (b'{"a": -Infinity}', 1, 8, "NaN and Infinity"),
        (b'{"a": "\\ud800"}', 1, 8, "surrogate"),
        (b'{"a": "x\\udc00y"}', 1, 9, "surrogate"),
        (b'{"a": "unterminated\n}', 1, 20, "invalid JSON"),
    ],
)
def test_bad_json_reports_line_and_column(data, line, column, words):
    with pytest.raises(DocumentSyntaxError) as info:
        parse_json(data)
    assert info.value.line == line
    assert info.value.column == column
    assert words in str(info.value)


def test_binary_is_not_text():
    with pytest.raises(DocumentSyntaxError, match="not UTF-8 text") as info:
        parse_document(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert info.value.line == 1


def test_nul_byte_is_reported():
    with pytest.raises(DocumentSyntaxError, match="NUL byte at offset 5"):
        parse_document(b'{"a":\x00}')


@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
def test_deep_nesting_is_refused_without_recursion_error(opener):
    closer = b"]" if opener == b"[" else b"}"
    data = opener * 10_000 + b"1" + closer * 10_000
    with pytest.raises(DocumentSyntaxError, match="nesting deeper than 200 levels") as info:
        parse_document(data)
    assert info.value.line == 1


def test_deep_yaml_is_refused():
    with pytest.raises(DocumentSyntaxError, match="nesting deeper"):
        parse_document(b"a: " + b"[" * 10_000 + b"]" * 10_000, hint="x.yaml")


def test_bom_is_accepted():
    assert parse_json(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}


def test_yaml_by_hint_and_by_sniffing():
    assert parse_document(b"- a: 1\n", hint="meta.yml") == [{"a": 1}]
    assert parse_document(b"- a: 2\n") == [{"a": 2}]
    # JSON-looking text is never re-read as (more lenient) YAML.
    with pytest.raises(DocumentSyntaxError, match="trailing comma"):
        parse_document(b'{"a": [1,],}')


def test_yaml_syntax_error_has_position():
    with pytest.raises(DocumentSyntaxError) as info:
        parse_document(b"- a: 1\n  b: [\n", hint="x.yaml")
    assert info.value.line is not None and info.value.line >= 2
    assert "invalid YAML" in str(info.value)


def test_yaml_nan_is_refused():
    with pytest.raises(DocumentSyntaxError, match="NaN"):
        parse_document(b"- a: .nan\n", hint="x.yaml")


def test_errors_subclass_builtins():
    assert issubclass(DocumentSyntaxError, SpecError)
    assert issubclass(DocumentSyntaxError, ValueError)
