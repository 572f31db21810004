"""`coverlookup validate FILE`: exit codes, readable output, no traceback for any bad file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SPEC = Path(__file__).parent / "fixtures" / "spec"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "coverlookup", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_valid_2023_document():
    proc = run("validate", str(SPEC / "repaired" / "2023-metadata.json"))
    assert proc.returncode == 0, proc.stderr
    assert "CDS server metadata document (2023 draft)" in proc.stdout
    assert proc.stdout.strip().endswith("valid: 1 document, 0 errors, 0 warnings, 0 notices")


def test_valid_2025_document():
    proc = run("validate", str(SPEC / "repaired" / "2025-coverage.json"))
    assert proc.returncode == 0, proc.stderr
    assert "CDS coverage listing (2025 draft)" in proc.stdout


def test_broken_document_lists_findings_by_severity(tmp_path):
    doc = json.loads((SPEC / "repaired" / "2025-metadata.json").read_text())
    del doc["support"]
    doc["website"] = "http://example.com/data-access"
    doc["x_extra"] = True
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(doc))
    proc = run("validate", str(path))
    assert proc.returncode == 1
    out = proc.stdout
    assert (
        "errors (1):\n    /support: the metadata document is missing the REQUIRED 'support'" in out
    )
    assert "warnings (1):\n    /website: 'website' is not an https URL" in out
    assert "notices (1):\n    /x_extra: unknown field 'x_extra'" in out
    assert out.index("errors (1)") < out.index("warnings (1)") < out.index("notices (1)")
    assert out.strip().endswith("INVALID: 1 document, 1 error, 1 warning, 1 notice")


def test_json_output(tmp_path):
    path = tmp_path / "doc.json"
    path.write_text('{"coverage_entries": [], "next": null}')
    proc = run("validate", "--json", str(path))
    assert proc.returncode == 1
    payload = json.loads(proc.stdout)
    assert payload["valid"] is False
    [doc] = payload["documents"]
    assert doc["kind"] == "coverage"
    assert doc["findings"] == [
        {
            "severity": "error",
            "document": str(path),
            "pointer": "/previous",
            "code": "missing-field",
            "message": "the coverage listing is missing the REQUIRED 'previous' field",
        }
    ]


HOSTILE = {
    "empty.json": (b"", "the document is empty"),
    "binary.bin": (bytes(range(256)) * 4, "not UTF-8 text"),
    "array.json": (b"[1, 2, 3]", "top level is an array"),
    "deep.json": (b"[" * 10_000 + b"]" * 10_000, "nesting deeper than 200 levels"),
    "nan.json": (b'{"name": NaN}', "NaN and Infinity are not valid JSON numbers"),
    "infinity.json": (b'{"a": [Infinity]}', "NaN and Infinity are not valid JSON numbers"),
    "surrogate.json": (b'{"name": "\\ud83d"}', "lone UTF-16 surrogate"),
    "raw-surrogate.json": (b'{"name": "\xed\xa0\x80"}', "not UTF-8 text"),
    "string.json": (b'"just a string"', "top level is a string"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_files_give_a_clear_error_and_no_traceback(tmp_path, name):
    data, message = HOSTILE[name]
    path = tmp_path / name
    path.write_bytes(data)
    proc = run("validate", str(path))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    assert message in proc.stdout


def test_usage_errors_exit_2(tmp_path):
    missing = run("validate", str(tmp_path / "nope.json"))
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"coverlookup: error: {tmp_path / 'nope.json'}: no such file"
    directory = run("validate", str(tmp_path))
    assert directory.returncode == 2 and "is a directory" in directory.stderr
    no_args = run("validate")
    assert no_args.returncode == 2 and "Traceback" not in no_args.stderr
    unknown = run("frobnicate")
    assert unknown.returncode == 2


def test_python_dash_m_and_version():
    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("coverlookup ")


def test_geojson_territory_findings(tmp_path):
    path = tmp_path / "territory.geojson"
    path.write_text(
        '{"type": "FeatureCollection", "features": ['
        '{"type": "Feature", "properties": {}, "geometry": {"type": "Polygon",'
        ' "coordinates": [[[0, 0], [1, 0], [1, "x"], [0, 0]]]}},'
        '{"type": "Feature", "properties": {}, "geometry": {"type": "Polygon",'
        ' "coordinates": [[[0, 0], [2, 2], [0, 2], [2, 0], [0, 0]]]}}]}'
    )
    proc = run("validate", "--json", str(path))
    assert proc.returncode == 1
    [doc] = json.loads(proc.stdout)["documents"]
    assert doc["kind"] == "geojson"
    assert [(f["severity"], f["pointer"], f["code"]) for f in doc["findings"]] == [
        ("error", "/features/0/geometry/coordinates/0/2/1", "bad-coordinate"),
        ("warning", "/features/1/geometry", "repaired-geometry"),
    ]


def test_endless_device_is_read_with_a_bound_not_forever():
    # /dev/zero reports size 0 and never ends; the read stops at the first NUL chunk.
    from coverlookup.validate import validate_file

    result = validate_file("/dev/zero")
    assert [(f.severity.value, f.code, f.message) for f in result.findings] == [
        ("error", "syntax-error", "NUL byte at offset 0 (is this a binary file?)")
    ]


def test_fifo_without_a_writer_does_not_block(tmp_path):
    from coverlookup.validate import validate_file

    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    result = validate_file(fifo)
    assert [(f.code, f.message) for f in result.findings] == [
        ("syntax-error", "the document is empty")
    ]


def test_stream_longer_than_the_limit_is_refused(tmp_path):
    from coverlookup import validate
    from coverlookup.errors import UsageError

    path = tmp_path / "big.json"
    path.write_bytes(b" " * 100 + b"{}")
    with pytest.raises(UsageError) as info:
        validate._read_bounded(path, limit=50)
    assert str(info.value) == f"{path} is 102 bytes; larger than the 50 byte limit"
    r, w = os.pipe()
    os.write(w, b" " * 60)
    os.close(w)
    with pytest.raises(UsageError) as info:
        validate._read_bounded(Path(f"/dev/fd/{r}"), limit=50)
    os.close(r)
    assert str(info.value) == f"/dev/fd/{r} is larger than the 50 byte limit"


def test_duplicate_names_in_a_json_object_are_warnings(tmp_path):
    from coverlookup.validate import validate_file

    doc = json.loads((SPEC / "repaired" / "2025-metadata.json").read_text())
    text = json.dumps(doc)[:-1] + ', "name": "Second Name", "support": "https://example.com/s"}'
    path = tmp_path / "dup.json"
    path.write_text(text)
    result = validate_file(path)
    assert [(f.severity.value, f.pointer, f.code) for f in result.findings] == [
        ("warning", "/name", "duplicate-key"),
        ("warning", "/support", "duplicate-key"),
    ]
    assert result.findings[0].message == (
        "the name 'name' appears more than once in this object; names should be unique "
        "(RFC 8259) and the last value is the one used"
    )
    assert result.server is not None and result.server.name == "Second Name"


def test_unknown_document_names_blank_and_long_fields_readably():
    from coverlookup.validate import validate_value

    result = validate_value({"": 1, "x" * 100: 2, "b": 3}, "doc.json")
    assert [f.message for f in result.findings] == [
        "not a CDS metadata document, coverage listing, Open Energy list or GeoJSON "
        f"(top level is an object with fields '', b, {'x' * 40}...)"
    ]


def test_huge_values_are_clipped_in_messages():
    from coverlookup.validate import validate_value

    doc = json.loads((SPEC / "repaired" / "2025-metadata.json").read_text())
    doc["website"] = "x" * 5_000_000
    result = validate_value(doc, "doc.json")
    (finding,) = [f for f in result.findings if f.pointer == "/website"]
    assert finding.message == (
        "'website' is not an absolute URL: '"
        + "x" * 765
        + "...[4,999,136 characters cut]..."
        + "x" * 99
        + "'"
    )


@pytest.mark.parametrize(
    ("target", "remote"),
    [
        ("example.com", True),
        ("example.com.", True),
        ("example.com:8443", True),
        ("bücher.example", True),
        ("https://example.com/x.json", True),
        ("file.json", False),
        ("./example.com", False),
        ("example..com", False),
    ],
)
def test_what_counts_as_a_remote_target(target, remote):
    from coverlookup.validate import _is_remote

    assert _is_remote(target) is remote
