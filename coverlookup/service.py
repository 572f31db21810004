"""The facade the web layer, the CLI and batch share: parse a query, ask the index, shape answers.

The service holds the current :class:`~coverlookup.index.CoverageIndex`. An index is immutable, so a
refresh builds a new one and swaps the reference; a caller takes ``service.index`` once and uses
that object for the whole request, so every answer comes wholly from one index.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import datetime as dt
import functools
import logging
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import orjson

from coverlookup.errors import CoordinateError, CoverlookupError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from coverlookup.geocoding import Geocoder
    from coverlookup.index import CoverageIndex
    from coverlookup.model import Match

log = logging.getLogger(__name__)

FILTERS = ("commodity", "capability", "infrastructure", "type")
_FILTER_SET = frozenset(FILTERS)
MAX_NEAREST_KM = 500.0
MAX_FILTER_CHARS = 200  # capability and type names are short; an answer echoes the filters
NEAREST_LIMIT = 10
# Address answers coarser than a street address also list territories this close as candidates:
# a ZIP or city centroid can sit in a different utility than the house.
DEFAULT_CANDIDATE_KM = 10.0
MAX_ADDRESS_CHARS = 1000

# Plain decimal numbers only: float() would also take "nan", "inf", "1_000" and " 12 ".
_DIGITS = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"  # ASCII: \d would take any Unicode digit
_NUMBER = re.compile(rf"[+-]?{_DIGITS}(?:[eE][+-]?[0-9]+)?")

# Returns a new index, or None when the source has not changed since the last load.
IndexLoader = Callable[[], Awaitable["CoverageIndex | None"]]


class NotAvailableError(CoverlookupError):
    """A feature this build of the service does not offer (yet)."""

    code = "not_implemented"


class NotReadyError(CoverlookupError):
    """No index is loaded yet (the first crawl of ``--seed`` is still running)."""

    code = "not_ready"


def parse_number(text: str | None, name: str) -> float:
    """A query-string number; anything but a plain finite decimal is a CoordinateError."""
    if text is None or text == "":
        raise CoordinateError(f"{name} is required")
    if not _NUMBER.fullmatch(text):
        raise CoordinateError(f"{name} must be a decimal number, got {text[:40]!r}")
    value = float(text)
    if not math.isfinite(value):
        raise CoordinateError(f"{name} is out of range: {text[:40]}")
    return value


# _NUMBER without '+': in a raw query string '+' is a space, which the general parser refuses.
_PLAIN_NUMBER = rf"-?{_DIGITS}(?:[eE]-?[0-9]+)?"
_LAT_LON = re.compile(rf"lat=({_PLAIN_NUMBER})&lon=({_PLAIN_NUMBER})")
_NO_FILTERS: Mapping[str, str | None] = MappingProxyType({})


def plain_point_query(raw_query: str) -> Query | None:
    """The query of a raw query string that is exactly ``lat=<decimal>&lon=<decimal>``, in range
    (most lookups), or None for anything else, which the general parser answers with its
    messages. One regular expression instead of splitting, checking names and parsing each
    number: this is on every lookup's path."""
    found = _LAT_LON.fullmatch(raw_query)
    if found is None:
        return None
    lat, lon = float(found[1]), float(found[2])
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):  # also false for 1e400 (inf)
        return None
    return Query(lat, lon, _NO_FILTERS)


