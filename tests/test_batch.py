"""Batch CSV: columns by header, one output row per input row, in order; bad rows never stop it."""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

import orjson
import pytest

from coverlookup import cli
from coverlookup.batch import (
    RESULT_COLUMNS,
    BatchRunner,
    BatchSummary,
    Progress,
    find_columns,
    sniff_delimiter,
)
from coverlookup.errors import UsageError
from coverlookup.geocoding import CachingGeocoder, Location, build_geocoder
from coverlookup.index import CoverageIndex

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "batch"
TERRITORIES = FIXTURES / "territories.geojson"
URI = TERRITORIES.resolve().as_uri()
FRESNO = f"{URI}#fresno-muni"
VALLEY = f"{URI}#valley"
EAST = f"{URI}#east-fresno"
BOSTON = f"{URI}#boston"


@pytest.fixture(scope="module")
def index() -> CoverageIndex:
    return CoverageIndex.from_geojson(TERRITORIES, name_property="name")


@pytest.fixture(scope="module")
def offline():  # type: ignore[no-untyped-def]
    return build_geocoder("offline")


def run(index: CoverageIndex, data: bytes | Path, **options) -> tuple[str, BatchSummary]:  # type: ignore[no-untyped-def]
    fmt = options.pop("fmt", "csv")
    out = io.StringIO()
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    summary = BatchRunner(index, **options).run(source, out, fmt=fmt)
    return out.getvalue(), summary


def rows_of(text: str, delimiter: str = ",") -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text), delimiter=delimiter))


def test_bom_semicolon_crlf_and_decimal_commas(index: CoverageIndex) -> None:
    text, summary = run(index, FIXTURES / "bom_semicolon.csv")
    assert summary.delimiter == ";"
    lines = text.splitlines()
    # The BOM is gone, the output keeps the input's delimiter and echoes the rows as they came.
    assert lines[0] == "site;latitude;longitude;" + ";".join(RESULT_COLUMNS)
    assert lines[1] == (
        f"plant A;36,7377;-119,7843;2;Fresno Municipal Power|Valley Power, Inc.;{FRESNO}|{VALLEY}"
        ";;;ok;"
    )
    assert lines[2] == f"plant B;42.35;-71.06;1;Boston Electric;{BOSTON};;;ok;"
    assert lines[3] == "sea;30.0;-140.0;0;;;;;ok;"
    assert (summary.rows, summary.ok, summary.errors) == (3, 3, 0)


def test_messy_file_every_row_accounted_for(index: CoverageIndex) -> None:
    text, summary = run(index, FIXTURES / "messy.csv")
    rows = rows_of(text)
    got = [(r["id"], r["status"], r["match_count"], r["entity_names"], r["error"]) for r in rows]
    assert got == [
        ("1", "ok", "2", "Fresno Municipal Power|Valley Power, Inc.", ""),
        ("2", "ok", "1", "Boston Electric", ""),
        ("3", "error", "", "", "line 7: 3 fields where the header has 4"),
        ("4", "error", "", "", "line 8: latitude 'north' is not a number"),
        ("5", "error", "", "", "line 9: latitude 95.0 is outside ±90"),
        ("6", "ok", "2", "East Fresno Electric|Valley Power, Inc.", ""),
        ("", "error", "", "", "line 12: the file ends inside a quoted field (truncated?)"),
    ]
    # quoted commas, doubled quotes and a line break inside quotes survive the round trip
    assert [r["name"] for r in rows[:2]] == ["Fresno, CA office", 'Boston "HQ"']
    assert rows[5]["name"] == "multi\nline name"
    assert rows[0]["entry_keys"] == f"{FRESNO}|{VALLEY}"
    assert (summary.rows, summary.ok, summary.errors) == (7, 3, 4)


def test_a_200000_character_field_fails_only_its_row(index: CoverageIndex) -> None:
    huge = "x" * 200_000
    data = f'name,lat,lon\nbefore,36.7,-119.8\n{huge},36.7,-119.8\n"{huge}",1,2\nafter,42.3,-71\n'
    text, summary = run(index, data.encode())
    rows = rows_of(text)
    assert [(r["name"][:6], r["status"], r["error"]) for r in rows] == [
        ("before", "ok", ""),
        ("xxxxxx", "error", "line 3: field 'name' is 200,000 characters long (limit 10,000)"),
        ("xxxxxx", "error", "line 4: field 'name' is 200,000 characters long (limit 10,000)"),
        ("after", "ok", ""),
    ]
    assert (summary.ok, summary.errors) == (2, 2)


