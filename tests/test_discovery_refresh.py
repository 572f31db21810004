"""Refresh (304 reuse, stale fallback), host mirrors, local files and Open Energy seeds."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from coverlookup.discovery import CrawlReport, crawl_sync, crawl_with_report
from coverlookup.snapshot import Snapshot, load_snapshot, write_snapshot
from tests.fakefed import FIXTURES, FakeFederation

WK = "/.well-known/cds-server-metadata.json"
WK23 = "/.well-known/carbon-data-spec.json"
SUB_A = f"https://sub-a.test{WK}"
SUB_B = f"https://sub-b.test{WK}"
LEGACY = f"https://legacy.test{WK23}"


@pytest.fixture
def fed(tmp_path: Path) -> Iterator[FakeFederation]:
    with FakeFederation.running(tmp_path) as federation:
        yield federation


def _crawl(fed: FakeFederation, seeds: list[str], **kwargs: Any) -> tuple[Snapshot, CrawlReport]:
    return asyncio.run(crawl_with_report(seeds, options=fed.options(**kwargs)))


async def _http_500(request: web.Request) -> web.Response:
    return web.Response(status=500, text="down for maintenance\n")


async def _garbage(request: web.Request) -> web.Response:
    return web.Response(body=b'{"coverage_entries": [', content_type="application/json")


def test_refresh_reuses_304_and_keeps_failed_sources_stale(
    fed: FakeFederation, tmp_path: Path
) -> None:
    seeds = ["holding.test", "legacy.test"]
    first, report1 = _crawl(fed, seeds)
    loop = ("https://sub-b.test/cds/coverage-2.json", "pagination_loop")
    assert [(p.url, p.kind) for p in report1.problems] == [loop]
    keys_before = {e.key for e in first.entries}
    assert len(keys_before) == 10
    root = tmp_path / "snaps"
    write_snapshot(root, first)

    # Between crawls: sub-a's metadata breaks, sub-b's second page turns to garbage,
    # one GeoJSON goes away; everything else is unchanged.
    fed.overrides[("sub-a.test", WK)] = _http_500
    fed.overrides[("sub-b.test", "/cds/coverage-2.json")] = _garbage
    fed.overrides[("sub-a.test", "/geo/a1.geojson")] = _http_500
    fed.requests.clear()

    second, report2 = _crawl(fed, seeds, previous=load_snapshot(root))

    # Nothing good was dropped.
    assert {e.key for e in second.entries} == keys_before
    assert {s.metadata_url for s in second.servers} == {s.metadata_url for s in first.servers}

    problems = {(p.url, p.kind): p for p in report2.problems}
    assert set(problems) == {
        loop,
        (SUB_A, "http_status"),
        ("https://sub-b.test/cds/coverage-2.json", "invalid_document"),
        ("https://sub-a.test/geo/a1.geojson", "http_status"),
    }
    failed = problems[(SUB_A, "http_status")]
    assert failed.message == f"{SUB_A}: HTTP 500"
    assert failed.kept.startswith("the last good copy (fetched ")
    assert failed.kept.endswith("), marked stale")

    meta = second.document(SUB_A)
    assert meta is not None and meta.stale and meta.stale_reason == f"{SUB_A}: HTTP 500"
    assert second.stale[SUB_A] == f"{SUB_A}: HTTP 500"
    page = second.document("https://sub-b.test/cds/coverage-2.json")
    assert page is not None and page.stale
    assert page.stale_reason is not None and page.stale_reason.startswith("invalid on refresh: ")
    assert set(second.stale) == {SUB_A, f"{SUB_B}#b2"}
    geo = second.document("https://sub-a.test/geo/a1.geojson")
    assert geo is not None and geo.stale and geo.sha256 is not None

    # Unchanged documents were asked for conditionally and reused on 304.
    legacy_requests = [r for r in fed.requests if r["host"] == "legacy.test" and r["path"] == WK23]
    assert legacy_requests[0]["if_none_match"] is not None
    legacy = second.document(LEGACY)
    assert legacy is not None and legacy.status == 304 and not legacy.stale
    assert report2.reused_304 == 15  # every unchanged document

    # The refreshed snapshot is complete on disk, stale copies included.
    write_snapshot(root, second)
    loaded = load_snapshot(root)
    assert loaded.id == second.id
    a1 = next(e for e in loaded.entries if e.key == f"{SUB_A}#a1")
    assert b'"a1"' in (loaded.geometry_bytes(a1) or b"")
    assert loaded.stale == second.stale

    # A third crawl with the same failures still keeps the last good copies, with their
    # original fetch times: an outage over several refreshes loses nothing.
    third, report3 = _crawl(fed, seeds, previous=loaded)
    assert {e.key for e in third.entries} == keys_before
    assert set(third.stale) == set(second.stale)
    assert {(p.url, p.kind) for p in report3.problems} == set(problems)
    meta3 = third.document(SUB_A)
    assert meta3 is not None and meta3.stale and meta3.fetched_at == meta.fetched_at
    write_snapshot(root, third)
    a1 = next(e for e in load_snapshot(root).entries if e.key == f"{SUB_A}#a1")
    assert b'"a1"' in (load_snapshot(root).geometry_bytes(a1) or b"")


async def _not_a_listing(request: web.Request) -> web.Response:
    return web.json_response({"oops": 1})


def test_a_listing_without_its_entries_array_is_a_problem_and_keeps_the_last_good_copy(
    fed: FakeFederation, tmp_path: Path
) -> None:
    page = "https://sub-b.test/cds/coverage-2.json"
    fed.overrides[("sub-b.test", "/cds/coverage-2.json")] = _not_a_listing
    _, report = _crawl(fed, ["holding.test"])
    problem = next(p for p in report.problems if p.url == page)
    assert problem.kind == "invalid_document"
    assert "REQUIRED 'coverage_entries'" in problem.message
    assert problem.kept == "nothing from this document"
    # Refreshed after a good crawl: the page turning into something else keeps its entries.
    del fed.overrides[("sub-b.test", "/cds/coverage-2.json")]
    good, _ = _crawl(fed, ["holding.test"])
    root = tmp_path / "snaps"
    write_snapshot(root, good)
    fed.overrides[("sub-b.test", "/cds/coverage-2.json")] = _not_a_listing
    again, report = _crawl(fed, ["holding.test"], previous=load_snapshot(root))
    assert {e.key for e in again.entries} == {e.key for e in good.entries}
    assert next(p for p in report.problems if p.url == page).kept.endswith("marked stale")


_UNCLOSED = {
    "type": "Polygon",
    "coordinates": [[[10.0, 10.0], [11.0, 10.0], [11.0, 11.0], [10.0, 11.0]]],
}
_SQUARE = {
    "type": "Polygon",
    "coordinates": [[[10.0, 10.0], [11.0, 10.0], [11.0, 11.0], [10.0, 11.0], [10.0, 10.0]]],
}


async def _unclosed_ring(request: web.Request) -> web.Response:
    return web.json_response({"type": "Feature", "properties": {}, "geometry": _UNCLOSED})


async def _one_bad_feature(request: web.Request) -> web.Response:
    features = [
        {"type": "Feature", "properties": {}, "geometry": _SQUARE},
        {"type": "Feature", "properties": {}, "geometry": _UNCLOSED},
    ]
    return web.json_response({"type": "FeatureCollection", "features": features})


def test_a_geojson_without_a_usable_geometry_is_a_crawl_problem_and_keeps_the_last_good_copy(
    fed: FakeFederation, tmp_path: Path
) -> None:
    geo = "https://sub-a.test/geo/a1.geojson"
    fed.overrides[("sub-a.test", "/geo/a1.geojson")] = _unclosed_ring
    _, report = _crawl(fed, ["holding.test"])
    problem = next(p for p in report.problems if p.url == geo)
    assert problem.kind == "invalid_geometry"
    assert problem.message.startswith("no usable geometry: ")
    assert "closed" in problem.message and "/geometry/coordinates/0" in problem.message
    assert problem.kept == f"entry {SUB_A}#a1 without its geometry"

    del fed.overrides[("sub-a.test", "/geo/a1.geojson")]
    good, _ = _crawl(fed, ["holding.test"])
    root = tmp_path / "snaps"
    write_snapshot(root, good)
    fed.overrides[("sub-a.test", "/geo/a1.geojson")] = _unclosed_ring
    again, report = _crawl(fed, ["holding.test"], previous=load_snapshot(root))
    problem = next(p for p in report.problems if p.url == geo)
    assert (problem.kind, problem.kept.endswith("marked stale")) == ("invalid_geometry", True)
    record = again.document(geo)
    assert record is not None and record.stale
    assert again.raw(record.sha256 or "") == good.raw(good.document(geo).sha256 or "")

    # Some features bad, some good: a problem, and the good ones are what is kept.
    fed.overrides[("sub-a.test", "/geo/a1.geojson")] = _one_bad_feature
    _, report = _crawl(fed, ["holding.test"])
    problem = next(p for p in report.problems if p.url == geo)
    assert (problem.kind, problem.kept) == ("invalid_geometry", "the document's usable features")
    assert "/features/1/geometry/coordinates/0" in problem.message


def test_host_mirror_directory_needs_no_network(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    for host in ("holding.test", "sub-a.test", "sub-b.test", "legacy.test"):
        shutil.copytree(FIXTURES / host, mirror / host)
    # Default options: https only, private refused, no pins. Nothing may touch the network.
    snapshot, report = asyncio.run(crawl_with_report([str(mirror)]))
    assert {s.metadata_url for s in snapshot.servers} == {
        f"https://holding.test{WK}",
        SUB_A,
        SUB_B,
        LEGACY,
    }
    assert len(snapshot.entries) == 10
    assert [(p.url, p.kind) for p in report.problems] == [
        ("https://sub-b.test/cds/coverage-2.json", "pagination_loop")
    ]
    assert report.requests == 0
    assert snapshot.seeds == [str(mirror)]


def test_a_server_linked_with_another_spelling_of_its_host_is_crawled_once(
    tmp_path: Path,
) -> None:
    mirror = tmp_path / "mirror"
    for host in ("holding.test", "sub-a.test", "sub-b.test", "legacy.test"):
        shutil.copytree(FIXTURES / host, mirror / host)
    holding = mirror / "holding.test" / WK.lstrip("/")
    text = holding.read_text()
    assert SUB_A in text
    holding.write_text(text.replace(SUB_A, SUB_A.replace("sub-a.test", "SUB-A.Test.")))
    snapshot, report = asyncio.run(crawl_with_report([str(mirror)]))
    assert report.requests == 0
    servers = sorted(s.metadata_url.replace("SUB-A.Test.", "sub-a.test") for s in snapshot.servers)
    assert servers == sorted([f"https://holding.test{WK}", SUB_A, SUB_B, LEGACY])  # once each
    assert len(snapshot.entries) == 10
    # documents keep the URL they were linked with, so every territory is found
    geographic = [e for e in snapshot.entries if e.geojson_resource]
    assert geographic and all(snapshot.geometry_bytes(e) for e in geographic)


@pytest.mark.skipif(os.name == "nt", reason="Windows cannot name a file with '?'")
def test_host_mirror_reads_query_names_written_either_way(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    for host in ("holding.test", "sub-a.test", "sub-b.test", "legacy.test"):
        shutil.copytree(FIXTURES / host, mirror / host)
    pages = sorted((mirror / "sub-a.test" / "cds").glob("coverage.json%3F*"))
    assert len(pages) == 2
    pages[0].rename(pages[0].with_name(pages[0].name.replace("%3F", "?")))  # one of each
    snapshot, report = asyncio.run(crawl_with_report([str(mirror)]))
    assert report.requests == 0
    assert [p.url for p in report.problems if "sub-a.test" in p.url] == []
    assert sorted(e.id for e in snapshot.entries if e.server_url == SUB_A) == [
        "a1", "a2", "a3", "a4", "a5", "a6"
    ]  # fmt: skip


def test_local_metadata_file_seed(fed: FakeFederation, tmp_path: Path) -> None:
    path = tmp_path / "sub-b.json"
    shutil.copy(FIXTURES / "sub-b.test" / WK.lstrip("/"), path)
    snapshot = crawl_sync([str(path)], options=fed.options())
    assert [s.metadata_url for s in snapshot.servers] == [path.as_uri()]
    assert sorted(e.id for e in snapshot.entries) == ["b1", "b2"]
    assert {e.server_url for e in snapshot.entries} == {path.as_uri()}


def test_open_energy_url_seed(fed: FakeFederation) -> None:
    url = "https://oe.test/datasets.yaml"
    snapshot, report = _crawl(fed, [url])
    assert report.problems == []
    assert [(s.metadata_url, s.shape) for s in snapshot.servers] == [(url, "open-energy")]
    assert sorted(e.id for e in snapshot.entries) == ["feeder-consumption", "substation-headroom"]
    assert {e.type for e in snapshot.entries} == {"dataset"}
    record = snapshot.document(url)
    assert record is not None and record.kind == "open-energy"


def test_limits_on_depth_and_pages(fed: FakeFederation) -> None:
    snapshot, report = _crawl(fed, ["holding.test"], max_depth=0, max_pages=1)
    kinds = sorted((p.url, p.kind) for p in report.problems)
    assert kinds == [(SUB_A, "depth_limit"), (SUB_B, "depth_limit")]
    assert [s.metadata_url for s in snapshot.servers] == [f"https://holding.test{WK}"]

    snapshot, report = _crawl(fed, [SUB_A], max_depth=0, max_pages=2)
    assert sorted(e.id for e in snapshot.entries) == ["a1", "a2", "a3", "a4"]
    page_limit = [p for p in report.problems if p.kind == "page_limit"]
    assert [(p.url, p.kept) for p in page_limit] == [
        ("https://sub-a.test/cds/coverage.json?page=3", "4 entries from 2 pages")
    ]
