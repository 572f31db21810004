"""The walk: seeds -> metadata -> related_metadata -> coverage pages -> each entry's GeoJSON.

Every document becomes a ``DocumentRecord`` (with its findings); every problem becomes a report
row saying what was wrong and what was kept. On a refresh (``options.previous``) documents are
asked for conditionally, a 304 reuses the stored copy, and a document that fails or turns
invalid keeps its last good copy, marked stale with the reason: nothing good is dropped
because something else broke.
"""

from __future__ import annotations

import asyncio
import logging
import re
import stat
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from yarl import URL

from coverlookup.cds import GEOJSON_TYPES, WELL_KNOWN_2023, WELL_KNOWN_2025
from coverlookup.discovery.fetch import CrawlFetchError, Fetcher, FetchResult
from coverlookup.discovery.options import CrawlOptions, ascii_host
from coverlookup.discovery.report import CrawlReport, Problem
from coverlookup.errors import DocumentSyntaxError, UsageError
from coverlookup.findings import Finding, FindingList, Severity
from coverlookup.model import GEOGRAPHIC, Entry, Server
from coverlookup.snapshot import DocumentRecord, Snapshot

log = logging.getLogger(__name__)

WELL_KNOWN = (WELL_KNOWN_2025, WELL_KNOWN_2023)
_HOST = re.compile(
    r"^(?=.{1,253}(:\d+)?$)([A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(:\d{1,5})?$"
)


# --- seeds --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Seed:
    text: str
    kind: str  # "url" | "domain" | "file" | "directory"
    target: str  # the URL, domain, or absolute path


def classify_seed(text: str) -> Seed:
    """A domain, a metadata URL, a local file or a local directory (a host mirror)."""
    raw = text.strip()
    lowered = raw.lower()
    if lowered.startswith(("http://", "https://")):
        return Seed(text, "url", raw)
    if lowered.startswith("file://"):
        raw = URL(raw).path
    path = Path(raw).expanduser()
    if path.is_dir():
        return Seed(text, "directory", str(path.resolve()))
    if path.is_file():
        return Seed(text, "file", str(path.resolve()))
    if "://" in raw:
        raise UsageError(f"seed {text!r}: only http(s) URLs, files and domains can be crawled")
    host = ascii_host(raw)  # an international name: its xn-- form
    if "/" not in raw and "." in raw and _HOST.match(host):
        return Seed(text, "domain", host)
    raise UsageError(f"seed {text!r}: not a URL, a domain, or an existing file or directory")


def mirror_hosts(directory: Path) -> dict[str, Path]:
    """The host folders of a mirror directory: ``DIR/<host>/`` serves ``https://<host>/``."""
    return {
        child.name.lower(): child.resolve()
        for child in sorted(directory.iterdir())
        if child.is_dir() and not child.name.startswith(".") and "." in child.name
    }


def mirror_seed_urls(directory: Path) -> list[str]:
    """The well-known documents in a mirror: every crawl of it starts there."""
    urls = []
    for host, root in sorted(mirror_hosts(directory).items()):
        for path in WELL_KNOWN:
            if (root / path.lstrip("/")).is_file():
                urls.append(f"https://{host}{path}")
                break
    return urls


# --- the crawler --------------------------------------------------------------------------------


