"""/metrics summed over the processes of one server (``serve --workers N``)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from coverlookup.errors import SnapshotError
from coverlookup.index import CoverageIndex
from coverlookup.metrics import Counts, Metrics
from coverlookup.service import LookupBatcher, LookupService, RefreshState, write_crawl_state


@pytest.fixture(scope="module")
def service() -> LookupService:
    return LookupService(CoverageIndex.demo())


def _values(text: str) -> dict[str, float]:
    """Sample name with labels → value, from Prometheus text."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


LOOKUP_OK = 'coverlookup_http_requests_total{route="/v1/lookup",status="200"}'
LOOKUP_COUNT = 'coverlookup_http_request_duration_seconds_count{route="/v1/lookup"}'


def test_one_process_counts_its_own_requests(service: LookupService) -> None:
    metrics = Metrics()
    metrics.observe("/v1/lookup", 200, 0.002)
    values = _values(metrics.render(service))
    assert values[LOOKUP_OK] == 1 and values["coverlookup_processes"] == 1


def test_processes_sharing_a_directory_report_their_sum(
    tmp_path: Path, service: LookupService
) -> None:
    a, b = Metrics(tmp_path, name="a"), Metrics(tmp_path, name="b")
    for _ in range(3):
        a.observe("/v1/lookup", 200, 0.0004)
    b.observe("/v1/lookup", 200, 0.2)
    b.observe("/v1/lookup", 400, 0.0001)
    b.observe("/healthz", 200, 0.0001)
    batcher = LookupBatcher(service)
    batcher.batches, batcher.answered = 2, 3
    b.publish(batcher)
    values = _values(a.render(service, LookupBatcher(service)))
    assert values[LOOKUP_OK] == 4
    assert values['coverlookup_http_requests_total{route="/v1/lookup",status="400"}'] == 1
    assert values['coverlookup_http_requests_total{route="/healthz",status="200"}'] == 1
    assert values[LOOKUP_COUNT] == 5
    bucket = 'coverlookup_http_request_duration_seconds_bucket{route="/v1/lookup",le="0.0005"}'
    assert values[bucket] == 4  # a's three and b's 400; b's 0.2 s one is in a higher bucket
    assert values['coverlookup_http_request_duration_seconds_sum{route="/v1/lookup"}'] == (
        pytest.approx(0.2013, abs=1e-6)
    )
    assert values["coverlookup_lookup_batches_total"] == 2
    assert values["coverlookup_lookup_batched_total"] == 3
    assert values["coverlookup_processes"] == 2


def test_counts_never_run_backwards_across_processes(
    tmp_path: Path, service: LookupService
) -> None:
    a, b = Metrics(tmp_path, name="a"), Metrics(tmp_path, name="b")
    b.observe("/v1/lookup", 200, 0.001)
    b.publish()
    for _ in range(3):
        a.observe("/v1/lookup", 200, 0.001)
    through_a = _values(a.render(service))[LOOKUP_OK]
    assert through_a == 4
    # b has not published since; a scrape through it still sees all a reported
    assert _values(b.render(service))[LOOKUP_OK] >= through_a


def test_a_process_that_cannot_publish_reports_only_what_is_on_disk(
    tmp_path: Path, service: LookupService
) -> None:
    a, b = Metrics(tmp_path, name="a"), Metrics(tmp_path, name="b")
    a.observe("/v1/lookup", 200, 0.001)
    b.observe("/v1/lookup", 200, 0.001)
    b.publish()
    assert _values(a.render(service))[LOOKUP_OK] == 2
    (tmp_path / ".worker-a.json.tmp").mkdir()  # a's next write fails
    for _ in range(5):
        a.observe("/v1/lookup", 200, 0.001)
    through_a = _values(a.render(service))[LOOKUP_OK]
    through_b = _values(b.render(service))[LOOKUP_OK]
    assert through_a == through_b == 2  # not 7 through a, then 2 through b: no false reset


