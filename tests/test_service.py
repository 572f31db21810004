"""The service facade: query parsing, answers, and swapping indexes under load."""

from __future__ import annotations

import asyncio
import itertools
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from coverlookup.errors import CoordinateError, UsageError
from coverlookup.index import CoverageIndex
from coverlookup.service import LookupService, Query, parse_number
from coverlookup.web import create_app


@pytest.mark.parametrize(
    ("text", "value"),
    [("43.85", 43.85), ("-120.5", -120.5), ("+1", 1.0), (".5", 0.5), ("1e1", 10.0)],
)
def test_parse_number_accepts_plain_decimals(text: str, value: float) -> None:
    assert parse_number(text, "lat") == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "lat is required"),
        ("", "lat is required"),
        ("nan", "lat must be a decimal number, got 'nan'"),
        ("inf", "lat must be a decimal number, got 'inf'"),
        ("1_0", "lat must be a decimal number, got '1_0'"),
        (" 1", "lat must be a decimal number, got ' 1'"),
        ("1e999", "lat is out of range: 1e999"),
    ],
)
def test_parse_number_rejects(text: str | None, message: str) -> None:
    with pytest.raises(CoordinateError) as caught:
        parse_number(text, "lat")
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        ((91.0, 0.0), {}, CoordinateError, "lat must be between -90 and 90, got 91.0"),
        ((0.0, -181.0), {}, CoordinateError, "lon must be between -180 and 180, got -181.0"),
        ((float("nan"), 0.0), {}, CoordinateError, "lat must be finite, got nan"),
        ((True, 0.0), {}, CoordinateError, "lat must be a number, got bool"),
        ((0.0, 0.0), {"colour": "red"}, UsageError, "unknown filter 'colour'"),
        ((0.0, 0.0), {"commodity": ""}, UsageError, "commodity must be a non-empty string"),
        ((0.0, 0.0), {"nearest_km": 0.0}, UsageError, "nearest_km must be above 0"),
        ((0.0, 0.0), {"nearest_km": float("nan")}, UsageError, "nearest_km must be above 0"),
    ],
)
def test_query_make_validates(
    args: tuple[Any, Any], kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as caught:
        Query.make(*args, **kwargs)
    assert str(caught.value).startswith(message)


# --- two indexes that cannot be confused ----------------------------------------------------------


def _square(lon: float, lat: float, half: float) -> list[list[list[float]]]:
    return [
        [
            [lon - half, lat - half],
            [lon + half, lat - half],
            [lon + half, lat + half],
            [lon - half, lat + half],
            [lon - half, lat - half],
        ]
    ]


def _federation(path: Path, tag: str) -> CoverageIndex:
    features = [
        {
            "type": "Feature",
            "properties": {"id": f"{tag}-{size}", "NAME": f"{tag} {size}"},
            "geometry": {"type": "Polygon", "coordinates": _square(10.0, 20.0, half)},
        }
        for size, half in (("big", 2.0), ("small", 0.5))
    ]
    path.write_bytes(orjson.dumps({"type": "FeatureCollection", "features": features}))
    return CoverageIndex.from_geojson(path, name_property="NAME")


@pytest.fixture
def two_indexes(tmp_path: Path) -> tuple[CoverageIndex, CoverageIndex, dict[str, list[str]]]:
    alpha = _federation(tmp_path / "alpha.geojson", "alpha")
    beta = _federation(tmp_path / "beta.geojson", "beta")
    assert alpha.snapshot_id != beta.snapshot_id
    expected = {
        alpha.snapshot_id: ["alpha small", "alpha big"],
        beta.snapshot_id: ["beta small", "beta big"],
    }
    return alpha, beta, expected


def _names(answer: dict[str, Any]) -> list[str]:
    return [m["name"] for m in answer["matches"]]


async def test_http_lookups_while_refresh_swaps_many_times(
    aiohttp_client: Any, two_indexes: tuple[CoverageIndex, CoverageIndex, dict[str, list[str]]]
) -> None:
    alpha, beta, expected = two_indexes
    cycle = itertools.cycle([beta, alpha])
    passes = itertools.cycle([1, 2, 3, 1, 5, 2, 4])

    async def loader() -> CoverageIndex:
        for _ in range(next(passes)):  # a real crawl yields to the loop; so does this one
            await asyncio.sleep(0)
        return next(cycle)

    service = LookupService(alpha, loader=loader)
    client = await aiohttp_client(create_app(service))
    swaps = 300
    done = asyncio.Event()
    seen: dict[str, int] = {alpha.snapshot_id: 0, beta.snapshot_id: 0}
    failures: list[str] = []

    async def hammer() -> None:
        while not done.is_set():
            response = await client.get("/v1/lookup?lat=20.1&lon=10.1")
            if response.status != 200:
                failures.append(f"{response.status}: {await response.text()}")
                continue
            answer = await response.json()
            snapshot = answer["snapshot"]["id"]
            if _names(answer) != expected[snapshot]:
                failures.append(f"mixed answer {snapshot}: {_names(answer)}")
            seen[snapshot] += 1

    async def refresher() -> None:
        for _ in range(swaps):
            assert await service.refresh()
        done.set()

    await asyncio.gather(refresher(), *(hammer() for _ in range(8)))
    assert failures == []
    assert service.refresh_state.refreshes == swaps and service.refresh_state.failures == 0
    # Both indexes answered (swaps interleave with requests).
    assert seen[alpha.snapshot_id] > 0 and seen[beta.snapshot_id] > 0


def test_threaded_lookups_while_swapping(
    two_indexes: tuple[CoverageIndex, CoverageIndex, dict[str, list[str]]],
) -> None:
    alpha, beta, expected = two_indexes
    service = LookupService(alpha)
    query = Query.make(20.1, 10.1)
    stop = threading.Event()
    failures: list[str] = []
    seen: dict[str, int] = {alpha.snapshot_id: 0, beta.snapshot_id: 0}
    lock = threading.Lock()

    def reader() -> None:
        while not stop.is_set():
            try:
                answer = service.lookup(query)
            except Exception as exc:  # any exception is a failure of the test
                failures.append(repr(exc))
                return
            snapshot = answer["snapshot"]["id"]
            if _names(answer) != expected[snapshot]:
                failures.append(f"mixed answer {snapshot}: {_names(answer)}")
            with lock:
                seen[snapshot] += 1

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for i in range(5000):
            service.swap(beta if i % 2 == 0 else alpha)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert sum(seen.values()) > 0


async def test_refresh_failure_keeps_old_index_and_recovers(
    two_indexes: tuple[CoverageIndex, CoverageIndex, dict[str, list[str]]],
) -> None:
    alpha, beta, expected = two_indexes
    outcomes: list[Any] = [OSError("down"), ValueError("bad document"), beta]

    async def loader() -> CoverageIndex:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    service = LookupService(alpha, loader=loader)
    assert await service.refresh() is False
    assert await service.refresh() is False
    state = service.refresh_state
    assert (state.failures, state.consecutive_failures) == (2, 2)
    assert state.last_error == "ValueError: bad document"
    assert service.index is alpha
    assert _names(service.lookup(Query.make(20.1, 10.1))) == expected[alpha.snapshot_id]
    assert await service.refresh() is True
    assert service.index is beta
    assert (state.refreshes, state.failures, state.consecutive_failures) == (1, 2, 0)
    assert state.last_error is None
    status = service.status()
    assert status["refresh"]["failures"] == 2 and status["snapshot"]["id"] == beta.snapshot_id


async def test_refresh_without_loader_is_a_usage_error(
    two_indexes: tuple[CoverageIndex, CoverageIndex, dict[str, list[str]]],
) -> None:
    service = LookupService(two_indexes[0])
    with pytest.raises(UsageError, match="no refresh source"):
        await service.refresh()


async def test_seed_loader_crawls_the_demo_mirror(tmp_path: Path) -> None:
    from coverlookup import demo
    from coverlookup.service import crawl_loader

    loader = crawl_loader([str(demo.federation_path())], snapshot_root=str(tmp_path / "snap"))
    service = LookupService(None, loader=loader)
    assert not service.ready
    assert await service.refresh() is True
    answer = service.lookup(Query.make(*demo.POINT_IN_IOU))
    assert [m["id"] for m in answer["matches"]] == ["mng-gas", "mpl-electric"]
    # The crawl was written as a snapshot that loads on its own.
    reloaded = CoverageIndex.load(tmp_path / "snap")
    assert reloaded.snapshot_id == service.index.snapshot_id


async def test_refresh_keeps_a_broken_source_last_good_entries(tmp_path: Path) -> None:
    import shutil

    from coverlookup import demo
    from coverlookup.service import crawl_loader

    mirror = tmp_path / "federation"
    shutil.copytree(demo.federation_path(), mirror)
    service = LookupService(None, loader=crawl_loader([str(mirror)]))
    assert await service.refresh() is True
    first = service.index.snapshot_id
    coverage = mirror / "static.valleycleanpower.example" / "cds" / "coverage.json"
    coverage.write_text("{ this is not JSON")
    assert await service.refresh() is True
    assert service.index.snapshot_id != first
    answer = service.lookup(Query.make(*demo.POINT_IN_MUNICIPAL))
    # The CCA's listing broke; its last good entry still answers.
    assert [m["id"] for m in answer["matches"]] == [
        "afmu-electric",
        "cbwd-district",
        "vcp-service-area",
        "mng-gas",
    ]
    problems = service.status()["sources_with_problems"]
    assert [p["url"] for p in problems] == [
        "https://static.valleycleanpower.example/cds/coverage.json"
    ]
    assert problems[0]["problems"][0]["kind"] == "invalid_document"
    assert problems[0]["problems"][0]["kept"].startswith("the last good copy")


def test_cached_match_dicts_equal_match_to_dict() -> None:
    import random

    index = CoverageIndex.demo()
    service = LookupService(index)
    rng = random.Random(7)
    points = [(rng.uniform(43.2, 44.4), rng.uniform(-121.5, -119.8)) for _ in range(300)]
    matched = 0
    for _ in range(2):  # the second pass answers from the per-entry cache
        for lat, lon in points:
            answer = service.lookup(Query.make(lat, lon))["matches"]
            assert answer == [m.to_dict() for m in index.lookup(lat, lon)]
            matched += len(answer)
    assert matched > 300


async def test_snapshot_watcher_reloads_when_current_moves(tmp_path: Path) -> None:
    from coverlookup import demo
    from coverlookup.discovery import crawl
    from coverlookup.service import snapshot_watcher
    from coverlookup.snapshot import write_snapshot

    root = tmp_path / "root"
    first = await crawl([str(demo.federation_path())])
    write_snapshot(root, first)
    service = LookupService(None)
    service.loader = snapshot_watcher(
        str(root), lambda: service.index.snapshot_id if service.ready else None
    )
    assert await service.refresh() is True
    assert service.index.snapshot_id == first.id
    assert await service.refresh() is True  # nothing new: same index object keeps serving
    assert service.index.snapshot_id == first.id and service.refresh_state.refreshes == 1
    second = await crawl([str(demo.federation_path())])
    write_snapshot(root, second)
    assert await service.refresh() is True
    assert service.index.snapshot_id == second.id and service.refresh_state.refreshes == 2
    answer = service.lookup(Query.make(*demo.POINT_IN_IOU))
    assert [m["id"] for m in answer["matches"]] == ["mng-gas", "mpl-electric"]


async def test_snapshot_watcher_waits_for_a_crawlers_first_snapshot(tmp_path: Path) -> None:
    from coverlookup import demo
    from coverlookup.discovery import crawl
    from coverlookup.service import snapshot_watcher
    from coverlookup.snapshot import write_snapshot

    root = tmp_path / "root"
    root.mkdir()
    service = LookupService(None)
    service.loader = snapshot_watcher(str(root), lambda: None, crawler=True)
    assert await service.refresh() is True  # the first crawl is running: not a failure
    assert not service.ready and service.refresh_state.failures == 0
    write_snapshot(root, await crawl([str(demo.federation_path())]))
    assert await service.refresh() is True and service.ready
    # Without a crawler, a root with nothing in it is a failed refresh, and says why.
    service = LookupService(None)
    service.loader = snapshot_watcher(str(tmp_path / "empty"), lambda: None)
    assert await service.refresh() is False
    assert "no such snapshot directory" in (service.refresh_state.last_error or "")


def _demo_queries(count: int, seed: int) -> list[Query]:
    import random

    rng = random.Random(seed)
    options: list[dict[str, Any]] = [
        {},
        {"commodity": "electricity"},
        {"capability": "oauth"},
        {"nearest_km": 40.0},
        {"type": "geographic"},
        {"commodity": "water", "nearest_km": 5.0},
    ]
    out = []
    for i in range(count):
        lat, lon = rng.uniform(43.1, 44.5), rng.uniform(-121.6, -119.6)
        extra = dict(options[i % len(options)])
        out.append(Query.make(lat, lon, nearest_km=extra.pop("nearest_km", None), **extra))
    return out


@pytest.mark.parametrize("size", [1, 2, 7, 300])
def test_lookup_json_many_is_byte_identical_to_lookup(size: int) -> None:
    index = CoverageIndex.demo()
    service = LookupService(index)
    queries = _demo_queries(300, seed=size)
    matched = 0
    for start in range(0, len(queries), size):
        batch = queries[start : start + size]
        for query, body in zip(batch, service.lookup_json_many(batch), strict=True):
            assert body == orjson.dumps(service.lookup(query))
            matched += len(orjson.loads(body)["matches"])
    assert matched > 200


def test_lookup_json_many_answers_around_a_failing_query() -> None:
    service = LookupService(CoverageIndex.demo())
    good = Query.make(43.8, -120.5)
    bad = Query(lat=43.8, lon=-120.5, filters={"commodity": 5})  # type: ignore[dict-item]
    first, failed, last = service.lookup_json_many([good, bad, good])
    assert first == last == orjson.dumps(service.lookup(good))
    assert isinstance(failed, UsageError) and "commodity" in str(failed)


async def test_batcher_answers_a_loop_pass_as_one_batch() -> None:
    from coverlookup.service import LookupBatcher, NotReadyError

    service = LookupService(CoverageIndex.demo())
    batcher = LookupBatcher(service)
    queries = _demo_queries(40, seed=1)
    answers = await asyncio.gather(*(batcher.submit(q) for q in queries))
    assert answers == [orjson.dumps(service.lookup(q)) for q in queries]
    assert (batcher.batches, batcher.answered) == (1, 40)
    # A cancelled request is skipped; the others of its batch are answered.
    futures = [batcher.submit(q) for q in queries[:3]]
    futures[1].cancel()
    assert await futures[0] == answers[0] and await futures[2] == answers[2]
    assert (batcher.batches, batcher.answered) == (2, 42)
    # More than MAX_BATCH waiting: answered over several passes, in order.
    many = [queries[i % 40] for i in range(LookupBatcher.MAX_BATCH + 10)]
    got = await asyncio.gather(*(batcher.submit(q) for q in many))
    assert got == [answers[i % 40] for i in range(len(many))]
    assert batcher.batches == 4
    # No index yet: every waiting request gets the error.
    empty = LookupBatcher(LookupService())
    results = await asyncio.gather(*(empty.submit(q) for q in queries[:3]), return_exceptions=True)
    assert all(isinstance(r, NotReadyError) for r in results)


def test_a_failed_vectorised_search_falls_back_to_one_by_one(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    index = CoverageIndex.demo()
    service = LookupService(index)
    queries = _demo_queries(30, seed=4)
    expected = [orjson.dumps(service.lookup(q)) for q in queries]

    def broken(*args: Any, **kwargs: Any) -> list[float]:
        return [1.0]  # too few distances: must not be spliced into any answer

    monkeypatch.setattr(index, "boundary_distances", broken)
    assert service.lookup_json_many(queries) == expected
    assert "measuring its queries one by one" in caplog.text


async def test_batcher_never_leaves_a_request_waiting() -> None:
    from coverlookup.service import LookupBatcher

    class Short(LookupService):
        def lookup_json_many(self, queries: Any, **kwargs: Any) -> list[Any]:
            return [StopIteration("odd")] + [b"{}"] * (len(queries) - 2)  # one too few

    batcher = LookupBatcher(Short(CoverageIndex.demo()))
    queries = _demo_queries(4, seed=2)
    results = await asyncio.wait_for(
        asyncio.gather(*(batcher.submit(q) for q in queries), return_exceptions=True), 5
    )
    assert all(isinstance(r, RuntimeError) for r in results), results

    class Stopping(LookupService):
        def lookup_json_many(self, queries: Any, **kwargs: Any) -> list[Any]:
            return [StopIteration("odd")] * len(queries)

    batcher = LookupBatcher(Stopping(CoverageIndex.demo()))
    results = await asyncio.wait_for(
        asyncio.gather(*(batcher.submit(q) for q in queries), return_exceptions=True), 5
    )
    assert all(isinstance(r, RuntimeError) and "StopIteration" in str(r) for r in results)


def test_a_closed_batcher_fails_what_waits_and_serves_a_new_loop() -> None:
    import asyncio

    from coverlookup import demo
    from coverlookup.index import CoverageIndex
    from coverlookup.service import LookupBatcher

    service = LookupService(CoverageIndex.demo())
    batcher = LookupBatcher(service)
    query = Query.make(*demo.POINT_IN_IOU)

    async def submit_only() -> asyncio.Future[bytes]:
        return batcher.submit(query)  # its loop ends before the batch is answered

    loop = asyncio.new_event_loop()
    waiting = loop.run_until_complete(submit_only())
    batcher.close()
    assert waiting.done() and "stopping" in str(waiting.exception())
    loop.close()

    async def answered() -> bytes:
        return await batcher.submit(query)

    assert asyncio.run(answered()) == orjson.dumps(service.lookup(query))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("lat=43.85&lon=-120.5", (43.85, -120.5)),
        ("lat=-90&lon=180", (-90.0, 180.0)),
        ("lat=.5&lon=-1e1", (0.5, -10.0)),
        ("lat=+1&lon=2", None),  # '+' is a space in a query string: the general parser refuses it
        ("lat=1e+1&lon=2", None),
        ("lat=91&lon=0", None),  # out of range: the general parser says so
        ("lat=1e400&lon=0", None),  # inf
        ("lon=0&lat=1", None),  # another order
        ("lat=1&lon=2&commodity=gas", None),
        ("lat=1&lon=2&", None),
        ("lat=nan&lon=0", None),
        ("lat=%31&lon=2", None),  # percent-encoded
        ("lat=\u0663&lon=2", None),  # Arabic-Indic 3
        ("lat=1_0&lon=2", None),
        ("", None),
    ],
)
def test_plain_point_query_takes_only_plain_points(raw: str, expected: Any) -> None:
    from coverlookup.service import plain_point_query

    query = plain_point_query(raw)
    if expected is None:
        assert query is None
    else:
        assert query == Query.make(*expected)
        assert (query.lat, query.lon, dict(query.filters), query.nearest_km) == (
            *expected,
            {},
            None,
        )


def test_lookup_json_many_isolates_queries_built_by_hand() -> None:
    import numpy as np

    from coverlookup import demo
    from coverlookup.index import CoverageIndex

    service = LookupService(CoverageIndex.demo())
    ok = Query.make(*demo.POINT_IN_IOU)
    odd = [Query(True, 0.0, {}), Query(np.float64(ok.lat), ok.lon, {})]  # type: ignore[arg-type]
    answers = service.lookup_json_many([ok, *odd, ok])
    assert answers[0] == answers[3] == orjson.dumps(service.lookup(ok))
    for query, answer in zip(odd, answers[1:3], strict=True):
        try:
            expected: bytes | type[Exception] = orjson.dumps(service.lookup(query))
        except Exception as exc:
            expected = type(exc)
        assert answer == expected or type(answer) is expected