class Crawler:
    """One crawl. ``await Crawler(seeds, options).run()`` gives the snapshot (not yet written)."""

    def __init__(self, seeds: Iterable[str], options: CrawlOptions):
        self.seeds = [classify_seed(s) for s in seeds]
        mirrors = dict(options.mirrors)
        for seed in self.seeds:
            if seed.kind == "directory":
                mirrors.update(mirror_hosts(Path(seed.target)))
        self.options = CrawlOptions.make(options, mirrors=mirrors)
        self.previous = options.previous
        self._prev_docs: dict[str, DocumentRecord] = {}
        if self.previous is not None:
            for record in self.previous.documents:
                # A copy kept stale after a failure is still the last good one: a source down
                # for several refreshes in a row keeps it until a good fetch replaces it.
                if record.sha256 and (not record.error or record.stale):
                    self._prev_docs.setdefault(record.url, record)
        self.snapshot = Snapshot.new(
            seeds=[s.text for s in self.seeds], options=self.options.describe()
        )
        self.report = CrawlReport()
        self._tasks: set[asyncio.Task[None]] = set()
        self._requested: set[str] = set()
        self._servers: dict[str, Server] = {}
        self._geojson_seen: set[str] = set()
        self._entry_keys: set[str] = set()
        self._done = 0
        self._server_limit: Problem | None = None
        self._over_server_limit = 0
        self._metadata_in_flight = 0
        self._places = asyncio.Condition()
        self._geometry_reads = asyncio.Semaphore(2)
        self._total_limit: Problem | None = None
        self._total_limit_kept = ""
        self._over_total_limit = 0
        self.fetcher: Fetcher | None = None

    # -- running ---------------------------------------------------------------------------------

    async def run(self) -> Snapshot:
        t0 = asyncio.get_running_loop().time()
        async with Fetcher(self.options) as fetcher:
            self.fetcher = fetcher
            for seed in self.seeds:
                self._start_seed(seed)
            try:
                while self._tasks:
                    done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        self._tasks.discard(task)
                        exc = task.exception()
                        if exc is not None:
                            # A bug in handling one document must not lose the rest of the crawl.
                            log.error("crawl task failed", exc_info=exc)
                            self.report.add(
                                "", "internal_error", repr(exc), "the rest of the crawl"
                            )
            except BaseException:
                # Cancelled (a server stopping, a caller's timeout): its fetches end here, while
                # the session they use is still open, not later against a closed one.
                for task in self._tasks:
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
                raise
            self.report.requests = fetcher.requests
            self.report.wire_bytes = fetcher.wire_bytes
        self.report.elapsed = asyncio.get_running_loop().time() - t0
        self.snapshot.problems = [p.to_dict() for p in self.report.problems]
        return self.snapshot

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        self._progress()

    def _progress(self) -> None:
        if self.options.progress is not None:
            self.options.progress(self._done, len(self._tasks), self.report.bytes)

    def _start_seed(self, seed: Seed) -> None:
        if seed.kind == "url":
            self._spawn(self._metadata(seed.target, depth=0))
        elif seed.kind == "domain":
            self._spawn(self._domain(seed.target))
        elif seed.kind == "file":
            self._spawn(self._metadata(Path(seed.target).as_uri(), depth=0))
        else:
            urls = mirror_seed_urls(Path(seed.target))
            if not urls:
                self.report.add(
                    seed.text,
                    "empty_mirror",
                    f"{seed.target}: no <host>/.well-known/cds-server-metadata.json or "
                    "carbon-data-spec.json inside",
                    "nothing",
                )
            for url in urls:
                self._spawn(self._metadata(url, depth=0))

    # -- documents -------------------------------------------------------------------------------

    async def _get(self, url: str, kind: str) -> tuple[DocumentRecord, bytes | None]:
        """Fetch one document; on failure fall back to the previous snapshot's copy."""
        record = DocumentRecord(url=url, kind=kind)
        self.snapshot.documents.append(record)
        prev = self._prev_docs.get(url)
        try:
            if url.startswith("file:"):
                result = self._read_local(url)
            else:
                assert self.fetcher is not None
                result = await self.fetcher.fetch(
                    url,
                    etag=prev.etag if prev else None,
                    last_modified=prev.last_modified if prev else None,
                )
        except CrawlFetchError as exc:
            record.redirects = exc.redirects
            record.status = exc.status
            record.error = str(exc)
            self._done += 1
            body = self._stale_copy(record, prev, str(exc))
            if exc.problem == "total_limit" and self._total_limit is not None:
                # One row for every document the byte budget left out, with their count.
                self._over_total_limit += 1
                self._total_limit.kept = (
                    f"{self._total_limit_kept}; {self._over_total_limit} more documents not read"
                )
                return record, body
            problem = self.report.add(
                url,
                exc.problem,
                str(exc),
                self._kept(record, prev, body),
                document_kind=kind,
            )
            if exc.problem == "total_limit":
                self._total_limit, self._total_limit_kept = problem, problem.kept
            return record, body
        finally:
            self._progress()
        self._done += 1
        self._fill(record, result)
        if result.retries:
            waits = "; ".join(f"{r['reason']}, waited {r['wait']:g}s" for r in result.retries)
            self.report.add(
                url,
                "retried",
                f"succeeded after {len(result.retries)} retries ({waits})",
                "the document",
                document_kind=kind,
            )
        if result.not_modified:
            if prev is None:
                record.error = "HTTP 304 to an unconditional request"
                self.report.add(url, "http_status", record.error, "nothing", document_kind=kind)
                return record, None
            assert self.previous is not None
            body = self.previous.raw(prev.sha256 or "")
            record.sha256 = self.snapshot.add_blob(body)
            record.size = len(body)
            record.content_type = record.content_type or prev.content_type
            record.etag = record.etag or prev.etag
            record.last_modified = record.last_modified or prev.last_modified
            self.report.reused_304 += 1
            return record, body
        record.sha256 = self.snapshot.add_blob(result.body)
        record.size = len(result.body)
        self.report.bytes += len(result.body)
        return record, result.body

    def _fill(self, record: DocumentRecord, result: FetchResult) -> None:
        record.final_url = result.final_url
        record.status = result.status
        record.content_type = result.content_type
        record.etag = result.etag
        record.last_modified = result.last_modified
        record.fetched_at = result.fetched_at
        record.redirects = result.redirects

    def _read_local(self, url: str) -> FetchResult:
        path = Path(URL(url).path)
        try:
            info = path.stat()
            if not stat.S_ISREG(info.st_mode) and not stat.S_ISDIR(info.st_mode):
                # /dev/zero says size 0 and never ends; a FIFO blocks: only regular files.
                raise CrawlFetchError(f"{path}: not a regular file", problem="io")
            size = info.st_size
            if size > self.options.max_bytes:
                raise CrawlFetchError(
                    f"{path}: {size} bytes is over the limit of {self.options.max_bytes}",
                    problem="too_large",
                )
            if self.fetcher is not None:
                self.fetcher.reserve(path, size)
            try:
                body = path.read_bytes()
            except BaseException:
                if self.fetcher is not None:
                    self.fetcher.body_bytes -= size  # not read: not kept
                raise
        except FileNotFoundError:
            raise CrawlFetchError(
                f"{path}: no such file", problem="http_status", status=404
            ) from None
        except IsADirectoryError:
            raise CrawlFetchError(f"{path}: is a directory", problem="io") from None
        except OSError as exc:
            if isinstance(exc, CrawlFetchError):
                raise
            raise CrawlFetchError(f"{path}: {exc}", problem="io") from exc
        from coverlookup.discovery.fetch import _guess_type, _now

        return FetchResult(
            url, url, 200, body, content_type=_guess_type(path), fetched_at=_now(), from_mirror=True
        )

    def _stale_copy(
        self, record: DocumentRecord, prev: DocumentRecord | None, reason: str
    ) -> bytes | None:
        """The previous snapshot's copy of a document that failed now, marking it stale."""
        if prev is None or self.previous is None or not prev.sha256:
            return None
        try:
            body = self.previous.raw(prev.sha256)
        except OSError:
            return None
        record.stale = True
        record.stale_reason = reason
        record.sha256 = self.snapshot.add_blob(body)
        record.size = len(body)
        record.final_url = record.final_url or prev.final_url
        record.etag, record.last_modified = prev.etag, prev.last_modified
        record.content_type = prev.content_type
        record.fetched_at = prev.fetched_at
        return body

    def _kept(self, record: DocumentRecord, prev: DocumentRecord | None, body: bytes | None) -> str:
        if body is not None and prev is not None:
            return f"the last good copy (fetched {prev.fetched_at}), marked stale"
        return "nothing from this document"

    def _parse(self, record: DocumentRecord, body: bytes) -> tuple[Any, Finding | None]:
        from coverlookup.documents import parse_document

        try:
            value = parse_document(body, hint=record.content_type or record.url)
        except DocumentSyntaxError as exc:
            finding = Finding(Severity.ERROR, record.url, "", "syntax-error", str(exc))
            return None, finding
        if record.kind != "geojson":  # a field given twice: the parser keeps the last, say so
            from coverlookup.validate import duplicate_key_findings

            record.findings.extend(duplicate_key_findings(body, record.url))
        return value, None

    def _unusable(self, record: DocumentRecord, reason: str, kind: str) -> Any:
        """A document that arrived but cannot be used: fall back to the last good copy."""
        prev = self._prev_docs.get(record.url)
        if record.stale:
            body = None  # already the stored copy; it does not parse either
        else:
            body = self._stale_copy(record, prev, f"invalid on refresh: {reason}")
        if body is None:
            record.error = record.error or reason
        self.report.add(
            record.url, kind, reason, self._kept(record, prev, body), document_kind=record.kind
        )
        if body is None:
            return None
        value, _ = self._parse(record, body)
        return value

    # -- metadata --------------------------------------------------------------------------------

    async def _domain(self, domain: str) -> None:
        failures: list[str] = []
        tried: list[str] = []
        for path in WELL_KNOWN:
            url = f"https://{domain}{path}"
            error = await self._metadata(url, depth=0, quiet=True)
            if error is None:
                if tried:
                    self._drop_failed_probes(tried, url, failures)
                return
            tried.append(url)
            failures.append(error)
        self.report.add(
            f"https://{domain}/",
            "no_metadata",
            f"{domain}: no metadata at either well-known path ({'; '.join(failures)})",
            "nothing from this domain",
            document_kind="metadata",
        )

    def _drop_failed_probes(self, tried: list[str], found_url: str, errors: list[str]) -> None:
        """A well-known path that is simply absent is no document of the crawl, just a note."""
        gone = set(tried)
        self.snapshot.documents = [
            d for d in self.snapshot.documents if not (d.url in gone and d.error)
        ]
        record = self.snapshot.document(found_url)
        if record is not None:
            for url, error in zip(tried, errors, strict=True):
                record.findings.append(
                    Finding(
                        Severity.NOTICE,
                        found_url,
                        "",
                        "well-known-fallback",
                        f"nothing usable at {url} ({error}); read {found_url} instead",
                    )
                )

    async def _metadata(self, url: str, depth: int, *, quiet: bool = False) -> str | None:
        """Fetch and read one metadata (or Open Energy) document; returns an error or None."""
        key = canonical_url(url)  # the same server under another spelling is not fetched again
        if key in self._requested:
            return None
        self._requested.add(key)
        limit = self.options.max_servers
        # Servers being fetched hold a place; a fetch that fails gives its place back, so wait
        # for those in flight before deciding this one is over the limit.
        async with self._places:
            await self._places.wait_for(
                lambda: (
                    len(self._servers) >= limit
                    or len(self._servers) + self._metadata_in_flight < limit
                )
            )
            if len(self._servers) + self._metadata_in_flight < limit:
                self._metadata_in_flight += 1
                admitted = True
            else:
                admitted = False
        if not admitted:
            # Servers being fetched count too: links fanning out faster than servers answer
            # cannot run past the limit. One problem row for all of them, with their count.
            self._over_server_limit += 1
            if self._server_limit is None:
                self._server_limit = self.report.add(
                    url,
                    "server_limit",
                    f"more than {self.options.max_servers} servers",
                    "not fetched",
                    document_kind="metadata",
                )
            else:
                self._server_limit.kept = (
                    f"not fetched (this and {self._over_server_limit - 1} more metadata links)"
                )
            return None
        try:
            return await self._read_metadata(url, depth, quiet)
        finally:
            async with self._places:
                self._metadata_in_flight -= 1
                self._places.notify_all()

    async def _read_metadata(self, url: str, depth: int, quiet: bool) -> str | None:
        if quiet:
            record, body = await self._get_quiet(url)
        else:
            record, body = await self._get(url, "metadata")
        if body is None:
            return record.error or "unreadable"
        value, syntax = self._parse(record, body)
        if syntax is not None:
            record.findings.append(syntax)
            value = self._unusable(record, syntax.message, "invalid_document")
            if value is None:
                return syntax.message
        from coverlookup import cds, openenergy

        kind = cds.detect_kind(value)
        final = record.final_url or url
        if kind == "open-energy":
            record.kind = "open-energy"
            server, entries, found = openenergy.parse_open_energy(value, final)
            record.findings.extend(found)
            if server is None:
                self._unusable(
                    record,
                    _first_error(found, "not usable Open Energy metadata"),
                    "invalid_document",
                )
                return record.error
            self._add_server(server, record)
            self._add_entries(server, entries, record)
            return None
        if kind != "metadata":
            message = f"expected a CDS metadata document, got {_KIND_NAMES.get(kind, kind)}"
            record.findings.append(Finding(Severity.ERROR, url, "", "wrong-kind", message))
            value = self._unusable(record, message, "wrong_kind")
            if value is None or cds.detect_kind(value) != "metadata":
                return message
        server, found = cds.parse_server(value, final)
        record.findings.extend(found)
        if server is None:
            value = self._unusable(
                record, _first_error(found, "not a usable metadata document"), "invalid_document"
            )
            server = cds.parse_server(value, final)[0] if value is not None else None
            if server is None:
                return record.error
        for hop in record.redirects:
            if hop["status"] in (301, 302, 307, 308):
                self.report.add(
                    url,
                    "moved",
                    f"moved from {hop['from']} to {hop['to']} (HTTP {hop['status']})",
                    f"the server, recorded under {final}",
                    document_kind="metadata",
                )
        if not self._add_server(server, record):
            return None
        for related in server.related_metadata:
            key = canonical_url(related)
            if key in self._requested or key in self._servers:
                continue
            if depth + 1 > self.options.max_depth:
                self.report.add(
                    related,
                    "depth_limit",
                    f"related_metadata deeper than {self.options.max_depth} levels "
                    f"(linked from {final})",
                    "not fetched",
                    document_kind="metadata",
                )
                continue
            self._spawn(self._metadata(related, depth + 1))
        if server.coverage_url:
            self._spawn(self._coverage(server, record))
        return None

    async def _get_quiet(self, url: str) -> tuple[DocumentRecord, bytes | None]:
        """Like _get, but a failure is left for the caller to report (well-known probing)."""
        before = {id(p) for p in self.report.problems}
        record, body = await self._get(url, "metadata")
        if body is None:  # only this probe's rows: other tasks add theirs meanwhile
            mine = [p for p in self.report.problems if id(p) not in before and p.url == url]
            gone = {id(p) for p in mine}
            self.report.problems[:] = [p for p in self.report.problems if id(p) not in gone]
            if self._total_limit is not None and id(self._total_limit) in gone:
                self._total_limit = None
        return record, body

    def _add_server(self, server: Server, record: DocumentRecord) -> bool:
        key = canonical_url(server.metadata_url)  # a redirect may spell the host another way
        if key in self._servers:
            log.debug("%s: already crawled as %s", record.url, self._servers[key].metadata_url)
            return False
        self._servers[key] = server
        self.snapshot.servers.append(server)
        if record.stale:
            self.snapshot.stale[server.metadata_url] = record.stale_reason or "stale"
        return True

    def _add_entries(
        self, server: Server, entries: Iterable[Entry], record: DocumentRecord
    ) -> list[Entry]:
        added = []
        for entry in entries:
            if entry.key in self._entry_keys:
                record.findings.append(
                    Finding(
                        Severity.ERROR,
                        record.url,
                        "",
                        "duplicate-id",
                        f"entry id {entry.id!r} already appeared on an earlier page; skipped",
                    )
                )
                continue
            self._entry_keys.add(entry.key)
            self.snapshot.entries.append(entry)
            added.append(entry)
            if record.stale:
                self.snapshot.stale[entry.key] = record.stale_reason or "stale"
        return added

    # -- coverage --------------------------------------------------------------------------------

    async def _coverage(self, server: Server, meta_record: DocumentRecord) -> None:
        from coverlookup import cds

        url: str | None = server.coverage_url
        seen: set[str] = set()
        pages = 0
        last: str | None = None
        entries: list[Entry] = []
        while url:
            if url in seen:
                self.report.add(
                    last or url,
                    "pagination_loop",
                    f"'next' of {last} leads back to {url}, already read for "
                    f"{server.metadata_url}; stopped there",
                    f"{len(entries)} entries from {pages} pages",
                    document_kind="coverage",
                )
                break
            if pages >= self.options.max_pages:
                self.report.add(
                    url,
                    "page_limit",
                    f"more than {self.options.max_pages} coverage pages for {server.metadata_url}",
                    f"{len(entries)} entries from {pages} pages",
                    document_kind="coverage",
                )
                break
            seen.add(url)
            pages += 1
            last = url
            record, body = await self._get(url, "coverage")
            if body is None:
                break
            if record.final_url:
                seen.add(record.final_url)
            value, syntax = self._parse(record, body)
            if syntax is not None:
                record.findings.append(syntax)
                value = self._unusable(record, syntax.message, "invalid_document")
                if value is None:
                    break
            page, found = cds.parse_coverage_page(value, record.final_url or url, server)
            record.findings.extend(found)
            if page is None:
                value = self._unusable(
                    record, _first_error(found, "not a coverage listing"), "invalid_document"
                )
                page = cds.parse_coverage_page(value, url, server)[0] if value is not None else None
                if page is None:
                    break
            added = self._add_entries(server, page.entries, record)
            entries.extend(added)
            for entry in added:
                if (
                    entry.type == GEOGRAPHIC
                    and entry.geojson_resource
                    and self.options.fetch_geojson
                ):
                    self._spawn(self._geojson(entry.geojson_resource, entry))
            url = page.next
            if url is None and any(f.code == "next-loops" for f in found):
                url = record.final_url or record.url  # reported as a loop on the next turn
            elif url is None and not record.stale:  # (a stale copy's own next was fine)
                bad_next = next(
                    (
                        f
                        for f in found
                        if f.pointer == "/next"
                        and f.severity == Severity.ERROR
                        and f.code != "missing-field"  # no link given: nothing to follow
                    ),
                    None,
                )
                if bad_next is not None:  # pages may follow that cannot be reached
                    self.report.add(
                        record.url,
                        "bad_link",
                        f"{bad_next.message}; the listing may go on past this page",
                        f"{len(entries)} entries from {pages} pages",
                        document_kind="coverage",
                    )
        meta_record.findings.extend(cds.check_capability_union(server, entries))

    # -- geojson ---------------------------------------------------------------------------------

    async def _geojson(self, url: str, entry: Entry) -> None:
        if url in self._geojson_seen:
            return
        self._geojson_seen.add(url)
        record, body = await self._get(url, "geojson")
        if body is None:
            self._note_entry_without_geometry(url, entry)
            return
        # A parsed GeoJSON and its geometry take several times the body's size: only a few are
        # read at once, however many bodies have arrived.
        async with self._geometry_reads:
            await self._read_geojson(record, body, entry)

    async def _read_geojson(self, record: DocumentRecord, body: bytes, entry: Entry) -> None:
        url = record.url
        value, syntax = self._parse(record, body)
        problem = None
        if syntax is not None:
            record.findings.append(syntax)
            problem = syntax.message
        elif not (
            isinstance(value, dict)
            and isinstance(value.get("type"), str)
            and value["type"] in GEOJSON_TYPES
        ):
            problem = "not a GeoJSON object (no known 'type')"
            record.findings.append(Finding(Severity.ERROR, url, "", "not-geojson", problem))
        if problem is not None:
            value = self._unusable(record, problem, "invalid_document")
            if value is None:
                # The bytes stay in raw/, but no entry gets an unreadable geometry from them.
                record.sha256 = None
                self._note_entry_without_geometry(url, entry)
            return
        if record.stale or record.status == 304:
            return  # the last good copy, checked when it was fetched
        await self._check_geometry(record, value, entry)

    async def _check_geometry(self, record: DocumentRecord, value: Any, entry: Entry) -> None:
        """Read the territory now, as the index will: a document without a usable geometry
        is a problem of this crawl, and on refresh the last good copy stays (marked stale).
        Shapely work runs in a thread, so a server refreshing its data keeps answering."""
        from coverlookup.geometry import territory_from_geojson

        geom, found = await asyncio.to_thread(territory_from_geojson, value, record.url)
        errors = [f for f in found if f.severity == Severity.ERROR]
        record.findings.extend(errors)
        if not errors:
            return
        first = errors[0]
        where = f" at {first.pointer}" if first.pointer else ""
        message = f"{first.message}{where}"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more problems)"
        if geom is None:
            kept = self._unusable(record, f"no usable geometry: {message}", "invalid_geometry")
            if kept is None:
                self._note_entry_without_geometry(record.url, entry)
            return
        self.report.add(
            record.url,
            "invalid_geometry",
            message,
            "the document's usable features",
            document_kind="geojson",
        )

    def _note_entry_without_geometry(self, url: str, entry: Entry) -> None:
        for problem in reversed(self.report.problems):
            if problem.url == url:
                problem.kept = f"entry {entry.key} without its geometry"
                break


