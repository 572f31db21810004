"""Crawl throughput: a federation of one CDS server per US retail territory, on loopback.

    python benchmarks/bench_crawl.py [--limit N] [--http] [--concurrency 64] [--skip-baseline]

Turns ``../shared/data/us-retail-territories/utilities-territories.geojson`` (2,919 territories)
into 2,919 fake CDS servers, one host name each (``u0000.utilities.bench`` ...): a well-known
metadata document, a coverage listing (every tenth server paginated over three pages, with extra
logical entries) and the territory's GeoJSON. A separate process serves them over HTTPS (a
throwaway CA from ``trustme``, one wildcard certificate) on 127.0.0.1; every host name is pinned
to it with ``--resolve``-style pins. The crawler starts from the 2,919 domains.

Prints documents/s and total time, then, for comparison, the same documents fetched by a bare
aiohttp client (same connection limits, no guard, no parsing, no retries) and the ratio.
Target: the whole federation crawled in under 60 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("COVERLOOKUP_SHARED", REPO.parent / "shared"))
US_FILE = SHARED / "data" / "us-retail-territories" / "utilities-territories.geojson"
sys.path.insert(0, str(REPO))  # run from a clone without installing

DOMAIN = "utilities.bench"
WK = "/.well-known/cds-server-metadata.json"


def host_for(number: int) -> str:
    return f"u{number:04d}.{DOMAIN}"


def _entry(host: str, entry_id: str, name: str, kind: str, props: dict[str, Any]) -> dict:
    entry: dict[str, Any] = {
        "id": entry_id,
        "created": "2024-01-01T00:00:00Z",
        "updated": "2025-01-01T00:00:00Z",
        "entity_name": props.get("name") or host,
        "entity_abbreviation": None,
        "country": "US",
        "name": name,
        "type": kind,
        "role": "authoritative",
        "infrastructure_types": ["distribution_utility"],
        "commodity_types": ["electricity"],
        "capabilities": [],
    }
    if kind == "geographic":
        entry["geojson_resource"] = f"https://{host}/cds/territory.geojson"
    return entry


def federation(limit: int | None) -> dict[str, bytes]:
    """'host/path?query' -> body, for every document of the federation."""
    data = orjson.loads(US_FILE.read_bytes())
    features = data["features"][:limit] if limit else data["features"]
    docs: dict[str, bytes] = {}
    for number, feature in enumerate(features):
        host = host_for(number)
        props = feature.get("properties") or {}
        base = f"https://{host}"
        docs[f"{host}{WK}"] = orjson.dumps(
            {
                "cds_metadata_version": "v1",
                "cds_metadata_url": base + WK,
                "created": "2024-01-01T00:00:00Z",
                "updated": "2025-01-01T00:00:00Z",
                "name": props.get("name") or host,
                "description": f"Electric retail service territory, EIA id {props.get('eiaId')}",
                "website": base + "/",
                "documentation": base + "/docs",
                "support": base + "/support",
                "capabilities": ["coverage"],
                "coverage": base + "/cds/coverage.json",
            }
        )
        territory = _entry(host, str(props.get("id") or number), "Electric", "geographic", props)
        if number % 10 == 0:
            pages = [
                [territory],
                [_entry(host, f"c{i}", f"Commercial {i}", "logical", props) for i in (1, 2)],
                [_entry(host, f"r{i}", f"Residential {i}", "logical", props) for i in (1, 2)],
            ]
        else:
            pages = [[territory]]
        for i, entries in enumerate(pages):
            path = "/cds/coverage.json" + (f"?page={i + 1}" if i else "")
            nxt = f"{base}/cds/coverage.json?page={i + 2}" if i + 1 < len(pages) else None
            prev = (f"{base}/cds/coverage.json" + (f"?page={i}" if i > 1 else "")) if i else None
            docs[f"{host}{path}"] = orjson.dumps(
                {"coverage_entries": entries, "next": nxt, "previous": prev}
            )
        docs[f"{host}/cds/territory.geojson"] = orjson.dumps(feature)
    return docs


# --- the server process -------------------------------------------------------------------------


def serve(limit: int | None, workdir: Path, use_tls: bool) -> None:
    import ssl

    import trustme
    from aiohttp import web

    docs = federation(limit)
    ctx = None
    if use_tls:
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(workdir / "ca.pem"))
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(f"*.{DOMAIN}").configure_cert(ctx)

    async def handle(request: web.Request) -> web.Response:
        host = (request.host or "").rsplit(":", 1)[0]
        body = docs.get(host + request.path_qs)
        if body is None:
            return web.Response(status=404)
        return web.Response(body=body, content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx, backlog=1024)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(f"READY {port} {len(docs)}", flush=True)
        await asyncio.Event().wait()

    try:
        import uvloop  # type: ignore[import-not-found]

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())


# --- the client side ----------------------------------------------------------------------------


async def baseline(urls: list[str], port: int, cafile: str | None, concurrency: int) -> float:
    """The same documents through a bare aiohttp client: the floor for any crawler."""
    import ssl

    import aiohttp
    from aiohttp.abc import AbstractResolver

    class Loopback(AbstractResolver):
        async def resolve(self, host: str, port_: int = 0, family: int = 0) -> list[dict]:
            return [
                {
                    "hostname": host,
                    "host": "127.0.0.1",
                    "port": port,
                    "family": 2,
                    "proto": 0,
                    "flags": 0,
                }
            ]

        async def close(self) -> None:
            pass

    ctx = ssl.create_default_context(cafile=cafile) if cafile else None
    connector = aiohttp.TCPConnector(
        limit=concurrency, limit_per_host=4, resolver=Loopback(), ssl=ctx or False
    )
    sem = asyncio.Semaphore(concurrency)
    start = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(url: str) -> None:
            async with sem, session.get(url) as resp:
                await resp.read()

        await asyncio.gather(*(one(u) for u in urls))
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, help="only the first N territories")
    parser.add_argument("--http", action="store_true", help="plain http instead of https")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--serve", metavar="WORKDIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.limit, Path(args.serve), not args.http)
        return 0
    if not US_FILE.is_file():
        print(f"bench_crawl: {US_FILE} not found (set COVERLOOKUP_SHARED)", file=sys.stderr)
        return 2

    from coverlookup.discovery import CrawlOptions, crawl_with_report, format_summary, summary

    with tempfile.TemporaryDirectory(prefix="bench-crawl-") as tmp:
        cmd = [sys.executable, __file__, "--serve", tmp]
        if args.limit:
            cmd += ["--limit", str(args.limit)]
        if args.http:
            cmd.append("--http")
        server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            line = server.stdout.readline().split()
            if not line or line[0] != "READY":
                print("bench_crawl: the server did not start", file=sys.stderr)
                return 1
            port, ndocs = int(line[1]), int(line[2])
            count = args.limit or len(orjson.loads(US_FILE.read_bytes())["features"])
            scheme_port = 80 if args.http else 443
            pins = tuple(f"{host_for(i)}:{scheme_port}:127.0.0.1:{port}" for i in range(count))
            seeds = [host_for(i) for i in range(count)]
            if args.http:
                seeds = [f"http://{host_for(i)}{WK}" for i in range(count)]
            cafile = None if args.http else str(Path(tmp) / "ca.pem")
            options = CrawlOptions(
                resolve=pins,
                cafile=cafile,
                allow_http=args.http,
                concurrency=args.concurrency,
                max_servers=count + 10,
            )
            print(
                f"federation: {count} servers, {ndocs} documents, served on 127.0.0.1:{port} "
                f"({'http' if args.http else 'https'})"
            )
            start = time.perf_counter()
            snapshot, report = asyncio.run(crawl_with_report(seeds, options=options))
            elapsed = time.perf_counter() - start
            docs = len(snapshot.documents)
            print(format_summary(summary(snapshot, report)))
            print(
                f"crawl: {docs} documents in {elapsed:.2f} s = {docs / elapsed:.0f} documents/s "
                f"(target: whole federation < 60 s)"
            )
            if not args.skip_baseline:
                urls = [d.final_url or d.url for d in snapshot.documents if not d.error]
                base = asyncio.run(baseline(urls, port, cafile, args.concurrency))
                print(
                    f"bare aiohttp, same {len(urls)} URLs: {base:.2f} s = "
                    f"{len(urls) / base:.0f} documents/s; crawler/bare time ratio "
                    f"{elapsed / base:.2f}x"
                )
            return 0 if elapsed < 60 and docs >= ndocs else 1
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    sys.exit(main())
