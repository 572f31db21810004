"""The HTTP API: ``create_app()``, its handlers, the one error→status table, metrics and OpenAPI.

Library errors know nothing of HTTP; ``ERROR_STATUS`` below is the only place they become statuses,
and every error leaves as ``{"error": {"code": ..., "message": ...}}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import itertools
import logging
import math
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong

from coverlookup.errors import (
    CoordinateError,
    CoverlookupError,
    FetchError,
    GeocodingError,
    NotFoundError,
    SnapshotError,
    SpecError,
    UsageError,
)
from coverlookup.metrics import PUBLISH_INTERVAL_S, Metrics
from coverlookup.openapi import MAX_OFFSET, MAX_PAGE, openapi
from coverlookup.service import (
    CRAWL_STATE_FILE,
    FILTERS,
    LookupBatcher,
    LookupService,
    NotAvailableError,
    NotReadyError,
    Query,
    RefreshState,
    parse_number,
    plain_point_query,
    write_crawl_state,
)

log = logging.getLogger(__name__)

# The only error → HTTP status table. First matching class wins, so subclasses come first.
ERROR_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (CoordinateError, 400),
    (UsageError, 400),
    (SpecError, 400),
    (NotFoundError, 404),
    (GeocodingError, 422),
    (NotAvailableError, 501),
    (FetchError, 502),
    (NotReadyError, 503),
    (SnapshotError, 503),
    (CoverlookupError, 500),
)

DEFAULT_MAX_BODY = 8 * 1024 * 1024
# How often workers look for a new snapshot written by the crawling parent process.
WATCH_INTERVAL_S = 2.0
ORPHAN_CHECK_S = 1.0  # how often a worker checks that its parent is still there
LOOKUP_PARAMS = frozenset({"lat", "lon", "address", "nearest_km", *FILTERS})
LIST_PARAMS = frozenset({"limit", "offset"})

SERVICE = web.AppKey("service", LookupService)
METRICS = web.AppKey("metrics", "Metrics")
CONFIG = web.AppKey("config", "WebConfig")
BATCHER = web.AppKey("batcher", LookupBatcher)


@dataclass(frozen=True, slots=True)
class WebConfig:
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = DEFAULT_MAX_BODY
    refresh_s: float | None = None


# --- errors ---------------------------------------------------------------------------------------


def status_for(exc: BaseException) -> int:
    for cls, status in ERROR_STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_response(status: int, code: str, message: str) -> web.Response:
    body = orjson.dumps({"error": {"code": code, "message": message}})
    return web.Response(status=status, body=body, content_type="application/json")


_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    400: "bad_request",
}

# Batch bodies read as CSV: curl's --data-binary default (form-urlencoded) and no type at all
# are taken as CSV too, so a forgotten -H does not fail; anything else is a 415.
_CSV_TYPES = frozenset(
    {
        "text/csv",
        "text/plain",
        "application/csv",
        "application/octet-stream",
        "application/x-www-form-urlencoded",
        "",
    }
)


def _from_http_exception(exc: web.HTTPException) -> web.Response:
    if exc.status < 400:
        return exc  # redirects and the like pass through
    code = _HTTP_CODES.get(exc.status, "http_error")
    message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
    if exc.status == 404:
        message = "no such endpoint; see /openapi.json"
    elif exc.status == 405:
        message = f"method not allowed; allowed: {exc.headers.get('Allow', '')}"
    response = error_response(exc.status, code, message)
    if "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response


# --- every endpoint's wrapper: errors, CORS, metrics ---------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _endpoint(route: str, handler: Handler, metrics: Metrics, config: WebConfig) -> Handler:
    """``handler`` with the error shape, CORS headers and request metrics of every endpoint.

    A wrapper per route rather than an aiohttp middleware: a middleware chain costs each request
    two more coroutines and a route lookup, on the lookup path that is a tenth of its time.
    """
    cors = config.cors_origins

    async def endpoint(request: web.Request) -> web.StreamResponse:
        start = time.perf_counter()
        allowed_origin = None
        if cors:
            origin = request.headers.get("Origin")
            allowed_origin = _allowed_origin(origin, cors) if origin else None
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = _from_http_exception(exc)
        except CoverlookupError as exc:
            response = error_response(status_for(exc), exc.code, str(exc))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("unexpected error answering %s %s", request.method, request.path_qs)
            response = error_response(500, "internal", "internal error; it has been logged")
        if allowed_origin and not response.prepared:  # a streamed answer set its own headers
            response.headers["Access-Control-Allow-Origin"] = allowed_origin
            response.headers["Vary"] = "Origin"
        metrics.observe(route, response.status, time.perf_counter() - start)
        return response

    return endpoint


async def handle_unmatched(request: web.Request) -> web.Response:
    """Every request no route takes: a CORS preflight, a 405 naming the allowed methods or 404."""
    config = request.app[CONFIG]
    origin = request.headers.get("Origin") if config.cors_origins else None
    if request.method == "OPTIONS" and origin and _allowed_origin(origin, config.cors_origins):
        response = web.Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type"
        response.headers["Access-Control-Max-Age"] = "600"
        return response
    allowed: set[str] = set()
    fallback = request.match_info.route.resource
    for resource in request.app.router.resources():
        if resource is not fallback:
            allowed |= (await resource.resolve(request))[1]
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


def _allowed_origin(origin: str, allowed: tuple[str, ...]) -> str | None:
    if "*" in allowed:
        return "*"
    return origin if origin in allowed else None


# --- handlers -------------------------------------------------------------------------------------


def _json(data: Any, *, status: int = 200, content_type: str = "application/json") -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type=content_type)


def _params(request: web.Request, allowed: frozenset[str]) -> dict[str, str]:
    """Query parameters as a dict; unknown or repeated names are a 400."""
    out: dict[str, str] = {}
    for key, value in request.query.items():
        if key not in allowed:
            raise UsageError(f"unknown parameter {key!r}; allowed: {', '.join(sorted(allowed))}")
        if key in out:
            raise UsageError(f"parameter {key!r} given more than once")
        out[key] = value
    return out


def _nearest_km(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return parse_number(text, "nearest_km")
    except CoordinateError as exc:
        raise UsageError(str(exc)) from None


async def handle_lookup(request: web.Request) -> web.Response:
    query = plain_point_query(request.rel_url.raw_query_string)  # most requests: no options
    if query is None:
        params = _params(request, LOOKUP_PARAMS)
        if "address" in params:
            return _json(await _lookup_address(request.app[SERVICE], params))
        query = Query.make(
            parse_number(params.get("lat"), "lat"),
            parse_number(params.get("lon"), "lon"),
            nearest_km=_nearest_km(params.get("nearest_km")),
            **{name: params[name] for name in FILTERS if name in params},
        )
    body = await request.app[BATCHER].submit(query)
    return web.Response(body=body, content_type="application/json")


async def _lookup_address(service: LookupService, params: dict[str, str]) -> dict[str, Any]:
    if "lat" in params or "lon" in params:
        raise UsageError("give either address or lat and lon, not both")
    filters = {name: params.get(name) for name in FILTERS}
    nearest_km = _nearest_km(params.get("nearest_km"))
    address, index = params["address"], service.index
    # Geocoding may wait on an online provider (and its rate limiter): keep the loop serving.
    return await asyncio.get_running_loop().run_in_executor(
        None,
        lambda: service.lookup_address(address, nearest_km=nearest_km, index=index, **filters),
    )


BATCH_PARAMS = frozenset({"format", *FILTERS})
_BATCH_JSON_ITEMS = 1000


async def handle_batch(request: web.Request) -> web.StreamResponse:
    """CSV in, CSV out (``?format=jsonl`` for JSON Lines); JSON in, JSON out. Streamed."""
    from coverlookup.batch import FORMATS, BatchRunner, BatchSummary

    config = request.app[CONFIG]
    params = _params(request, BATCH_PARAMS)
    filters = {name: params.get(name) for name in FILTERS}
    Query.make(0.0, 0.0, **filters)  # a bad filter is a 400 before any body is read
    fmt = params.get("format", "csv")
    if fmt not in FORMATS:
        raise UsageError(f"format must be one of {', '.join(FORMATS)}, got {fmt[:40]!r}")
    if request.content_type != "application/json" and request.content_type not in _CSV_TYPES:
        raise web.HTTPUnsupportedMediaType(
            text=f"a batch body is text/csv or application/json, not {request.content_type[:80]}"
        )
    limit = config.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    try:
        body = await request.read()  # bounded by client_max_size: a chunked body over it is a 413
    except web.RequestPayloadError as exc:  # e.g. Content-Encoding: gzip on a body that is not
        encoding = request.headers.get("Content-Encoding", "")[:40]
        reason = " ".join(str(exc).split())
        response = error_response(
            400,
            "bad_request",
            f"the request body could not be read (Content-Encoding {encoding!r}): {reason}",
        )
        # The rest of the body cannot be read either: do not try (aiohttp would, and log the
        # same error as unhandled), and close the connection after this answer.
        request.content.feed_eof()
        response.force_close()
        return response
    if not body.strip():
        raise UsageError("the request body is empty; send a CSV with a header row, or a JSON list")
    service = request.app[SERVICE]
    index = service.index  # one index for the whole batch, even across a refresh
    runner = BatchRunner(index, geocoder=service.geocoder, filters=filters)
    loop = asyncio.get_running_loop()
    response = web.StreamResponse()
    origin = request.headers.get("Origin")
    allowed = (
        _allowed_origin(origin, config.cors_origins) if origin and config.cors_origins else None
    )
    if allowed:  # the endpoint wrapper cannot add headers once the stream has started
        response.headers["Access-Control-Allow-Origin"] = allowed
        response.headers["Vary"] = "Origin"
    response.headers["X-Coverlookup-Snapshot"] = index.snapshot_id
    if request.content_type == "application/json":
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise UsageError(f"the body is not JSON: {exc}") from None
        items = data.get("rows") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise UsageError('a JSON batch is a list of objects (or {"rows": [...]})')
        results = runner.iter_json(items)
        response.content_type = "application/json"
        await response.prepare(request)
        snapshot = {"id": index.snapshot_id, "created": index.created}
        await response.write(b'{"snapshot":' + orjson.dumps(snapshot) + b',"results":[')
        counts = {"rows": 0, "ok": 0, "errors": 0}
        separator = b""
        while True:
            part = await loop.run_in_executor(None, _next_items, results, _BATCH_JSON_ITEMS)
            if not part:
                break
            for item in part:
                counts["rows"] += 1
                counts["ok" if item["status"] == "ok" else "errors"] += 1
            await response.write(separator + b",".join(orjson.dumps(item) for item in part))
            separator = b","
        await response.write(b'],"summary":' + orjson.dumps(counts) + b"}")
        await response.write_eof()
        return response
    import io

    summary = BatchSummary()
    chunks = runner.iter_output(io.BytesIO(body), fmt=fmt, summary=summary)
    first = await loop.run_in_executor(None, next, chunks, None)
    response.content_type = "text/csv" if fmt == "csv" else "application/x-ndjson"
    response.charset = "utf-8"
    await response.prepare(request)
    part = first
    while part is not None:
        if part:
            await response.write(part.encode("utf-8"))
        part = await loop.run_in_executor(None, next, chunks, None)
    await response.write_eof()
    log.info("batch: %d rows, %d errors in %.2fs", summary.rows, summary.errors, summary.seconds)
    return response


def _next_items(iterator: Iterator[Any], count: int) -> list[Any]:
    return list(itertools.islice(iterator, count))


def _page(request: web.Request) -> tuple[int, int]:
    params = _params(request, LIST_PARAMS)
    values = {}
    for name, default, low, high in (("limit", 1000, 1, MAX_PAGE), ("offset", 0, 0, MAX_OFFSET)):
        text = params.get(name)
        if text is None:
            values[name] = default
            continue
        # ASCII digits only: str.isdigit() also takes '²' and '①', which int() refuses.
        if not (text.isascii() and text.isdigit()):
            raise UsageError(f"{name} must be a non-negative integer, got {text[:40]!r}")
        digits = text.lstrip("0") or "0"
        value = int(digits) if len(digits) <= 20 else high + 1
        if not low <= value <= high:
            raise UsageError(f"{name} must be between {low} and {high}, got {text[:40]}")
        values[name] = value  # an offset past the end is an empty page
    return values["limit"], values["offset"]


async def handle_servers(request: web.Request) -> web.Response:
    limit, offset = _page(request)
    return _json(request.app[SERVICE].servers(limit=limit, offset=offset))


async def handle_server(request: web.Request) -> web.Response:
    _params(request, frozenset())
    return _json(request.app[SERVICE].server(request.match_info["server_id"]))


async def handle_entry(request: web.Request) -> web.Response:
    _params(request, frozenset())
    return _json(request.app[SERVICE].entry(request.match_info["entry_key"]))


async def handle_entry_geojson(request: web.Request) -> web.Response:
    _params(request, frozenset())
    feature = request.app[SERVICE].index.entry_geojson(request.match_info["entry_key"])
    return _json(feature, content_type="application/geo+json")


async def handle_status(request: web.Request) -> web.Response:
    _params(request, frozenset())
    return _json(request.app[SERVICE].status())


async def handle_healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def handle_readyz(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    if not service.ready:
        return error_response(503, "not_ready", "no coverage index is loaded yet")
    return _json({"status": "ready", "snapshot": service.index.snapshot_id})


async def handle_metrics(request: web.Request) -> web.Response:
    text = request.app[METRICS].render(request.app[SERVICE], request.app[BATCHER])
    response = web.Response(body=text.encode("utf-8"))
    response.headers["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
    return response


async def handle_openapi(request: web.Request) -> web.Response:
    return _json(openapi(request.app[CONFIG].max_body_bytes))


_UNMATCHED_PATH = r"/{unmatched_path:[\s\S]*}"  # any path, even one with a newline in it

ROUTES: tuple[tuple[str, str, Callable[[web.Request], Any]], ...] = (
    ("GET", "/v1/lookup", handle_lookup),
    ("POST", "/v1/lookup/batch", handle_batch),
    ("GET", "/v1/servers", handle_servers),
    ("GET", "/v1/servers/{server_id}", handle_server),
    # Entry keys are URLs with a fragment: clients percent-encode them ("/" → %2F, "#" → %23).
    ("GET", "/v1/entries/{entry_key:.+}/geojson", handle_entry_geojson),
    ("GET", "/v1/entries/{entry_key:.+}", handle_entry),
    ("GET", "/v1/status", handle_status),
    ("GET", "/healthz", handle_healthz),
    ("GET", "/readyz", handle_readyz),
    ("GET", "/metrics", handle_metrics),
    ("GET", "/openapi.json", handle_openapi),
)


# --- the application ------------------------------------------------------------------------------


def create_app(
    service: LookupService,
    *,
    cors_origins: Iterable[str] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY,
    refresh_s: float | None = None,
    metrics_dir: str | None = None,
) -> web.Application:
    """The aiohttp application over ``service``.

    With ``refresh_s`` (and a service that has a loader) a background task refreshes the index
    every ``refresh_s`` seconds; a service with a loader but no index yet is loaded at startup.
    ``metrics_dir``: a directory shared by the processes of one server, whose ``/metrics`` then
    counts the requests of all of them (:mod:`coverlookup.metrics`).
    """
    _check_refresh(refresh_s)
    app = web.Application(client_max_size=max_body_bytes)
    metrics = app[METRICS] = Metrics(metrics_dir)
    config = app[CONFIG] = WebConfig(
        cors_origins=tuple(cors_origins), max_body_bytes=max_body_bytes, refresh_s=refresh_s
    )
    app[SERVICE] = service
    app[BATCHER] = LookupBatcher(service)
    for method, path, handler in ROUTES:
        resource = app.router.add_resource(path)  # metrics label routes by their canonical form
        endpoint = _endpoint(resource.canonical, handler, metrics, config)
        resource.add_route(method, endpoint)
        if method == "GET":  # HEAD answers as GET does, without the body (curl -I, probes)
            resource.add_route("HEAD", endpoint)
    # Any path no other route takes (as "unmatched" in the metrics), even a route a caller adds
    # after this: aiohttp (3.10 and later) tries the longest fixed path prefix first.
    unmatched = _endpoint("unmatched", handle_unmatched, metrics, config)
    app.router.add_route("*", _UNMATCHED_PATH, unmatched)
    app.cleanup_ctx.append(_background)
    return app


async def _background(app: web.Application) -> AsyncIterator[None]:
    service, config = app[SERVICE], app[CONFIG]
    metrics, batcher = app[METRICS], app[BATCHER]
    tasks: list[asyncio.Task[None]] = []
    if service.loader is not None and (not service.ready or config.refresh_s):
        tasks.append(asyncio.create_task(_keep_fresh(service, config.refresh_s)))
    if metrics.shared_dir is not None:
        tasks.append(asyncio.create_task(_publish_metrics(metrics, batcher)))
    yield
    try:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        batcher.close()
        metrics.publish(batcher)  # the last counts stay for the processes still serving


async def _publish_metrics(metrics: Metrics, batcher: LookupBatcher) -> None:
    while True:
        metrics.publish(batcher)
        await asyncio.sleep(PUBLISH_INTERVAL_S)


async def _keep_fresh(service: LookupService, refresh_s: float | None) -> None:
    delay = 1.0
    while not service.ready:  # first load: retry with backoff until something serves
        if await service.refresh():
            break
        await asyncio.sleep(delay)
        delay = min(delay * 2, refresh_s or 60.0)
    if refresh_s:
        await service.refresh_forever(refresh_s)


# --- running --------------------------------------------------------------------------------------


class _Connection(web.RequestHandler):
    """aiohttp's connection handler, answering a request it cannot parse (a request line or
    header over its 8190-byte limit, no Host header, TLS or other bytes that are not HTTP) with
    the API's error shape, logged as one line: aiohttp's own answer is plain text, logged with
    a traceback, which lets any client fill the log."""

    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            super().handle_error(request, status, exc, message)  # logs it, with the traceback
            code = "internal" if status == 500 else "unavailable"
            answer = error_response(status, code, f"{status} error; it has been logged")
        else:
            if request.writer.output_size > 0:  # as aiohttp: too late to answer
                raise ConnectionError("the response has started; cannot send an error")
            text = str(getattr(exc, "message", None) or message or exc or "bad request")
            if isinstance(exc, LineTooLong) and len(exc.args) >= 2:
                line, limit = exc.args[0], exc.args[1]
                start = (
                    bytes(line).decode("latin-1") if isinstance(line, (bytes, bytearray)) else line
                )
                text = f"a request line or header field is longer than {limit} bytes: {start!r}"
            text = " ".join(text.split())  # aiohttp's messages may point with a caret below
            log.info("unparsable request from %s: %s", request.remote, text)
            answer = error_response(status, "bad_http_request", text)
        answer.force_close()
        return answer

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        # A body the client sent that does not decode (Content-Encoding: gzip on bytes that are
        # not) fails again when aiohttp reads what a handler left unread: the client's fault,
        # worth one line, not an error with three chained tracebacks.
        exc = kwargs.get("exc_info")
        if isinstance(exc, (web.RequestPayloadError, HttpProcessingError)) and args:
            reason = " ".join(str(exc).split())
            log.info(f"{args[0]}: unreadable request body: %s", *args[1:], reason)
            return
        super().log_exception(*args, **kwargs)


class _Server(web.Server):
    """aiohttp's low-level server, with :class:`_Connection` for each connection."""

    def __call__(self) -> web.RequestHandler:
        handler = super().__call__()
        handler.__class__ = _Connection  # same slots: only the methods change
        return handler


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    shutdown_timeout: float = 10.0,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT, then stop accepting, finish requests in flight and return."""
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout
    )
    await runner.setup()
    if type(runner.server) is web.Server:  # unparsable requests get the API's error shape
        runner.server.__class__ = _Server
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None)
    try:
        await site.start()
    except OSError as exc:  # in use, no such host, not an address of this machine
        await runner.cleanup()
        raise UsageError(_cannot_listen(host, port, exc)) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        addresses = [f"http://{_hostport(s)}" for s in _bound(runner)]
        if announce is not None:
            announce(", ".join(addresses))
        await stop.wait()
        log.info("stopping: finishing requests in flight")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()


def _check_refresh(refresh_s: float | None) -> None:
    if refresh_s is not None and not 0 < refresh_s < math.inf:  # nan too: sleep(nan) spins
        raise UsageError("refresh interval must be above 0 seconds (and finite)")


def _cannot_listen(host: str, port: int, exc: OSError) -> str:
    reason = str(exc.strerror or exc)
    if reason.startswith("error while attempting to bind"):  # asyncio's words around the OS's
        reason = reason.rsplit(": ", 1)[-1]
    reason = reason[:1].lower() + reason[1:]  # the OS's "Address already in use", as asyncio's
    return f"cannot listen on {_hostport((host, port))}: {reason}"


def _check_listen(host: str, port: int) -> None:
    """Fail with one line if ``host:port`` cannot be listened on: taken (also by another server
    sharing ports with SO_REUSEPORT, which this bind, without it, does not join), no such host,
    or not an address of this machine. Run before any worker starts."""
    import socket

    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        usable = 0
        for family, kind, proto, _name, address in infos:
            try:
                probe = socket.socket(family, kind, proto)
            except OSError as exc:
                if len(infos) > 1:  # a family this kernel lacks (IPv6 off): asyncio skips it too
                    continue
                raise exc from None
            with probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio does
                if family == socket.AF_INET6 and hasattr(socket, "IPV6_V6ONLY"):
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                probe.bind(address)
                usable += 1
        if not usable:
            raise OSError(f"no address of {host!r} can be used on this machine")
    except OSError as exc:
        raise UsageError(_cannot_listen(host, port, exc)) from None


def _bound(runner: web.AppRunner) -> list[Any]:
    out = []
    for site in runner.sites:
        server = getattr(site, "_server", None)
        for sock in getattr(server, "sockets", None) or ():
            out.append(sock.getsockname())
    return out


def _hostport(name: Any) -> str:
    host, port = name[0], name[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    snapshot: str | None = None
    seeds: tuple[str, ...] = ()
    refresh_s: float | None = None
    workers: int = 1
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = DEFAULT_MAX_BODY
    crawl_options: tuple[tuple[str, Any], ...] = ()
    # Address lookups: geocoders in order (None: $COVERLOOKUP_GEOCODER, else offline), options
    # per provider as (name, ((key, value), ...)), and the radius for approximate answers.
    geocoder: str | None = None
    geocoder_options: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    candidate_km: float = 10.0
    # Set by ``run`` for its workers: where they publish their metrics, and the snapshot root
    # whose crawler (the parent process) records its refresh state there.
    metrics_dir: str | None = None
    crawl_root: str | None = None
    # What /v1/status names as the source, when it is not the snapshot path (the parent's seeds).
    source: str | None = None
    # The parent's temporary directories, which a worker outliving a killed parent removes.
    parent_temporaries: tuple[str, ...] = ()


def build_service(options: ServeOptions) -> LookupService:
    from coverlookup.service import crawl_loader, load_index, snapshot_watcher

    addresses: dict[str, Any] = {"candidate_km": options.candidate_km}
    if options.geocoder is not None or options.geocoder_options:
        from coverlookup.geocoding import build_geocoder

        provider_options = {name: dict(pairs) for name, pairs in options.geocoder_options}
        addresses["geocoder"] = build_geocoder(options.geocoder, provider_options or None)

    if options.seeds:
        loader = crawl_loader(
            list(options.seeds), snapshot_root=options.snapshot, **dict(options.crawl_options)
        )
        index = None
        if options.snapshot is not None:
            # Serve the last snapshot at once if there is one; the crawl refreshes it.
            with contextlib.suppress(SnapshotError):
                index = load_index(options.snapshot, warm=True)
        source = "seeds: " + " ".join(options.seeds)
        return LookupService(index, loader=loader, source=source, **addresses)
    if options.snapshot is not None and options.refresh_s:
        # Watch the snapshot directory: serve its current snapshot and reload when it changes.
        index = None
        with contextlib.suppress(SnapshotError):
            index = load_index(options.snapshot, warm=True)
        service = LookupService(index, source=options.source or options.snapshot, **addresses)
        service.loader = snapshot_watcher(
            options.snapshot,
            lambda: service.index.snapshot_id if service.ready else None,
            crawler=options.crawl_root is not None,
        )
        service.crawl_root = options.crawl_root
        return service
    index = load_index(options.snapshot, warm=True)
    return LookupService(index, source=options.snapshot or "demo", **addresses)


def run_worker(
    options: ServeOptions,
    announce: bool = True,
    service: LookupService | None = None,
    parent_pid: int | None = None,
    log_level: int | None = None,
) -> None:
    """One serving process (also the whole server when ``workers`` is 1), serving ``service``
    if the parent built it before forking, else one built here from ``options``. A worker given
    its ``parent_pid`` stops (as on SIGTERM) when that parent is gone."""
    if parent_pid is not None:
        # The parent's handlers came along with a fork. The parent passes SIGTERM on (a Ctrl-C in
        # a terminal reaches every process of the group): until serve() takes over, SIGTERM
        # stops this worker as it is and SIGINT is left to the parent.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if log_level is not None and not logging.getLogger().handlers:  # spawned: as the CLI's
            logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
        threading.Thread(target=_stop_when_orphaned, args=(parent_pid,), daemon=True).start()
    if service is None:
        service = build_service(options)
    app = create_app(
        service,
        cors_origins=options.cors_origins,
        max_body_bytes=options.max_body_bytes,
        refresh_s=options.refresh_s,
        metrics_dir=options.metrics_dir,
    )
    what = (
        f"snapshot {service.index.snapshot_id}"
        if service.ready
        else "no index yet (first crawl running)"
    )

    def say(addresses: str) -> None:
        if announce:
            _say(f"coverlookup: serving {what} on {addresses} (pid {os.getpid()})")

    if not service.ready and announce:

        def first_load(index: Any) -> None:
            service.on_swap = None
            _say(f"coverlookup: ready: snapshot {index.snapshot_id}")

        service.on_swap = first_load

    try:
        asyncio.run(
            serve(app, options.host, options.port, reuse_port=options.workers > 1, announce=say)
        )
    except UsageError as exc:
        if parent_pid is None:
            raise
        log.error("%s", exc)  # the parent says that this worker stopped; no traceback
        sys.exit(1)
    finally:
        if parent_pid is not None and os.getppid() != parent_pid:  # nobody else will
            for directory in options.parent_temporaries:
                shutil.rmtree(directory, ignore_errors=True)


def _stop_when_orphaned(parent_pid: int) -> None:
    """SIGTERM this process once its parent has died (a killed parent cannot stop its workers,
    which would otherwise go on serving a snapshot nobody refreshes)."""
    while os.getppid() == parent_pid:
        time.sleep(ORPHAN_CHECK_S)
    log.warning("the parent process %s is gone; stopping", parent_pid)
    os.kill(os.getpid(), signal.SIGTERM)


def _say(line: str) -> None:
    """One line on stderr in one write: workers share the stream, and print() writes the text
    and its newline apart, so another worker's line could land between them."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def run(options: ServeOptions) -> int:
    """Serve in this process, or in ``workers`` processes sharing the port (SO_REUSEPORT).

    With seeds, this process crawls and the serving processes (one or more) load each snapshot it
    writes: parsing a crawl's documents holds the interpreter lock for up to seconds, which the
    process answering lookups must not do.
    """
    if options.workers < 1:
        raise UsageError("--workers must be at least 1")
    if options.workers == 1 and not options.seeds:
        run_worker(options)
        return 0
    if options.workers > 1 and options.port == 0:
        raise UsageError("--workers above 1 needs an explicit --port (the processes share it)")
    if options.workers > 1 and not hasattr(__import__("socket"), "SO_REUSEPORT"):
        raise UsageError("--workers above 1 needs SO_REUSEPORT, which this system lacks")
    if options.seeds:  # the workers get the watch interval; the user's is the crawler's
        _check_refresh(options.refresh_s)
    from coverlookup.discovery.walk import classify_seed

    for seed in options.seeds:  # a mistyped seed is an error now, not a crawl retried forever
        classify_seed(seed)
    _check_listen(options.host, options.port)
    # SIGTERM/SIGINT stop everything from here on: before any worker exists (while the index
    # loads), by returning; after, by passing SIGTERM on to the workers.
    group = _Workers()
    crawler: threading.Thread | None = None
    crawler_stop = threading.Event()
    # The workers' /metrics count the requests of all of them (coverlookup.metrics).
    metrics_dir = tempfile.mkdtemp(prefix="coverlookup-metrics-")
    temporary_root = None
    old: dict[int, Any] = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            old[sig] = signal.signal(sig, group.on_signal)
        worker_options = dataclasses.replace(
            options, metrics_dir=metrics_dir, parent_temporaries=(metrics_dir,)
        )
        if options.seeds:
            # One crawler (this process) writes snapshots and records how its crawls went; the
            # workers watch the directory and report both.
            root = options.snapshot
            if root is None:  # crawls are kept on disk either way; this run's go when it ends
                root = temporary_root = tempfile.mkdtemp(prefix="coverlookup-serve-")
            elif os.path.isfile(os.path.join(root, "manifest.json")):
                raise UsageError(
                    f"--snapshot {root} is one snapshot; with --seed give the directory crawls "
                    "are written into (its parent's parent, holding 'current')"
                )
            _check_writable(root)
            worker_options = dataclasses.replace(
                worker_options,
                seeds=(),
                snapshot=root,
                refresh_s=WATCH_INTERVAL_S,
                crawl_root=root,
                source="seeds: " + " ".join(options.seeds),
                parent_temporaries=(metrics_dir, *([root] if temporary_root else [])),
            )
            crawler = threading.Thread(
                target=_crawl_in_background, args=(options, root, crawler_stop), daemon=True
            )
            crawler.start()
        # With seeds, the crawler thread already runs here: no fork (threads and fork do not mix).
        return group.run(options.workers, worker_options, preload=not options.seeds)
    except _Stopped:  # a signal before any worker started
        return 0
    finally:
        group.closing = True  # a second Ctrl-C while the crawler finishes must not skip cleanup
        crawler_stop.set()
        if crawler is not None:  # a crawl in progress is cancelled; a snapshot being written is
            crawler.join()  # finished, not left half way (its executor would hold exit anyway)
        shutil.rmtree(metrics_dir, ignore_errors=True)
        if temporary_root is not None:
            shutil.rmtree(temporary_root, ignore_errors=True)
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _check_writable(root: str) -> None:
    """Fail at start, with a usage error, if the crawler could not write snapshots under ``root``
    (or would report an earlier run's crawls)."""
    try:
        os.makedirs(root, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):  # a record of an earlier run is not this run's
            os.unlink(os.path.join(root, CRAWL_STATE_FILE))
        probe = os.path.join(root, f".write-test-{os.getpid()}")
        with open(probe, "wb"):
            pass
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(
            f"cannot write to the snapshot directory {root}: {exc.strerror or exc}"
        ) from None


