"""CDS WG1-01 server metadata and coverage listings: detect the shape, normalise, validate.

One pass reads a document into the model (``Server``, ``CoveragePage``/``Entry``) and records
findings: errors for MUST/REQUIRED violations, warnings for SHOULDs and suspicious values, notices
for unknown fields and enum strings (which clients MUST ignore: they are kept, never rejected).

Shapes, detected per document from its fields (``cds_metadata_version`` is ``v1`` in all):
- 2023 draft: server-level ``infrastructure_types``/``commodity_types``; entry types
  ``*_service_territory``; entries need only ``id``, ``type``, ``updated``, ``name``.
- overview: 2025-style entries served from the 2023 well-known path, no server-level types.
- 2025 draft: ``geographic``/``logical`` entries with ``created``, ``entity_name``,
  ``entity_abbreviation``, ``country``, ``role`` and per-entry types and capabilities.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Container, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from coverlookup.fields import Reader, check_url, parse_datetime, type_name
from coverlookup.findings import FindingList, pointer
from coverlookup.model import (
    COMMODITY_TYPES,
    ENTRY_TYPES,
    GEOGRAPHIC,
    INFRASTRUCTURE_TYPES,
    KNOWN_CAPABILITIES,
    LEGACY_ENTRY_TYPES,
    ROLES,
    SHAPE_2023,
    SHAPE_2025,
    SHAPE_OVERVIEW,
    CoveragePage,
    Entry,
    Server,
)

WELL_KNOWN_2025 = "/.well-known/cds-server-metadata.json"
WELL_KNOWN_2023 = "/.well-known/carbon-data-spec.json"

_SERVER_FIELDS_COMMON = (
    "cds_metadata_version",
    "cds_metadata_url",
    "created",
    "updated",
    "name",
    "description",
    "website",
    "documentation",
    "support",
    "capabilities",
)
_SERVER_TYPE_FIELDS = ("infrastructure_types", "commodity_types")
_SERVER_OPTIONAL = ("coverage", "related_metadata")
_SERVER_URL_FIELDS = ("website", "documentation", "support")

_ENTRY_REQUIRED_2023 = ("id", "type", "updated", "name")
_ENTRY_REQUIRED_2025 = (
    "id",
    "created",
    "updated",
    "entity_name",
    "entity_abbreviation",
    "country",
    "name",
    "type",
    "role",
    "infrastructure_types",
    "commodity_types",
    "capabilities",
)
_ENTRY_KNOWN = frozenset(
    _ENTRY_REQUIRED_2025 + ("description", "map_resource", "map_content_type", "geojson_resource")
)
_LISTING_KNOWN = frozenset({"coverage_entries", "next", "previous"})

_MIME = re.compile(r"^[A-Za-z0-9][\w!#$&^.+-]*/[A-Za-z0-9][\w!#$&^.+-]*(\s*;.*)?$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


def detect_kind(value: Any) -> str:
    """What a parsed document is: metadata, coverage, open-energy, geojson or unknown."""
    if isinstance(value, dict):
        if "coverage_entries" in value:
            return "coverage"
        if "cds_metadata_version" in value or "cds_metadata_url" in value:
            return "metadata"
        if isinstance(value.get("type"), str) and value["type"] in GEOJSON_TYPES:
            return "geojson"
        if "content" in value and isinstance(value.get("content"), dict):
            return "open-energy"
        if {"capabilities", "name"} <= value.keys():
            return "metadata"
        return "unknown"
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        if any("content" in v for v in value):
            return "open-energy"
    return "unknown"


GEOJSON_TYPES = frozenset(
    {
        "FeatureCollection",
        "Feature",
        "Polygon",
        "MultiPolygon",
        "Point",
        "MultiPoint",
        "LineString",
        "MultiLineString",
        "GeometryCollection",
    }
)


def detect_server_shape(value: Mapping[str, Any]) -> str:
    if any(key in value for key in _SERVER_TYPE_FIELDS):
        return SHAPE_2023
    url = value.get("cds_metadata_url")
    if isinstance(url, str) and url.rstrip("/").endswith(WELL_KNOWN_2023):
        return SHAPE_OVERVIEW
    return SHAPE_2025


# --- servers ------------------------------------------------------------------------------------


def _looks_like_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("https://", "http://"))


def _extensions(
    obj: Mapping[str, Any],
    known: Container[str],
    base: str,
    url: str,
    found: FindingList,
) -> tuple[dict[str, str], dict[str, Any]]:
    """An object's fields the spec does not name, as (links, extra): a URL-valued one is an
    extension's link (``oauth_metadata``), anything else is kept and ignored; each a notice."""
    links: dict[str, str] = {}
    extra: dict[str, Any] = {}
    for key, item in obj.items():
        if key in known:
            continue
        ptr = base + pointer(key)
        if _looks_like_url(item):
            resolved = check_url(item, ptr, found, url, field=key)
            if resolved:
                links[key] = resolved
            found.notice(ptr, "extension-link", f"extension field '{key}' kept as a link")
        else:
            extra[key] = item
            found.notice(ptr, "unknown-field", f"unknown field '{key}' (kept; clients ignore it)")
    return links, extra


