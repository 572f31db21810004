"""``coverlookup crawl`` and ``coverlookup validate URL|DOMAIN`` against the fake federation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from coverlookup.cli import main
from coverlookup.snapshot import load_snapshot
from tests.fakefed import FakeFederation

WK = "/.well-known/cds-server-metadata.json"


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeFederation]:
    with FakeFederation.running(tmp_path_factory.mktemp("fed")) as federation:
        yield federation


def _fetch_args(fed: FakeFederation) -> list[str]:
    args = ["--cafile", str(fed.cafile), "--retries", "0", "--timeout", "5"]
    for pin in fed.pins():
        args += ["--resolve", pin]
    return args


def test_crawl_writes_snapshot_summary_and_report(
    fed: FakeFederation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "snap"
    report = tmp_path / "report.json"
    broken = f"https://broken.test{WK}"
    argv = ["crawl", "holding.test", broken, "--snapshot", str(root), "--report", str(report)]
    code = main(argv + _fetch_args(fed))
    out = capsys.readouterr()
    assert code == 1  # broken.test is a problem
    lines = out.out.splitlines()
    snapshot = load_snapshot(root)
    assert lines[0] == f"snapshot {snapshot.id} written to {root / 'snapshots' / snapshot.id}"
    assert lines[1].startswith("3 servers, 8 entries, 6 geometries fetched; 15 documents, ")
    assert lines[2] == "problems: http_status 1, pagination_loop 1"
    assert f"  http_status: {broken}: HTTP 500 (kept: nothing from this document)" in lines
    assert out.err == ""  # not a terminal: no progress line

    data = orjson.loads(report.read_bytes())
    assert data["summary"]["servers"] == 3
    assert data["summary"]["entries"] == 8
    assert data["summary"]["problems_by_kind"] == {"http_status": 1, "pagination_loop": 1}
    assert {(p["url"], p["kind"]) for p in data["problems"]} == {
        (broken, "http_status"),
        ("https://sub-b.test/cds/coverage-2.json", "pagination_loop"),
    }

    # Crawling again refreshes: unchanged documents come back as 304s.
    code = main(["crawl", "holding.test", "--snapshot", str(root)] + _fetch_args(fed))
    out = capsys.readouterr()
    assert code == 1  # the pagination loop is still there
    assert "14 unchanged (304), 0 kept from the previous snapshot (stale)" in out.out
    assert len(list((root / "snapshots").iterdir())) == 2
    # Each snapshot was published with its compiled index: a server watching the root loads
    # that, not the raw documents, while it serves.
    assert (root / "current" / "index" / "meta.json").is_file()


def test_crawl_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crawl", "no such thing!", "--snapshot", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == (
        "coverlookup: error: seed 'no such thing!': not a URL, a domain, "
        "or an existing file or directory\n"
    )
    assert main(["crawl", "example.com", "--resolve", "nonsense"]) == 2
    assert "--resolve 'nonsense': expected HOST:PORT:ADDRESS" in capsys.readouterr().err


def test_validate_domain_prints_every_document(
    fed: FakeFederation, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["validate", "legacy.test"] + _fetch_args(fed))
    out = capsys.readouterr().out
    assert code == 0
    documents = [line for line in out.splitlines() if line.startswith("https://")]
    assert documents == [
        "https://legacy.test/.well-known/carbon-data-spec.json: "
        "CDS server metadata document (2023 draft)",
        "https://legacy.test/cds-coverage.json: CDS coverage listing",
        "https://legacy.test/geo/elec.json: GeoJSON territory",
        "https://legacy.test/geo/gas.json: GeoJSON territory",
    ]
    assert "nothing usable at https://legacy.test/.well-known/cds-server-metadata.json" in out
    assert out.rstrip().splitlines()[-1].startswith("valid: 4 documents, 0 errors")


def test_validate_url_reports_fetch_failures(
    fed: FakeFederation, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"https://badjson.test{WK}"
    code = main(["validate", url, "--json"] + _fetch_args(fed))
    data = orjson.loads(capsys.readouterr().out)
    assert code == 1
    assert data["valid"] is False
    [doc] = data["documents"]
    assert doc["document"] == url
    assert [(f["code"], f["message"]) for f in doc["findings"]] == [
        ("invalid-document", "invalid JSON at line 4 column 30: trailing comma is not allowed"),
        ("syntax-error", "invalid JSON at line 4 column 30: trailing comma is not allowed"),
    ]


def test_validate_domain_without_metadata_lists_one_problem(
    fed: FakeFederation, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["validate", "broken.test", "--json"] + _fetch_args(fed))
    data = orjson.loads(capsys.readouterr().out)
    assert code == 1
    assert [(d["document"], d["kind"]) for d in data["documents"]] == [
        ("https://broken.test/", "unreadable")
    ]
    [finding] = data["documents"][0]["findings"]
    assert (finding["code"], finding["message"]) == (
        "no-metadata",
        "broken.test: no metadata at either well-known path "
        "(https://broken.test/.well-known/cds-server-metadata.json: HTTP 500; "
        "https://broken.test/.well-known/carbon-data-spec.json: HTTP 500)",
    )


def test_unwritable_snapshot_or_report_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A local document that links nowhere: the crawl touches no network.
    doc = orjson.loads(
        (Path(__file__).parent / "fixtures/spec/repaired/2025-metadata.json").read_bytes()
    )
    doc["capabilities"] = []
    del doc["coverage"]
    seed = str(tmp_path / "metadata.json")
    Path(seed).write_bytes(orjson.dumps(doc))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["crawl", seed, "--snapshot", str(blocker / "snap")]) == 2
    assert capsys.readouterr().err == (
        f"coverlookup: error: --snapshot {blocker / 'snap'}: cannot create it: Not a directory\n"
    )
    report = blocker / "report.json"
    assert main(["crawl", seed, "--snapshot", str(tmp_path / "s"), "--report", str(report)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"coverlookup: error: --report {report}: cannot write it: Not a directory "
        f"(the snapshot was written to {tmp_path / 's' / 'snapshots'}/"
    )