class _Stopped(Exception):
    """SIGTERM or SIGINT arrived before any worker was started."""


class _Workers:
    """The serving processes of one ``run``, and how a signal reaches them."""

    def __init__(self) -> None:
        self.procs: list[multiprocessing.process.BaseProcess] = []
        self.stopping = False
        self.closing = False  # cleaning up: a further signal changes nothing

    def on_signal(self, signum: int, _frame: Any) -> None:
        self.stopping = True
        if self.closing:
            return
        if not self.procs:
            raise _Stopped  # still loading: stop here
        for proc in self.procs:
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)

    def run(self, count: int, worker_options: ServeOptions, *, preload: bool) -> int:
        service = None
        if preload and "fork" in multiprocessing.get_all_start_methods():
            # Load the index once, then fork: the workers share its pages (the territories, their
            # edge frames and search trees are never written again) instead of each loading one.
            ctx: Any = multiprocessing.get_context("fork")
            service = build_service(worker_options)
            gc.freeze()  # the collector would otherwise write to every object's page in each
        else:
            ctx = multiprocessing.get_context("spawn")
        args = (worker_options, True, service, os.getpid(), logging.getLogger().level)
        for _ in range(count):
            proc = ctx.Process(target=run_worker, args=args, daemon=False)
            self.procs.append(proc)  # listed first: a signal during start() then reaches it
            proc.start()
        if self.stopping:  # a signal while they were starting
            self.on_signal(signal.SIGTERM, None)
        return _wait_workers(self.procs, lambda: self.stopping, self.on_signal)