def parse_server(value: Any, url: str) -> tuple[Server | None, FindingList]:
    """Read a metadata document fetched from ``url`` into a ``Server`` plus findings."""
    found = FindingList(url)
    if not isinstance(value, dict):
        found.error(
            "",
            "not-an-object",
            f"a metadata document must be a JSON object, got {type_name(value)}",
        )
        return None, found
    shape = detect_server_shape(value)
    r = Reader(value, "", found, url)
    required = _SERVER_FIELDS_COMMON + (_SERVER_TYPE_FIELDS if shape == SHAPE_2023 else ())
    r.require(required, "the metadata document")

    version = r.string("cds_metadata_version")
    if version is not None and version != "v1":
        found.warning(
            "/cds_metadata_version",
            "unknown-version",
            f"cds_metadata_version is {version!r}; this client reads 'v1' documents",
        )
    canonical = r.url_field("cds_metadata_url")
    if (
        canonical
        and urlsplit(url).scheme in ("http", "https")
        and canonical.rstrip("/") != url.rstrip("/")
    ):
        found.notice(
            "/cds_metadata_url",
            "canonical-url-differs",
            f"document says its canonical URL is {canonical}, but it was fetched from {url}",
        )
    created = r.datetime("created")
    updated = r.datetime("updated")
    _check_order(created, updated, "", found)
    name = r.string("name")
    description = r.string("description")
    links_std = {name_: r.url_field(name_) for name_ in _SERVER_URL_FIELDS}
    capabilities = r.enum_list("capabilities", KNOWN_CAPABILITIES, "capability")
    coverage = r.url_field("coverage")
    if "coverage" in capabilities and "coverage" not in value:
        found.error(
            "/coverage",
            "missing-coverage-url",
            "capabilities include 'coverage' but the REQUIRED 'coverage' URL is missing",
        )
    elif "coverage" in value and "coverage" not in capabilities:
        found.warning(
            "/coverage",
            "coverage-without-capability",
            "a 'coverage' URL is given but 'coverage' is not in capabilities",
        )
    related: list[str] = []
    if "related_metadata" in value:
        raw = value["related_metadata"]
        if not isinstance(raw, list):
            found.error(
                "/related_metadata",
                "wrong-type",
                f"'related_metadata' must be an array of URLs, got {type_name(raw)}",
            )
        else:
            for i, item in enumerate(raw):
                ptr = pointer("related_metadata", i)
                if not isinstance(item, str):
                    found.error(
                        ptr,
                        "wrong-type",
                        f"related_metadata items must be URL strings, got {type_name(item)}",
                    )
                    continue
                resolved = check_url(item, ptr, found, url, field="related_metadata")
                if resolved and resolved not in related:
                    related.append(resolved)
    infrastructure: tuple[str, ...] = ()
    commodities: tuple[str, ...] = ()
    if shape == SHAPE_2023:
        infrastructure = r.enum_list(
            "infrastructure_types", INFRASTRUCTURE_TYPES, "infrastructure type"
        )
        commodities = r.enum_list("commodity_types", COMMODITY_TYPES, "commodity type")

    known = set(_SERVER_FIELDS_COMMON + _SERVER_TYPE_FIELDS + _SERVER_OPTIONAL)
    links, extra = _extensions(value, known, "", url, found)
    server = Server(
        metadata_url=url,
        shape=shape,
        name=name,
        description=description,
        cds_metadata_version=version,
        cds_metadata_url=canonical,
        created=created,
        updated=updated,
        website=links_std["website"],
        documentation=links_std["documentation"],
        support=links_std["support"],
        capabilities=capabilities,
        coverage_url=coverage,
        related_metadata=tuple(related),
        infrastructure_types=infrastructure,
        commodity_types=commodities,
        links=links,
        extra=extra,
    )
    return server, found


