"""The geocoder protocol: text in, a :class:`Location` (or nothing) out.

A geocoder answers ``None`` when it does not know a place and raises
:class:`~coverlookup.errors.GeocodingError` when it cannot answer at all (service unreachable,
refused, timed out). Chains and caches are built from that distinction: "not found" lets the next
provider try, "unreachable" is remembered and reported.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from coverlookup.errors import GeocodingError

logger = logging.getLogger(__name__)

# Precision of a location, finest first. Anything coarser than ADDRESS is approximate: the point
# is a centroid and the house may sit in a different territory.
ADDRESS = "address"
STREET = "street"
POSTAL_CODE = "postal_code"
CITY = "city"
REGION = "region"
UNKNOWN = "unknown"
PRECISIONS = (ADDRESS, STREET, POSTAL_CODE, CITY, REGION, UNKNOWN)


class GeocoderUnavailableError(GeocodingError):
    """The geocoding service could not be reached or refused to answer (not "not found")."""

    code = "geocoder_unavailable"


@dataclass(frozen=True, slots=True)
class Location:
    """Where a geocoder put a query. ``raw`` is the provider's own answer, untouched."""

    query: str
    lat: float
    lon: float
    precision: str
    provider: str
    address: str | None = None
    raw: Any = field(default=None, compare=False, repr=False)

    @property
    def approximate(self) -> bool:
        return self.precision != ADDRESS

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "lat": self.lat,
            "lon": self.lon,
            "precision": self.precision,
            "provider": self.provider,
            "address": self.address,
        }


@runtime_checkable
class Geocoder(Protocol):
    """Anything with a ``name`` and a ``geocode(query)`` that follows the module's rules."""

    name: str

    def geocode(self, query: str) -> Location | None: ...


class ChainGeocoder:
    """Try providers in order; the first that knows the place wins.

    If none knows it, the answer is ``None`` — unless some provider was unreachable, in which case
    the caller learns that (a "not found" from a service that never answered would be a lie).
    """

    def __init__(self, providers: Sequence[Geocoder]):
        if not providers:
            raise ValueError("a geocoder chain needs at least one provider")
        self.providers = tuple(providers)
        self.name = ",".join(p.name for p in self.providers)

    def geocode(self, query: str) -> Location | None:
        failures: list[GeocodingError] = []
        for provider in self.providers:
            try:
                location = provider.geocode(query)
            except GeocoderUnavailableError as exc:
                failures.append(exc)
                continue
            if location is not None:
                if failures:  # answered, but an earlier (preferred) provider is failing
                    logger.warning("geocoding %r: %s", query, "; ".join(map(str, failures)))
                return location
        if failures:
            message = "; ".join(str(f) for f in failures)
            raise GeocoderUnavailableError(f"could not geocode {query!r}: {message}")
        return None


class CachingGeocoder:
    """Remember answers (including "not found") per distinct query, bounded LRU, thread-safe.

    Used by batch runs so a file with the same ZIP on 10,000 rows asks the provider once, and so a
    rate-limited online service sees each distinct query only once.
    """

    def __init__(self, inner: Geocoder, *, maxsize: int = 65536):
        self.inner = inner
        self.name = inner.name
        self.maxsize = maxsize
        self._cache: OrderedDict[str, Location | None] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def geocode(self, query: str) -> Location | None:
        key = normalise_query(query)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                self.hits += 1
                return self._cache[key]
        # Unreachable-service errors are not cached: the next distinct query may well get through.
        location = self.inner.geocode(query)
        with self._lock:
            self.misses += 1
            self._cache[key] = location
            if len(self._cache) > self.maxsize:
                self._cache.popitem(last=False)
        return location


def normalise_query(query: str) -> str:
    return " ".join(query.split()).casefold()


def require_location(geocoder: Geocoder, query: str) -> Location:
    """Geocode or raise a :class:`GeocodingError` that says what was asked and who was asked."""
    text = query.strip() if isinstance(query, str) else ""
    if not text:
        raise GeocodingError("empty address")
    location = geocoder.geocode(text)
    if location is None:
        raise GeocodingError(f"no location found for {text!r} (geocoders tried: {geocoder.name})")
    return location


def options_for(options: Mapping[str, Mapping[str, Any]] | None, name: str) -> dict[str, Any]:
    return dict((options or {}).get(name) or {})
