"""A fake CDS federation: real aiohttp servers on 127.0.0.1, many host names, one process.

Like aiohttp's ``examples/fake_server.py``: the code under test is not patched; the crawler's
``--resolve`` pins map every fake host name to these servers (HTTPS with a throwaway CA made by
``trustme``, plus plain HTTP). Static documents come from ``tests/fixtures/federation/<host>/``
(a ``?query`` is part of the file name, written ``%3Fquery`` as a host mirror may); the
misbehaving hosts are code.
The servers run on their own event loop in a thread, so tests call the synchronous crawler.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trustme
from aiohttp import web

from coverlookup.discovery import CrawlOptions

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "federation"
USER_AGENT_PREFIX = "coverlookup/"

HOSTS = (
    "holding.test",
    "sub-a.test",
    "sub-b.test",
    "legacy.test",
    "old-utility.test",
    "new-utility.test",
    "busy.test",
    "broken.test",
    "slow.test",
    "bomb.test",
    "badjson.test",
    "redirecty.test",
    "plain.test",
    "oe.test",
)

Handler = Callable[[web.Request], Any]


class FakeFederation:
    """Start with ``with FakeFederation.running() as fed:``; ``fed.options()`` crawls it."""

    def __init__(self, root: Path = FIXTURES):
        self.root = root
        self.hits: Counter[str] = Counter()  # "host/path?query" -> requests
        self.requests: list[dict[str, Any]] = []
        # (host, path_qs) -> handler, consulted before the built-in behaviours; tests set these.
        self.overrides: dict[tuple[str, str], Handler] = {}
        self.busy_remaining = 1
        self.ca = trustme.CA()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.https_port = 0
        self.http_port = 0
        self._bomb = gzip.compress(b" " * (32 * 1024 * 1024), compresslevel=9)

    # -- lifecycle -------------------------------------------------------------------------------

    @classmethod
    @contextmanager
    def running(cls, tmp_path: Path) -> Iterator[FakeFederation]:
        fed = cls()
        fed.start(tmp_path)
        try:
            yield fed
        finally:
            fed.stop()

    def start(self, tmp_path: Path) -> None:
        self.cafile = tmp_path / "fake-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.cafile))
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fakefed", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError("fake federation did not start")

    async def _start(self) -> None:
        import ssl

        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._stopping = asyncio.Event()
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        cert = self.ca.issue_cert(*HOSTS, "127.0.0.1")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        tls = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ctx)
        plain = web.TCPSite(self._runner, "127.0.0.1", 0)
        await tls.start()
        await plain.start()
        self.https_port = tls._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.http_port = plain._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        assert self._loop is not None and self._thread is not None

        async def shutdown() -> None:
            assert self._runner is not None
            self._stopping.set()
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()

    # -- what the crawler needs ------------------------------------------------------------------

    def pins(self) -> tuple[str, ...]:
        pins = []
        for host in HOSTS:
            pins.append(f"{host}:443:127.0.0.1:{self.https_port}")
            pins.append(f"{host}:80:127.0.0.1:{self.http_port}")
        return tuple(pins)

    def options(self, **kwargs: Any) -> CrawlOptions:
        base: dict[str, Any] = {
            "resolve": self.pins(),
            "cafile": str(self.cafile),
            "retries": 1,
            "backoff_base": 0.001,
            "backoff_max": 0.01,
            "retry_after_cap": 0.05,
            "timeout": 2.0,
            "max_bytes": 1024 * 1024,
        }
        base.update(kwargs)
        return CrawlOptions(**base)

    def url_loopback(self, path: str) -> str:
        return f"https://127.0.0.1:{self.https_port}{path}"

    # -- serving ---------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        host = (request.host or "").rsplit(":", 1)[0].lower()
        if host.startswith("["):
            host = host.strip("[]")
        key = f"{host}{request.path_qs}"
        self.hits[key] += 1
        self.requests.append(
            {
                "host": host,
                "path": request.path_qs,
                "user_agent": request.headers.get("User-Agent", ""),
                "if_none_match": request.headers.get("If-None-Match"),
                "if_modified_since": request.headers.get("If-Modified-Since"),
                "secure": request.secure,
            }
        )
        override = self.overrides.get((host, request.path_qs))
        if override is not None:
            return await override(request)
        behaviour = getattr(self, "_host_" + host.replace("-", "_").replace(".", "_"), None)
        if behaviour is not None:
            answer = await behaviour(request)
            if answer is not None:
                return answer
        return self.static(host, request)

    def static(self, host: str, request: web.Request) -> web.Response:
        rel = request.path.lstrip("/") + (
            f"%3F{request.query_string}" if request.query_string else ""  # '?' (Windows names)
        )
        path = self.root / host / rel
        if not path.is_file():
            return web.Response(status=404, text="not found\n")
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        ctype = {".geojson": "application/geo+json", ".yaml": "application/yaml"}.get(
            path.suffix, "application/json"
        )
        return web.Response(
            body=body,
            headers={
                "Content-Type": ctype,
                "ETag": etag,
                "Last-Modified": "Wed, 01 Jan 2025 00:00:00 GMT",
            },
        )

    # Misbehaving hosts: each returns a response, or None to fall through to the static files.

    async def _host_old_utility_test(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently(f"https://new-utility.test{request.path_qs}")

    async def _host_busy_test(self, request: web.Request) -> web.StreamResponse | None:
        if request.path.startswith("/.well-known/") and self.busy_remaining > 0:
            self.busy_remaining -= 1
            return web.Response(status=429, headers={"Retry-After": "7"}, text="slow down\n")
        return None

    async def _host_broken_test(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=500, text="internal error\n")

    async def _host_slow_test(self, request: web.Request) -> web.StreamResponse:
        # Headers and one byte, then nothing: the body never finishes.
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 1000
        await response.prepare(request)
        await response.write(b"{")
        await self._stopping.wait()
        return response

    async def _host_bomb_test(self, request: web.Request) -> web.StreamResponse | None:
        if request.path == "/geo/bomb.geojson":
            return web.Response(
                body=self._bomb,
                headers={"Content-Type": "application/geo+json", "Content-Encoding": "gzip"},
            )
        return None

    async def _host_redirecty_test(self, request: web.Request) -> web.StreamResponse | None:
        if request.path == "/geo/to-loopback.geojson":
            raise web.HTTPFound(self.url_loopback("/secret.geojson"))
        if request.path == "/geo/to-metadata.geojson":
            raise web.HTTPFound("https://169.254.169.254/latest/meta-data/")
        if request.path == "/geo/to-http.geojson":
            raise web.HTTPMovedPermanently("http://plain.test/geo/to-http.geojson")
        return None

    async def _host_127_0_0_1(self, request: web.Request) -> web.StreamResponse | None:
        return None