def _check_order(created: str | None, updated: str | None, base: str, found: FindingList) -> None:
    if not created or not updated:
        return
    c, u = parse_datetime(created), parse_datetime(updated)
    if c and u and u < c:
        found.warning(
            base + "/updated",
            "updated-before-created",
            f"'updated' ({updated}) is earlier than 'created' ({created})",
        )


# --- coverage listings ----------------------------------------------------------------------


def parse_coverage_page(
    value: Any, url: str, server: Server | None
) -> tuple[CoveragePage | None, FindingList]:
    """Read one coverage listing page fetched from ``url`` (belonging to ``server``)."""
    found = FindingList(url)
    if not isinstance(value, dict):
        found.error(
            "",
            "not-an-object",
            f"a coverage listing must be a JSON object, got {type_name(value)}",
        )
        return None, found
    r = Reader(value, "", found, url)
    r.require(("coverage_entries", "next", "previous"), "the coverage listing")
    links: dict[str, str | None] = {}
    for name in ("next", "previous"):
        item = value.get(name)
        if item is None:
            links[name] = None
        elif not isinstance(item, str):
            found.error(
                pointer(name),
                "wrong-type",
                f"'{name}' must be null or a URL, got {type_name(item)}",
            )
            links[name] = None
        else:
            links[name] = check_url(item, pointer(name), found, url, field=name)
    if links["next"] and links["next"].rstrip("/") == url.rstrip("/"):
        found.error("/next", "next-loops", f"'next' points back at this same page ({url})")
        links["next"] = None
    for key in value:
        if key not in _LISTING_KNOWN:
            found.notice(
                pointer(key), "unknown-field", f"unknown field '{key}' (kept; clients ignore it)"
            )
    raw_entries = value.get("coverage_entries")
    entries: list[Entry] = []
    if not isinstance(raw_entries, list):
        # Without its entries array this is no coverage listing (an error page, another
        # document): unusable, so a refresh falls back to the last good copy.
        if "coverage_entries" in value:
            found.error(
                "/coverage_entries",
                "wrong-type",
                f"'coverage_entries' must be an array, got {type_name(raw_entries)}",
            )
        return None, found
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_entries or ()):
        entry = parse_entry(raw, i, url, server, found)
        if entry is None:
            continue
        if entry.id in seen:
            found.error(
                pointer("coverage_entries", i, "id"),
                "duplicate-id",
                f"entry id {entry.id!r} is already used by /coverage_entries/{seen[entry.id]}; "
                "this entry is skipped",
            )
            continue
        seen[entry.id] = i
        entries.append(entry)
    # Newest first is a rule of the 2025 draft (section 4.1); the 2023 text has no order.
    if server is not None:
        listing_2023 = server.shape == SHAPE_2023
    else:
        listing_2023 = any(
            isinstance(raw, dict)
            and isinstance(raw.get("type"), str)
            and raw["type"] in LEGACY_ENTRY_TYPES
            for raw in raw_entries or ()
        )
    if not listing_2023:
        _check_newest_first(raw_entries or (), found)
    extra = {k: v for k, v in value.items() if k not in _LISTING_KNOWN}
    page = CoveragePage(
        url=url, entries=tuple(entries), next=links["next"], previous=links["previous"], extra=extra
    )
    return page, found


