"""The crawler against servers that publish hostile or sloppy documents (see fakefed.py)."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from coverlookup.discovery import CrawlReport, crawl_with_report
from coverlookup.snapshot import Snapshot
from tests.fakefed import FakeFederation

WK = "/.well-known/cds-server-metadata.json"
HOST = "plain.test"
STAMP = "2022-01-01T00:00:00Z"


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeFederation]:
    with FakeFederation.running(tmp_path_factory.mktemp("fed")) as federation:
        yield federation


def _json(value: Any) -> Any:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=json.dumps(value).encode(), content_type="application/json")

    return handler


def _metadata(host: str, **fields: Any) -> dict[str, Any]:
    doc = {
        "cds_metadata_version": "v1",
        "cds_metadata_url": f"https://{host}{WK}",
        "created": STAMP,
        "updated": STAMP,
        "name": host,
        "description": "a test server",
        "website": f"https://{host}/",
        "documentation": f"https://{host}/docs",
        "support": f"https://{host}/support",
        "capabilities": ["coverage"],
        "coverage": f"https://{host}/hostile/coverage.json",
    }
    doc.update(fields)
    return doc


def _entry(entry_id: str, geojson: str) -> dict[str, Any]:
    return {
        "id": entry_id,
        "created": STAMP,
        "updated": STAMP,
        "entity_name": "Hostile Power",
        "country": "US",
        "name": f"territory {entry_id}",
        "description": "d",
        "type": "geographic",
        "role": "official",
        "infrastructure_types": ["distribution_utility"],
        "commodity_types": ["electricity"],
        "capabilities": [],
        "geojson_resource": geojson,
    }


def _crawl(fed: FakeFederation, seeds: list[str]) -> tuple[Snapshot, CrawlReport]:
    return asyncio.run(crawl_with_report(seeds, options=fed.options()))


def test_geojson_whose_type_is_not_a_string_is_reported_not_an_internal_error(
    fed: FakeFederation,
) -> None:
    square = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}
    fed.overrides[(HOST, WK)] = _json(_metadata(HOST))
    fed.overrides[(HOST, "/hostile/coverage.json")] = _json(
        {
            "coverage_entries": [
                _entry("listtype", f"https://{HOST}/hostile/listtype.json"),
                _entry("good", f"https://{HOST}/hostile/good.json"),
            ],
            "next": None,
            "previous": None,
        }
    )
    fed.overrides[(HOST, "/hostile/listtype.json")] = _json({"type": ["Polygon"]})
    fed.overrides[(HOST, "/hostile/good.json")] = _json(square)
    snap, report = _crawl(fed, [f"https://{HOST}{WK}"])
    assert sorted(e.key for e in snap.entries) == [
        f"https://{HOST}{WK}#good",
        f"https://{HOST}{WK}#listtype",
    ]
    assert [(p.url, p.kind, p.message, p.kept) for p in report.problems] == [
        (
            f"https://{HOST}/hostile/listtype.json",
            "invalid_document",
            "not a GeoJSON object (no known 'type')",
            f"entry https://{HOST}{WK}#listtype without its geometry",
        )
    ]


def test_local_document_pointing_at_a_device_is_not_read_forever(tmp_path: Path) -> None:
    # A relative URL in a local file resolves to file:///dev/zero, which reports size 0.
    meta = _metadata("local.test", coverage="coverage.json")
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    coverage = {"coverage_entries": [_entry("dev", "/dev/zero")], "next": None, "previous": None}
    (tmp_path / "coverage.json").write_text(json.dumps(coverage))
    snap, report = asyncio.run(crawl_with_report([str(tmp_path / "meta.json")]))
    assert [e.id for e in snap.entries] == ["dev"]
    assert [(p.url, p.kind, p.message) for p in report.problems] == [
        ("file:///dev/zero", "io", "/dev/zero: not a regular file")
    ]


def _fan(n: int) -> dict[str, Any]:
    """A server linking ten more, each linking ten more: a federation without end."""
    url = f"https://{HOST}/fan/{n}.json"
    links = [f"https://{HOST}/fan/{10 * n + i}.json" for i in range(1, 11)]
    doc = _metadata(HOST, cds_metadata_url=url, capabilities=[], related_metadata=links)
    del doc["coverage"]
    return doc


def test_max_servers_holds_against_links_that_fan_out(fed: FakeFederation) -> None:
    for n in range(120):
        fed.overrides[(HOST, f"/fan/{n}.json")] = _json(_fan(n))
    options = fed.options(max_servers=5)
    snapshot, report = asyncio.run(
        crawl_with_report([f"https://{HOST}/fan/0.json"], options=options)
    )
    assert len(snapshot.servers) == 5
    [limit] = [p for p in report.problems if p.kind == "server_limit"]
    assert limit.message == "more than 5 servers"
    assert limit.kept.startswith("not fetched (this and ") and limit.kept.endswith(
        " more metadata links)"
    )
    fetched = {r["path"] for r in fed.requests if r["path"].startswith("/fan/")}
    assert len(fetched) == 5


def test_a_crawl_stops_fetching_at_its_total_byte_limit(fed: FakeFederation) -> None:
    for n in range(120):
        fed.overrides[(HOST, f"/fan/{n}.json")] = _json(_fan(n))
    size = len(json.dumps(_fan(0)).encode())
    options = fed.options(max_total_bytes=3 * size)
    snapshot, report = asyncio.run(
        crawl_with_report([f"https://{HOST}/fan/0.json"], options=options)
    )
    # A body stops being read once it and the bodies kept would pass the budget; those being
    # read at the same time may each still fit (at most one per concurrent fetch); the 100
    # after them are not fetched.
    bound = 3 + options.concurrency
    assert 2 <= len(snapshot.servers) <= bound
    [limited] = [p for p in report.problems if p.kind == "total_limit"]  # one row for all
    assert "max_total_bytes" in limited.message
    first, rest = limited.kept.split("; ")
    assert first == "nothing from this document"  # what the first one kept, unchanged
    assert int(rest.split(" ")[0]) > 10 and rest.endswith(" more documents not read")
    assert report.bytes <= bound * size


def test_mirror_reads_count_against_the_total_byte_limit() -> None:
    from coverlookup import demo
    from coverlookup.discovery.options import CrawlOptions

    budget = 6_000  # the demo federation's documents come to several times this
    _, report = asyncio.run(
        crawl_with_report(
            [str(demo.federation_path())], options=CrawlOptions(max_total_bytes=budget)
        )
    )
    assert 0 < report.bytes <= budget
    [limited] = [p for p in report.problems if p.kind == "total_limit"]
    assert "not read, the crawl has read its limit of 6,000 bytes" in limited.message


async def test_a_cancelled_crawl_ends_its_fetches_before_closing_their_session(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from coverlookup.discovery import crawl

    accepted: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # accepts, never answers

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        seed = f"http://127.0.0.1:{port}/.well-known/cds-server-metadata.json"
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(crawl([seed], allow_http=True, allow_private=True), 0.5)
        # A fetch left running would retry now, on the closed session (the first retry waits
        # up to a second), and its task's error would be logged once collected.
        await asyncio.sleep(2.5)
        gc.collect()
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
    assert accepted
    assert "Fetcher" not in caplog.text and "exception" not in caplog.text.lower()


def _gzip(body: bytes) -> Any:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(
            body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )

    return handler


def test_gzip_bodies_in_several_members_truncated_or_with_trailing_bytes(
    fed: FakeFederation,
) -> None:
    import gzip

    doc = json.dumps(_metadata(HOST, capabilities=[])).encode()
    url = f"https://{HOST}{WK}"
    half = len(doc) // 2
    whole = gzip.compress(doc)
    cases = {
        "members": gzip.compress(doc[:half]) + gzip.compress(doc[half:]),  # RFC 1952 allows it
        "truncated": whole[:-10],
        "trailing": whole + b"<html>oops</html>",
        "padded": whole + b"\x00" * 512,  # a tape-style zero padding: gzip(1) reads it too
        "endless zeros": whole + b"\x00" * (1024 * 1024),  # bounded: not read without end
    }
    outcomes = {}
    for name, body in cases.items():
        fed.overrides[(HOST, WK)] = _gzip(body)
        snapshot, report = _crawl(fed, [url])
        problems = [(p.kind, p.message) for p in report.problems if p.url == url]
        outcomes[name] = (len(snapshot.servers), problems)
    assert outcomes["members"] == outcomes["padded"] == (1, [])
    assert outcomes["endless zeros"] == (
        0,
        [("bad_encoding", f"{url}: corrupt gzip body: data after the end of the stream")],
    )
    assert outcomes["truncated"] == (
        0,
        [("bad_encoding", f"{url}: corrupt gzip body: the stream ends early (truncated)")],
    )
    assert outcomes["trailing"] == (
        0,
        [("bad_encoding", f"{url}: corrupt gzip body: 17 bytes after the end of the stream")],
    )


def test_a_next_link_that_cannot_be_followed_is_a_crawl_problem(fed: FakeFederation) -> None:
    url = f"https://{HOST}{WK}"
    listing = f"https://{HOST}/hostile/coverage.json"
    for bad in ("file:///etc/passwd", 42):
        fed.overrides[(HOST, WK)] = _json(_metadata(HOST))
        fed.overrides[(HOST, "/hostile/coverage.json")] = _json(
            {"coverage_entries": [], "next": bad, "previous": None}
        )
        _, report = _crawl(fed, [url])
        [problem] = [p for p in report.problems if p.url == listing]
        assert problem.kind == "bad_link" and problem.kept == "0 entries from 1 pages"
        assert "'next'" in problem.message and problem.message.endswith("past this page")


def test_a_field_given_twice_is_a_finding_of_the_crawled_document(fed: FakeFederation) -> None:
    url = f"https://{HOST}{WK}"
    text = json.dumps(_metadata(HOST, capabilities=[]))
    twice = text[:-1] + ', "name": "another name"}'

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=twice, content_type="application/json")

    fed.overrides[(HOST, WK)] = handler
    snapshot, _ = _crawl(fed, [url])
    record = snapshot.document(url)
    assert record is not None
    assert [(f.code, f.pointer) for f in record.findings if f.code == "duplicate-key"] == [
        ("duplicate-key", "/name")
    ]
    assert snapshot.servers[0].name == "another name"  # the last value, as every parser reads it


def test_credentials_in_redirects_and_scheme_relative_links_are_never_sent_or_stored(
    fed: FakeFederation,
) -> None:
    url = f"https://{HOST}{WK}"
    seen: list[str | None] = []

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"https://mu:mp@{HOST}/moved.json#frag")

    async def target(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        doc = _metadata(
            HOST,
            capabilities=[],
            related_metadata=[f"//ru:rp@{HOST}/sister.json#x"],
            cds_metadata_url=f"https://{HOST}/moved.json",
        )
        del doc["coverage"]
        return web.json_response(doc)

    async def sister(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        doc = _metadata(HOST, capabilities=[], cds_metadata_url=f"https://{HOST}/sister.json")
        del doc["coverage"]
        return web.json_response(doc)

    fed.overrides[(HOST, WK)] = moved
    fed.overrides[(HOST, "/moved.json")] = target
    fed.overrides[(HOST, "/sister.json")] = sister
    snapshot, _ = _crawl(fed, [url])
    assert seen == [None, None]  # no Basic auth went out
    urls = sorted(s.metadata_url for s in snapshot.servers)
    assert urls == [f"https://{HOST}/moved.json", f"https://{HOST}/sister.json"]
    assert "mp@" not in json.dumps([d.to_dict() for d in snapshot.documents])


def test_a_linked_server_that_fails_gives_its_place_under_max_servers_back(
    fed: FakeFederation,
) -> None:
    links = [f"https://{HOST}/fan/{i}.json" for i in range(1, 11)]
    root = _metadata(HOST, cds_metadata_url=f"https://{HOST}/fan/0.json", capabilities=[])
    root["related_metadata"] = links
    del root["coverage"]
    fed.overrides[(HOST, "/fan/0.json")] = _json(root)

    async def gone(request: web.Request) -> web.Response:
        await asyncio.sleep(0.2)  # still in flight when the other links are read
        return web.Response(status=404)

    for i in range(1, 11):
        leaf = _metadata(HOST, cds_metadata_url=links[i - 1], capabilities=[])
        del leaf["coverage"]
        fed.overrides[(HOST, f"/fan/{i}.json")] = gone if i <= 4 else _json(leaf)
    options = fed.options(max_servers=5)
    snapshot, report = asyncio.run(
        crawl_with_report([f"https://{HOST}/fan/0.json"], options=options)
    )
    assert len(snapshot.servers) == 5  # the root and four good leaves, not one
    assert [p.kind for p in report.problems].count("server_limit") == 1
