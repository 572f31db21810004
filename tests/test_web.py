"""The HTTP API through aiohttp's test client, on the real index of the demo snapshot."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest

from coverlookup import demo
from coverlookup.errors import UsageError
from coverlookup.index import CoverageIndex
from coverlookup.model import server_id_for
from coverlookup.service import LookupService, Query
from coverlookup.web import ERROR_STATUS, ROUTES, create_app, status_for

MUNI = "https://alderfalls.example/.well-known/carbon-data-spec.json#afmu-electric"
WATER = "https://cedarbasinwater.example/.well-known/cds-server-metadata.json#cbwd-district"
CCA = "https://valleycleanpower.example/.well-known/cds-server-metadata.json#vcp-service-area"
GAS = "https://meridiangas.example/.well-known/cds-server-metadata.json#mng-gas"
IOU = "https://meridianpower.example/.well-known/cds-server-metadata.json#mpl-electric"
IOU_LOGICAL = "https://meridianpower.example/.well-known/cds-server-metadata.json#mpl-commercial"
IOU_SERVER = "https://meridianpower.example/.well-known/cds-server-metadata.json"

MUNI_LAT, MUNI_LON = demo.POINT_IN_MUNICIPAL
IOU_LAT, IOU_LON = demo.POINT_IN_IOU
OUT_LAT, OUT_LON = demo.POINT_OUTSIDE


@pytest.fixture(scope="module")
def index() -> CoverageIndex:
    return CoverageIndex.demo()


@pytest.fixture
async def client(aiohttp_client: Any, index: CoverageIndex) -> Any:
    return await aiohttp_client(create_app(LookupService(index), max_body_bytes=4096))


async def get_json(client: Any, path: str, status: int = 200) -> Any:
    response = await client.get(path)
    assert response.status == status, await response.text()
    return await response.json()


def keys(answer: dict[str, Any], field: str = "matches") -> list[str]:
    return [m["key"] for m in answer[field]]


# --- lookups --------------------------------------------------------------------------------------


async def test_lookup_in_municipal_hole_smallest_first(client: Any, index: CoverageIndex) -> None:
    answer = await get_json(client, f"/v1/lookup?lat={MUNI_LAT}&lon={MUNI_LON}")
    assert answer["query"] == {"lat": MUNI_LAT, "lon": MUNI_LON}
    # The IOU has the municipal utility cut out as a hole: it must not match here.
    assert keys(answer) == [MUNI, WATER, CCA, GAS]
    assert answer["snapshot"] == {"id": index.snapshot_id, "created": index.created}
    muni = answer["matches"][0]
    assert muni["entity"]["name"] == "Alder Falls Municipal Utilities"
    assert muni["type"] == "geographic"
    assert muni["commodity_types"] == ["electricity"]  # from the 2023 entry type
    # 2023 server-level infrastructure types fill in the entry's.
    assert muni["infrastructure_types"] == ["distribution_utility", "metering_provider", "supplier"]
    assert 0 < muni["boundary_distance_m"] < 10_000


async def test_lookup_in_iou_carries_links_and_capabilities(client: Any) -> None:
    answer = await get_json(client, f"/v1/lookup?lat={IOU_LAT}&lon={IOU_LON}")
    assert keys(answer) == [GAS, IOU]
    iou = answer["matches"][1]
    assert iou["entity"] == {
        "name": "Meridian Power & Light",
        "abbreviation": "MP&L",
        "metadata_url": IOU_SERVER,
        "website": "https://meridianpower.example/",
        "documentation": "https://meridianpower.example/developers/docs",
        "support": "https://meridianpower.example/developers/contact",
    }
    assert iou["capabilities"] == ["oauth", "ieee1547"]
    assert iou["links"] == {
        "oauth_metadata": "https://meridianpower.example/.well-known/oauth-authorization-server",
        "ieee1547_setup": "https://meridianpower.example/smart-inverters/setup",
    }
    assert iou["role"] == "authoritative"
    assert iou["country"] == "US"
    assert iou["updated"] == "2025-04-01T00:00:00Z"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("commodity=electricity", [MUNI, CCA]),
        ("commodity=natural_gas", [GAS]),
        ("commodity=water", [WATER]),
        ("commodity=no_such_commodity", []),
        ("capability=oauth", [CCA, GAS]),
        ("infrastructure=supplier", [MUNI, CCA]),
        ("infrastructure=metering_provider", [MUNI, WATER, GAS]),
        ("type=geographic", [MUNI, WATER, CCA, GAS]),
        ("type=logical", []),
        ("commodity=electricity&infrastructure=distribution_utility", [MUNI]),
    ],
)
async def test_lookup_filters(client: Any, query: str, expected: list[str]) -> None:
    answer = await get_json(client, f"/v1/lookup?lat={MUNI_LAT}&lon={MUNI_LON}&{query}")
    assert keys(answer) == expected
    name, value = query.split("&")[0].split("=")
    assert answer["query"][name] == value


async def test_nearest_fills_only_when_nothing_matches(client: Any) -> None:
    answer = await get_json(client, f"/v1/lookup?lat={OUT_LAT}&lon={OUT_LON}&nearest_km=10")
    assert answer["matches"] == []
    assert keys(answer, "nearest") == [IOU]
    assert 3_000 < answer["nearest"][0]["distance_m"] < 7_000
    assert answer["query"]["nearest_km"] == 10.0
    # Without nearest_km there is no "nearest" member at all.
    plain = await get_json(client, f"/v1/lookup?lat={OUT_LAT}&lon={OUT_LON}")
    assert plain["matches"] == [] and "nearest" not in plain
    # With matches, nearest stays empty.
    inside = await get_json(client, f"/v1/lookup?lat={IOU_LAT}&lon={IOU_LON}&nearest_km=10")
    assert keys(inside) == [GAS, IOU] and inside["nearest"] == []
    # Filters apply to nearest too.
    gas = await get_json(
        client, f"/v1/lookup?lat={OUT_LAT}&lon={OUT_LON}&nearest_km=10&commodity=natural_gas"
    )
    assert gas["nearest"] == []


async def test_boundary_counts_as_inside(client: Any, index: CoverageIndex) -> None:
    # A vertex of the municipal ring is also a vertex of the IOU's hole: both match.
    ring = index.entry_geojson(MUNI)["geometry"]["coordinates"][0]
    lon, lat = ring[0]
    answer = await get_json(client, f"/v1/lookup?lat={lat}&lon={lon}&commodity=electricity")
    assert set(keys(answer)) >= {MUNI, IOU}


# --- bad input: one error shape, right status, never a 500 ----------------------------------------

BAD_LOOKUPS = [
    ("", "invalid_coordinate", "lat is required"),
    ("lat=1", "invalid_coordinate", "lon is required"),
    ("lat=&lon=1", "invalid_coordinate", "lat is required"),
    ("lat=abc&lon=1", "invalid_coordinate", "lat must be a decimal number"),
    ("lat=nan&lon=1", "invalid_coordinate", "lat must be a decimal number"),
    ("lat=NaN&lon=1", "invalid_coordinate", "lat must be a decimal number"),
    ("lat=inf&lon=1", "invalid_coordinate", "lat must be a decimal number"),
    ("lat=-Infinity&lon=1", "invalid_coordinate", "lat must be a decimal number"),
    ("lat=1e400&lon=1", "invalid_coordinate", "lat is out of range"),
    ("lat=1_0&lon=1", "invalid_coordinate", "lat must be a decimal number"),
    ("lat=%201&lon=1", "invalid_coordinate", "lat must be a decimal number"),
    ("lat=+1&lon=2", "invalid_coordinate", "lat must be a decimal number, got ' 1'"),  # '+': space
    ("lat=1e+1&lon=2", "invalid_coordinate", "lat must be a decimal number, got '1e 1'"),
    ("lat=0x10&lon=1", "invalid_coordinate", "lat must be a decimal number"),
    ("lat=%D9%A3&lon=1", "invalid_coordinate", "lat must be a decimal number"),  # Arabic-Indic 3
    ("lat=%EF%BC%91&lon=1", "invalid_coordinate", "lat must be a decimal number"),  # fullwidth 1
    ("lat=90.0001&lon=1", "invalid_coordinate", "lat must be between -90 and 90"),
    ("lat=1&lon=-180.5", "invalid_coordinate", "lon must be between -180 and 180"),
    ("lat=1&lat=2&lon=3", "bad_request", "parameter 'lat' given more than once"),
    ("lat=1&lon=2&commodity=a&commodity=b", "bad_request", "given more than once"),
    ("lat=1&lon=2&colour=red", "bad_request", "unknown parameter 'colour'"),
    ("lat=1&lon=2&Commodity=electricity", "bad_request", "unknown parameter 'Commodity'"),
    ("lat=1&lon=2&commodity=", "bad_request", "commodity must be a non-empty string"),
    ("lat=1&lon=2&type=" + "x" * 7000, "bad_request", "type is 7000 characters long (limit 200)"),
    ("lat=1&lon=2&nearest_km=0", "bad_request", "nearest_km must be above 0"),
    ("lat=1&lon=2&nearest_km=-3", "bad_request", "nearest_km must be above 0"),
    ("lat=1&lon=2&nearest_km=501", "bad_request", "nearest_km must be above 0"),
    ("lat=1&lon=2&nearest_km=nan", "bad_request", "nearest_km must be a decimal number"),
    ("lat=1&lon=2&address=Main+St", "bad_request", "either address or lat and lon"),
]


@pytest.mark.parametrize(("query", "code", "message"), BAD_LOOKUPS)
async def test_bad_lookup_is_400(client: Any, query: str, code: str, message: str) -> None:
    body = await get_json(client, f"/v1/lookup?{query}", status=400)
    assert body == {"error": {"code": code, "message": body["error"]["message"]}}
    assert message in body["error"]["message"]


async def test_unknown_address_is_422(client: Any) -> None:
    body = await get_json(client, "/v1/lookup?address=nowhere+at+all", status=422)
    assert body["error"]["code"] == "geocoding_failed"


async def test_batch_answers_and_oversized_bodies_are_413(client: Any) -> None:
    response = await client.post(
        "/v1/lookup/batch", data=f"lat,lon\n{MUNI_LAT},{MUNI_LON}\n".encode()
    )
    assert response.status == 200
    rows = (await response.text()).splitlines()
    assert len(rows) == 2 and rows[1].startswith(f"{MUNI_LAT},{MUNI_LON},4,")
    big = await client.post("/v1/lookup/batch", data=b"x" * 5000)
    assert big.status == 413
    assert (await big.json())["error"]["code"] == "body_too_large"

    async def chunks() -> Any:  # no Content-Length: the limit is enforced while reading
        for _ in range(10):
            yield b"y" * 1000

    chunked = await client.post("/v1/lookup/batch", data=chunks())
    assert chunked.status == 413
    assert (await chunked.json())["error"]["code"] == "body_too_large"


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/no/such/path", 404, "not_found"),
        ("GET", "/v1/servers/0000000000000000", 404, "not_found"),
        ("GET", "/v1/entries/https%3A%2F%2Fnope.example%2Fx%23y", 404, "not_found"),
        ("GET", "/v1/entries/https%3A%2F%2Fnope.example%2Fx%23y/geojson", 404, "not_found"),
        ("POST", "/v1/lookup", 405, "method_not_allowed"),
        ("DELETE", "/v1/servers", 405, "method_not_allowed"),
        ("GET", "/v1/servers?limit=0", 400, "bad_request"),
        ("GET", "/v1/servers?limit=abc", 400, "bad_request"),
        ("GET", "/v1/servers?offset=-1", 400, "bad_request"),
        ("GET", "/v1/servers?limit=%C2%B2", 400, "bad_request"),  # '²' passes str.isdigit()
        ("GET", "/v1/servers?offset=%E2%91%A0", 400, "bad_request"),  # '①' too
        ("GET", "/v1/servers?limit=%D9%A3", 400, "bad_request"),  # Arabic-Indic 3
        ("GET", "/v1/servers?page=2", 400, "bad_request"),
        ("GET", "/v1/status?verbose=1", 400, "bad_request"),
    ],
)
async def test_errors_share_one_shape(
    client: Any, method: str, path: str, status: int, code: str
) -> None:
    response = await client.request(method, path)
    assert response.status == status
    assert response.content_type == "application/json"
    body = await response.json()
    assert list(body) == ["error"] and sorted(body["error"]) == ["code", "message"]
    assert body["error"]["code"] == code and body["error"]["message"]


def test_error_table_maps_library_errors() -> None:
    from coverlookup import errors
    from coverlookup.service import NotAvailableError, NotReadyError

    assert status_for(errors.CoordinateError("x")) == 400
    assert status_for(errors.UsageError("x")) == 400
    assert status_for(errors.NotFoundError("x")) == 404
    assert status_for(errors.GeocodingError("x")) == 422
    assert status_for(NotAvailableError("x")) == 501
    assert status_for(errors.UnsafeURLError("x")) == 502
    assert status_for(NotReadyError("x")) == 503
    assert status_for(errors.SnapshotError("x")) == 503
    assert status_for(RuntimeError("x")) == 500
    # Subclasses come before their bases, or they would never be reached.
    classes = [cls for cls, _ in ERROR_STATUS]
    for i, cls in enumerate(classes):
        assert not any(issubclass(cls, earlier) for earlier in classes[:i]), cls


# --- servers and entries --------------------------------------------------------------------------


async def test_servers_list_and_paging(client: Any) -> None:
    page = await get_json(client, "/v1/servers")
    assert page["total"] == 6 and page["next_offset"] is None
    names = [s["name"] for s in page["servers"]]
    assert names == [
        "Alder Falls Municipal Utilities",
        "Cedar Basin Water District",
        "Meridian Energy Holdings",
        "Meridian Natural Gas",
        "Meridian Power & Light",
        "Valley Clean Power",
    ]
    counts = {s["name"]: s["entry_count"] for s in page["servers"]}
    assert counts["Meridian Power & Light"] == 2 and counts["Meridian Energy Holdings"] == 0
    holding = page["servers"][2]
    assert holding["related_metadata"] == [
        IOU_SERVER,
        "https://meridiangas.example/.well-known/cds-server-metadata.json",
    ]
    assert {s["shape"] for s in page["servers"]} == {"cds-2023", "cds-2025"}
    first = await get_json(client, "/v1/servers?limit=4")
    assert len(first["servers"]) == 4 and first["next_offset"] == 4
    rest = await get_json(client, "/v1/servers?limit=4&offset=4")
    assert [s["name"] for s in rest["servers"]] == names[4:] and rest["next_offset"] is None


async def test_server_detail_lists_entries(client: Any, index: CoverageIndex) -> None:
    server = next(s for s in index.servers.values() if s.metadata_url == IOU_SERVER)
    body = await get_json(client, f"/v1/servers/{server.id}")
    assert body["id"] == server.id and body["name"] == "Meridian Power & Light"
    assert body["links"]["ieee1547_setup"] == "https://meridianpower.example/smart-inverters/setup"
    assert sorted(e["key"] for e in body["entries"]) == [IOU_LOGICAL, IOU]


async def test_entry_and_its_geojson(client: Any, index: CoverageIndex) -> None:
    encoded = quote(IOU, safe="")
    entry = await get_json(client, f"/v1/entries/{encoded}")
    assert entry["key"] == IOU and entry["id"] == "mpl-electric"
    assert entry["server_id"] == server_id_for(IOU_SERVER)
    assert entry["geojson_resource"] == (
        "https://static.meridianpower.example/territories/electric.geojson"
    )
    response = await client.get(f"/v1/entries/{encoded}/geojson")
    assert response.status == 200 and response.content_type == "application/geo+json"
    feature = await response.json()
    assert feature["type"] == "Feature"
    assert feature["geometry"]["type"] == "Polygon"
    assert len(feature["geometry"]["coordinates"]) == 2  # the exterior and the municipal hole
    logical = await get_json(client, f"/v1/entries/{quote(IOU_LOGICAL, safe='')}")
    assert logical["type"] == "logical"


# --- operations -----------------------------------------------------------------------------------


async def test_status_health_ready(client: Any, index: CoverageIndex) -> None:
    status = await get_json(client, "/v1/status")
    assert status["ready"] is True
    assert status["snapshot"]["id"] == index.snapshot_id
    assert status["snapshot"]["age_s"] >= 0
    assert status["counts"]["servers"] == 6 and status["counts"]["entries"] == 6
    assert status["refresh"]["enabled"] is False and status["refresh"]["failures"] == 0
    assert status["sources_with_problems"] == []
    assert await get_json(client, "/healthz") == {"status": "ok"}
    assert await get_json(client, "/readyz") == {"status": "ready", "snapshot": index.snapshot_id}


async def test_not_ready_until_an_index_is_loaded(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(LookupService(None)))
    assert (await get_json(client, "/healthz")) == {"status": "ok"}
    body = await get_json(client, "/readyz", status=503)
    assert body["error"]["code"] == "not_ready"
    body = await get_json(client, "/v1/lookup?lat=1&lon=2", status=503)
    assert body["error"]["code"] == "not_ready"
    status = await get_json(client, "/v1/status")
    assert status["ready"] is False and "snapshot" not in status


async def test_metrics(client: Any) -> None:
    await client.get(f"/v1/lookup?lat={MUNI_LAT}&lon={MUNI_LON}")
    await client.get(f"/v1/lookup?lat={MUNI_LAT}&lon={MUNI_LON}")
    await client.get("/v1/lookup?lat=nan&lon=0")
    await client.get("/nowhere")
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = await response.text()
    lines = set(text.splitlines())
    assert 'coverlookup_http_requests_total{route="/v1/lookup",status="200"} 2' in lines
    assert 'coverlookup_http_requests_total{route="/v1/lookup",status="400"} 1' in lines
    assert 'coverlookup_http_requests_total{route="unmatched",status="404"} 1' in lines
    assert 'coverlookup_http_request_duration_seconds_count{route="/v1/lookup"} 3' in lines
    assert 'coverlookup_http_request_duration_seconds_bucket{route="/v1/lookup",le="+Inf"} 3' in (
        lines
    )
    assert "coverlookup_index_entries 6" in lines
    assert "coverlookup_index_servers 6" in lines
    assert "coverlookup_refresh_failures_total 0" in lines
    assert "coverlookup_lookup_batched_total 2" in lines  # the two good point lookups
    assert "coverlookup_ready 1" in lines
    assert any(re.fullmatch(r"coverlookup_snapshot_age_seconds \d+(\.\d+)?", li) for li in lines)
    # Every sample line is "name{labels} value" or "name value".
    for line in text.splitlines():
        if not line.startswith("#"):
            assert re.fullmatch(r"[a-z_]+(\{[^}]*\})? [0-9.e+-]+", line), line


async def test_openapi_describes_every_route(client: Any) -> None:
    spec = await get_json(client, "/openapi.json")
    assert spec["openapi"].startswith("3.")
    documented = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    routed = {(method, re.sub(r"\{(\w+):[^}]+\}", r"{\1}", path)) for method, path, _ in ROUTES}
    assert documented == routed
    for ops in spec["paths"].values():
        for op in ops.values():
            assert op["summary"] and op["responses"]
    assert "Error" in spec["components"]["schemas"]


async def test_cors_off_by_default(client: Any) -> None:
    response = await client.get("/healthz", headers={"Origin": "https://app.example"})
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_cors_when_configured(aiohttp_client: Any, index: CoverageIndex) -> None:
    app = create_app(LookupService(index), cors_origins=["https://app.example"])
    client = await aiohttp_client(app)
    ok = await client.get("/healthz", headers={"Origin": "https://app.example"})
    assert ok.headers["Access-Control-Allow-Origin"] == "https://app.example"
    other = await client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    pre = await client.options(
        "/v1/lookup",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"},
    )
    assert pre.status == 204
    assert pre.headers["Access-Control-Allow-Methods"] == "GET, POST, OPTIONS"
    error = await client.get("/v1/lookup", headers={"Origin": "https://app.example"})
    assert error.status == 400  # errors carry the header too, so browsers can read them
    assert error.headers["Access-Control-Allow-Origin"] == "https://app.example"


async def test_failed_refresh_keeps_serving(aiohttp_client: Any, index: CoverageIndex) -> None:
    async def broken() -> CoverageIndex:
        raise OSError("seed unreachable")

    service = LookupService(index, loader=broken)
    client = await aiohttp_client(create_app(service))
    assert await service.refresh() is False
    status = await get_json(client, "/v1/status")
    assert status["refresh"]["failures"] == 1
    assert status["refresh"]["last_error"] == "OSError: seed unreachable"
    assert status["snapshot"]["id"] == index.snapshot_id
    answer = await get_json(client, f"/v1/lookup?lat={IOU_LAT}&lon={IOU_LON}")
    assert keys(answer) == [GAS, IOU]
    text = await (await client.get("/metrics")).text()
    assert "coverlookup_refresh_failures_total 1" in text.splitlines()


NASTY = [
    "lat=%ZZ&lon=1",
    "lat=%&lon=%",
    "lat=1&lon=2&commodity=%00",
    "lat=1&lon=2&type=" + "x" * 6000,
    "lat=" + "9" * 5000 + "&lon=1",
    "lat=1e-400&lon=-0",
    "lat=٣&lon=1",  # an Arabic-Indic digit: float() would take it
    "lat=1.0.0&lon=1",
    "lat=--1&lon=1",
    "&&&=&lat=1&lon=1",
    "lat=1&lon=1&address=",
    "address=" + "a" * 5000,
    "lat=1&lon=1&nearest_km=1e309",
]


@pytest.mark.parametrize("query", NASTY)
async def test_nasty_queries_never_500(client: Any, query: str) -> None:
    response = await client.get(f"/v1/lookup?{query}")
    assert response.status in (200, 400, 422), await response.text()
    if response.status != 200:
        body = await response.json()
        assert sorted(body["error"]) == ["code", "message"]


async def test_overlong_request_line_is_400(client: Any) -> None:
    # Refused by aiohttp's HTTP parser (8190-byte lines) before any handler runs.
    response = await client.get("/v1/lookup?lat=1&lon=2&type=" + "x" * 10_000)
    assert response.status == 400


async def test_concurrent_lookups_answer_as_one_by_one(client: Any, index: CoverageIndex) -> None:
    """Requests that arrive together are answered in batches: each answer is still exactly the
    one-request answer, filters and ``nearest_km`` included."""
    import asyncio
    import random

    rng = random.Random(3)
    service = LookupService(index)
    paths, expected = [], []
    options: list[dict[str, Any]] = [
        {},
        {},
        {"commodity": "electricity"},
        {"capability": "oauth"},
        {"nearest_km": 50},
        {"type": "geographic", "infrastructure": "distribution_utility"},
    ]
    for i in range(120):
        lat, lon = rng.uniform(43.2, 44.4), rng.uniform(-121.5, -119.7)
        extra = options[i % len(options)]
        paths.append(
            f"/v1/lookup?lat={lat}&lon={lon}" + "".join(f"&{k}={v}" for k, v in extra.items())
        )
        nearest = extra.get("nearest_km")
        filters = {k: v for k, v in extra.items() if k != "nearest_km"}
        expected.append(service.lookup(Query.make(lat, lon, nearest_km=nearest, **filters)))
    answers = await asyncio.gather(*(get_json(client, p) for p in paths))
    assert answers == expected
    assert sum(len(a["matches"]) for a in answers) > 100


def test_plain_point_queries_agree_with_the_general_parser() -> None:
    import random

    from yarl import URL

    from coverlookup.service import parse_number, plain_point_query

    rng = random.Random(5)

    def number() -> str:
        pick = rng.choice
        digits = "".join(pick("0123456789") for _ in range(rng.randint(0, 3)))
        fraction = pick(["", ".", "." + pick("05"), ".25"])
        exponent = pick(["", "", "e1", "E-2", "e+1", "e", "e400"])
        return pick(["", "", "-", "+", "%2B", "%2D", " "]) + digits + fraction + exponent

    taken = 0
    for _ in range(20000):
        lat, lon = number(), number()
        raw = rng.choice([f"lat={lat}&lon={lon}", f"lon={lon}&lat={lat}", f"lat={lat}&lon={lon}&"])
        fast = plain_point_query(raw)
        if fast is None:
            continue
        taken += 1
        # aiohttp builds a request's URL this way; the general parser reads its decoded query
        params = dict(URL.build(path="/v1/lookup", query_string=raw, encoded=True).query)
        assert sorted(params) == ["lat", "lon"], raw
        general = Query.make(parse_number(params["lat"], "lat"), parse_number(params["lon"], "lon"))
        assert fast == general, raw
    assert taken > 100


async def test_metrics_label_routes_by_their_canonical_form(client: Any) -> None:
    await client.get("/v1/entries/nope")
    await client.get("/v1/entries/nope/geojson")
    text = await (await client.get("/metrics")).text()
    assert 'coverlookup_http_requests_total{route="/v1/entries/{entry_key}",status="404"} 1' in text
    assert (
        'coverlookup_http_requests_total{route="/v1/entries/{entry_key}/geojson",status="404"} 1'
        in text
    )


async def test_paths_with_a_newline_get_the_error_shape(aiohttp_client: Any, index: Any) -> None:
    app = create_app(LookupService(index), cors_origins=["https://app.example"])
    client = await aiohttp_client(app)
    for path in ("/nope%0Ax", "/v1/entries/a%0Ab/x%0A"):
        response = await client.get(path)
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "not_found"
    preflight = await client.options("/x%0Ay", headers={"Origin": "https://app.example"})
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
    text = await (await client.get("/metrics")).text()
    assert 'coverlookup_http_requests_total{route="unmatched",status="404"} 2' in text


async def test_one_failing_lookup_does_not_fail_its_batch(
    aiohttp_client: Any, index: CoverageIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    original, original_many = CoverageIndex.covering, CoverageIndex.covering_many

    def covering(self: CoverageIndex, lat: float, lon: float, **filters: Any) -> list[int]:
        if lat == 43.5:
            raise RuntimeError("a bug on one point")
        return original(self, lat, lon, **filters)

    def covering_many(self: CoverageIndex, lats: Any, lons: Any) -> list[list[int]]:
        if 43.5 in lats:  # the batch's call fails: each query is then located on its own
            raise RuntimeError("a bug on one point")
        return original_many(self, lats, lons)

    monkeypatch.setattr(CoverageIndex, "covering", covering)
    monkeypatch.setattr(CoverageIndex, "covering_many", covering_many)
    client = await aiohttp_client(create_app(LookupService(index)))
    paths = [f"/v1/lookup?lat={lat}&lon={IOU_LON}" for lat in (IOU_LAT, 43.5, MUNI_LAT)]
    responses = await asyncio.gather(*(client.get(p) for p in paths))
    assert [r.status for r in responses] == [200, 500, 200]
    assert (await responses[1].json())["error"]["code"] == "internal"


async def test_head_answers_like_get_without_a_body(client: Any) -> None:
    for path in ("/healthz", "/readyz", f"/v1/lookup?lat={MUNI_LAT}&lon={MUNI_LON}", "/metrics"):
        got, head = await client.get(path), await client.head(path)
        assert head.status == got.status == 200, path
        assert head.headers["Content-Type"] == got.headers["Content-Type"]
        assert await head.read() == b""
    assert (await client.head("/v1/lookup?lat=nan&lon=0")).status == 400
    assert (await client.head("/nowhere")).status == 404
    not_allowed = await client.head("/v1/lookup/batch")
    assert not_allowed.status == 405 and not_allowed.headers["Allow"] == "POST"


async def test_routes_a_caller_adds_after_create_app_are_served(
    aiohttp_client: Any, index: CoverageIndex
) -> None:
    from aiohttp import web

    app = create_app(LookupService(index))

    async def extra(request: web.Request) -> web.Response:
        return web.json_response({"extra": True})

    app.router.add_get("/extra", extra)
    client = await aiohttp_client(app)
    assert await get_json(client, "/extra") == {"extra": True}
    response = await client.post("/extra")
    assert response.status == 405
    assert (await response.json())["error"]["code"] == "method_not_allowed"
    missing = await get_json(client, "/still/missing", 404)
    assert missing["error"]["code"] == "not_found"


async def test_offsets_past_the_end_are_empty_pages(client: Any) -> None:
    for offset in ("1000000000", "1000000000000"):
        page = await get_json(client, f"/v1/servers?offset={offset}")
        assert page["servers"] == [] and page["offset"] == int(offset)
    for offset in ("1000000000001", "9" * 40, "9" * 5000):
        error = (await get_json(client, f"/v1/servers?offset={offset}", 400))["error"]
        assert error["message"] == f"offset must be between 0 and 1000000000000, got {offset[:40]}"
    padded = await get_json(client, "/v1/servers?offset=00000000005")
    assert padded == await get_json(client, "/v1/servers?offset=5")


async def test_the_app_works_as_a_sub_application(
    aiohttp_client: Any, index: CoverageIndex
) -> None:
    from aiohttp import web

    parent = web.Application()
    parent.add_subapp("/api", create_app(LookupService(index)))
    client = await aiohttp_client(parent)
    answer = await get_json(client, f"/api/v1/lookup?lat={IOU_LAT}&lon={IOU_LON}")
    assert keys(answer) == [GAS, IOU]
    assert (await get_json(client, "/api/no/such/path", 404))["error"]["code"] == "not_found"


async def test_address_lookup_checks_its_options_before_geocoding(index: CoverageIndex) -> None:
    class Refusing:
        name = "refusing"

        def geocode(self, text: str) -> Any:
            raise AssertionError("geocoded although an option was bad")

    service = LookupService(index, geocoder=Refusing())  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="type is 300 characters long"):
        service.lookup_address("1 Main St, Springfield", type="x" * 300)
    with pytest.raises(UsageError, match="nearest_km must be above 0"):
        service.lookup_address("1 Main St, Springfield", nearest_km=0.0)


async def test_plain_and_general_query_parsing_answer_alike(client: Any) -> None:
    plain = await client.get(f"/v1/lookup?lat={MUNI_LAT}&lon={MUNI_LON}")
    general = await client.get(f"/v1/lookup?lon={MUNI_LON}&lat={MUNI_LAT}")
    assert plain.status == general.status == 200
    assert await plain.read() == await general.read()