def _check_newest_first(raw_entries: list[Any], found: FindingList) -> None:
    previous: dt.datetime | None = None
    for i, raw in enumerate(raw_entries):
        if not isinstance(raw, dict) or not isinstance(raw.get("updated"), str):
            continue
        current = parse_datetime(raw["updated"])
        if current is None:
            continue
        if previous is not None and current > previous:
            found.warning(
                pointer("coverage_entries", i, "updated"),
                "not-newest-first",
                "coverage entries MUST be ordered newest 'updated' first; this entry is newer "
                "than the one before it",
            )
            return
        previous = current


def parse_entry(
    raw: Any, index: int, url: str, server: Server | None, found: FindingList
) -> Entry | None:
    """One coverage entry; None when it is unusable (not an object, or no usable id)."""
    base = pointer("coverage_entries", index)
    if not isinstance(raw, dict):
        found.error(
            base, "not-an-object", f"coverage entry must be an object, got {type_name(raw)}"
        )
        return None
    r = Reader(raw, base, found, url)
    entry_type_raw = raw.get("type")
    legacy = (
        entry_type_raw
        if isinstance(entry_type_raw, str) and entry_type_raw in LEGACY_ENTRY_TYPES
        else None
    )
    # A 2023 entry: one of the 2023 types, or any type (2023 section 6 lets other specs add
    # entry types) listed by a 2023 server. It has no fields of its own for what the 2025 draft
    # moved into entries: those come from its server.
    shape_2023 = legacy is not None or (
        server is not None
        and server.shape == SHAPE_2023
        and not (isinstance(entry_type_raw, str) and entry_type_raw in ENTRY_TYPES)
    )
    r.require(_ENTRY_REQUIRED_2023 if shape_2023 else _ENTRY_REQUIRED_2025, "the coverage entry")

    entry_id = raw.get("id")
    if isinstance(entry_id, (int, float)) and not isinstance(entry_id, bool):
        found.error(
            base + "/id", "wrong-type", "'id' must be a string, got a number (read as text)"
        )
        entry_id = str(entry_id)
    elif not isinstance(entry_id, str) or not entry_id:
        if "id" in raw:
            found.error(
                base + "/id",
                "wrong-type",
                f"'id' must be a non-empty string, got {type_name(entry_id)}",
            )
        found.error(base, "entry-skipped", "coverage entry has no usable 'id' and is skipped")
        return None

    entry_type = r.string("type")
    if legacy:
        entry_type = GEOGRAPHIC
    elif entry_type is not None and entry_type not in ENTRY_TYPES:
        found.notice(
            base + "/type",
            "unknown-enum",
            f"unknown coverage entry type {entry_type!r} (kept, but never matched by location)",
        )
    created = r.datetime("created")
    updated = r.datetime("updated")
    _check_order(created, updated, base, found)
    entity_name = r.string("entity_name")
    abbreviation = r.string("entity_abbreviation", nullable=True)
    country = r.string("country")
    if country is not None and not _COUNTRY.match(country):
        found.warning(
            base + "/country",
            "bad-country",
            f"'country' should be a two-letter ISO 3166 code such as 'US', got {country!r}",
        )
    role = r.string("role")
    if role is not None and role not in ROLES:
        found.notice(base + "/role", "unknown-enum", f"unknown role {role!r} (kept)")
    infrastructure = r.enum_list(
        "infrastructure_types", INFRASTRUCTURE_TYPES, "infrastructure type"
    )
    commodities = r.enum_list("commodity_types", COMMODITY_TYPES, "commodity type")
    capabilities = r.enum_list("capabilities", KNOWN_CAPABILITIES, "capability")
    if "coverage" in capabilities:
        idx = raw["capabilities"].index("coverage")
        found.error(
            f"{base}/capabilities/{idx}",
            "coverage-in-entry",
            "an entry's capabilities MUST NOT include 'coverage'",
        )
        capabilities = tuple(c for c in capabilities if c != "coverage")
    name = r.string("name")
    description = r.string("description")
    map_resource = r.url_field("map_resource")
    map_content_type = r.string("map_content_type")
    geojson = r.url_field("geojson_resource")
    if "map_resource" in raw and "map_content_type" not in raw:
        found.error(
            base + "/map_content_type",
            "missing-map-content-type",
            "'map_resource' is given, so 'map_content_type' is REQUIRED",
        )
    if map_content_type is not None and not _MIME.match(map_content_type):
        found.warning(
            base + "/map_content_type",
            "bad-mime-type",
            f"'map_content_type' should be a MIME type like 'image/png', got {map_content_type!r}",
        )
    if entry_type == GEOGRAPHIC and "map_resource" not in raw and "geojson_resource" not in raw:
        found.error(
            base,
            "geographic-without-map",
            "a geographic entry MUST give 'map_resource' or 'geojson_resource'",
        )
    if legacy:
        commodities = commodities or (LEGACY_ENTRY_TYPES[legacy],)
    if server is not None:
        infrastructure = infrastructure or server.infrastructure_types
        commodities = commodities or server.commodity_types
        if shape_2023 and "capabilities" not in raw:
            # 2023 section 3.2: a server's values relate to the capabilities it offers, and
            # 'coverage' offers coverage "as it relates the other listed capabilities".
            capabilities = tuple(c for c in server.capabilities if c != "coverage")
    links, extra = _extensions(raw, _ENTRY_KNOWN, base, url, found)
    return Entry(
        server_url=server.metadata_url if server else url,
        id=entry_id,
        type=entry_type or "unknown",
        name=name,
        description=description,
        created=created,
        updated=updated,
        entity_name=entity_name if entity_name else (server.name if server else None),
        entity_abbreviation=abbreviation,
        country=country,
        role=role,
        infrastructure_types=infrastructure,
        commodity_types=commodities,
        capabilities=capabilities,
        map_resource=map_resource,
        map_content_type=map_content_type,
        geojson_resource=geojson,
        legacy_type=legacy,
        extra=extra,
        links=links,
    )