def test_an_unreadable_counts_file_is_skipped_and_named(
    tmp_path: Path, service: LookupService, caplog: pytest.LogCaptureFixture
) -> None:
    a = Metrics(tmp_path, name="a")
    a.observe("/v1/lookup", 200, 0.001)
    (tmp_path / "worker-broken.json").write_bytes(b'{"requests": [["/v1/lookup", "200"]]')
    (tmp_path / "worker-wrong.json").write_bytes(b'{"requests": [["/v1/lookup", 200, "9"]]}')
    with caplog.at_level(logging.WARNING, logger="coverlookup.metrics"):
        values = _values(a.render(service))
    assert values[LOOKUP_OK] == 1 and values["coverlookup_processes"] == 1
    logged = caplog.text
    assert "worker-broken.json" in logged and "worker-wrong.json" in logged
    assert "bad request count" in logged


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[]", "not a JSON object"),
        (b'{"requests": [["/x", 200, -1.5]]}', "bad request count"),
        (b'{"latency": {"/x": [1, 2]}, "latency_sum": {"/x": 0.1}}', "bad latency buckets"),
        (b'{"latency": {"/x": [0,0,0,0,0,0,0,0,0,0,0,0,0,1]}, "latency_sum": {"/x": "s"}}', "sum"),
        (b'{"latency": []}', "wrong type"),
        (b'{"requests": [5]}', "bad request count"),
        (b'{"batches": -2}', "bad batch counts"),
    ],
)
def test_counts_reject_what_they_did_not_write(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Counts.from_json(data)


def test_workers_report_the_crawlers_record(tmp_path: Path, service: LookupService) -> None:
    watcher = LookupService(service.index)
    watcher.crawl_root = str(tmp_path)
    # waiting for the first crawl is not a failure
    watcher.refresh_state.failed(SnapshotError("not a snapshot"))
    assert watcher.status()["refresh"]["failures"] == 0
    crawler = RefreshState()
    crawler.last_attempt = 1.0e9
    crawler.succeeded(new=True)
    crawler.failed(OSError("seed unreachable"))
    crawler.failed(OSError("seed unreachable"))
    write_crawl_state(tmp_path, crawler)
    watcher.refresh_state.succeeded(new=True)  # it loaded the first crawl's snapshot
    refresh = watcher.status()["refresh"]
    assert (refresh["refreshes"], refresh["failures"], refresh["consecutive_failures"]) == (1, 2, 2)
    assert refresh["last_error"] == "OSError: seed unreachable"
    assert refresh["last_attempt"] == "2001-09-09T01:46:40Z"
    assert refresh["this_process"]["refreshes"] == 1
    values = _values(Metrics().render(watcher))
    assert values["coverlookup_refresh_failures_total"] == 2
    assert values["coverlookup_refreshes_total"] == 1
    crawler.succeeded(new=True)  # the next crawl works again...
    write_crawl_state(tmp_path, crawler)
    refresh = watcher.status()["refresh"]
    assert refresh["consecutive_failures"] == 0 and refresh["last_error"] is None
    assert refresh["failures"] == 2  # a counter: failures stay counted
    watcher.refresh_state.failed(SnapshotError("broken index"))  # ...but this worker cannot load it
    refresh = watcher.status()["refresh"]
    assert refresh["consecutive_failures"] == 1
    assert refresh["last_error"] == "loading the crawled snapshot: SnapshotError: broken index"
    assert [p.name for p in tmp_path.iterdir()] == ["crawl-state.json"]  # no temporary left


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", "unexpected character"),
        (b"[]", "not a json object"),
        (b'{"failures": "2"}', "failures is '2', not a count"),
        (b'{"refreshes": -1}', "refreshes is -1, not a count"),
        (b'{"last_attempt": 1e300}', "not a time"),
        (b'{"last_error": 5}', "last_error is 5, not text"),
    ],
)
def test_an_unreadable_crawl_state_reads_as_none(
    tmp_path: Path,
    service: LookupService,
    caplog: pytest.LogCaptureFixture,
    data: bytes,
    message: str,
) -> None:
    (tmp_path / "crawl-state.json").write_bytes(data)
    watcher = LookupService(service.index)
    watcher.crawl_root = str(tmp_path)
    with caplog.at_level(logging.WARNING, logger="coverlookup.service"):
        assert watcher.status()["refresh"]["failures"] == 0
        assert "coverlookup_refresh_failures_total 0" in Metrics().render(watcher)
    assert re.search(r"unreadable crawl state .*crawl-state\.json", caplog.text)
    assert message in caplog.text.lower()