def test_missing_coordinate_column_fails_every_row_with_the_reason(index: CoverageIndex) -> None:
    text, summary = run(index, FIXTURES / "missing_column.csv")
    message = "the header has a lat column but no lon/lng/longitude column"
    assert [(r["site"], r["status"], r["error"]) for r in rows_of(text)] == [
        ("A", "error", f"line 2: {message}"),
        ("B", "error", f"line 3: {message}"),
    ]
    assert summary.errors == 2


def test_no_usable_column_at_all(index: CoverageIndex) -> None:
    text, summary = run(index, b"a,b\n1,2\n")
    assert rows_of(text)[0]["error"] == (
        "line 2: no usable column: the header needs lat/latitude and lon/lng/longitude, or "
        "address, or zip/postcode (it has: a, b)"
    )
    assert summary.mode == "none"


def test_tab_delimited_and_leading_blank_lines(index: CoverageIndex) -> None:
    data = b"\n\n" + (FIXTURES / "tab.csv").read_bytes()
    text, summary = run(index, data)
    assert summary.delimiter == "\t"
    names = "Fresno Municipal Power|Valley Power, Inc."
    assert text.splitlines()[1] == f"A\t36.7\t-119.8\t2\t{names}\t{FRESNO}|{VALLEY}\t\t\tok\t"
    rows = rows_of(text, "\t")
    assert rows[0]["status"] == "ok"


def test_empty_input_and_header_only(index: CoverageIndex) -> None:
    assert run(index, b"")[0] == ""
    text, summary = run(index, b"lat,lon\n")
    assert text == "lat,lon," + ",".join(RESULT_COLUMNS) + "\n"
    assert summary.rows == 0


def test_invalid_utf8_fails_its_row_only(index: CoverageIndex) -> None:
    data = b"address\nFresno, CA\n\xff\xfe Fresno\n"
    text, _ = run(index, data, geocoder=build_geocoder("offline"))
    rows = rows_of(text)
    assert [r["status"] for r in rows] == ["ok", "error"]
    assert rows[1]["error"] == "line 3: the text is not valid UTF-8"


class CountingGeocoder:
    def __init__(self, inner):  # type: ignore[no-untyped-def]
        self.inner, self.name, self.queries = inner, inner.name, []

    def geocode(self, query: str) -> Location | None:
        self.queries.append(query)
        return self.inner.geocode(query)


def test_addresses_and_zips_geocoded_once_per_distinct_query(index: CoverageIndex, offline) -> None:  # type: ignore[no-untyped-def]
    counting = CountingGeocoder(offline)
    data = (FIXTURES / "addresses.csv").read_bytes() + b",93721\n,93721\n"
    text, summary = run(index, data, geocoder=counting)
    rows = rows_of(text)
    got = [
        (r["status"], r["match_count"], r["geocode_precision"], r["geocode_lat"], r["error"])
        for r in rows
    ]
    assert got == [
        ("ok", "2", "postal_code", "36.7377", ""),
        ("ok", "2", "postal_code", "36.7377", ""),
        ("ok", "2", "city", "36.74773", ""),
        ("ok", "1", "postal_code", "42.3576", ""),  # 2108 -> 02108 (spreadsheets drop the 0)
        ("error", "", "", "", "line 6: no location found for 'Atlantis'"),
        ("error", "", "", "", "line 7: empty address and zip"),
        ("ok", "0", "postal_code", "37.7974", ""),
        ("ok", "2", "postal_code", "36.7377", ""),
        ("ok", "2", "postal_code", "36.7377", ""),
    ]
    assert rows[3]["entity_names"] == "Boston Electric"
    assert all(r["geocode_provider"] in ("offline", "") for r in rows)
    # "93721" asked once although four rows carry it; each distinct query exactly once
    assert counting.queries == [
        "1 Main St, Fresno, CA 93721",
        "93721",
        "Fresno CA",
        "02108",
        "Atlantis",
        "100 Pine St, San Francisco, CA 94111",
    ]
    assert (summary.geocoded, summary.errors) == (7, 2)


def test_coordinates_with_address_fallback(index: CoverageIndex, offline) -> None:  # type: ignore[no-untyped-def]
    data = b"lat,lon,address\n42.3,-71.0,\n,,93721\n,,\n"
    text, _ = run(index, data, geocoder=offline)
    rows = rows_of(text)
    assert [(r["status"], r["match_count"], r["geocode_provider"]) for r in rows] == [
        ("ok", "1", ""),
        ("ok", "2", "offline"),
        ("error", "", ""),
    ]
    assert rows[2]["error"] == "line 4: empty coordinates and address"


