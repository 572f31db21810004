"""POST /v1/lookup/batch: CSV in/CSV out (or JSON Lines), JSON in/JSON out, streamed, bounded."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from coverlookup.index import CoverageIndex
from coverlookup.service import LookupService
from coverlookup.web import create_app

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "batch"
TERRITORIES = FIXTURES / "territories.geojson"
URI = TERRITORIES.resolve().as_uri()
FRESNO, VALLEY, BOSTON = f"{URI}#fresno-muni", f"{URI}#valley", f"{URI}#boston"


@pytest.fixture(scope="module")
def index() -> CoverageIndex:
    return CoverageIndex.from_geojson(TERRITORIES, name_property="name")


@pytest.fixture
async def client(aiohttp_client: Any, index: CoverageIndex) -> Any:
    return await aiohttp_client(create_app(LookupService(index), max_body_bytes=64 * 1024))


async def post(client: Any, body: bytes, content_type: str, query: str = "") -> Any:
    return await client.post(
        f"/v1/lookup/batch{query}", data=body, headers={"Content-Type": content_type}
    )


async def test_csv_in_csv_out(client: Any, index: CoverageIndex) -> None:
    response = await post(client, (FIXTURES / "messy.csv").read_bytes(), "text/csv")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["X-Coverlookup-Snapshot"] == index.snapshot_id
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    assert [(r["id"], r["status"]) for r in rows] == [
        ("1", "ok"),
        ("2", "ok"),
        ("3", "error"),
        ("4", "error"),
        ("5", "error"),
        ("6", "ok"),
        ("", "error"),
    ]
    assert rows[0]["entry_keys"] == f"{FRESNO}|{VALLEY}"
    assert rows[3]["error"] == "line 8: latitude 'north' is not a number"


async def test_csv_in_jsonl_out_with_a_filter(client: Any) -> None:
    body = b"zip\n93721\n02108\n"
    response = await post(client, body, "text/csv", "?format=jsonl&type=geographic")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/x-ndjson; charset=utf-8"
    first, second = (orjson.loads(line) for line in (await response.text()).splitlines())
    assert [m["key"] for m in first["matches"]] == [FRESNO, VALLEY]
    assert first["approximate"] is True
    assert [m["key"] for m in second["matches"]] == [BOSTON]


async def test_json_in_json_out(client: Any, index: CoverageIndex) -> None:
    items = [{"lat": 36.7, "lon": -119.8}, {"address": "Boston, MA"}, {"lat": 91, "lon": 0}]
    response = await post(client, orjson.dumps({"rows": items}), "application/json")
    assert response.status == 200
    answer = await response.json()
    assert answer["snapshot"] == {"id": index.snapshot_id, "created": index.created}
    assert answer["summary"] == {"rows": 3, "ok": 2, "errors": 1}
    results = answer["results"]
    assert [(r["row"], r["status"], r["match_count"]) for r in results] == [
        (1, "ok", 2),
        (2, "ok", 1),
        (3, "error", None),
    ]
    assert results[1]["geocode"]["precision"] == "city"
    assert results[2]["error"] == "item 3: latitude 91 is outside ±90"
    assert results[0]["matches"][0]["entity"]["name"] == "Fresno Municipal Power"


async def test_json_list_and_empty_list(client: Any) -> None:
    response = await post(client, b"[]", "application/json")
    answer = await response.json()
    assert (answer["results"], answer["summary"]) == ([], {"rows": 0, "ok": 0, "errors": 0})
    response = await post(client, b'[{"zip": "93721"}]', "application/json")
    assert [r["match_count"] for r in (await response.json())["results"]] == [2]


@pytest.mark.parametrize(
    ("body", "content_type", "query", "message"),
    [
        (b"{not json", "application/json", "", "the body is not JSON"),
        (b'{"items": 1}', "application/json", "", "a JSON batch is a list of objects"),
        (b"lat,lon\n", "text/csv", "?format=xml", "format must be one of csv, jsonl"),
        (b"lat,lon\n", "text/csv", "?commodity=", "commodity must be a non-empty string"),
        (b"lat,lon\n", "text/csv", "?bogus=1", "unknown parameter 'bogus'"),
        (b"", "text/csv", "", "the request body is empty"),
        (b"  \n", "text/plain", "", "the request body is empty"),
    ],
)
async def test_bad_batch_requests_are_400(
    client: Any, body: bytes, content_type: str, query: str, message: str
) -> None:
    response = await post(client, body, content_type, query)
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "bad_request"
    assert message in error["message"]


async def test_unsupported_body_type_is_415(client: Any) -> None:
    response = await post(client, b"<rows/>", "application/xml")
    assert response.status == 415
    error = (await response.json())["error"]
    assert error == {
        "code": "unsupported_media_type",
        "message": "a batch body is text/csv or application/json, not application/xml",
    }


async def test_request_size_is_limited(client: Any, caplog: pytest.LogCaptureFixture) -> None:
    body = b"lat,lon\n" + b"36.7,-119.8\n" * 6000  # 72 KB, over the 64 KiB limit
    response = await post(client, body, "text/csv")
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "body_too_large"
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


async def test_large_csv_streams_in_order(client: Any) -> None:
    lines = ["n,lat,lon"] + [f"{n},36.7,-119.8" for n in range(2500)]
    body = ("\n".join(lines) + "\n").encode()
    response = await post(client, body, "text/csv")
    assert response.status == 200
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    assert [r["n"] for r in rows] == [str(n) for n in range(2500)]
    assert {r["match_count"] for r in rows} == {"2"}


async def test_a_body_that_does_not_decode_is_400(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    for body in (b"lat,lon\n40,-105\n", bytes(range(256)) * 200):
        response = await client.post(
            "/v1/lookup/batch",
            data=body,
            headers={"Content-Type": "text/csv", "Content-Encoding": "gzip"},
        )
        assert response.status == 400
        error = (await response.json())["error"]
        assert error["code"] == "bad_request" and "\n" not in error["message"]
        assert error["message"].startswith(
            "the request body could not be read (Content-Encoding 'gzip')"
        )
    assert not [r for r in caplog.records if r.levelname == "ERROR"]  # nothing "unhandled"
    assert (await client.get("/healthz")).status == 200