_KIND_NAMES = {
    "coverage": "a coverage listing",
    "geojson": "a GeoJSON document",
    "unknown": "an unrecognised document",
}


def _first_error(found: FindingList, default: str) -> str:
    for finding in found:
        if finding.severity is Severity.ERROR:
            return finding.message
    return default


def canonical_url(url: str) -> str:
    """``url`` with its scheme and host in lower case and without the final dot of a fully
    qualified name (``HTTPS://Sub.Example./x`` -> ``https://sub.example/x``), an international
    host in the ASCII form a connection uses (``bücher.example`` -> ``xn--bcher-kva.example``,
    encoded as yarl encodes it for aiohttp): the key under which
    the crawler knows a server, so one linked with two spellings is crawled once. Documents keep
    the URL as it was linked. The rest of the URL, and any URL that is not http(s), is left as
    it is."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    written = url.split(":", 1)[0]  # urlsplit has already put the scheme in lower case
    scheme = parts.scheme
    if scheme not in ("http", "https"):
        return url
    if parts.fragment or "#" in url:  # never sent: a.json#x is a.json
        return canonical_url(urlunsplit((scheme, parts.netloc, parts.path, parts.query, "")))
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if hostport.startswith("["):  # an IPv6 literal: its colons are not a port's
        host, colon, port = hostport, "", ""
    else:
        host, colon, port = hostport.partition(":")
    canonical = ascii_host(host)
    if not canonical or (canonical == host and scheme == written):
        return url
    netloc = f"{userinfo}{at}{canonical}{colon}{port}"
    return urlunsplit((scheme, netloc, parts.path, parts.query, parts.fragment))


def resolve_against(base: str, link: str) -> str:
    return urljoin(base, link)
