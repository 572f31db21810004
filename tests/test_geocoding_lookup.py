"""Address lookups end to end: service, GET /v1/lookup?address=, and lookup --address.

On the demo federation (central Oregon): the centroid of ZIP 97712 (Brothers, OR) sits in the
investor-owned utility 680 m outside the municipal utility's boundary, which is exactly why an
approximate answer lists nearby territories as candidates.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp import web

from coverlookup import cli
from coverlookup.errors import GeocodingError, UsageError
from coverlookup.geocoding import ADDRESS, Location, build_geocoder
from coverlookup.index import CoverageIndex
from coverlookup.service import LookupService
from coverlookup.web import create_app

MUNI = "https://alderfalls.example/.well-known/carbon-data-spec.json#afmu-electric"
WATER = "https://cedarbasinwater.example/.well-known/cds-server-metadata.json#cbwd-district"
CCA = "https://valleycleanpower.example/.well-known/cds-server-metadata.json#vcp-service-area"
GAS = "https://meridiangas.example/.well-known/cds-server-metadata.json#mng-gas"
IOU = "https://meridianpower.example/.well-known/cds-server-metadata.json#mpl-electric"
ZIP_LAT, ZIP_LON = 43.7789, -120.477


@pytest.fixture(scope="module")
def index() -> CoverageIndex:
    return CoverageIndex.demo()


class FixedGeocoder:
    """A street-precise geocoder that knows one address."""

    name = "fixed"

    def geocode(self, query: str) -> Location | None:
        if query == "1 Alder St":
            return Location(query, 43.85, -120.5, ADDRESS, self.name, "1 Alder St, Alder Falls")
        return None


def keys(items: list[dict[str, Any]]) -> list[str]:
    return [m["key"] for m in items]


def test_zip_answer_is_approximate_with_candidates(index: CoverageIndex) -> None:
    answer = LookupService(index).lookup_address("Brothers, OR 97712")
    assert answer["query"] == {
        "address": "Brothers, OR 97712",
        "lat": ZIP_LAT,
        "lon": ZIP_LON,
        "candidate_km": 10.0,
    }
    assert answer["geocode"] == {
        "query": "Brothers, OR 97712",
        "lat": ZIP_LAT,
        "lon": ZIP_LON,
        "precision": "postal_code",
        "provider": "offline",
        "address": "Brothers, OR 97712",
    }
    assert answer["approximate"] is True
    assert keys(answer["matches"]) == [WATER, CCA, GAS, IOU]
    # the municipal utility is next door: a house in this ZIP may well be its customer
    assert keys(answer["candidates"]) == [MUNI]
    assert answer["candidates"][0]["distance_m"] == 683.5
    assert answer["snapshot"] == {"id": index.snapshot_id, "created": index.created}


def test_filters_apply_to_matches_and_candidates(index: CoverageIndex) -> None:
    answer = LookupService(index).lookup_address("97712", commodity="water")
    assert keys(answer["matches"]) == [WATER]
    assert answer["candidates"] == []
    assert answer["query"]["commodity"] == "water"


def test_candidate_radius_is_configurable(index: CoverageIndex) -> None:
    answer = LookupService(index, candidate_km=0.5).lookup_address("97712")
    assert answer["candidates"] == [] and answer["query"]["candidate_km"] == 0.5
    answer = LookupService(index, candidate_km=0).lookup_address("97712")
    assert answer["candidates"] == [] and "candidate_km" not in answer["query"]


def test_street_precise_answer_is_not_approximate(index: CoverageIndex) -> None:
    answer = LookupService(index, geocoder=FixedGeocoder()).lookup_address("1 Alder St")
    assert answer["approximate"] is False
    assert answer["candidates"] == []
    assert answer["geocode"]["provider"] == "fixed"
    assert keys(answer["matches"]) == [MUNI, WATER, CCA, GAS]


def test_address_errors(index: CoverageIndex) -> None:
    service = LookupService(index)
    with pytest.raises(GeocodingError, match=r"no location found for 'Atlantis'"):
        service.lookup_address("Atlantis")
    with pytest.raises(UsageError, match="address must be a non-empty string"):
        service.lookup_address("  ")
    with pytest.raises(UsageError, match="address is 1001 characters"):
        service.lookup_address("x" * 1001)


# --- HTTP -----------------------------------------------------------------------------------------


@pytest.fixture
async def fake_nominatim(aiohttp_server: Any) -> Any:
    async def search(request: web.Request) -> web.Response:
        if request.query.get("q") != "1 Alder St, Alder Falls":
            return web.json_response([])
        place = {
            "lat": "43.85",
            "lon": "-120.5",
            "display_name": "1, Alder Street, Alder Falls",
            "addresstype": "building",
            "place_rank": 30,
        }
        return web.json_response([place])

    app = web.Application()
    app.router.add_get("/search", search)
    return await aiohttp_server(app, host="127.0.0.1")


async def test_http_address_lookup(aiohttp_client: Any, index: CoverageIndex) -> None:
    client = await aiohttp_client(create_app(LookupService(index)))
    response = await client.get("/v1/lookup", params={"address": "Brothers, OR 97712"})
    assert response.status == 200
    answer = await response.json()
    assert (answer["approximate"], keys(answer["candidates"])) == (True, [MUNI])
    assert answer["geocode"]["precision"] == "postal_code"
    response = await client.get("/v1/lookup", params={"address": "97712", "type": "geographic"})
    assert keys((await response.json())["matches"]) == [WATER, CCA, GAS, IOU]
    response = await client.get("/v1/lookup", params={"address": "Atlantis"})
    assert response.status == 422
    assert await response.json() == {
        "error": {
            "code": "geocoding_failed",
            "message": "no location found for 'Atlantis' (geocoders tried: offline)",
        }
    }
    response = await client.get("/v1/lookup", params={"address": ""})
    assert response.status == 400


async def test_http_address_through_an_online_geocoder(
    aiohttp_client: Any, fake_nominatim: Any, index: CoverageIndex
) -> None:
    # Geocoding runs off the event loop: the fake Nominatim on this same loop can answer it.
    geocoder = build_geocoder(
        "offline,nominatim",
        {
            "nominatim": {
                "domain": f"127.0.0.1:{fake_nominatim.port}",
                "scheme": "http",
                "min_delay_seconds": 0,
                "max_retries": 0,
            }
        },
    )
    client = await aiohttp_client(create_app(LookupService(index, geocoder=geocoder)))
    response = await client.get("/v1/lookup", params={"address": "1 Alder St, Alder Falls"})
    assert response.status == 200, await response.text()
    answer = await response.json()
    assert answer["geocode"]["provider"] == "nominatim"
    assert answer["geocode"]["precision"] == "address"
    assert answer["approximate"] is False and answer["candidates"] == []
    assert keys(answer["matches"]) == [MUNI, WATER, CCA, GAS]


async def test_http_online_geocoder_down_is_422(aiohttp_client: Any, index: CoverageIndex) -> None:
    geocoder = build_geocoder(
        "nominatim",
        {"nominatim": {"domain": "127.0.0.1:9", "scheme": "http", "max_retries": 0}},
    )
    client = await aiohttp_client(create_app(LookupService(index, geocoder=geocoder)))
    response = await client.get("/v1/lookup", params={"address": "somewhere"})
    assert response.status == 422
    body = await response.json()
    assert body["error"]["code"] == "geocoder_unavailable"
    assert "geocoder nominatim (http://127.0.0.1:9/search) failed" in body["error"]["message"]


# --- command line ---------------------------------------------------------------------------------


def test_cli_lookup_address_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["lookup", "--address", "Brothers, OR 97712"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        "'Brothers, OR 97712' -> 43.7789, -120.477 "
        "(approximate: postal_code from offline: Brothers, OR 97712)"
    )
    assert "Other territories within 10 km (the address may be in one):" in out
    assert any(line.startswith("Alder Falls Municipal Utilities") for line in out)


def test_cli_lookup_address_json_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["lookup", "--address", "97712", "--json", "--candidate-km", "0.5"]) == 0
    answer = orjson.loads(capsys.readouterr().out)
    assert (answer["approximate"], answer["candidates"]) == (True, [])
    assert cli.main(["lookup", "--address", "Atlantis"]) == 1
    err = capsys.readouterr().err
    assert (
        err == "coverlookup: error: no location found for 'Atlantis' (geocoders tried: offline)\n"
    )
    assert cli.main(["lookup", "--address", "x", "--geocoder", "nosuch"]) == 2
    assert "unknown geocoder 'nosuch'" in capsys.readouterr().err


def test_serve_options_configure_the_geocoder() -> None:
    from coverlookup.web import ServeOptions, build_service

    args = cli.build_parser().parse_args(
        [
            "serve",
            "--geocoder",
            "offline,nominatim",
            "--geocoder-option",
            "nominatim.domain=127.0.0.1:9",
            "--geocoder-option",
            "nominatim.scheme=http",
            "--candidate-km",
            "3",
        ]
    )
    pairs = cli._geocoder_option_pairs(args.geocoder_option)
    assert pairs == (("nominatim", (("domain", "127.0.0.1:9"), ("scheme", "http"))),)
    service = build_service(
        ServeOptions(geocoder=args.geocoder, geocoder_options=pairs, candidate_km=3.0)
    )
    assert service.geocoder.name == "offline,nominatim"
    assert service.candidate_km == 3.0
    assert build_service(ServeOptions()).geocoder.name == "offline"