def check_point(lat: float, lon: float) -> None:
    for name, value, limit in (("lat", lat, 90.0), ("lon", lon, 180.0)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CoordinateError(f"{name} must be a number, got {type(value).__name__}")
        if not math.isfinite(value):
            raise CoordinateError(f"{name} must be finite, got {value}")
        if abs(value) > limit:
            raise CoordinateError(f"{name} must be between -{limit:g} and {limit:g}, got {value}")


@dataclass(frozen=True, slots=True)
class Query:
    """One point lookup: where, which filters, and how far to look when nothing matches."""

    lat: float
    lon: float
    filters: Mapping[str, str | None]
    nearest_km: float | None = None

    @classmethod
    def make(
        cls,
        lat: float,
        lon: float,
        *,
        nearest_km: float | None = None,
        **filters: str | None,
    ) -> Query:
        # On every request's path: plain comparisons first, the helpful messages only on failure.
        if not (
            type(lat) is float
            and type(lon) is float
            and -90.0 <= lat <= 90.0
            and -180.0 <= lon <= 180.0
        ):
            check_point(lat, lon)
        for name, value in filters.items():
            if name not in _FILTER_SET:
                raise UsageError(f"unknown filter {name!r}; known: {', '.join(FILTERS)}")
            if value is not None and (not isinstance(value, str) or not value):
                raise UsageError(f"{name} must be a non-empty string")
            if value is not None and len(value) > MAX_FILTER_CHARS:
                raise UsageError(
                    f"{name} is {len(value)} characters long (limit {MAX_FILTER_CHARS})"
                )
        if nearest_km is not None and not (0 < nearest_km <= MAX_NEAREST_KM):
            raise UsageError(f"nearest_km must be above 0 and at most {MAX_NEAREST_KM:g}")
        return cls(lat=float(lat), lon=float(lon), filters=filters, nearest_km=nearest_km)


@dataclass(slots=True)
class RefreshState:
    """What the background refresh has done so far (shown in /v1/status and /metrics)."""

    refreshes: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    last_attempt: float | None = None
    last_success: float | None = None
    last_error: str | None = None

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        self.consecutive_failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"

    def succeeded(self, *, new: bool) -> None:
        """An attempt that worked; ``new``: it produced a new index (or snapshot)."""
        self.consecutive_failures = 0
        self.last_error = None
        if new:
            self.refreshes += 1
            self.last_success = time.time()

    def to_dict(self) -> dict[str, Any]:
        return {
            "refreshes": self.refreshes,
            "failures": self.failures,
            "consecutive_failures": self.consecutive_failures,
            "last_attempt": _iso(self.last_attempt),
            "last_success": _iso(self.last_success),
            "last_error": self.last_error,
        }


CRAWL_STATE_FILE = "crawl-state.json"


def write_crawl_state(root: str | Path, state: RefreshState) -> None:
    """Record the crawler's refresh state in its snapshot root, for the workers that serve it
    (written aside and renamed: a reader sees the old record or the new one)."""
    path = Path(root) / CRAWL_STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)  # a first crawl that failed wrote nothing yet
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(orjson.dumps({**dataclasses.asdict(state), "pid": os.getpid()}))
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def read_crawl_state(root: str | Path) -> RefreshState | None:
    """The record :func:`write_crawl_state` left in ``root``, or None if there is none yet (a
    record that does not parse is logged and treated as none)."""
    path = Path(root) / CRAWL_STATE_FILE
    try:
        raw = orjson.loads(path.read_bytes())
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        state = RefreshState()
        for name in ("refreshes", "failures", "consecutive_failures"):
            value = raw.get(name, 0)
            if type(value) is not int or value < 0:
                raise ValueError(f"{name} is {value!r}, not a count")
            setattr(state, name, value)
        for name in ("last_attempt", "last_success"):
            value = raw.get(name)
            if value is not None and (type(value) not in (int, float) or not 0 <= value < 1e11):
                raise ValueError(f"{name} is {value!r}, not a time")
            setattr(state, name, value)
        error = raw.get("last_error")
        if error is not None and not isinstance(error, str):
            raise ValueError(f"last_error is {error!r}, not text")
        state.last_error = error
        return state
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("unreadable crawl state %s: %s", path, exc)
        return None