def check_capability_union(server: Server, entries: Iterable[Entry]) -> FindingList:
    """The server's capabilities MUST include every capability its coverage entries list."""
    found = FindingList(server.metadata_url)
    if "coverage" not in server.capabilities:
        return found
    missing: dict[str, list[str]] = {}
    for entry in entries:
        for capability in entry.capabilities:
            if capability not in server.capabilities:
                missing.setdefault(capability, []).append(entry.id)
    for capability, ids in sorted(missing.items()):
        shown = ", ".join(repr(i) for i in ids[:3]) + (" ..." if len(ids) > 3 else "")
        found.warning(
            "/capabilities",
            "capability-union",
            f"coverage entries ({shown}) offer {capability!r}, which the server's capabilities "
            "do not list (they MUST include the union of the entries' capabilities)",
        )
    return found


def coverage_url_with_ids(coverage_url: str, ids: Iterable[str]) -> str:
    """The coverage URL filtered to ``ids`` (spec 4.2: a space-separated ``ids`` parameter).

    Existing query parameters are kept; an existing ``ids`` is replaced.
    """
    from urllib.parse import parse_qsl, quote, urlencode, urlunsplit

    parts = urlsplit(coverage_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "ids"]
    wanted = [i for i in dict.fromkeys(ids) if i]
    if any(" " in i for i in wanted):
        raise ValueError("coverage entry ids containing spaces cannot be filtered by 'ids'")
    query.append(("ids", " ".join(wanted)))
    # quote (not quote_plus): the spec's separator is a space, sent as %20.
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))
