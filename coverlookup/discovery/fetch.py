"""Fetching one document politely and safely: limits, SSRF guard, redirects, retries, 304s.

The guard sits where the address is known: a resolver that pins names (``--resolve``) and drops
non-global answers, and a connector that checks the address a socket actually connected to,
before a single byte of the request is sent. Literal-IP URLs are refused before any connection,
and every redirect hop goes through the same checks. Addresses pinned by the operator with
``--resolve`` are trusted: they named them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import ipaddress
import logging
import math
import random
import socket
import ssl
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from multidict import CIMultiDict
from yarl import URL

from coverlookup.discovery.options import CrawlOptions, Pin, ascii_host
from coverlookup.discovery.safety import check_url, unsafe_address_reason
from coverlookup.errors import FetchError, UnsafeURLError

log = logging.getLogger(__name__)

_MAX_PADDING = 64 * 1024  # zero bytes accepted after a gzip stream

_NO_SUCH_NAME = frozenset(
    code for code in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None)) if code is not None
)

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
ACCEPT = "application/json, application/geo+json, application/yaml;q=0.9, */*;q=0.5"
_CHUNK = 64 * 1024


class CrawlFetchError(FetchError):
    """A fetch that failed; ``problem`` names the kind of failure for the crawl report."""

    problem = "fetch_failed"

    def __init__(self, message: str, *, problem: str | None = None, status: int | None = None):
        super().__init__(message)
        if problem:
            self.problem = problem
        self.status = status
        self.redirects: list[dict[str, Any]] = []
        self.retries: list[dict[str, Any]] = []


class CrawlUnsafeError(UnsafeURLError, CrawlFetchError):
    problem = "unsafe_url"


@dataclass(slots=True)
class FetchResult:
    url: str
    final_url: str
    status: int
    body: bytes = b""
    content_type: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    redirects: list[dict[str, Any]] = field(default_factory=list)
    retries: list[dict[str, Any]] = field(default_factory=list)
    fetched_at: str = ""
    from_mirror: bool = False
    # Bytes read off the wire (before decompression); the body length is after it.
    wire_bytes: int = 0

    @property
    def not_modified(self) -> bool:
        return self.status == 304


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


# --- the guard: resolver and connector ----------------------------------------------------------


class AddressGuard:
    """Decides whether a connection to an address for a host name is allowed."""

    def __init__(self, pins: Mapping[tuple[str, int], Pin], allow_private: bool):
        self.pins = dict(pins)
        self.allow_private = allow_private

    def pin(self, host: str, port: int) -> Pin | None:
        return self.pins.get((ascii_host(host), port))

    def refusal(self, host: str | None, port: int | None, address: str) -> str | None:
        if self.allow_private:
            return None
        pin = self.pin(host or "", port or 0)
        if pin is not None and _same_ip(pin.address, address):
            return None
        reason = unsafe_address_reason(address)
        if reason:
            return f"{host} connected to {reason} (use --allow-private)"
        return None


def _same_ip(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a.split("%")[0]) == ipaddress.ip_address(b.split("%")[0])
    except ValueError:
        return False


class GuardedResolver(AbstractResolver):
    """Applies ``--resolve`` pins, then drops answers the guard refuses."""

    def __init__(self, guard: AddressGuard, inner: AbstractResolver | None = None):
        self._guard = guard
        self._inner = inner or ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        pin = self._guard.pin(host, port)
        if pin is not None:
            fam = socket.AF_INET6 if ":" in pin.address else socket.AF_INET
            return [
                {
                    "hostname": host,
                    "host": pin.address,
                    "port": pin.target_port,
                    "family": fam,
                    "proto": 0,
                    "flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                }
            ]
        answers = await self._inner.resolve(host, port, family)
        if self._guard.allow_private:
            return answers
        good = [a for a in answers if unsafe_address_reason(a["host"]) is None]
        if not good:
            reason = unsafe_address_reason(answers[0]["host"]) if answers else "no address"
            raise CrawlUnsafeError(f"{host} resolves only to refused addresses: {reason}")
        return good

    async def close(self) -> None:
        await self._inner.close()


class GuardedConnector(aiohttp.TCPConnector):
    """Checks the peer address of every new socket before the request is written to it."""

    def __init__(self, *, guard: AddressGuard, **kwargs: Any):
        super().__init__(**kwargs)
        self._guard = guard

    async def _wrap_create_connection(  # type: ignore[override]
        self, *args: Any, req: Any, **kwargs: Any
    ) -> Any:
        transport, proto = await super()._wrap_create_connection(*args, req=req, **kwargs)
        peer = transport.get_extra_info("peername")
        reason = self._guard.refusal(req.url.host, req.port, peer[0]) if peer else None
        if reason:
            transport.close()
            raise aiohttp.ClientConnectorError(req.connection_key, CrawlUnsafeError(reason))
        return transport, proto


# --- the fetcher --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes
    wire: int


class Fetcher:
    """One HTTP client for a whole crawl. Use as ``async with Fetcher(options) as f``."""

    def __init__(self, options: CrawlOptions):
        self.options = options
        self.guard = AddressGuard(options.pins(), options.allow_private)
        self._session: aiohttp.ClientSession | None = None
        self._all = asyncio.Semaphore(options.concurrency)
        self._hosts: dict[str, asyncio.Semaphore] = {}
        self.requests = 0
        self.wire_bytes = 0
        self.body_bytes = 0  # of every body kept so far

    def reserve(self, url: Any, size: int) -> None:
        """Count ``size`` bytes about to be read from a file (a mirror, a local seed) against
        ``max_total_bytes``, or raise the ``total_limit`` error if they do not fit."""
        if self.body_bytes + size > self.options.max_total_bytes:
            raise self._over_total(url, "not read")
        self.body_bytes += size

    def _over_total(self, url: Any, what: str) -> CrawlFetchError:
        return CrawlFetchError(
            f"{url}: {what}, the crawl has read its limit of "
            f"{self.options.max_total_bytes:,} bytes (max_total_bytes)",
            problem="total_limit",
        )

    async def __aenter__(self) -> Fetcher:
        opts = self.options
        ctx = ssl.create_default_context(cafile=opts.cafile) if opts.cafile else None
        if ctx is None:
            # The system store; OpenSSL honours SSL_CERT_FILE / SSL_CERT_DIR here.
            ctx = ssl.create_default_context()
        connector = GuardedConnector(
            guard=self.guard,
            resolver=GuardedResolver(self.guard),
            ssl=ctx,
            limit=opts.concurrency,
            limit_per_host=opts.per_host,
            ttl_dns_cache=300,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=opts.connect_timeout),
            auto_decompress=False,
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={
                "User-Agent": opts.user_agent,
                "Accept": ACCEPT,
                "Accept-Encoding": "gzip, deflate",
            },
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- public ----------------------------------------------------------------------------------

    async def fetch(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
    ) -> FetchResult:
        """GET ``url`` following redirects; raises CrawlFetchError (or CrawlUnsafeError)."""
        opts = self.options
        current = _bare(URL(url))
        came_from: URL | None = None
        redirects: list[dict[str, Any]] = []
        retries: list[dict[str, Any]] = []
        seen = {str(current)}
        try:
            for _hop in range(opts.max_redirects + 1):
                mirror = self._mirror_path(current)
                if mirror is not None:
                    body = self._read_mirror(current, mirror)
                    return FetchResult(
                        url=url,
                        final_url=str(current),
                        status=200,
                        body=body,
                        content_type=_guess_type(mirror),
                        redirects=redirects,
                        fetched_at=_now(),
                        from_mirror=True,
                        wire_bytes=len(body),
                    )
                try:
                    check_url(
                        current,
                        allow_http=opts.allow_http,
                        allow_private=opts.allow_private,
                        came_from=came_from,
                    )
                except UnsafeURLError as exc:
                    raise CrawlUnsafeError(str(exc)) from None
                headers = {}
                if etag:
                    headers["If-None-Match"] = etag
                if last_modified:
                    headers["If-Modified-Since"] = last_modified
                answer = await self._with_retries(current, headers, retries)
                if answer.status in REDIRECT_STATUSES:
                    location = answer.headers.get("Location")
                    if not location:
                        raise CrawlFetchError(
                            f"{current}: HTTP {answer.status} redirect without a Location",
                            problem="bad_redirect",
                            status=answer.status,
                        )
                    try:
                        target = _bare(current.join(URL(location)))
                    except ValueError as exc:
                        raise CrawlFetchError(
                            f"{current}: unusable Location {location!r}: {exc}",
                            problem="bad_redirect",
                            status=answer.status,
                        ) from None
                    redirects.append(
                        {"from": str(current), "to": str(target), "status": answer.status}
                    )
                    if str(target) in seen:
                        raise CrawlFetchError(
                            f"{url}: redirect loop back to {target}", problem="redirect_loop"
                        )
                    seen.add(str(target))
                    came_from, current = current, target
                    # A conditional request only makes sense against the URL that set it.
                    etag = last_modified = None
                    continue
                if answer.status == 304:
                    return self._result(url, current, answer, redirects, retries)
                if answer.status != 200:
                    raise CrawlFetchError(
                        f"{current}: HTTP {answer.status}",
                        problem="http_status",
                        status=answer.status,
                    )
                return self._result(url, current, answer, redirects, retries)
            raise CrawlFetchError(
                f"{url}: more than {opts.max_redirects} redirects", problem="too_many_redirects"
            )
        except CrawlFetchError as exc:
            exc.redirects = redirects
            exc.retries = retries
            raise

    def _result(
        self,
        url: str,
        final: URL,
        answer: _Answer,
        redirects: list[dict[str, Any]],
        retries: list[dict[str, Any]],
    ) -> FetchResult:
        return FetchResult(
            url=url,
            final_url=str(final),
            status=answer.status,
            body=answer.body,
            content_type=answer.headers.get("Content-Type"),
            etag=answer.headers.get("ETag"),
            last_modified=answer.headers.get("Last-Modified"),
            redirects=redirects,
            retries=retries,
            fetched_at=_now(),
            wire_bytes=answer.wire,
        )

    # -- mirrors ---------------------------------------------------------------------------------

    def _mirror_path(self, url: URL) -> Path | None:
        """``https://host/a/b.json?page=2`` -> ``MIRROR/host/a/b.json?page=2`` (query kept as is;
        a directory stands for its ``index.json``). Any scheme and port map to the same folder.

        Windows cannot name a file with ``?``: a mirror may write it ``%3F``
        (``b.json%3Fpage=2``), which is read when the ``?`` name is not there."""
        if not self.options.mirrors or url.scheme not in ("http", "https") or not url.host:
            return None
        root = self.options.mirrors.get(url.host.lower().rstrip("."))
        if root is None:
            return None
        rel = url.path.lstrip("/")
        if url.query_string:
            plain = root / f"{rel}?{url.query_string}"
            portable = root / f"{rel}%3F{url.query_string}"
            return portable if not plain.exists() and portable.exists() else plain
        return root / rel if rel else root

    def _read_mirror(self, url: URL, path: Path) -> bytes:
        root = self.options.mirrors[(url.host or "").lower().rstrip(".")]
        try:
            resolved = path.resolve()
            if not resolved.is_relative_to(root.resolve()):
                raise CrawlUnsafeError(f"{url}: path escapes the mirror directory {root}")
            if resolved.is_dir():
                resolved = resolved / "index.json"
            size = resolved.stat().st_size
            if size > self.options.max_bytes:
                raise CrawlFetchError(
                    f"{url}: {size} bytes is over the limit of {self.options.max_bytes}",
                    problem="too_large",
                )
            self.reserve(url, size)
            try:
                return resolved.read_bytes()
            except BaseException:
                self.body_bytes -= size
                raise
        except FileNotFoundError:
            raise CrawlFetchError(
                f"{url}: not in the mirror ({path} does not exist)",
                problem="http_status",
                status=404,
            ) from None
        except OSError as exc:
            if isinstance(exc, CrawlFetchError):
                raise
            raise CrawlFetchError(f"{url}: mirror file {path}: {exc}", problem="io") from exc

    # -- one hop, with retries -------------------------------------------------------------------

    async def _with_retries(
        self, url: URL, headers: dict[str, str], retries: list[dict[str, Any]]
    ) -> _Answer:
        opts = self.options
        attempt = 0
        while True:
            try:
                answer = await self._attempt(url, headers)
            except CrawlFetchError as exc:
                if exc.problem not in ("timeout", "connection") or attempt >= opts.retries:
                    raise
                wait = self._backoff(attempt)
                retries.append({"url": str(url), "reason": str(exc), "wait": wait})
            else:
                if not (answer.status == 429 or 500 <= answer.status <= 599):
                    return answer
                if attempt >= opts.retries:
                    return answer
                wait = self._retry_after(answer.headers.get("Retry-After"), attempt)
                retries.append(
                    {"url": str(url), "reason": f"HTTP {answer.status}", "wait": round(wait, 6)}
                )
            attempt += 1
            log.debug("retrying %s in %.3fs", url, wait)
            await asyncio.sleep(wait)

    def _backoff(self, attempt: int) -> float:
        opts = self.options
        base = min(opts.backoff_max, opts.backoff_base * (2**attempt))
        # Full jitter keeps many clients retrying the same server from arriving together.
        return random.uniform(base / 2, base)

    def _retry_after(self, value: str | None, attempt: int) -> float:
        if value:
            seconds: float | None = None
            try:
                seconds = float(value.strip())
            except ValueError:
                try:
                    when = email.utils.parsedate_to_datetime(value)
                    seconds = (when - dt.datetime.now(dt.timezone.utc)).total_seconds()
                except (TypeError, ValueError):
                    seconds = None
            # NaN, -5 or a date gone by say nothing usable: back off as without the header.
            if seconds is not None and math.isfinite(seconds) and seconds >= 0:
                return min(seconds, self.options.retry_after_cap)
        return self._backoff(attempt)

    def _host_semaphore(self, url: URL) -> asyncio.Semaphore:
        key = f"{url.host}:{url.port}"
        sem = self._hosts.get(key)
        if sem is None:
            sem = self._hosts[key] = asyncio.Semaphore(self.options.per_host)
        return sem

    async def _attempt(self, url: URL, headers: dict[str, str]) -> _Answer:
        async with self._all, self._host_semaphore(url):
            if self.body_bytes >= self.options.max_total_bytes:  # checked once a slot is free
                raise self._over_total(url, "not fetched")
            self.requests += 1
            try:
                return await asyncio.wait_for(self._request(url, headers), self.options.timeout)
            except asyncio.TimeoutError:
                raise CrawlFetchError(
                    f"{url}: no complete answer within {self.options.timeout:g}s",
                    problem="timeout",
                ) from None
            except aiohttp.ClientConnectorCertificateError as exc:
                raise CrawlFetchError(f"{url}: TLS certificate: {exc}", problem="tls") from exc
            except aiohttp.ClientConnectorSSLError as exc:
                raise CrawlFetchError(f"{url}: TLS: {exc}", problem="tls") from exc
            except aiohttp.ClientConnectorError as exc:
                inner = exc.os_error
                if isinstance(inner, CrawlFetchError):
                    raise type(inner)(f"{url}: {inner}", problem=inner.problem) from exc
                if isinstance(inner, socket.gaierror) and inner.errno in _NO_SUCH_NAME:
                    # The name does not exist: asking again will not make it (a temporary
                    # resolver failure, EAI_AGAIN, is still retried as a connection error).
                    raise CrawlFetchError(
                        f"{url}: no such host name ({inner.strerror or inner})", problem="dns"
                    ) from exc
                raise CrawlFetchError(
                    f"{url}: cannot connect: {inner.strerror or inner}", problem="connection"
                ) from exc
            except aiohttp.ClientResponseError as exc:
                raise CrawlFetchError(
                    f"{url}: bad HTTP response: {exc.message}", problem="protocol"
                ) from exc
            except (aiohttp.ClientError, OSError) as exc:
                if isinstance(exc, CrawlFetchError):
                    raise
                raise CrawlFetchError(
                    f"{url}: {exc or type(exc).__name__}", problem="connection"
                ) from exc

    async def _request(self, url: URL, headers: dict[str, str]) -> _Answer:
        assert self._session is not None, "use Fetcher as an async context manager"
        async with self._session.get(url, headers=headers, allow_redirects=False) as resp:
            peer = None
            if resp.connection is not None and resp.connection.transport is not None:
                peer = resp.connection.transport.get_extra_info("peername")
            if peer:
                reason = self.guard.refusal(url.host, url.port, peer[0])
                if reason:
                    raise CrawlUnsafeError(f"{url}: {reason}")
            if resp.status != 200:
                return _Answer(resp.status, CIMultiDict(resp.headers), b"", 0)
            body, wire = await self._read_body(url, resp)
            return _Answer(resp.status, CIMultiDict(resp.headers), body, wire)

    async def _read_body(self, url: URL, resp: aiohttp.ClientResponse) -> tuple[bytes, int]:
        limit = self.options.max_bytes
        encoding = resp.headers.get("Content-Encoding", "").strip().lower()
        decomp: Any = None
        if encoding in ("gzip", "x-gzip"):
            decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            decomp = zlib.decompressobj(32 + zlib.MAX_WBITS)
        elif encoding not in ("", "identity"):
            raise CrawlFetchError(
                f"{url}: unsupported Content-Encoding {encoding!r}", problem="bad_encoding"
            )
        elif resp.content_length is not None and resp.content_length > limit:
            raise CrawlFetchError(
                f"{url}: Content-Length {resp.content_length} is over the limit of {limit} bytes",
                problem="too_large",
            )
        parts: list[bytes] = []
        total = 0
        wire = 0
        padding = 0  # zero bytes read after a finished gzip stream
        budget = self.options.max_total_bytes

        def count() -> None:
            # Against the bodies kept so far, not those other fetches are still reading: a body
            # that will be refused (too large, corrupt, too slow) must not crowd out good ones.
            if self.body_bytes + total > budget:
                raise self._over_total(url, "stopped reading")

        def too_large() -> CrawlFetchError:
            what = "after decompression " if decomp is not None else ""
            return CrawlFetchError(
                f"{url}: body is over the limit of {limit} bytes {what}(stopped reading)",
                problem="too_large",
            )

        try:
            async for chunk in resp.content.iter_chunked(_CHUNK):
                wire += len(chunk)
                if decomp is None:
                    total += len(chunk)
                    if total > limit:
                        raise too_large()
                    count()
                    parts.append(chunk)
                    continue
                if padding:  # after the stream's end: only zeros, and not without end
                    padding += len(chunk)
                    if chunk.strip(b"\x00") or padding > _MAX_PADDING:
                        raise zlib.error("data after the end of the stream")
                    continue
                data = chunk
                while data:
                    # max_length bounds memory: a bomb never inflates past limit + 1 bytes.
                    out = decomp.decompress(data, limit - total + 1)
                    total += len(out)
                    if total > limit:
                        raise too_large()
                    count()
                    parts.append(out)
                    if not decomp.eof:
                        data = decomp.unconsumed_tail
                        continue
                    data = decomp.unused_data
                    if data and encoding != "deflate" and data[:1] == b"\x1f":
                        # gzip allows several members one after another (RFC 1952, 2.2)
                        decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    elif not data.strip(b"\x00"):  # zero padding, as gzip(1) tolerates
                        padding = len(data)
                        break
                    elif data:
                        raise zlib.error(f"{len(data)} bytes after the end of the stream")
            if decomp is not None:
                out = decomp.flush()
                total += len(out)
                if total > limit:
                    raise too_large()
                count()
                parts.append(out)
                if wire and not decomp.eof:  # (an empty body, as a 304's, is no stream)
                    raise zlib.error("the stream ends early (truncated)")
        except zlib.error as exc:
            raise CrawlFetchError(
                f"{url}: corrupt {encoding} body: {exc}", problem="bad_encoding"
            ) from None
        finally:
            self.wire_bytes += wire
        self.body_bytes += total
        return b"".join(parts), wire


def _bare(url: URL) -> URL:
    """``url`` as it is requested: never with credentials (aiohttp would send them as Basic
    auth to whoever the link or a redirect names) and without a fragment (never sent)."""
    if url.user is not None or url.password is not None:
        url = url.with_user(None)
    return url.with_fragment(None) if url.fragment or url.raw_fragment else url


def _guess_type(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return "application/yaml"
    if suffix == ".geojson":
        return "application/geo+json"
    if suffix == ".json":
        return "application/json"
    return None