def test_jsonl_output(index: CoverageIndex, offline) -> None:  # type: ignore[no-untyped-def]
    data = b"id,zip\n1,93721\n2,x\n"
    text, _ = run(index, data, geocoder=offline, fmt="jsonl")
    first, second = (orjson.loads(line) for line in text.splitlines())
    assert first["line"] == 2 and first["input"] == {"id": "1", "zip": "93721"}
    assert [m["key"] for m in first["matches"]] == [FRESNO, VALLEY]
    assert first["match_count"] == 2
    assert first["geocode"]["precision"] == "postal_code" and first["approximate"] is True
    assert (first["status"], first["error"]) == ("ok", None)
    assert second == {
        "line": 3,
        "input": {"id": "2", "zip": "x"},
        "match_count": None,
        "matches": [],
        "status": "error",
        "error": "line 3: no location found for 'x'",
    }


def test_filters_apply_to_every_row(index: CoverageIndex) -> None:
    # GeoJSON entries have no commodity: a commodity filter leaves nothing
    text, _ = run(index, b"lat,lon\n36.7,-119.8\n", filters={"commodity": "electricity"})
    assert rows_of(text)[0]["match_count"] == "0"


def test_order_and_count_kept_across_small_chunks(index: CoverageIndex) -> None:
    rng = random.Random(5)
    lines = ["n,lat,lon"]
    expected = []
    for n in range(3000):
        kind = rng.random()
        if kind < 0.1:
            lines.append(f"{n},bad,-119.8")
            expected.append((str(n), "error"))
        elif kind < 0.15:
            lines.append(f"{n},36.7")
            expected.append((str(n), "error"))
        else:
            lines.append(f"{n},{rng.uniform(36.0, 37.5):.5f},{rng.uniform(-120.6, -119.0):.5f}")
            expected.append((str(n), "ok"))
    data = ("\n".join(lines) + "\n").encode()
    small, _ = run(index, data, chunk_rows=7)
    large, summary = run(index, data, chunk_rows=100_000)
    assert small == large
    assert [(r["n"], r["status"]) for r in rows_of(small)] == expected
    assert summary.rows == 3000


def test_json_items(index: CoverageIndex, offline) -> None:  # type: ignore[no-untyped-def]
    runner = BatchRunner(index, geocoder=offline)
    items = [
        {"lat": 36.7, "lon": -119.8},
        {"zip": "93721"},
        {"lat": "x", "lon": 1},
        {"lat": True, "lon": 1},
        {"lat": 1},
        7,
    ]
    results = list(runner.iter_json(items))
    assert [(r["row"], r["status"], r["match_count"], r["error"]) for r in results] == [
        (1, "ok", 2, None),
        (2, "ok", 2, None),
        (3, "error", None, "item 3: latitude 'x' is not a number"),
        (4, "error", None, "item 4: latitude 'true' is not a number"),
        (5, "error", None, "item 5: the object has a lat column but no lon/lng/longitude column"),
        (6, "error", None, "item 6: expected an object, got int"),
    ]
    assert results[1]["geocode"]["provider"] == "offline"
    assert results[0]["input"] == {"lat": 36.7, "lon": -119.8}


def test_columns_and_delimiter_detection() -> None:
    assert find_columns(["ID", " Latitude ", "LNG"]).mode == "coordinates"
    assert find_columns(["postcode"]).mode == "zip"
    assert find_columns(["Address", "zip"]).mode == "address"
    assert sniff_delimiter('"a;b",c,d\n') == ","
    assert sniff_delimiter("a;b;c\n") == ";"
    assert sniff_delimiter("address\n") == ","


def test_caching_geocoder_is_added_once(index: CoverageIndex, offline) -> None:  # type: ignore[no-untyped-def]
    assert isinstance(BatchRunner(index, geocoder=offline).geocoder, CachingGeocoder)
    with pytest.raises(UsageError, match="chunk_rows must be at least 1"):
        BatchRunner(index, chunk_rows=0)


