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


def test_yaml_alias_bomb_is_refused_quickly():
    # "Billion laughs": nine levels of nine aliases expand to 9**9 strings if anything walks them.
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 9):
        prev = f"*a{level - 1}"
        lines.append(f"a{level}: &a{level} [{', '.join([prev] * 9)}]")
    with pytest.raises(DocumentSyntaxError) as info:
        parse_document("\n".join(lines).encode(), hint="bomb.yaml")
    assert str(info.value) == (
        "YAML aliases expand to more than 100,000 extra values (an alias bomb?); "
        "refusing to load it"
    )


def test_yaml_modest_aliases_and_merge_keys_still_load():
    data = b"base: &b {k: 1, l: [1, 2]}\nx: *b\ny:\n  <<: *b\n  j: 2\n"
    assert parse_document(data, hint="a.yaml") == {
        "base": {"k": 1, "l": [1, 2]},
        "x": {"k": 1, "l": [1, 2]},
        "y": {"k": 1, "l": [1, 2], "j": 2},
    }


def test_yaml_integer_too_long_for_python_is_a_syntax_error():
    with pytest.raises(DocumentSyntaxError, match="invalid YAML"):
        parse_document(b"- n: " + b"9" * 5000 + b"\n", hint="x.yaml")


def test_yaml_open_energy_text_values_stay_as_written():
    value = parse_document(
        b"- content:\n"
        b"    dcat:version: 1.10\n"
        b"    oe:dataSetStableIdentifier: 0123\n"
        b"    dct:title: 2024\n"
        b"    other: 1.10\n",  # any other key: YAML's number, as before
        hint="x.yaml",
    )
    aliased = parse_document(
        b"- a: &v 1.10\n  content:\n    dcat:version: *v\n    dct:title: no\n", hint="x.yaml"
    )
    assert aliased == [{"a": 1.1, "content": {"dcat:version": "1.10", "dct:title": "no"}}]
    assert value == [
        {
            "content": {
                "dcat:version": "1.10",
                "oe:dataSetStableIdentifier": "0123",
                "dct:title": "2024",
                "other": 1.1,
            }
        }
    ]


def test_yaml_python_tags_are_refused():
    with pytest.raises(DocumentSyntaxError) as info:
        parse_document(b'!!python/object/apply:os.system ["echo hi"]\n', hint="x.yaml")
    assert info.value.line == 1
    assert "could not determine a constructor" in str(info.value)


@pytest.mark.parametrize(
    ("encoding", "name"),
    [("utf-16", "UTF-16"), ("utf-16-be", "UTF-16"), ("utf-32", "UTF-32")],
)
def test_utf16_and_utf32_with_bom_get_a_clear_message(encoding, name):
    data = '{"a": 1}'.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    with pytest.raises(DocumentSyntaxError) as info:
        parse_document(data)
    assert str(info.value) == (
        f"the document is {name} text (it starts with a {name} byte order mark); "
        "documents must be UTF-8: re-save it as UTF-8"
    )
    assert (info.value.line, info.value.column) == (1, 1)


def test_yaml_over_the_size_limit_is_refused_before_parsing(monkeypatch):
    from coverlookup import documents

    monkeypatch.setattr(documents, "MAX_YAML_BYTES", 100)
    data = b"- content: {a: 1}\n" * 10
    assert len(data) == 180
    with pytest.raises(DocumentSyntaxError) as info:
        parse_document(data, hint="list.yaml")
    assert str(info.value) == (
        "a YAML document of 180 bytes is over the 100 byte limit for YAML (its parser is slow); "
        "publish large documents as JSON"
    )
    assert parse_document(data[:90], hint="list.yaml") == [{"content": {"a": 1}}] * 5