class LookupService:
    """Holds the current index and answers lookups from it."""

    def __init__(
        self,
        index: CoverageIndex | None = None,
        *,
        loader: IndexLoader | None = None,
        source: str = "demo",
        geocoder: Geocoder | None = None,
        candidate_km: float = DEFAULT_CANDIDATE_KM,
    ):
        self._index = index
        self.loader = loader
        self.source = source
        self._geocoder = geocoder
        self.candidate_km = candidate_km
        self.refresh_state = RefreshState()
        # Set when another process crawls into a snapshot root and records its state there.
        self.crawl_root: str | None = None
        self._refresh_lock = asyncio.Lock()
        self._by_server: tuple[Any, dict[str, list[Any]]] | None = None
        self._static: tuple[Any, dict[str, dict[str, Any]]] | None = None
        self._pieces: tuple[Any, dict[int, tuple[bytes, bytes]], bytes] | None = None
        # Called with each index swapped in (the server announces its first one).
        self.on_swap: Callable[[CoverageIndex], None] | None = None

    # --- the index -----------------------------------------------------------------------------

    @property
    def index(self) -> CoverageIndex:
        index = self._index
        if index is None:
            raise NotReadyError("no coverage index is loaded yet; try again shortly")
        return index

    @property
    def ready(self) -> bool:
        return self._index is not None

    def swap(self, index: CoverageIndex) -> None:
        """Publish a new index; requests holding the old one finish on it."""
        self._index = index  # a single reference store: atomic for every reader
        log.info("serving snapshot %s (%s)", index.snapshot_id, index.created)
        if self.on_swap is not None:
            self.on_swap(index)

    async def refresh(self) -> bool:
        """Build a new index with the loader and swap it in; on failure keep the old one."""
        if self.loader is None:
            raise UsageError("this service has no refresh source (start it with --seed)")
        state = self.refresh_state
        async with self._refresh_lock:
            state.last_attempt = time.time()
            try:
                index = await self.loader()
            except Exception as exc:  # any failure must leave the current index serving
                state.failed(exc)
                log.warning("refresh failed, still serving the previous index: %s", exc)
                return False
            if index is not None:  # None: the source has nothing new; keep serving what we have
                self.swap(index)
            state.succeeded(new=index is not None)
            return True

    async def refresh_forever(self, interval_s: float) -> None:
        """Refresh every ``interval_s`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            await self.refresh()

    # --- answers ---------------------------------------------------------------------------------

    def lookup(self, query: Query, *, index: CoverageIndex | None = None) -> dict[str, Any]:
        """The contract's lookup answer for one point (``nearest`` filled when nothing matches)."""
        index = index or self.index
        filters = {k: v for k, v in query.filters.items() if v is not None}
        matches = index.lookup(query.lat, query.lon, **filters)
        answer: dict[str, Any] = {
            "query": {"lat": query.lat, "lon": query.lon, **filters},
            "matches": self._match_dicts(index, matches),
        }
        if query.nearest_km is not None:
            answer["query"]["nearest_km"] = query.nearest_km
            nearest = []
            if not matches:
                nearest = index.nearest(
                    query.lat, query.lon, query.nearest_km, limit=NEAREST_LIMIT, **filters
                )
            answer["nearest"] = [m.to_dict() for m in nearest]
        answer["snapshot"] = {"id": index.snapshot_id, "created": index.created}
        return answer

    def _match_dicts(self, index: CoverageIndex, matches: list[Match]) -> list[dict[str, Any]]:
        """``Match.to_dict()`` for point matches, with each entry's fixed part built once per
        index: only ``boundary_distance_m`` differs from one point to the next."""
        cached = self._static
        if cached is None or cached[0] is not index:
            cached = self._static = (index, {})
        static = cached[1]
        out = []
        for match in matches:
            base = static.get(match.entry.key)
            if base is None:
                out.append(match.to_dict())
                if match.distance_m is None:
                    static[match.entry.key] = out[-1].copy()
                continue
            item = base.copy()
            distance = match.boundary_distance_m
            item["boundary_distance_m"] = None if distance is None else round(distance, 1)
            out.append(item)
        return out

    def lookup_json_many(
        self, queries: Sequence[Query], *, index: CoverageIndex | None = None
    ) -> list[bytes | Exception]:
        """``orjson.dumps(self.lookup(query))`` of each query, byte for byte, all answered from one
        index: the HTTP API's hot path.

        The boundary distances of all their matches are measured in one vectorised search
        (:meth:`CoverageIndex.boundary_distances`), and each territory's match JSON is serialised
        once per index, split around ``boundary_distance_m``: a query costs its point lookup, its
        share of the search and a few byte joins. A query that fails gets its error in its
        place; the others are answered.
        """
        index = index or self.index
        cached = self._pieces
        if cached is None or cached[0] is not index:
            snapshot = orjson.dumps({"id": index.snapshot_id, "created": index.created})
            cached = self._pieces = (index, {}, b'],"snapshot":' + snapshot + b"}")
        pieces, tail = cached[1], cached[2]
        dumps = orjson.dumps
        # Queries with no options (most of them) are located in one call.
        plain = [i for i, q in enumerate(queries) if not q.filters and q.nearest_km is None]
        located: dict[int, list[int]] = {}
        if plain:
            try:
                found_lists = index.covering_many(
                    [queries[i].lat for i in plain], [queries[i].lon for i in plain]
                )
                located = dict(zip(plain, found_lists, strict=True))
            except Exception:  # each query below then meets its own error, if it has one
                located = {}
        plans: list[Any] = []  # per query: its answer or error, or (head, territories, offset)
        territories: list[int] = []
        lons: list[float] = []
        lats: list[float] = []
        for i, query in enumerate(queries):
            try:
                found = located.get(i)
                if found is not None:
                    head = dumps({"lat": query.lat, "lon": query.lon})
                elif query.nearest_km is not None:  # rare, and may search: the general path
                    plans.append(dumps(self.lookup(query, index=index)))
                    continue
                else:
                    filters = {k: v for k, v in query.filters.items() if v is not None}
                    found = index.covering(query.lat, query.lon, **filters)
                    head = dumps({"lat": query.lat, "lon": query.lon, **filters})
            except Exception as exc:  # this query's own error; the others are answered
                plans.append(exc)
                continue
            plans.append((head, found, len(territories)))
            if found:
                n = len(found)
                territories += found
                lons += [query.lon] * n
                lats += [query.lat] * n
        measured: list[float | None] | None
        try:
            measured = index.boundary_distances(territories, lons, lats)
            if len(measured) != len(territories):
                raise RuntimeError(f"{len(measured)} distances for {len(territories)} matches")
        except Exception:
            log.exception("boundary distances of a batch failed; measuring its queries one by one")
            measured = None
        out: list[bytes | Exception] = []
        for query, plan in zip(queries, plans, strict=True):
            if type(plan) is not tuple:
                out.append(plan)
                continue
            try:
                if measured is None:
                    out.append(dumps(self.lookup(query, index=index)))
                    continue
                head, found, offset = plan
                parts = []
                for t in found:
                    around = pieces.get(t)
                    if around is None:
                        around = pieces[t] = _split_at_distance(index.territory_match(t))
                    distance = measured[offset]
                    offset += 1
                    parts.append(
                        around[0]
                        + (b"null" if distance is None else dumps(round(distance, 1)))
                        + around[1]
                    )
                out.append(b'{"query":' + head + b',"matches":[' + b",".join(parts) + tail)
            except Exception as exc:
                out.append(exc)
        return out

    @property
    def geocoder(self) -> Geocoder:
        """The geocoder for addresses (built on first use: the default is the offline one)."""
        if self._geocoder is None:
            from coverlookup.geocoding import build_geocoder

            self._geocoder = build_geocoder()
        return self._geocoder

    def lookup_address(
        self,
        address: str,
        *,
        nearest_km: float | None = None,
        index: CoverageIndex | None = None,
        **filters: str | None,
    ) -> dict[str, Any]:
        """Geocode ``address``, then answer as :meth:`lookup` does, plus ``geocode``,
        ``approximate`` and, when approximate, ``candidates`` within ``candidate_km``.

        Geocoding may block on the network (online providers): async callers run this in a thread.
        """
        from coverlookup.geocoding import require_location

        if not isinstance(address, str) or not address.strip():
            raise UsageError("address must be a non-empty string")
        if len(address) > MAX_ADDRESS_CHARS:
            raise UsageError(f"address is {len(address)} characters (limit {MAX_ADDRESS_CHARS})")
        index = index or self.index
        Query.make(0.0, 0.0, nearest_km=nearest_km, **filters)  # bad options: before geocoding
        location = require_location(self.geocoder, address)
        query = Query.make(location.lat, location.lon, nearest_km=nearest_km, **filters)
        answer = self.lookup(query, index=index)
        answer["query"] = {"address": address, **answer["query"]}
        answer["geocode"] = location.to_dict()
        answer["approximate"] = location.approximate
        candidates: list[dict[str, Any]] = []
        if location.approximate and self.candidate_km > 0:
            answer["query"]["candidate_km"] = self.candidate_km
            inside = {m["key"] for m in answer["matches"]}
            active = {k: v for k, v in query.filters.items() if v is not None}
            near = index.nearest(
                location.lat, location.lon, self.candidate_km, limit=NEAREST_LIMIT, **active
            )
            candidates = [m.to_dict() for m in near if m.entry.key not in inside]
        answer["candidates"] = candidates
        return answer

    def servers(self, *, limit: int = 1000, offset: int = 0) -> dict[str, Any]:
        index = self.index
        by_server = self._entries_by_server(index)
        ordered = sorted(index.servers.values(), key=lambda s: (s.name or "", s.metadata_url))
        page = ordered[offset : offset + limit]
        nxt = offset + limit if offset + limit < len(ordered) else None
        return {
            "servers": [
                {**s.to_dict(), "entry_count": len(by_server.get(s.metadata_url, ()))} for s in page
            ],
            "total": len(ordered),
            "offset": offset,
            "limit": limit,
            "next_offset": nxt,
        }

    def server(self, server_id: str) -> dict[str, Any]:
        index = self.index
        server = index.server(server_id)
        entries = self._entries_by_server(index).get(server.metadata_url, ())
        return {**server.to_dict(), "entries": [_entry_summary(e) for e in entries]}

    def entry(self, key: str) -> dict[str, Any]:
        from coverlookup.model import server_id_for

        entry = self.index.entry(key)
        return {**entry.to_dict(), "server_id": server_id_for(entry.server_url)}

    def _entries_by_server(self, index: CoverageIndex) -> Mapping[str, list[Any]]:
        cached = self._by_server
        if cached is not None and cached[0] is index:
            return cached[1]
        grouped: dict[str, list[Any]] = {}
        for entry in index.entries.values():
            grouped.setdefault(entry.server_url, []).append(entry)
        self._by_server = (index, grouped)
        return grouped

    def refresh_summary(self) -> RefreshState:
        """The refreshes /v1/status and /metrics report: this service's own or, when another
        process crawls for it (``serve --workers`` with seeds), the crawler's record, the same in
        every worker, with this process's failure to load the crawler's latest snapshot if any
        (its failures while the first crawl runs are only waiting)."""
        if self.crawl_root is None:
            return self.refresh_state
        summary = read_crawl_state(self.crawl_root) or RefreshState()
        own = self.refresh_state
        loading = own.consecutive_failures and (self.ready or summary.refreshes)
        if loading and not summary.consecutive_failures:
            summary.consecutive_failures = own.consecutive_failures
            summary.last_error = f"loading the crawled snapshot: {own.last_error}"
        return summary

    def status(self) -> dict[str, Any]:
        refresh: dict[str, Any] = {"enabled": self.loader is not None}
        refresh.update(self.refresh_summary().to_dict())
        if self.crawl_root is not None:  # this process's loads of the crawler's snapshots
            refresh["this_process"] = self.refresh_state.to_dict()
        out: dict[str, Any] = {"ready": self.ready, "source": self.source, "refresh": refresh}
        index = self._index
        if index is None:
            return out
        out["snapshot"] = {
            "id": index.snapshot_id,
            "created": index.created,
            "age_s": snapshot_age_s(index),
        }
        out["counts"] = index.stats()
        out["sources_with_problems"] = sources_with_problems(index)
        return out