def test_progress_line() -> None:
    stream = io.StringIO()
    progress = Progress(stream, total_bytes=1000, position=lambda: 500)
    summary = BatchSummary(rows=1000, ok=990, errors=10, seconds=2.0)
    progress.update(summary, force=True)
    assert stream.getvalue() == "\r\x1b[K1,000 rows  500 rows/s  10 errors  50%  ETA 0:00:02"
    progress.finish(summary)
    assert stream.getvalue().endswith("\r\x1b[K1,000 rows in 0:00:02  500 rows/s  10 errors\n")


# --- the command line -----------------------------------------------------------------------------


def batch_cli(*argv: str) -> int:
    return cli.main(["batch", *argv, "--geojson", str(TERRITORIES), "--name-property", "name"])


def test_cli_batch_writes_output_and_exits_1_on_failed_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.csv"
    assert batch_cli(str(FIXTURES / "messy.csv"), "-o", str(out)) == 1
    assert [r["status"] for r in rows_of(out.read_text())] == [
        "ok",
        "ok",
        "error",
        "error",
        "error",
        "ok",
        "error",
    ]
    captured = capsys.readouterr()
    assert captured.out == ""
    # not a terminal: no progress, one summary line
    assert captured.err == (
        "coverlookup: error: 4 of 7 rows failed (first: line 7: 3 fields where the header has 4)\n"
    )


def test_cli_batch_clean_file_exits_0_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert batch_cli(str(FIXTURES / "tab.csv"), "--format", "jsonl") == 0
    captured = capsys.readouterr()
    assert orjson.loads(captured.out)["match_count"] == 2
    assert captured.err == ""


def test_cli_batch_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert batch_cli(str(tmp_path / "nope.csv")) == 2
    assert "cannot read" in capsys.readouterr().err
    assert batch_cli(str(FIXTURES / "tab.csv"), "--commodity", "") == 2
    assert capsys.readouterr().err == "coverlookup: error: commodity must be a non-empty string\n"
    code = cli.main(["batch", str(FIXTURES / "tab.csv"), "--name-property", "x"])
    assert code == 2
    assert capsys.readouterr().err == "coverlookup: error: --name-property goes with --geojson\n"


def test_stray_quotes_do_not_swallow_the_rows_after_them(index: CoverageIndex) -> None:
    data = (
        'name,lat,lon\n5 12" pipe,36.7,-119.8\n"never closed,36.7,-119.8\n'
        "next,36.7,-119.8\nlast,42.3,-71.0\n"
    )
    text, summary = run(index, data.encode())
    rows = rows_of(text)
    assert [(r["name"], r["status"], r["error"]) for r in rows] == [
        ('5 12" pipe', "ok", ""),  # a quote inside an unquoted field is just a character
        ("", "error", "line 3: a quoted field is never closed"),
        ("next", "ok", ""),
        ("last", "ok", ""),
    ]
    assert (summary.rows, summary.errors) == (4, 1)


def test_an_open_quote_is_given_up_on_after_a_bound(index: CoverageIndex) -> None:
    lines = ["name,lat,lon", '"open,36.7,-119.8'] + [f"r{n},36.7,-119.8" for n in range(200)]
    text, _ = run(index, ("\n".join(lines) + "\n").encode(), max_field_chars=100)
    rows = rows_of(text)
    assert len(rows) == 201
    assert (rows[0]["status"], rows[0]["error"]) == (
        "error",
        "line 2: a quoted field is not closed within the next lines",
    )
    assert [r["name"] for r in rows[1:]] == [f"r{n}" for n in range(200)]
    assert {r["status"] for r in rows[1:]} == {"ok"}


def test_cli_batch_refuses_to_overwrite_its_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "sites.csv"
    path.write_bytes(b"lat,lon\n36.7,-119.8\n")
    assert batch_cli(str(path), "-o", str(path)) == 2
    assert "is the input file" in capsys.readouterr().err
    assert path.read_bytes() == b"lat,lon\n36.7,-119.8\n"


def test_json_items_with_booleans_say_what_they_got(index: CoverageIndex) -> None:
    runner = BatchRunner(index)
    results = list(runner.iter_json([{"lat": True, "lon": 1.0}, {"lat": 1.0, "lon": False}]))
    assert [(r["status"], r["error"]) for r in results] == [
        ("error", "item 1: latitude 'true' is not a number"),
        ("error", "item 2: longitude 'false' is not a number"),
    ]


