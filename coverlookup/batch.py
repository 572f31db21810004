"""Batch lookups: stream a CSV of sites through the index in bounded chunks, CSV or JSON Lines out.

Columns are found by header (CONTRACT "Batch CSV"): ``lat``/``latitude`` + ``lon``/``lng``/
``longitude``, or ``address``, or ``zip``/``postcode``. Every input record yields exactly one output
record, in order: the input columns, then ``match_count, entity_names, entry_keys, capabilities,
commodity_types, status, error`` (and, when rows are geocoded, where the geocoder put them). A bad
row gets ``status=error`` and a message naming its line; it never stops the run. Blank lines are not
records and produce nothing (as in pandas and most CSV tools).

Memory is bounded by the chunk size, never by the file: rows are read, looked up through
``CoverageIndex.lookup_many`` and written ``chunk_rows`` at a time.
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import orjson

from coverlookup.errors import CoordinateError, CoverlookupError, UsageError
from coverlookup.geocoding import CachingGeocoder, Geocoder, Location

if TYPE_CHECKING:  # pragma: no cover
    from coverlookup.index import CoverageIndex
    from coverlookup.model import Match

logger = logging.getLogger(__name__)

RESULT_COLUMNS = (
    "match_count",
    "entity_names",
    "entry_keys",
    "capabilities",
    "commodity_types",
    "status",
    "error",
)
# Appended after the contract's columns when the file is geocoded (address or ZIP column).
GEOCODE_COLUMNS = ("geocode_lat", "geocode_lon", "geocode_precision", "geocode_provider")
LAT_NAMES = ("lat", "latitude")
LON_NAMES = ("lon", "lng", "longitude", "long")
ADDRESS_NAMES = ("address",)
ZIP_NAMES = ("zip", "postcode", "zipcode", "zip_code", "postal_code")
# Separates several values inside one CSV cell (names, keys, capabilities).
MULTI_SEPARATOR = "|"
FORMATS = ("csv", "jsonl")

DEFAULT_CHUNK_ROWS = 10_000
# A field longer than this makes its row an error (no coordinate, ZIP or address is that long).
DEFAULT_MAX_FIELD_CHARS = 10_000
# The csv module's own cap, raised so an over-long field is read and reported as a row error rather
# than tripping the parser; still bounded so a runaway quote cannot swallow the whole file.
CSV_FIELD_LIMIT = 16 * 1024 * 1024
_DELIMITERS = (",", ";", "\t", "|")
_SAMPLE_CHARS = 1 << 20

OK = "ok"
ERROR = "error"


@dataclass(slots=True)
class BatchSummary:
    rows: int = 0
    ok: int = 0
    errors: int = 0
    seconds: float = 0.0
    delimiter: str = ","
    mode: str = ""
    geocoded: int = 0
    first_errors: list[str] = field(default_factory=list)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "ok": self.ok,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "rows_per_s": round(self.rows_per_s, 1),
        }


@dataclass(frozen=True, slots=True)
class Columns:
    """Which input columns hold what. ``problem`` is set when the header has none usable."""

    names: tuple[str, ...]
    lat: int | None = None
    lon: int | None = None
    address: int | None = None
    zip: int | None = None
    problem: str | None = None

    @property
    def mode(self) -> str:
        if self.problem:
            return "none"
        if self.lat is not None:
            return "coordinates"
        return "address" if self.address is not None else "zip"

    @property
    def geocoded(self) -> bool:
        return self.address is not None or self.zip is not None


def find_columns(header: Sequence[str]) -> Columns:
    """Locate the coordinate, address or ZIP columns by (case- and space-insensitive) name."""
    names = tuple(header)
    folded = [h.strip().strip('"').casefold() for h in names]

    def first(candidates: Sequence[str]) -> int | None:
        for name in candidates:
            if name in folded:
                return folded.index(name)
        return None

    lat, lon = first(LAT_NAMES), first(LON_NAMES)
    address, zip_ = first(ADDRESS_NAMES), first(ZIP_NAMES)
    problem = None
    if (lat is None) != (lon is None):
        have, missing = ("lat", "lon/lng/longitude") if lon is None else ("lon", "lat/latitude")
        if address is None and zip_ is None:
            problem = f"the header has a {have} column but no {missing} column"
        lat = lon = None
    if problem is None and lat is None and address is None and zip_ is None:
        problem = (
            "no usable column: the header needs lat/latitude and lon/lng/longitude, or address, "
            f"or zip/postcode (it has: {', '.join(names) or 'nothing'})"
        )
    return Columns(names, lat=lat, lon=lon, address=address, zip=zip_, problem=problem)


def sniff_delimiter(header_line: str) -> str:
    """A file's delimiter from its header line: the most frequent of , ; tab | outside quotes."""
    counts = dict.fromkeys(_DELIMITERS, 0)
    quoted = False
    for char in header_line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(_DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


@dataclass(slots=True)
class _Record:
    line: int  # 1-based line the record starts on
    fields: list[str]
    error: str | None = None
    lat: float = 0.0
    lon: float = 0.0
    location: Location | None = None
    matches: list[Match] | None = None


def open_text(source: IO[bytes] | IO[str] | str | os.PathLike[str]) -> IO[str]:
    """A text stream over a path or a binary/text stream: UTF-8 with or without a BOM, newline=''.

    Undecodable bytes become U+FFFD so one bad byte fails its row, not the run.
    """
    if isinstance(source, (str, os.PathLike)):
        return open(source, encoding="utf-8-sig", errors="replace", newline="")
    if isinstance(source, io.TextIOBase):
        return source  # type: ignore[return-value]
    return io.TextIOWrapper(source, encoding="utf-8-sig", errors="replace", newline="")  # type: ignore[arg-type]


class BatchRunner:
    """Runs batch files against one index (and, for address/ZIP files, one geocoder)."""

    def __init__(
        self,
        index: CoverageIndex,
        *,
        geocoder: Geocoder | None = None,
        filters: Mapping[str, str | None] | None = None,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        max_field_chars: int = DEFAULT_MAX_FIELD_CHARS,
    ):
        if chunk_rows < 1:
            raise UsageError("chunk_rows must be at least 1")
        self.index = index
        if geocoder is not None and not isinstance(geocoder, CachingGeocoder):
            geocoder = CachingGeocoder(geocoder)
        self.geocoder = geocoder
        self.filters = {k: v for k, v in (filters or {}).items() if v is not None}
        self.chunk_rows = chunk_rows
        self.max_field_chars = max_field_chars
        # Rows with the same set of matches share their formatted cells.
        self._cells: dict[tuple[int, ...], tuple[str, str, str, str, str]] = {}

    # --- reading ---------------------------------------------------------------------------------

    def _records(self, text: IO[str], summary: BatchSummary) -> tuple[Columns, Iterator[_Record]]:
        if csv.field_size_limit() < CSV_FIELD_LIMIT:
            csv.field_size_limit(CSV_FIELD_LIMIT)
        header_line = ""
        header_at = 0
        while not header_line.strip():
            header_line = text.readline(_SAMPLE_CHARS)
            header_at += 1
            if not header_line:
                return find_columns(()), iter(())
        delimiter = sniff_delimiter(header_line)
        summary.delimiter = delimiter
        reader = csv.reader(itertools.chain([header_line], text), delimiter=delimiter, strict=True)
        header = next(reader)
        columns = find_columns(header)
        summary.mode = columns.mode
        width = len(header)
        max_chars = self.max_field_chars
        line_offset = header_at - 1

        def records() -> Iterator[_Record]:
            previous_end = reader.line_num
            while True:
                start = previous_end + 1 + line_offset
                try:
                    fields = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    previous_end = reader.line_num
                    yield _Record(start, [""] * width, f"line {start}: malformed CSV: {exc}")
                    continue
                previous_end = reader.line_num
                if not fields:
                    continue  # a blank line is not a record
                if len(fields) != width:
                    if width == 1:  # an unquoted address with commas in a one-column file
                        fields = [delimiter.join(fields)]
                    else:
                        message = f"line {start}: {len(fields)} fields where the header has {width}"
                        fields = (fields + [""] * width)[:width]
                        yield _Record(start, fields, message)
                        continue
                longest = max(map(len, fields))
                if longest > max_chars:
                    column = next(i for i, f in enumerate(fields) if len(f) == longest)
                    yield _Record(
                        start,
                        fields,
                        f"line {start}: field {header[column]!r} is {longest:,} characters "
                        f"long (limit {max_chars:,})",
                    )
                    continue
                yield _Record(start, fields)

        return columns, records()

    # --- resolving points and looking them up ----------------------------------------------------

    def _resolve(self, record: _Record, columns: Columns) -> bool:
        """Fill ``record.lat/lon`` (geocoding if needed); False, with ``record.error``, if not."""
        fields = record.fields
        if columns.lat is not None:
            lat_text, lon_text = fields[columns.lat], fields[columns.lon]  # type: ignore[index]
            if lat_text.strip() or lon_text.strip() or not columns.geocoded:
                try:
                    record.lat = _coordinate(lat_text, "latitude", 90.0)
                    record.lon = _coordinate(lon_text, "longitude", 180.0)
                except CoordinateError as exc:
                    record.error = f"line {record.line}: {exc}"
                    return False
                return True
        # Geocode: the address column, else the ZIP column (a row may fill either).
        query = fields[columns.address].strip() if columns.address is not None else ""
        if not query and columns.zip is not None:
            query = _zip_text(fields[columns.zip])
        if not query:
            what = "address" if columns.zip is None else "address or zip"
            if columns.address is None:
                what = "zip"
            record.error = f"line {record.line}: empty {what}"
            return False
        if "\ufffd" in query:
            record.error = f"line {record.line}: the text is not valid UTF-8"
            return False
        if self.geocoder is None:
            record.error = f"line {record.line}: no geocoder configured for addresses"
            return False
        try:
            location = self.geocoder.geocode(query)
        except CoverlookupError as exc:
            record.error = f"line {record.line}: {exc}"
            return False
        if location is None:
            record.error = f"line {record.line}: no location found for {query[:200]!r}"
            return False
        record.location = location
        record.lat, record.lon = location.lat, location.lon
        return True

    def _lookup_chunk(self, records: list[_Record], columns: Columns) -> None:
        self._lookup_resolved([r for r in records if r.error is None and self._resolve(r, columns)])

    def _lookup_resolved(self, todo: list[_Record]) -> None:
        if not todo:
            return
        lats = np.fromiter((r.lat for r in todo), dtype=np.float64, count=len(todo))
        lons = np.fromiter((r.lon for r in todo), dtype=np.float64, count=len(todo))
        try:
            results = self.index.lookup_many(lats, lons, **self.filters)
        except UsageError:
            raise  # a bad filter is the caller's mistake, the same for every row
        except Exception as exc:  # isolate the row that broke the vectorised call
            logger.warning("lookup_many failed on a chunk (%s); retrying point by point", exc)
            for record in todo:
                try:
                    record.matches = self.index.lookup(record.lat, record.lon, **self.filters)
                except UsageError:
                    raise
                except Exception as row_exc:
                    record.error = f"line {record.line}: lookup failed: {row_exc}"
            return
        for record, matches in zip(todo, results, strict=True):
            record.matches = matches

    # --- writing ---------------------------------------------------------------------------------

    def _cells_for(self, matches: list[Match]) -> tuple[str, str, str, str, str]:
        key = tuple(id(m.entry) for m in matches)
        cells = self._cells.get(key)
        if cells is None:
            names = _unique(
                m.entry.entity_name or (m.server.name if m.server else None) or "" for m in matches
            )
            keys = [m.entry.key for m in matches]
            capabilities = _unique(c for m in matches for c in m.entry.capabilities)
            commodities = _unique(c for m in matches for c in m.entry.commodity_types)
            cells = (
                str(len(matches)),
                MULTI_SEPARATOR.join(n for n in names if n),
                MULTI_SEPARATOR.join(keys),
                MULTI_SEPARATOR.join(capabilities),
                MULTI_SEPARATOR.join(commodities),
            )
            if len(self._cells) < 100_000:
                self._cells[key] = cells
        return cells

    def _csv_rows(self, records: list[_Record], columns: Columns) -> list[list[str]]:
        rows = []
        geocoded = columns.geocoded
        for record in records:
            if record.error is None and record.matches is not None:
                row = [*record.fields, *self._cells_for(record.matches), OK, ""]
            else:
                row = [*record.fields, "", "", "", "", "", ERROR, record.error or "not looked up"]
            if geocoded:
                loc = record.location
                if loc is None:
                    row += ["", "", "", ""]
                else:
                    row += [repr(loc.lat), repr(loc.lon), loc.precision, loc.provider]
            rows.append(row)
        return rows

    def _json_items(self, records: list[_Record], columns: Columns) -> Iterator[dict[str, Any]]:
        for record in records:
            item: dict[str, Any] = {
                "line": record.line,
                "input": dict(zip(columns.names, record.fields, strict=False)),
            }
            ok = record.error is None and record.matches is not None
            matches = record.matches if ok else []
            item["match_count"] = len(matches) if ok else None
            item["matches"] = [m.to_dict() for m in matches or ()]
            if record.location is not None:
                item["geocode"] = record.location.to_dict()
                item["approximate"] = record.location.approximate
            item["status"] = OK if ok else ERROR
            item["error"] = None if ok else (record.error or "not looked up")
            yield item

    # --- the run ---------------------------------------------------------------------------------

    def iter_output(
        self,
        source: IO[bytes] | IO[str] | str | os.PathLike[str],
        *,
        fmt: str = "csv",
        summary: BatchSummary | None = None,
        on_chunk: Any = None,
    ) -> Iterator[str]:
        """Yield the output text chunk by chunk (the header first for CSV)."""
        if fmt not in FORMATS:
            raise UsageError(f"unknown batch format {fmt!r}; use one of {', '.join(FORMATS)}")
        summary = summary if summary is not None else BatchSummary()
        started = time.perf_counter()
        text = open_text(source)
        columns, records = self._records(text, summary)
        if columns.problem:
            logger.warning("batch input: %s", columns.problem)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        if fmt == "csv":
            header = list(columns.names) + list(RESULT_COLUMNS)
            if columns.geocoded:
                header += GEOCODE_COLUMNS
            if columns.names:
                writer.writerow(header)
                yield _take(out)
        while True:
            chunk = list(itertools.islice(records, self.chunk_rows))
            if not chunk:
                break
            if columns.problem:
                for record in chunk:
                    if record.error is None:
                        record.error = f"line {record.line}: {columns.problem}"
            else:
                self._lookup_chunk(chunk, columns)
            if fmt == "csv":
                writer.writerows(self._csv_rows(chunk, columns))
                yield _take(out)
            else:
                yield "".join(
                    orjson.dumps(item, option=orjson.OPT_APPEND_NEWLINE).decode()
                    for item in self._json_items(chunk, columns)
                )
            for record in chunk:
                summary.rows += 1
                if record.error is None and record.matches is not None:
                    summary.ok += 1
                else:
                    summary.errors += 1
                    if len(summary.first_errors) < 10:
                        summary.first_errors.append(record.error or "not looked up")
                if record.location is not None:
                    summary.geocoded += 1
            summary.seconds = time.perf_counter() - started
            if on_chunk is not None:
                on_chunk(summary)
        summary.seconds = time.perf_counter() - started

    def run(
        self,
        source: IO[bytes] | IO[str] | str | os.PathLike[str],
        sink: IO[str],
        *,
        fmt: str = "csv",
        progress: Progress | None = None,
    ) -> BatchSummary:
        """Read ``source``, write results to ``sink``; returns the counts."""
        summary = BatchSummary()
        on_chunk = progress.update if progress is not None else None
        for text in self.iter_output(source, fmt=fmt, summary=summary, on_chunk=on_chunk):
            sink.write(text)
        if progress is not None:
            progress.finish(summary)
        return summary

    def iter_json(self, items: Iterable[Any]) -> Iterator[dict[str, Any]]:
        """Batch over already-parsed JSON items: ``{"lat":..,"lon":..}``, ``{"address":..}``, ..."""
        iterator = iter(enumerate(items, start=1))
        while True:
            chunk = list(itertools.islice(iterator, self.chunk_rows))
            if not chunk:
                return
            records: list[_Record] = []
            for number, item in chunk:
                record, columns = _json_record(number, item)
                if record.error is None:
                    self._resolve(record, columns)
                records.append(record)
            self._lookup_resolved([r for r in records if r.error is None])
            for (number, item), record in zip(chunk, records, strict=True):
                ok = record.error is None and record.matches is not None
                out: dict[str, Any] = {"row": number, "input": item}
                out["match_count"] = len(record.matches or ()) if ok else None
                out["matches"] = [m.to_dict() for m in record.matches or ()] if ok else []
                if record.location is not None:
                    out["geocode"] = record.location.to_dict()
                    out["approximate"] = record.location.approximate
                out["status"] = OK if ok else ERROR
                out["error"] = (
                    None
                    if ok
                    else (record.error or "not looked up").replace(
                        f"line {number}:", f"item {number}:"
                    )
                )
                yield out


def _json_record(number: int, item: Any) -> tuple[_Record, Columns]:
    if not isinstance(item, Mapping):
        columns = Columns(())
        return _Record(number, [], f"item {number}: expected an object"), columns
    names = [str(k) for k in item]
    values = []
    for value in item.values():
        if value is None:
            values.append("")
        elif isinstance(value, bool):
            values.append("not-a-number")
        else:
            values.append(value if isinstance(value, str) else repr(value))
    columns = find_columns(names)
    record = _Record(number, values)
    if columns.problem:
        record.error = f"item {number}: {columns.problem}"
    return record, columns


def _coordinate(text: str, name: str, limit: float) -> float:
    """One coordinate cell: a plain finite decimal in range (a decimal comma is accepted)."""
    try:
        value = float(text)
    except ValueError:
        stripped = text.strip()
        if not stripped:
            raise CoordinateError(f"empty {name}") from None
        # 36,74 from a locale that writes decimal commas (such files use ; as the delimiter)
        if stripped.count(",") == 1 and "." not in stripped:
            try:
                value = float(stripped.replace(",", "."))
            except ValueError:
                raise CoordinateError(f"{name} {stripped[:40]!r} is not a number") from None
        else:
            raise CoordinateError(f"{name} {stripped[:40]!r} is not a number") from None
    if not -limit <= value <= limit:  # also false for NaN
        raise CoordinateError(f"{name} {text.strip()[:40]} is outside ±{limit:g}")
    if "_" in text:
        raise CoordinateError(f"{name} {text.strip()[:40]!r} is not a number")
    return value


def _zip_text(text: str) -> str:
    """A ZIP cell; spreadsheets drop leading zeros (02108 -> 2108), so put them back."""
    value = text.strip()
    if value.isdigit() and 3 <= len(value) < 5:
        return value.zfill(5)
    return value


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _take(buffer: io.StringIO) -> str:
    value = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return value


class Progress:
    """A one-line progress display on a terminal: rows, rows/s and an ETA from bytes read."""

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        total_bytes: int | None = None,
        position: Any = None,
        min_interval_s: float = 0.25,
    ):
        self.stream = stream or sys.stderr
        self.total_bytes = total_bytes
        self.position = position  # callable -> bytes read so far
        self.min_interval_s = min_interval_s
        self._last = 0.0

    @classmethod
    def for_terminal(cls, path: str | None, binary: IO[bytes] | None) -> Progress | None:
        """A progress display if stderr is a terminal, else None (silent)."""
        if not sys.stderr.isatty():
            return None
        total = None
        if path and path != "-":
            try:
                total = os.path.getsize(path)
            except OSError:
                total = None
        position = binary.tell if binary is not None and binary.seekable() else None
        return cls(total_bytes=total, position=position)

    def update(self, summary: BatchSummary, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.min_interval_s:
            return
        self._last = now
        line = f"{summary.rows:,} rows  {summary.rows_per_s:,.0f} rows/s"
        if summary.errors:
            line += f"  {summary.errors:,} errors"
        if self.total_bytes and self.position is not None and summary.seconds > 0:
            try:
                done = self.position() / self.total_bytes
            except (OSError, ValueError):
                done = 0.0
            if 0 < done <= 1:
                eta = summary.seconds * (1 - done) / done
                line += f"  {done:.0%}  ETA {_duration(eta)}"
        self.stream.write("\r\x1b[K" + line)
        self.stream.flush()

    def finish(self, summary: BatchSummary) -> None:
        self.update(summary, force=True)
        self.stream.write("\n")
        self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