def snapshot_age_s(index: CoverageIndex) -> float | None:
    try:
        created = dt.datetime.fromisoformat(index.created.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return None
    if created.tzinfo is None:
        created = created.replace(tzinfo=dt.timezone.utc)
    return round((dt.datetime.now(dt.timezone.utc) - created).total_seconds(), 1)


def sources_with_problems(index: CoverageIndex) -> list[dict[str, Any]]:
    """Sources whose documents failed or turned invalid (from the crawl's manifest) and
    territories the index rejected, grouped by URL."""
    by_doc: dict[str, dict[str, Any]] = {}

    def add(url: str, problem: dict[str, Any]) -> None:
        by_doc.setdefault(url, {"url": url, "problems": []})["problems"].append(problem)

    for item in _crawl_problems(getattr(index, "path", None)):
        add(str(item.get("url")), {k: item.get(k) for k in ("kind", "message", "kept")})
    for finding in getattr(index, "findings", ()) or ():
        if getattr(finding.severity, "value", finding.severity) == "error":
            add(finding.document, {"kind": finding.code, "message": finding.message})
    return sorted(by_doc.values(), key=lambda d: d["url"])


@functools.lru_cache(maxsize=8)
def _crawl_problems(directory: Any) -> tuple[dict[str, Any], ...]:
    """The problems a snapshot's manifest records (a snapshot directory never changes)."""
    if directory is None:
        return ()
    try:
        manifest = orjson.loads((Path(directory) / "manifest.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return ()
    problems = manifest.get("problems") if isinstance(manifest, dict) else None
    return tuple(p for p in problems or () if isinstance(p, dict))


class LookupBatcher:
    """Answers the point lookups that arrive together as one batch.

    Under load, many requests are read in each pass of the event loop. Answered together, their
    boundary distances are measured in one vectorised search
    (:meth:`CoverageIndex.boundary_distances`), which costs a fraction of one search per request.
    A batch is answered once a pass of the loop brings no new request to it (or after
    ``LINGER_PASSES`` passes, or at ``MAX_BATCH`` requests): a lone request waits one pass, a few
    microseconds. All the answers of a batch come from one index.
    """

    MAX_BATCH = 256  # bounds the time one pass of the loop spends answering
    # A batch waits while requests keep joining it, up to this many passes of the loop.
    LINGER_PASSES = 8

    def __init__(self, service: LookupService) -> None:
        self.service = service
        self._pending: list[tuple[Query, asyncio.Future[bytes]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._passes = 0  # passes of the loop the waiting batch has lingered
        self._seen = 0  # its size at the last of them
        self.batches = 0
        self.answered = 0

    def submit(self, query: Query) -> asyncio.Future[bytes]:
        """A future for ``orjson.dumps(service.lookup(query))``, or the error it raised."""
        loop = self._loop
        if not self._pending or loop is None:
            # The first request of a batch finds the loop; the others join the batch in it.
            # (asyncio.get_running_loop() makes a getpid() system call in CPython 3.11, which
            # profiling showed as 3% of the server's time under load.)
            loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self._flush)
        future = loop.create_future()
        self._pending.append((query, future))
        return future

    def close(self) -> None:
        """Fail any request still waiting and forget the loop (an app that stops may be started
        again in another loop)."""
        pending, self._pending, self._loop = self._pending, [], None
        self._passes = self._seen = 0
        for _, future in pending:
            if not future.done() and not future.get_loop().is_closed():
                future.set_exception(RuntimeError("the server is stopping"))

    def _flush(self) -> None:
        waiting = len(self._pending)
        if self._seen < waiting < self.MAX_BATCH and self._passes < self.LINGER_PASSES:
            self._passes += 1
            self._seen = waiting
            if self._loop is not None:
                self._loop.call_soon(self._flush)
                return
        self._passes = self._seen = 0
        batch = self._pending[: self.MAX_BATCH]
        self._pending = self._pending[self.MAX_BATCH :]
        if self._pending and self._loop is not None:
            self._loop.call_soon(self._flush)
        live = [(query, future) for query, future in batch if not future.done()]
        if not live:
            return
        self.batches += 1
        self.answered += len(live)
        answers: Sequence[bytes | BaseException]
        try:
            answers = self.service.lookup_json_many([query for query, _ in live])
            if len(answers) != len(live):
                raise RuntimeError(f"{len(answers)} answers for {len(live)} lookups")
        except Exception as exc:  # e.g. no index yet: every request of the batch gets it
            answers = [exc] * len(live)
        try:
            for (_, future), answer in zip(live, answers, strict=True):
                if future.done():
                    continue
                if isinstance(answer, BaseException):
                    future.set_exception(_settable(answer))
                else:
                    future.set_result(answer)
        finally:  # whatever went wrong above, no request is left waiting
            for _, future in live:
                if not future.done():
                    future.set_exception(RuntimeError("the lookup batch was not answered"))


def _settable(exc: BaseException) -> BaseException:
    """An exception a future accepts (it refuses StopIteration, which generators reserve)."""
    if isinstance(exc, StopIteration):
        wrapped = RuntimeError(f"lookup failed: {exc!r}")
        wrapped.__cause__ = exc
        return wrapped
    return exc


def _split_at_distance(match: Match) -> tuple[bytes, bytes]:
    """A point match's JSON as the bytes before and after its ``boundary_distance_m`` value."""
    from coverlookup.model import Match

    fixed = Match(match.entry, match.server, None, match.distance_m, match.area_m2).to_dict()
    items = list(fixed.items())
    at = [key for key, _ in items].index("boundary_distance_m")
    before = orjson.dumps(dict(items[:at]))[1:-1]
    after = orjson.dumps(dict(items[at + 1 :]))[1:-1]
    return (
        b"{" + before + (b"," if before else b"") + b'"boundary_distance_m":',
        (b"," if after else b"") + after + b"}",
    )


def _entry_summary(entry: Any) -> dict[str, Any]:
    return {
        "key": entry.key,
        "id": entry.id,
        "name": entry.name,
        "type": entry.type,
        "commodity_types": list(entry.commodity_types),
        "capabilities": list(entry.capabilities),
    }


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    when = dt.datetime.fromtimestamp(ts, dt.timezone.utc).replace(microsecond=0)
    return when.isoformat().replace("+00:00", "Z")


# --- loading indexes ------------------------------------------------------------------------------


def load_index(snapshot: str | None = None, *, warm: bool = False) -> CoverageIndex:
    """The index of a snapshot directory, or of the embedded demo federation when None.

    ``warm``: build what the first queries would otherwise build (a server's first requests
    should not pay for it; a one-off lookup should not pay for all of it)."""
    from coverlookup.index import CoverageIndex

    index = CoverageIndex.demo() if snapshot is None else CoverageIndex.load(snapshot)
    return index.warm() if warm else index


def crawl_loader(
    seeds: list[str], *, snapshot_root: str | None = None, warm: bool = True, **crawl_options: Any
) -> IndexLoader:
    """A loader that crawls ``seeds`` (writing the snapshot under ``snapshot_root`` if given);
    ``warm=False`` for a crawler that only writes snapshots for other processes to serve.

    Each crawl after the first is given the previous snapshot, so unchanged documents are
    fetched conditionally and a source that fails keeps its last good entries, marked stale.
    """
    from coverlookup.snapshot import Snapshot

    last: list[Snapshot] = []
    if snapshot_root is None:
        # Crawls are kept on disk either way: the next refresh reads unchanged and failed
        # documents from there, and /v1/status reads the crawl's problems from the manifest.
        snapshot_root = tempfile.mkdtemp(prefix="coverlookup-serve-")
        atexit.register(shutil.rmtree, snapshot_root, ignore_errors=True)
    root = snapshot_root

    def previous() -> Snapshot | None:
        if last:
            return last[0]
        from coverlookup.errors import SnapshotError
        from coverlookup.snapshot import load_snapshot

        try:
            return load_snapshot(root)
        except SnapshotError:
            return None

    async def load() -> CoverageIndex:
        from coverlookup.discovery import crawl
        from coverlookup.index import CoverageIndex

        options = dict(crawl_options)
        options.setdefault("previous", previous())
        snapshot = await crawl(seeds, **options)
        loop = asyncio.get_running_loop()
        from coverlookup.snapshot import load_snapshot, write_snapshot

        def persist_and_build() -> CoverageIndex:
            built: list[CoverageIndex] = []
            # The index is compiled before the snapshot becomes current: a process watching the
            # root loads it, not the raw documents, and so does a restart.
            path = write_snapshot(
                root, snapshot, before_publish=lambda d: built.append(CoverageIndex.load(d))
            )
            written = load_snapshot(path)
            index = built[0] if built else CoverageIndex.load(path)
            last[:] = [written]
            return index.warm() if warm else index

        # Building is CPU work: keep the event loop answering lookups meanwhile.
        return await loop.run_in_executor(None, persist_and_build)

    return load


def snapshot_watcher(
    root: str, current_id: Callable[[], str | None], *, crawler: bool = False
) -> IndexLoader:
    """A loader that loads the snapshot under ``root`` whenever its ``current`` link moves on
    (written by ``coverlookup crawl`` or by a crawling parent process); None while unchanged.

    With ``crawler`` (a parent process is crawling into ``root``), a root with no snapshot yet is
    None too: the first crawl is running, which is not a failed refresh."""

    async def load() -> CoverageIndex | None:
        from coverlookup.index import CoverageIndex
        from coverlookup.snapshot import load_snapshot, resolve_snapshot_dir

        base = Path(root)
        if crawler and not (base / "current").exists() and not (base / "manifest.json").exists():
            return None
        directory = resolve_snapshot_dir(root)
        # A root's 'current' link names the snapshot directory after its id; no need to parse.
        linked = (Path(root) / "current").is_symlink()
        snapshot_id = directory.name if linked else load_snapshot(directory).id
        if snapshot_id == current_id():
            return None
        loop = asyncio.get_running_loop()
        # save=False: several workers may watch one directory; the crawler compiles it.
        return await loop.run_in_executor(
            None, lambda: CoverageIndex.load(directory, save=False).warm()
        )

    return load