def test_digit_separator_is_refused_whether_or_not_the_chunk_is_clean(index: CoverageIndex) -> None:
    # Every other cell of the chunk is clean, so it would take the vectorised path, where
    # numpy reads "3_6.74" as 36.74; the row-by-row path refuses it. Same answer both ways.
    for body in (b"lat,lon\n1,1\n3_6.74,-119.78\n", b"lat,lon\nx,1\n3_6.74,-119.78\n"):
        text, _ = run(index, body)
        assert [(r["status"], r["error"]) for r in rows_of(text)][1] == (
            "error",
            "line 3: latitude '3_6.74' is not a number",
        )


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_with_a_byte_order_mark_are_read(
    index: CoverageIndex, encoding: str, tmp_path: Path
) -> None:
    # Excel's "Unicode Text" export: UTF-16 little-endian with a BOM, tab-delimited.
    text = "lat\tlon\r\n36.74\t-119.78\r\n"
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    for source in (data, tmp_path / "in.txt"):
        if isinstance(source, Path):
            source.write_bytes(data)
        out, summary = run(index, source)
        assert [(r["lat"], r["status"], r["entity_names"]) for r in rows_of(out, "\t")] == [
            ("36.74", "ok", "Fresno Municipal Power|Valley Power, Inc.")
        ]
        assert summary.rows == 1


@pytest.mark.parametrize(
    ("cell", "query"),
    [
        ("93721", "93721"),
        ("2108", "02108"),
        ("2108.0", "02108"),
        ("93721.00", "93721"),
        ("93721-1234", "93721-1234"),
        ("93721.5", "93721.5"),
        ("1.0", "1.0"),
    ],
)
def test_zip_cells_saved_as_numbers_get_their_zeros_back(cell: str, query: str) -> None:
    from coverlookup.batch import _zip_text

    assert _zip_text(cell) == query


@pytest.mark.parametrize("cell", ["1_000", "4_0", "\u0663", "\uff11", "3\u00b2"])
def test_coordinates_are_plain_ascii_decimals(index: CoverageIndex, cell: str) -> None:
    # float() reads digit separators and any Unicode digit; a coordinate cell is refused either
    # way, clean chunk or not, with the same message.
    for body in (f"lat,lon\n{cell},1\n", f"lat,lon\nx,1\n{cell},1\n"):
        text, _ = run(index, body.encode())
        assert rows_of(text)[-1]["error"].endswith(f"latitude {cell!r} is not a number")


def test_coordinates_padded_with_unicode_spaces_are_read(index: CoverageIndex) -> None:
    # Spreadsheet exports pad cells with no-break spaces; float() strips them, and so do we.
    text, _ = run(index, "lat,lon\n36.74\u00a0,\u2007-119.78\n".encode())
    assert [r["status"] for r in rows_of(text)] == ["ok"]


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_a_line_longer_than_the_line_limit_is_an_error_and_not_held(
    index: CoverageIndex, newline: str
) -> None:
    huge = "9" * 5_000_000  # over the 4 Mi characters a line may have (a record: 41,030 here)
    good = "36.74,-119.78"
    body = newline.join(["lat,lon", huge, good, '"open,1', huge, good, ""])
    text, summary = run(index, body.encode())
    too_long = "5,000,000 characters long, over the limit of 4,194,304 for a line; skipped"
    assert [(r["status"], r["error"]) for r in rows_of(text)] == [
        ("error", f"line 2: {too_long}"),
        ("ok", ""),
        ("error", "line 4: a quoted field is not closed within the next lines"),
        ("error", f"line 5: {too_long}"),
        ("ok", ""),
    ]
    assert summary.rows == 5
    assert len(text) < 10_000  # the long lines are not echoed


@pytest.mark.parametrize("length", [4_194_303, 4_194_304, 8_388_607])
def test_a_crlf_on_the_line_bound_counts_as_one_line_ending(
    index: CoverageIndex, length: int
) -> None:
    # The reader takes at most 4,194,305 characters at a time: its bound can fall between the
    # \r and the \n, which must still end one line, or every later line number is off by one.
    body = "lat,lon\n" + "9" * length + "\r\nnorth,1\n36.74,-119.78\nsouth,2\n"
    text, _ = run(index, body.encode())
    errors = [r["error"] for r in rows_of(text)]
    assert errors[1:] == [
        "line 3: latitude 'north' is not a number",
        "",
        "line 5: latitude 'south' is not a number",
    ]
    expected = (
        "line 2: 1 fields where the header has 2"
        if length <= 4_194_304
        else f"line 2: {length:,} characters long, over the limit of 4,194,304 for a line; skipped"
    )
    assert errors[0] == expected
