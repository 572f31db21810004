"""Online geocoders through geopy: Nominatim first-class, any other geopy service by name.

Each provider is wrapped in geopy's ``RateLimiter`` (Nominatim's usage policy asks for at most one
request per second, the default here), has a timeout, and turns every geopy failure into a
:class:`~coverlookup.geocoding.base.GeocoderUnavailableError` that names the service and its URL.
"""

from __future__ import annotations

import logging
from typing import Any

from coverlookup.errors import UsageError
from coverlookup.geocoding.base import (
    ADDRESS,
    CITY,
    POSTAL_CODE,
    REGION,
    STREET,
    UNKNOWN,
    GeocoderUnavailableError,
    Location,
)

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0


def _user_agent() -> str:
    from coverlookup import __version__

    return f"coverlookup/{__version__}"


# Nominatim "addresstype"/"type" values, finest first.
_NOMINATIM_TYPES = {
    "house": ADDRESS,
    "building": ADDRESS,
    "house_number": ADDRESS,
    "residential": ADDRESS,
    "road": STREET,
    "street": STREET,
    "postcode": POSTAL_CODE,
    "city": CITY,
    "town": CITY,
    "village": CITY,
    "hamlet": CITY,
    "suburb": CITY,
    "neighbourhood": CITY,
    "municipality": CITY,
    "county": REGION,
    "state": REGION,
    "country": REGION,
}


def nominatim_precision(raw: Any) -> str:
    """Precision of a Nominatim answer, from its ``addresstype``/``type`` or its ``place_rank``."""
    if not isinstance(raw, dict):
        return UNKNOWN
    for key in ("addresstype", "type"):
        precision = _NOMINATIM_TYPES.get(str(raw.get(key, "")).lower())
        if precision:
            return precision
    try:
        rank = int(raw.get("place_rank"))
    except (TypeError, ValueError):
        return UNKNOWN
    if rank >= 28:
        return ADDRESS
    if rank >= 26:
        return STREET
    if rank >= 13:
        return CITY
    return REGION


class GeopyGeocoder:
    """One geopy service behind the coverlookup protocol.

    ``service`` is a geopy service name ("nominatim", "photon", "arcgis", "opencage", ...); the
    remaining options go to the geopy class (``domain``, ``scheme``, ``api_key``, ...), except
    ``min_delay_seconds``, ``max_retries`` and ``error_wait_seconds`` (the rate limiter) and
    ``precision`` (fixed precision for services whose answers do not say).
    """

    def __init__(
        self,
        service: str,
        *,
        name: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        min_delay_seconds: float | None = None,
        max_retries: int = 2,
        error_wait_seconds: float | None = None,
        precision: str | None = None,
        **geopy_options: Any,
    ):
        from geopy.exc import GeocoderNotFound
        from geopy.extra.rate_limiter import RateLimiter
        from geopy.geocoders import get_geocoder_for_service

        try:
            cls = get_geocoder_for_service(service)
        except GeocoderNotFound as exc:
            raise UsageError(f"unknown geocoder {service!r}: {exc}") from exc
        self.service = service
        self.name = name or service
        self.precision = precision
        if service == "nominatim":
            geopy_options.setdefault("user_agent", _user_agent())
            if min_delay_seconds is None:
                min_delay_seconds = 1.0  # the public Nominatim usage policy
        min_delay = float(min_delay_seconds or 0.0)
        try:
            self._geopy = cls(timeout=float(timeout), **geopy_options)
        except TypeError as exc:
            raise UsageError(f"bad option for geocoder {service!r}: {exc}") from exc
        except Exception as exc:  # geopy's ConfigurationError: missing api_key and the like
            raise UsageError(f"cannot configure geocoder {service!r}: {exc}") from exc
        self._geocode = RateLimiter(
            self._geopy.geocode,
            min_delay_seconds=min_delay,
            max_retries=int(max_retries),
            error_wait_seconds=max(min_delay, error_wait_seconds or min_delay or 0.0),
            swallow_exceptions=False,
        )

    @property
    def endpoint(self) -> str:
        api = getattr(self._geopy, "api", None)
        return str(api) if api else self.service

    def geocode(self, query: str) -> Location | None:
        from geopy.exc import GeopyError

        try:
            answer = self._geocode(query, exactly_one=True)
        except GeopyError as exc:
            raise GeocoderUnavailableError(
                f"geocoder {self.name} ({self.endpoint}) failed: {type(exc).__name__}: {exc}"
            ) from exc
        except OSError as exc:  # adapters let some socket errors through unwrapped
            raise GeocoderUnavailableError(
                f"geocoder {self.name} ({self.endpoint}) is unreachable: {exc}"
            ) from exc
        if answer is None:
            return None
        raw = answer.raw
        if self.precision:
            precision = self.precision
        elif self.service == "nominatim":
            precision = nominatim_precision(raw)
        else:
            precision = UNKNOWN
        return Location(
            query=query,
            lat=float(answer.latitude),
            lon=float(answer.longitude),
            precision=precision,
            provider=self.name,
            address=answer.address,
            raw=raw,
        )
