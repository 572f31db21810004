"""The crawler against a fake federation of real HTTPS servers on 127.0.0.1 (see fakefed.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coverlookup.discovery import CrawlReport, crawl_sync, crawl_with_report
from coverlookup.snapshot import Snapshot, load_snapshot, write_snapshot
from tests.fakefed import FakeFederation

WK = "/.well-known/cds-server-metadata.json"
WK23 = "/.well-known/carbon-data-spec.json"

SEEDS = [
    "holding.test",
    "legacy.test",
    f"https://old-utility.test{WK}",
    f"https://busy.test{WK}",
    f"https://broken.test{WK}",
    f"https://slow.test{WK}",
    f"https://bomb.test{WK}",
    f"https://badjson.test{WK}",
    "redirecty.test",
]

GOOD_SERVERS = {
    f"https://holding.test{WK}",
    f"https://sub-a.test{WK}",
    f"https://sub-b.test{WK}",
    f"https://legacy.test{WK23}",
    f"https://new-utility.test{WK}",
    f"https://busy.test{WK}",
    f"https://bomb.test{WK}",
    f"https://redirecty.test{WK}",
}

GOOD_ENTRIES = (
    {f"https://sub-a.test{WK}#a{i}" for i in range(1, 7)}
    | {f"https://sub-b.test{WK}#b1", f"https://sub-b.test{WK}#b2"}
    | {f"https://legacy.test{WK23}#elec", f"https://legacy.test{WK23}#gas"}
    | {f"https://new-utility.test{WK}#n1", f"https://busy.test{WK}#busy1"}
    | {f"https://bomb.test{WK}#boom"}
    | {f"https://redirecty.test{WK}#{i}" for i in ("good", "loopback", "metadata", "downgrade")}
)

GEOMETRIES = {
    "https://sub-a.test/geo/a1.geojson",
    "https://sub-a.test/geo/a3.geojson",
    "https://sub-a.test/geo/a5.geojson",
    "https://sub-a.test/geo/shared.geojson",
    "https://sub-b.test/geo/b1.geojson",
    "https://sub-b.test/geo/b2.geojson",
    "https://legacy.test/geo/elec.json",
    "https://legacy.test/geo/gas.json",
    "https://new-utility.test/geo/n1.geojson",
    "https://busy.test/geo/busy1.geojson",
    "https://redirecty.test/geo/good.geojson",
}


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeFederation]:
    with FakeFederation.running(tmp_path_factory.mktemp("fed")) as federation:
        yield federation


@pytest.fixture(scope="module")
def crawled(fed: FakeFederation) -> tuple[Snapshot, CrawlReport]:
    import asyncio

    return asyncio.run(crawl_with_report(SEEDS, options=fed.options()))


def _problems(report: CrawlReport) -> dict[tuple[str, str], Any]:
    return {(p.url, p.kind): p for p in report.problems}


def _geometry_urls(snapshot: Snapshot) -> set[str]:
    return {d.url for d in snapshot.documents if d.kind == "geojson" and d.sha256 and not d.error}


def test_good_servers_and_entries_all_present(crawled: tuple[Snapshot, CrawlReport]) -> None:
    snapshot, _ = crawled
    assert {s.metadata_url for s in snapshot.servers} == GOOD_SERVERS
    assert {e.key for e in snapshot.entries} == GOOD_ENTRIES
    assert _geometry_urls(snapshot) == GEOMETRIES


def test_both_spec_versions_normalised(crawled: tuple[Snapshot, CrawlReport]) -> None:
    snapshot, _ = crawled
    shapes = {s.metadata_url: s.shape for s in snapshot.servers}
    assert shapes[f"https://legacy.test{WK23}"] == "cds-2023"
    assert shapes[f"https://sub-a.test{WK}"] == "cds-2025"
    legacy = {e.id: e for e in snapshot.entries if e.server_url.startswith("https://legacy.test")}
    assert legacy["elec"].type == "geographic"
    assert legacy["elec"].commodity_types == ("electricity",)
    assert legacy["gas"].commodity_types == ("natural_gas",)


def test_domain_seed_falls_back_to_2023_well_known(
    fed: FakeFederation, crawled: tuple[Snapshot, CrawlReport]
) -> None:
    _, report = crawled
    assert fed.hits[f"legacy.test{WK}"] == 1  # tried first, 404
    assert fed.hits[f"legacy.test{WK23}"] == 1
    assert not [p for p in report.problems if "legacy.test" in p.url]


def test_related_metadata_cycle_fetched_once(
    fed: FakeFederation, crawled: tuple[Snapshot, CrawlReport]
) -> None:
    # holding -> sub-a -> holding, and holding lists itself: each fetched exactly once.
    assert fed.hits[f"holding.test{WK}"] == 1
    assert fed.hits[f"sub-a.test{WK}"] == 1
    assert fed.hits[f"sub-b.test{WK}"] == 1


def test_pagination_three_pages_and_shared_geojson_fetched_once(
    fed: FakeFederation, crawled: tuple[Snapshot, CrawlReport]
) -> None:
    snapshot, _ = crawled
    pages = [d.url for d in snapshot.documents if d.url.startswith("https://sub-a.test/cds/")]
    assert sorted(pages) == [
        "https://sub-a.test/cds/coverage.json",
        "https://sub-a.test/cds/coverage.json?page=2",
        "https://sub-a.test/cds/coverage.json?page=3",
    ]
    # a2, a4 and a6 share one GeoJSON URL.
    assert fed.hits["sub-a.test/geo/shared.geojson"] == 1


def test_next_loop_stops_and_is_reported(
    fed: FakeFederation, crawled: tuple[Snapshot, CrawlReport]
) -> None:
    snapshot, report = crawled
    problem = _problems(report)[("https://sub-b.test/cds/coverage-2.json", "pagination_loop")]
    assert "leads back to https://sub-b.test/cds/coverage.json" in problem.message
    assert problem.kept == "2 entries from 2 pages"
    assert fed.hits["sub-b.test/cds/coverage.json"] == 1
    assert {e.id for e in snapshot.entries if "sub-b" in e.server_url} == {"b1", "b2"}


def test_moved_domain_recorded_under_new_url(crawled: tuple[Snapshot, CrawlReport]) -> None:
    snapshot, report = crawled
    old = f"https://old-utility.test{WK}"
    new = f"https://new-utility.test{WK}"
    problem = _problems(report)[(old, "moved")]
    assert problem.message == f"moved from {old} to {new} (HTTP 301)"
    assert problem.severity == "notice"
    record = snapshot.document(old)
    assert record is not None and record.final_url == new
    assert record.redirects == [{"from": old, "to": new, "status": 301}]
    assert f"{new}#n1" in {e.key for e in snapshot.entries}


def test_429_retry_after_honoured_capped(
    fed: FakeFederation, crawled: tuple[Snapshot, CrawlReport]
) -> None:
    _, report = crawled
    problem = _problems(report)[(f"https://busy.test{WK}", "retried")]
    # Retry-After: 7, capped by retry_after_cap=0.05 in the test options.
    assert problem.message == "succeeded after 1 retries (HTTP 429, waited 0.05s)"
    assert fed.hits[f"busy.test{WK}"] == 2


def test_500_every_time_retried_then_reported(
    fed: FakeFederation, crawled: tuple[Snapshot, CrawlReport]
) -> None:
    snapshot, report = crawled
    url = f"https://broken.test{WK}"
    problem = _problems(report)[(url, "http_status")]
    assert problem.message == f"{url}: HTTP 500"
    assert problem.kept == "nothing from this document"
    assert fed.hits[f"broken.test{WK}"] == 2  # first try + retries=1
    record = snapshot.document(url)
    assert record is not None and record.status == 500 and record.sha256 is None


def test_trickling_body_cut_by_deadline(crawled: tuple[Snapshot, CrawlReport]) -> None:
    _, report = crawled
    url = f"https://slow.test{WK}"
    problem = _problems(report)[(url, "timeout")]
    assert problem.message == f"{url}: no complete answer within 2s"


def test_gzip_bomb_stopped_at_limit(crawled: tuple[Snapshot, CrawlReport]) -> None:
    snapshot, report = crawled
    url = "https://bomb.test/geo/bomb.geojson"
    problem = _problems(report)[(url, "too_large")]
    assert "over the limit of 1048576 bytes after decompression" in problem.message
    assert problem.kept == f"entry https://bomb.test{WK}#boom without its geometry"
    assert f"https://bomb.test{WK}#boom" in {e.key for e in snapshot.entries}


def test_invalid_json_reported_with_position(crawled: tuple[Snapshot, CrawlReport]) -> None:
    snapshot, report = crawled
    url = f"https://badjson.test{WK}"
    problem = _problems(report)[(url, "invalid_document")]
    assert problem.message == "invalid JSON at line 4 column 30: trailing comma is not allowed"
    record = snapshot.document(url)
    assert record is not None
    assert [f.code for f in record.findings] == ["syntax-error"]


def test_redirects_to_private_addresses_and_downgrade_refused(
    fed: FakeFederation, crawled: tuple[Snapshot, CrawlReport]
) -> None:
    _, report = crawled
    problems = _problems(report)
    loop = problems[("https://redirecty.test/geo/to-loopback.geojson", "unsafe_url")]
    assert "127.0.0.1 is a loopback address" in loop.message
    meta = problems[("https://redirecty.test/geo/to-metadata.geojson", "unsafe_url")]
    assert "169.254.169.254 is a link-local address" in meta.message
    down = problems[("https://redirecty.test/geo/to-http.geojson", "unsafe_url")]
    assert "refusing https -> http downgrade" in down.message
    assert down.kept == f"entry https://redirecty.test{WK}#downgrade without its geometry"
    # Nothing was ever asked of the refused targets.
    assert fed.hits["127.0.0.1/secret.geojson"] == 0
    assert fed.hits["plain.test/geo/to-http.geojson"] == 0


def test_every_error_kind_reported_once(crawled: tuple[Snapshot, CrawlReport]) -> None:
    _, report = crawled
    assert report.by_kind() == {
        "http_status": 1,
        "invalid_document": 1,
        "moved": 1,
        "pagination_loop": 1,
        "retried": 1,
        "timeout": 1,
        "too_large": 1,
        "unsafe_url": 3,
    }


def test_user_agent_and_tls(fed: FakeFederation, crawled: tuple[Snapshot, CrawlReport]) -> None:
    agents = {r["user_agent"] for r in fed.requests}
    assert agents == {"coverlookup/0.1.0 (+https://github.com/coverlookup/coverlookup)"}
    assert all(r["secure"] for r in fed.requests)


def test_snapshot_round_trip(crawled: tuple[Snapshot, CrawlReport], tmp_path: Path) -> None:
    snapshot, _ = crawled
    written = write_snapshot(tmp_path, snapshot)
    loaded = load_snapshot(tmp_path)
    assert loaded.path == written
    assert {e.key for e in loaded.entries} == GOOD_ENTRIES
    entry = next(e for e in loaded.entries if e.key == f"https://sub-b.test{WK}#b1")
    geometry = loaded.geometry_bytes(entry)
    assert geometry is not None and b'"b1"' in geometry
    assert {(p["url"], p["kind"]) for p in loaded.problems} == {
        (p.url, p.kind) for p in crawled[1].problems
    }


def test_write_snapshot_prepares_it_before_publishing(
    crawled: tuple[Snapshot, CrawlReport], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    snapshot, _ = crawled
    seen = []

    def prepare(directory: Path) -> None:
        seen.append((directory, load_snapshot(directory).id, (tmp_path / "current").exists()))
        raise RuntimeError("the compiler broke")

    written = write_snapshot(tmp_path, snapshot, before_publish=prepare)
    assert seen == [(written, snapshot.id, False)]  # complete, and not current yet
    assert load_snapshot(tmp_path).path == written  # a failed preparation does not withhold it
    assert "the compiler broke" in caplog.text


def test_allow_private_lets_the_loopback_redirect_through(
    fed: FakeFederation, tmp_path: Path
) -> None:
    snapshot = crawl_sync(["redirecty.test"], options=fed.options(allow_private=True))
    loopback = snapshot.document("https://redirecty.test/geo/to-loopback.geojson")
    assert loopback is not None and loopback.error is None
    assert loopback.final_url == fed.url_loopback("/secret.geojson")
    assert b'"secret"' in snapshot.raw(loopback.sha256 or "")


def test_plain_http_refused_without_allow_http(fed: FakeFederation) -> None:
    url = "http://plain.test/geo/to-http.geojson"
    snapshot, report = _crawl(fed, [url])
    assert [(p.url, p.kind, p.message) for p in report.problems] == [
        (url, "unsafe_url", f"{url}: plain http refused (use --allow-http)")
    ]
    assert snapshot.servers == []


def test_name_resolving_to_loopback_refused(fed: FakeFederation) -> None:
    # 'localhost' is not pinned: the system resolver answers 127.0.0.1, which the guard drops.
    url = f"https://localhost:{fed.https_port}{WK}"
    _, report = _crawl(fed, [url])
    assert len(report.problems) == 1
    problem = report.problems[0]
    assert (problem.url, problem.kind) == (url, "unsafe_url")
    assert "resolves only to refused addresses" in problem.message
    assert "loopback" in problem.message


def _crawl(fed: FakeFederation, seeds: list[str], **kwargs: Any) -> tuple[Snapshot, CrawlReport]:
    import asyncio

    return asyncio.run(crawl_with_report(seeds, options=fed.options(**kwargs)))


def test_redirect_to_other_scheme_loop_and_too_many(fed: FakeFederation) -> None:
    from aiohttp import web

    async def to_file(request: web.Request) -> web.Response:
        raise web.HTTPFound("file:///etc/passwd")

    async def loop_a(request: web.Request) -> web.Response:
        raise web.HTTPFound("https://plain.test/loop-b")

    async def loop_b(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect("/loop-a")

    async def chain(request: web.Request) -> web.Response:
        step = int(request.query.get("n", "0"))
        raise web.HTTPFound(f"/chain?n={step + 1}")

    fed.overrides[("plain.test", "/to-file")] = to_file
    fed.overrides[("plain.test", "/loop-a")] = loop_a
    fed.overrides[("plain.test", "/loop-b")] = loop_b
    for n in range(10):
        fed.overrides[("plain.test", "/chain" + (f"?n={n}" if n else ""))] = chain
    seeds = ["https://plain.test/to-file", "https://plain.test/loop-a", "https://plain.test/chain"]
    _, report = _crawl(fed, seeds, max_redirects=3)
    got = {p.url: (p.kind, p.message) for p in report.problems}
    assert got == {
        "https://plain.test/to-file": (
            "unsafe_url",
            "file:///etc/passwd: refusing scheme 'file' "
            "(redirected from https://plain.test/to-file)",
        ),
        "https://plain.test/loop-a": (
            "redirect_loop",
            "https://plain.test/loop-a: redirect loop back to https://plain.test/loop-a",
        ),
        "https://plain.test/chain": (
            "too_many_redirects",
            "https://plain.test/chain: more than 3 redirects",
        ),
    }


def test_connection_refused_is_retried_then_reported(fed: FakeFederation) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = "https://closed.test/.well-known/cds-server-metadata.json"
    options = fed.options(resolve=(*fed.pins(), f"closed.test:443:127.0.0.1:{port}"))
    import asyncio

    _, report = asyncio.run(crawl_with_report([url], options=options))
    [problem] = report.problems
    assert (problem.url, problem.kind) == (url, "connection")
    assert problem.message.startswith(f"{url}: cannot connect: ")
