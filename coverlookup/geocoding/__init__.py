"""Geocoding: a small protocol, a registry of providers by name, an offline default.

    from coverlookup.geocoding import build_geocoder
    geocoder = build_geocoder("offline,nominatim", {"nominatim": {"domain": "geo.local:8080"}})
    location = geocoder.geocode("1 Main St, Fresno, CA 93721")   # Location | None

Providers: ``offline`` (no network: US ZIPs and "City, ST"), ``nominatim``, and any other service
geopy knows by its geopy name ("photon", "arcgis", "opencage", ...). The order of the chain is the
order of names; the first provider that knows the place answers. The environment variable
``COVERLOOKUP_GEOCODER`` sets the default order (``offline`` when unset).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from coverlookup.errors import UsageError
from coverlookup.geocoding.base import (
    ADDRESS,
    CITY,
    POSTAL_CODE,
    PRECISIONS,
    REGION,
    STREET,
    UNKNOWN,
    CachingGeocoder,
    ChainGeocoder,
    Geocoder,
    GeocoderUnavailableError,
    Location,
    require_location,
)

__all__ = [
    "ADDRESS",
    "CITY",
    "DEFAULT_GEOCODERS",
    "POSTAL_CODE",
    "PRECISIONS",
    "REGION",
    "STREET",
    "UNKNOWN",
    "CachingGeocoder",
    "ChainGeocoder",
    "Geocoder",
    "GeocoderUnavailableError",
    "Location",
    "available",
    "build_geocoder",
    "create",
    "parse_options",
    "register",
    "require_location",
]

DEFAULT_GEOCODERS = "offline"

GeocoderFactory = Callable[..., Geocoder]
_REGISTRY: dict[str, GeocoderFactory] = {}


def register(name: str, factory: GeocoderFactory) -> None:
    """Make a provider available by name (``factory(**options) -> Geocoder``)."""
    _REGISTRY[name.lower()] = factory


def available() -> list[str]:
    return sorted(_REGISTRY)


def create(name: str, **options: Any) -> Geocoder:
    """One provider by name: a registered one, else any geopy service of that name."""
    key = name.strip().lower()
    if not key:
        raise UsageError("empty geocoder name")
    factory = _REGISTRY.get(key)
    if factory is not None:
        try:
            return factory(**options)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, UsageError):
                raise
            raise UsageError(f"bad options for geocoder {key!r}: {exc}") from exc
    from coverlookup.geocoding.online import GeopyGeocoder

    return GeopyGeocoder(key, **options)


def build_geocoder(
    names: str | Sequence[str] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> Geocoder:
    """A chain of providers in the given order ("offline,nominatim" or a list of names)."""
    if names is None:
        names = os.environ.get("COVERLOOKUP_GEOCODER") or DEFAULT_GEOCODERS
    if isinstance(names, str):
        names = [n for n in names.split(",")]
    names = [n.strip().lower() for n in names if n.strip()]
    if not names:
        raise UsageError("no geocoder named; use e.g. --geocoder offline,nominatim")
    unknown_options = set(options or {}) - set(names)
    if unknown_options:
        raise UsageError(
            f"options given for geocoder(s) not in use: {', '.join(sorted(unknown_options))}"
        )
    providers = [create(name, **dict((options or {}).get(name) or {})) for name in names]
    return providers[0] if len(providers) == 1 else ChainGeocoder(providers)


def parse_options(items: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``["nominatim.domain=localhost:8080", "nominatim.scheme=http"]`` -> options by provider.

    Values that read as numbers become numbers (``timeout=5``, ``min_delay_seconds=0.5``).
    """
    options: dict[str, dict[str, Any]] = {}
    for item in items:
        name_key, sep, value = item.partition("=")
        provider, dot, key = name_key.partition(".")
        if not sep or not dot or not provider.strip() or not key.strip():
            raise UsageError(f"geocoder option {item!r} is not PROVIDER.KEY=VALUE")
        options.setdefault(provider.strip().lower(), {})[key.strip()] = _value(value.strip())
    return options


def _value(text: str) -> Any:
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def _offline(**options: Any) -> Geocoder:
    from coverlookup.geocoding.offline import OfflineGeocoder

    return OfflineGeocoder(**options)


def _nominatim(**options: Any) -> Geocoder:
    from coverlookup.geocoding.online import GeopyGeocoder

    return GeopyGeocoder("nominatim", **options)


register("offline", _offline)
register("nominatim", _nominatim)
