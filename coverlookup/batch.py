"""Batch lookups: stream a CSV of sites through the index in bounded chunks, CSV or JSON Lines out.

Columns are found by header (CONTRACT "Batch CSV"): ``lat``/``latitude`` + ``lon``/``lng``/
``longitude``, or ``address``, or ``zip``/``postcode``. Every input record yields exactly one output
record, in order: the input record as it came (output keeps the input's delimiter), then
``match_count, entity_names, entry_keys, capabilities, commodity_types, status, error`` (and, when
rows are geocoded, where the geocoder put them). A bad row gets ``status=error`` and a message
naming its line; it never stops the run. Blank lines are not records and produce nothing (as in
pandas and most CSV tools).

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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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
_NO_MATCH_CELLS = ["0", "", "", "", "", OK, ""]


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


# A record as read: (line it starts on, its fields, why it failed or None, its text or None).
_Raw = tuple[int, list[str], str | None, str | None]


def open_text(source: IO[bytes] | IO[str] | str | os.PathLike[str]) -> IO[str]:
    """A text stream over a path or a binary/text stream: UTF-8 with or without a BOM, newline=''.

    A UTF-16 or UTF-32 byte order mark (Excel's "Unicode Text" export) selects that encoding.
    Undecodable bytes become U+FFFD so one bad byte fails its row, not the run.
    """
    if isinstance(source, io.TextIOBase):
        return source  # type: ignore[return-value]
    if isinstance(source, (str, os.PathLike)):
        source = open(source, "rb")  # the text wrapper owns and closes it
    encoding = _sniff_encoding(source)  # type: ignore[arg-type]
    return io.TextIOWrapper(source, encoding=encoding, errors="replace", newline="")  # type: ignore[arg-type]


_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)


def _sniff_encoding(raw: IO[bytes]) -> str:
    """The encoding a byte order mark announces (UTF-8 when there is none)."""
    head = b""
    peek = getattr(raw, "peek", None)
    if peek is not None:
        head = peek(4)[:4]
    elif raw.seekable():
        start = raw.tell()
        head = raw.read(4)
        raw.seek(start)
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding
    return "utf-8-sig"


class _Chunk:
    """One chunk's rows and, per row, its matches, error and geocode."""

    __slots__ = ("errors", "locations", "matches", "rows")

    def __init__(self, rows: list[_Raw]):
        self.rows = rows
        self.errors: list[str | None] = [error for _, _, error, _ in rows]
        self.matches: list[list[Match] | None] = [None] * len(rows)
        self.locations: list[Location | None] | None = None


class BatchRunner:
    """Runs batch files against one index (and, for address/ZIP files, one geocoder).

    One run at a time per runner (it keeps the current file's delimiter); make one per request.
    """

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
        if max_field_chars < 1:
            raise UsageError("max_field_chars must be at least 1")
        self.index = index
        if geocoder is not None and not isinstance(geocoder, CachingGeocoder):
            geocoder = CachingGeocoder(geocoder)
        self.geocoder = geocoder
        self.filters = {k: v for k, v in (filters or {}).items() if v is not None}
        self.chunk_rows = chunk_rows
        self.max_field_chars = max_field_chars
        # Rows with the same set of matches share their formatted cells (keyed by the entries'
        # ids: entries live as long as the index, so an id is never reused while cached).
        self._suffixes: dict[Any, str] = {}
        # Output is written in the input's delimiter, so records can be echoed as they came.
        self._delimiter = ","
        self._header_text = ""
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\n")

    # --- reading ---------------------------------------------------------------------------------

    def _records(self, text: IO[str], summary: BatchSummary) -> tuple[Columns, Iterator[_Raw]]:
        header_line = ""
        header_at = 0
        while not header_line.strip():
            header_line = text.readline(_SAMPLE_CHARS)
            header_at += 1
            if not header_line:
                return find_columns(()), iter(())
        delimiter = sniff_delimiter(header_line)
        summary.delimiter = delimiter
        if delimiter != self._delimiter:
            self._suffixes.clear()
            self._delimiter = delimiter
            self._writer = csv.writer(self._buffer, delimiter=delimiter, lineterminator="\n")
        if csv.field_size_limit() < CSV_FIELD_LIMIT:
            # Quoted records go through the csv module: let it read long fields, so they are
            # reported against max_field_chars by name rather than as a parser error.
            csv.field_size_limit(CSV_FIELD_LIMIT)
        header_text = header_line.rstrip("\r\n")
        try:
            header = _parse_record(header_text, delimiter)
        except csv.Error as exc:
            raise UsageError(f"line {header_at}: the header is not valid CSV: {exc}") from None
        self._header_text = header_text
        columns = find_columns(header)
        summary.mode = columns.mode
        return columns, self._iter_records(text, header, header_at)

    def _iter_records(self, text: IO[str], header: list[str], line_no: int) -> Iterator[_Raw]:
        """Records after the header: (start line, fields, error or None, raw text or None).

        A line without a quote character is split on the delimiter (what a CSV parser would do)
        and its text kept to be echoed as it came; a line with quotes goes to the csv module,
        joined with the following lines while a quoted field is open. An open quote that runs
        past a bound fails its first line only; the lines after it are read again as records.
        """
        delimiter = self._delimiter
        width = len(header)
        max_chars = self.max_field_chars
        open_limit = 2 * max_chars + 1024
        pending: list[str] = []
        pending_chars = 0
        quotes = 0
        start = line_no
        replay: list[str] = []
        # A line longer than any valid record (each field quoted, every quote doubled) and than
        # 4 Mi characters is not held in memory whole, and is an error of its own; shorter ones
        # are read as usual, so an over-long field is still named.
        line_limit = max(width * (2 * max_chars + 3) + 1024, 1 << 22)
        lines = _bounded_lines(text, line_limit)
        while True:
            if replay:
                line = replay.pop()
            else:
                line = next(lines, None)
                if line is None:
                    if len(pending) <= 1:
                        break
                    # The file ends inside a quote opened lines ago: that first line is the
                    # bad record; what follows it is read again on its own.
                    message = f"line {start}: a quoted field is never closed"
                    yield start, [""] * width, message, None
                    replay.extend(reversed(pending[1:]))
                    line_no = start
                    pending.clear()
                    pending_chars = quotes = 0
                    continue
            line_no += 1
            if not pending:
                start = line_no
                if type(line) is _TooLong:
                    message = (
                        f"line {start}: {line.length:,} characters long, over the limit of "
                        f"{line_limit:,} for a line; skipped"
                    )
                    yield start, [""] * width, message, None
                    continue
                if '"' not in line:
                    body = line.rstrip("\r\n")
                    if not body:
                        continue  # a blank line is not a record
                    fields = body.split(delimiter)
                    if len(fields) == width and len(body) <= max_chars:
                        yield start, fields, None, body
                    else:
                        yield self._checked(start, fields, header, body)
                    continue
            elif type(line) is _TooLong:  # no quoted field runs through such a line
                message = f"line {start}: a quoted field is not closed within the next lines"
                yield start, [""] * width, message, None
                replay.extend(reversed([*pending[1:], line]))
                line_no = start
                pending.clear()
                pending_chars = quotes = 0
                continue
            pending.append(line)
            pending_chars += len(line)
            quotes += line.count('"')
            if len(pending) > 1 and quotes % 2 and pending_chars <= open_limit:
                continue  # a quoted field is still open (an even count may close it)
            body = "".join(pending).rstrip("\r\n")
            try:
                fields = _parse_record(body, delimiter)
            except csv.Error as exc:
                if str(exc) != "unexpected end of data":
                    yield start, [""] * width, f"line {start}: malformed CSV: {exc}", None
                elif pending_chars <= open_limit:
                    continue  # the quoted field goes on into the next line
                else:
                    message = f"line {start}: a quoted field is not closed within the next lines"
                    yield start, [""] * width, message, None
                    replay.extend(reversed(pending[1:]))
                    line_no = start
                pending.clear()
                pending_chars = quotes = 0
                continue
            pending.clear()
            pending_chars = quotes = 0
            yield self._checked(start, fields, header, body)
        if pending:  # the last line ends inside a quoted field: a truncated last record
            message = f"line {start}: the file ends inside a quoted field (truncated?)"
            yield start, [""] * width, message, None

    def _checked(self, start: int, fields: list[str], header: list[str], body: str) -> _Raw:
        """A record that needs a closer look: its field count and its field lengths."""
        width = len(header)
        if len(fields) != width:
            if width == 1:  # an unquoted address with commas in a one-column file
                return start, [self._delimiter.join(fields)], None, None
            message = f"line {start}: {len(fields)} fields where the header has {width}"
            return start, (fields + [""] * width)[:width], message, None
        longest = max(map(len, fields))
        if longest > self.max_field_chars:
            name = header[[len(f) for f in fields].index(longest)]
            message = (
                f"line {start}: field {name!r} is {longest:,} characters long "
                f"(limit {self.max_field_chars:,})"
            )
            return start, fields, message, body
        return start, fields, None, body

    # --- resolving points and looking them up ----------------------------------------------------

    def _lookup(self, chunk: _Chunk, columns: Columns) -> None:
        """Resolve every good row of the chunk to a point, then look all of them up at once."""
        rows, errors = chunk.rows, chunk.errors
        positions: list[int] = []
        lats: list[float] = []
        lons: list[float] = []
        lat_i, lon_i = columns.lat, columns.lon
        geocoded = columns.geocoded
        if lat_i is not None and not geocoded and self._lookup_clean(chunk, lat_i, lon_i):
            return
        if geocoded:
            chunk.locations = [None] * len(rows)
        for i, (line, fields, error, _) in enumerate(rows):
            if error is not None:
                continue
            if lat_i is not None:
                lat_text, lon_text = fields[lat_i], fields[lon_i]  # type: ignore[index]
                if not geocoded or lat_text.strip() or lon_text.strip():
                    # The common case first, cheaply; anything odd gets the careful parser.
                    try:
                        lat, lon = float(lat_text), float(lon_text)
                        fast = -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0
                    except ValueError:
                        fast = False
                    odd = "_" in lat_text or "_" in lon_text or not (lat_text + lon_text).isascii()
                    if not fast or odd:
                        try:
                            lat = _coordinate(lat_text, "latitude", 90.0)
                            lon = _coordinate(lon_text, "longitude", 180.0)
                        except CoordinateError as exc:
                            errors[i] = f"line {line}: {exc}"
                            continue
                    positions.append(i)
                    lats.append(lat)
                    lons.append(lon)
                    continue
            location, error = self._geocode(line, fields, columns)
            if location is None:
                errors[i] = error
                continue
            chunk.locations[i] = location  # type: ignore[index]
            positions.append(i)
            lats.append(location.lat)
            lons.append(location.lon)
        if positions:
            found = self._lookup_points(lats, lons, [rows[i][0] for i in positions])
            for i, result in zip(positions, found, strict=True):
                if isinstance(result, str):
                    errors[i] = result
                else:
                    chunk.matches[i] = result

    def _lookup_clean(self, chunk: _Chunk, lat_i: int, lon_i: int) -> bool:
        """The usual chunk, all rows well formed and in range: parse and look up in one go.

        False (and nothing done) when any row needs the careful, row-by-row path.
        """
        rows = chunk.rows
        if chunk.errors.count(None) != len(rows):
            return False
        lat_texts = [fields[lat_i] for _, fields, _, _ in rows]
        lon_texts = [fields[lon_i] for _, fields, _, _ in rows]
        # numpy (like float()) reads "4_3.85" as 43.85; _coordinate refuses digit separators,
        # so such a chunk takes the careful path and the row gets the same answer either way.
        joined = "".join(lat_texts) + "".join(lon_texts)
        if "_" in joined or not joined.isascii():  # float() also reads '٣' and '１'
            return False
        try:
            lats = np.array(lat_texts, dtype=np.float64)
            lons = np.array(lon_texts, dtype=np.float64)
        except ValueError:
            return False
        # NaN fails these comparisons too.
        if not ((np.abs(lats) <= 90.0).all() and (np.abs(lons) <= 180.0).all()):
            return False
        found = self._lookup_points(lats, lons, [line for line, _, _, _ in rows])
        for i, result in enumerate(found):
            if isinstance(result, str):
                chunk.errors[i] = result
            else:
                chunk.matches[i] = result
        return True

    def _geocode(
        self, line: int, fields: list[str], columns: Columns
    ) -> tuple[Location | None, str | None]:
        # The address column, else the ZIP column (a row may fill either).
        query = fields[columns.address].strip() if columns.address is not None else ""
        if not query and columns.zip is not None:
            query = _zip_text(fields[columns.zip])
        if not query:
            if columns.address is None:
                what = "zip"
            elif columns.zip is None:
                what = "address"
            else:
                what = "address and zip"
            if columns.lat is not None:
                what = f"coordinates and {what}"
            return None, f"line {line}: empty {what}"
        if "\ufffd" in query:
            return None, f"line {line}: the text is not valid UTF-8"
        if self.geocoder is None:
            return None, f"line {line}: no geocoder configured for addresses"
        try:
            location = self.geocoder.geocode(query)
        except CoverlookupError as exc:
            return None, f"line {line}: {exc}"
        if location is None:
            return None, f"line {line}: no location found for {query[:200]!r}"
        return location, None

    def _lookup_points(
        self, lats: Sequence[float], lons: Sequence[float], lines: list[int]
    ) -> list[list[Match] | str]:
        """Matches per point (vectorised), or an error message for a point that failed."""
        try:
            return self.index.lookup_many(
                np.asarray(lats, dtype=np.float64),
                np.asarray(lons, dtype=np.float64),
                **self.filters,
            )
        except UsageError:
            raise  # a bad filter is the caller's mistake, the same for every row
        except Exception as exc:  # isolate the row that broke the vectorised call
            logger.warning("lookup_many failed on a chunk (%s); retrying point by point", exc)
        out: list[list[Match] | str] = []
        for lat, lon, line in zip(lats, lons, lines, strict=True):
            try:
                out.append(self.index.lookup(float(lat), float(lon), **self.filters))
            except UsageError:
                raise
            except Exception as exc:
                out.append(f"line {line}: lookup failed: {exc}")
        return out

    # --- writing ---------------------------------------------------------------------------------

    def _serialize(self, cells: Sequence[str]) -> str:
        """Cells as one CSV line (no line end), quoted where needed, in the input's delimiter."""
        self._writer.writerow(cells)
        return _take(self._buffer)[:-1]

    def _suffix_for(self, matches: list[Match]) -> str:
        """The result cells of a row with these matches, as CSV text starting with a delimiter."""
        if not matches:
            key: Any = ()
        elif len(matches) == 1:
            key = id(matches[0].entry)
        else:
            key = tuple([id(m.entry) for m in matches])
        suffix = self._suffixes.get(key)
        if suffix is None:
            names = _unique(
                m.entry.entity_name or (m.server.name if m.server else None) or "" for m in matches
            )
            cells = [
                str(len(matches)),
                MULTI_SEPARATOR.join(n for n in names if n),
                MULTI_SEPARATOR.join(m.entry.key for m in matches),
                MULTI_SEPARATOR.join(_unique(c for m in matches for c in m.entry.capabilities)),
                MULTI_SEPARATOR.join(_unique(c for m in matches for c in m.entry.commodity_types)),
                OK,
                "",
            ]
            suffix = self._delimiter + self._serialize(cells)
            if len(self._suffixes) < 100_000:
                self._suffixes[key] = suffix
        return suffix

    def _csv_text(self, chunk: _Chunk) -> str:
        """The chunk's output lines: each input record as it came, then its result cells."""
        delimiter = self._delimiter
        suffix_for = self._suffix_for
        locations = chunk.locations
        parts = []
        for i, ((_, fields, _, raw), error, matches) in enumerate(
            zip(chunk.rows, chunk.errors, chunk.matches, strict=True)
        ):
            prefix = raw if raw is not None else self._serialize(fields)
            if error is None and matches is not None:
                suffix = suffix_for(matches)
            else:
                failed = ["", "", "", "", "", ERROR, error or "not looked up"]
                suffix = delimiter + self._serialize(failed)
            if locations is not None:
                loc = locations[i]
                if loc is None:
                    suffix += delimiter * 4
                else:
                    place = (repr(loc.lat), repr(loc.lon), loc.precision, loc.provider)
                    suffix += delimiter + self._serialize(place)
            parts.append(prefix + suffix + "\n")
        return "".join(parts)

    def _json_items(self, chunk: _Chunk, columns: Columns) -> Iterator[dict[str, Any]]:
        locations = chunk.locations or [None] * len(chunk.rows)
        for (line, fields, _, _), error, matches, location in zip(
            chunk.rows, chunk.errors, chunk.matches, locations, strict=True
        ):
            yield _result(
                {"line": line, "input": dict(zip(columns.names, fields, strict=False))},
                error,
                matches,
                location,
            )

    # --- the run ---------------------------------------------------------------------------------

    def iter_output(
        self,
        source: IO[bytes] | IO[str] | str | os.PathLike[str],
        *,
        fmt: str = "csv",
        summary: BatchSummary | None = None,
        on_chunk: Callable[[BatchSummary], None] | None = None,
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
        if fmt == "csv" and columns.names:
            names = list(RESULT_COLUMNS) + (list(GEOCODE_COLUMNS) if columns.geocoded else [])
            yield self._header_text + self._delimiter + self._serialize(names) + "\n"
        while True:
            chunk = _Chunk(list(itertools.islice(records, self.chunk_rows)))
            if not chunk.rows:
                break
            if columns.problem:
                chunk.errors = [
                    error or f"line {line}: {columns.problem}" for line, _, error, _ in chunk.rows
                ]
            else:
                self._lookup(chunk, columns)
            if fmt == "csv":
                yield self._csv_text(chunk)
            else:
                yield "".join(
                    orjson.dumps(item, option=orjson.OPT_APPEND_NEWLINE).decode()
                    for item in self._json_items(chunk, columns)
                )
            summary.rows += len(chunk.rows)
            failed = [e for e in chunk.errors if e is not None]
            summary.errors += len(failed)
            summary.ok += len(chunk.rows) - len(failed)
            summary.first_errors.extend(failed[: 10 - len(summary.first_errors)])
            if chunk.locations is not None:
                summary.geocoded += sum(loc is not None for loc in chunk.locations)
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
        """Batch over parsed JSON objects: ``{"lat", "lon"}``, ``{"address"}`` or ``{"zip"}``.

        One result per item, in order, each with its 1-based ``row`` number.
        """
        numbered = enumerate(items, start=1)
        while True:
            part = list(itertools.islice(numbered, self.chunk_rows))
            if not part:
                return
            # Items may differ in their keys: resolve them one by one, look them up together.
            chunk = _Chunk([])
            chunk.locations = []
            lats: list[float] = []
            lons: list[float] = []
            positions: list[int] = []
            for i, (number, item) in enumerate(part):
                location, lat_lon, error = self._json_point(number, item)
                chunk.errors.append(error)
                chunk.matches.append(None)
                chunk.locations.append(location)
                if lat_lon is not None:
                    positions.append(i)
                    lats.append(lat_lon[0])
                    lons.append(lat_lon[1])
            if positions:
                found = self._lookup_points(lats, lons, [part[i][0] for i in positions])
                for i, result in zip(positions, found, strict=True):
                    if isinstance(result, str):
                        chunk.errors[i] = result.replace("line ", "item ", 1)
                    else:
                        chunk.matches[i] = result
            for (number, item), error, matches, location in zip(
                part, chunk.errors, chunk.matches, chunk.locations, strict=True
            ):
                yield _result({"row": number, "input": item}, error, matches, location)

    def _json_point(
        self, number: int, item: Any
    ) -> tuple[Location | None, tuple[float, float] | None, str | None]:
        if not isinstance(item, Mapping):
            return None, None, f"item {number}: expected an object, got {type(item).__name__}"
        names = [str(k) for k in item]
        values = [
            "" if v is None else v if isinstance(v, str) else _json_text(v) for v in item.values()
        ]
        columns = find_columns(names)
        if columns.problem:
            problem = columns.problem.replace("the header has", "the object has")
            return None, None, f"item {number}: {problem}"
        if columns.lat is not None:
            lat_text, lon_text = values[columns.lat], values[columns.lon]  # type: ignore[index]
            if not columns.geocoded or lat_text.strip() or lon_text.strip():
                try:
                    lat = _coordinate(lat_text, "latitude", 90.0)
                    lon = _coordinate(lon_text, "longitude", 180.0)
                except CoordinateError as exc:
                    return None, None, f"item {number}: {exc}"
                return None, (lat, lon), None
        location, error = self._geocode(number, values, columns)
        if location is None:
            return None, None, (error or "").replace(f"line {number}:", f"item {number}:", 1)
        return location, (location.lat, location.lon), None


def _result(
    item: dict[str, Any],
    error: str | None,
    matches: list[Match] | None,
    location: Location | None,
) -> dict[str, Any]:
    ok = error is None and matches is not None
    item["match_count"] = len(matches) if ok and matches is not None else None
    item["matches"] = [m.to_dict() for m in matches] if ok and matches is not None else []
    if location is not None:
        item["geocode"] = location.to_dict()
        item["approximate"] = location.approximate
    item["status"] = OK if ok else ERROR
    item["error"] = None if ok else (error or "not looked up")
    return item


def _json_text(value: Any) -> str:
    # A boolean is not a coordinate (and float(True) would say it is 1.0).
    if isinstance(value, bool):
        return "true" if value else "false"  # as the JSON said it; never a number
    return repr(value)


class _TooLong(str):
    """The start of a line longer than the reader's bound, which read the rest and dropped it;
    ``length`` is the whole line's."""

    length: int


def _bounded_lines(text: IO[str], limit: int) -> Iterator[str]:
    """The lines of ``text`` (ending included), none held longer than ``limit`` characters and
    its ending: a longer line is read to its end without being kept, and comes as a
    :class:`_TooLong`."""
    size = limit + 1
    carry: list[str] = []

    def read() -> str:
        part = carry.pop() if carry else text.readline(size)
        if len(part) == size and part[-1] == "\r":  # the bound may fall inside a \r\n
            after = text.readline(size)
            if after == "\n":
                part += after
            elif after:
                carry.append(after)
        return part

    while True:
        line = read()
        if not line:
            return
        if len(line) <= limit or line[-1] in "\r\n":
            yield line
            continue
        length, rest = len(line), line
        while rest and rest[-1] not in "\r\n":
            rest = read()
            length += len(rest)
        too_long = _TooLong(line[:80] + "\n")
        too_long.length = length - (len(rest) - len(rest.rstrip("\r\n")))
        yield too_long


def _parse_record(text: str, delimiter: str) -> list[str]:
    """One CSV record (which may hold line breaks inside quotes); csv.Error if malformed."""
    rows = list(csv.reader([text], delimiter=delimiter, strict=True))
    if len(rows) != 1:
        raise csv.Error(f"expected one record, found {len(rows)}")
    return rows[0]


def _coordinate(text: str, name: str, limit: float) -> float:
    """One coordinate cell: a plain finite decimal in range (a decimal comma is accepted)."""
    stripped = text.strip()  # float() strips any Unicode space too (a spreadsheet's NBSP)
    if "_" in stripped or not stripped.isascii():  # float() reads 1_000 and Unicode digits
        raise CoordinateError(f"{name} {stripped[:40]!r} is not a number")
    try:
        value = float(text)
    except ValueError:
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
        raise CoordinateError(f"{name} {stripped[:40]} is outside ±{limit:g}")
    return value


def _zip_text(text: str) -> str:
    """A ZIP cell; spreadsheets drop leading zeros (02108 -> 2108), so put them back."""
    value = text.strip()
    whole, dot, zeros = value.partition(".")
    if dot and whole.isdigit() and 3 <= len(whole) <= 5 and zeros and set(zeros) == {"0"}:
        value = whole  # a ZIP column saved as numbers: 2108.0 -> 2108
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
        line = f"{summary.rows:,} rows in {_duration(summary.seconds)}"
        line += f"  {summary.rows_per_s:,.0f} rows/s"
        if summary.errors:
            line += f"  {summary.errors:,} errors"
        self.stream.write("\r\x1b[K" + line + "\n")
        self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