async def _unless_stopped(work: Awaitable[Any], stop: threading.Event) -> Any:
    """``await work``, cancelled once ``stop`` is set."""
    task = asyncio.ensure_future(work)
    while not stop.is_set():
        done, _ = await asyncio.wait({task}, timeout=0.2)
        if done:
            return task.result()
    task.cancel()
    return await task  # raises CancelledError


def _crawl_in_background(options: ServeOptions, root: str, stop: threading.Event) -> None:
    """Crawl the seeds into ``root`` until one crawl works (retrying after 1, 2, 4 ... seconds, at
    most ``refresh_s`` or 60 apart, as a server retries its first load), then every
    ``refresh_s`` seconds if given."""
    from coverlookup.service import crawl_loader

    loader = crawl_loader(
        list(options.seeds), snapshot_root=root, warm=False, **dict(options.crawl_options)
    )
    state = RefreshState()
    delay = 1.0
    while not stop.is_set():
        state.last_attempt = time.time()
        try:
            asyncio.run(_unless_stopped(loader(), stop))
        except asyncio.CancelledError:
            return
        except Exception as exc:  # the workers keep serving the last good snapshot
            state.failed(exc)
            log.warning("crawl of %s failed: %s", " ".join(options.seeds), exc)
        else:
            state.succeeded(new=True)
        try:  # the workers report it in /v1/status and /metrics
            write_crawl_state(root, state)
        except OSError as exc:
            log.warning("could not record the crawl's state in %s: %s", root, exc)
        if state.refreshes == 0:  # nothing to serve yet: try again soon
            wait, delay = delay, min(delay * 2, options.refresh_s or 60.0)
        elif not options.refresh_s:
            return
        else:
            wait = options.refresh_s
        if stop.wait(wait):
            return


def _wait_workers(
    procs: Sequence[multiprocessing.process.BaseProcess],
    stopping: Callable[[], bool],
    stop_all: Callable[[int, Any], None],
) -> int:
    from multiprocessing.connection import wait

    code = 0
    alive = list(procs)
    while alive:
        wait([p.sentinel for p in alive])
        for proc in [p for p in alive if not p.is_alive()]:
            alive.remove(proc)
            if proc.exitcode not in (0, -signal.SIGTERM) and not stopping():
                others = "; stopping the others" if len(procs) > 1 else ""
                log.error("worker %s exited with %s%s", proc.pid, proc.exitcode, others)
                code = 1
                stop_all(signal.SIGTERM, None)
    return code
