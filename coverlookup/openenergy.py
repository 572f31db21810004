"""Open Energy data set metadata: a YAML or JSON list of data sets -> entries of type ``dataset``.

Each data set has ``content`` (JSON-LD: ``dct:``/``dcat:`` terms plus the Open Energy ones under
the ``oe:`` or newer ``ib1oe:`` prefix), ``access`` rules, a ``transport.http`` OpenAPI block and
``representation.mime``. Spatial coverage follows DCAT: ``dct:spatial`` holding ``dcat:bbox``,
``locn:geometry`` (WKT or GeoJSON) or ``dcat:centroid``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from coverlookup.fields import check_url, type_name
from coverlookup.findings import FindingList, pointer
from coverlookup.model import DATASET, SHAPE_OPEN_ENERGY, DatasetInfo, Entry, Server

SENSITIVITY_CLASSES = frozenset({"OE-O", "OE-SA", "OE-SB"})
_OE_PREFIXES = ("oe", "ib1oe")
_MANDATORY = (
    "dct:title",
    "dct:description",
    "dcat:version",
    "dcat:versionNotes",
    "oe:sensitivityClass",
    "oe:dataSetStableIdentifier",
)
_KNOWN_TOP = frozenset({"content", "access", "transport", "representation", "heartbeat_url"})
_WKT = re.compile(
    r"^\s*(<[^>]*>\s*)?(POINT|POLYGON|MULTIPOLYGON|LINESTRING|MULTIPOINT|MULTILINESTRING|"
    r"GEOMETRYCOLLECTION|ENVELOPE)\b",
    re.IGNORECASE,
)


def _content_value(content: Mapping[str, Any], term: str) -> tuple[str | None, Any]:
    """Look up ``dct:title`` or ``oe:x`` (also as ``ib1oe:x``); returns (key used, value)."""
    prefix, _, local = term.partition(":")
    candidates = [f"{p}:{local}" for p in _OE_PREFIXES] if prefix == "oe" else [term]
    for key in candidates:
        if key in content:
            return key, content[key]
    return None, None


def parse_open_energy(value: Any, url: str) -> tuple[Server | None, list[Entry], FindingList]:
    """Read an Open Energy metadata file (list of data sets) published at ``url``."""
    found = FindingList(url)
    if isinstance(value, dict) and "content" in value:
        found.warning(
            "",
            "not-a-list",
            "Open Energy metadata should be a list of data sets; read this single object as one",
        )
        value = [value]
    if not isinstance(value, list):
        found.error(
            "",
            "not-a-list",
            f"Open Energy metadata must be a list of data sets, got {type_name(value)}",
        )
        return None, [], found
    if not value:
        found.warning("", "empty-list", "the metadata file lists no data sets")
    entries: list[Entry] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(value):
        entry = _parse_dataset(item, i, url, found)
        if entry is None:
            continue
        if entry.id in seen:
            found.error(
                pointer(i, "content", "oe:dataSetStableIdentifier"),
                "duplicate-id",
                f"data set identifier {entry.id!r} is already used by data set {seen[entry.id]}; "
                "this one is skipped",
            )
            continue
        seen[entry.id] = i
        entries.append(entry)
    host = urlsplit(url).hostname or url.rsplit("/", 1)[-1]
    server = Server(metadata_url=url, shape=SHAPE_OPEN_ENERGY, name=host)
    return server, entries, found


def _parse_dataset(item: Any, index: int, url: str, found: FindingList) -> Entry | None:
    base = pointer(index)
    if not isinstance(item, dict):
        found.error(base, "not-an-object", f"data set must be an object, got {type_name(item)}")
        return None
    for key in item:
        if key not in _KNOWN_TOP:
            found.notice(base + pointer(key), "unknown-field", f"unknown field '{key}' (kept)")
    content = item.get("content")
    if not isinstance(content, dict):
        if "content" not in item:
            found.error(
                base + "/content", "missing-field", "data set is missing its 'content' block"
            )
        else:
            found.error(
                base + "/content",
                "wrong-type",
                f"'content' must be an object, got {type_name(content)}",
            )
        found.error(base, "entry-skipped", "data set without usable content is skipped")
        return None
    cbase = base + "/content"
    values: dict[str, Any] = {}
    for term in _MANDATORY:
        key, val = _content_value(content, term)
        val = _literal(val)  # a JSON-LD value object: {"@value": "...", "@language": "en"}
        if key is None:
            shown = term if not term.startswith("oe:") else f"{term} (or ib1{term})"
            found.error(
                cbase + pointer(term), "missing-field", f"content is missing mandatory {shown}"
            )
            continue
        if not isinstance(val, (str, int, float)) or isinstance(val, bool):
            found.error(
                cbase + pointer(key),
                "wrong-type",
                f"'{key}' must be a string, got {type_name(val)}",
            )
            continue
        values[term] = str(val)
    sensitivity = values.get("oe:sensitivityClass")
    if sensitivity is not None and sensitivity not in SENSITIVITY_CLASSES:
        key, _ = _content_value(content, "oe:sensitivityClass")
        found.error(
            cbase + pointer(key or "oe:sensitivityClass"),
            "bad-sensitivity-class",
            f"sensitivity class must be one of OE-O, OE-SA, OE-SB, got {sensitivity!r}",
        )
    identifier = values.get("oe:dataSetStableIdentifier")
    if not identifier:
        found.error(base, "entry-skipped", "data set has no stable identifier and is skipped")
        return None

    access = _parse_access(item.get("access"), base, found, "access" in item)
    transport_url, openapi, heartbeat = _parse_transport(item, base, url, found)
    mime = _parse_representation(item.get("representation"), base, found, "representation" in item)
    spatial_kind, spatial_value = _parse_spatial(content, cbase, found)

    info = DatasetInfo(
        identifier=identifier,
        title=values.get("dct:title"),
        version=values.get("dcat:version"),
        version_notes=values.get("dcat:versionNotes"),
        sensitivity_class=sensitivity,
        access=tuple(access),
        transport_url=transport_url,
        openapi=openapi,
        mime=mime,
        heartbeat_url=heartbeat,
        spatial_kind=spatial_kind,
        spatial_value=spatial_value,
    )
    known_keys = {k for term in _MANDATORY for k in [_content_value(content, term)[0]] if k}
    known_keys |= {"@type", "@context", "dct:spatial"}
    extra = {k: v for k, v in content.items() if k not in known_keys}
    return Entry(
        server_url=url,
        id=identifier,
        type=DATASET,
        name=values.get("dct:title"),
        description=values.get("dct:description"),
        capabilities=(),
        dataset=info,
        extra=extra,
    )


def _parse_access(raw: Any, base: str, found: FindingList, present: bool) -> list[dict[str, Any]]:
    if not present:
        found.warning(base + "/access", "missing-field", "data set has no 'access' rules")
        return []
    if not isinstance(raw, list):
        found.error(
            base + "/access", "wrong-type", f"'access' must be a list, got {type_name(raw)}"
        )
        return []
    rules = []
    for i, rule in enumerate(raw):
        ptr = base + pointer("access", i)
        if not isinstance(rule, dict):
            found.error(ptr, "wrong-type", f"access rule must be an object, got {type_name(rule)}")
            continue
        if not isinstance(rule.get("rule"), str):
            found.error(ptr + "/rule", "missing-field", "access rule needs a 'rule' string")
            continue
        if "sufficient" not in rule:
            found.warning(
                ptr + "/sufficient",
                "missing-field",
                "access rule has no 'sufficient'; read as false (the conditions are indicative)",
            )
        elif not isinstance(rule["sufficient"], bool):
            found.error(
                ptr + "/sufficient",
                "wrong-type",
                f"'sufficient' must be true or false, got {type_name(rule['sufficient'])}",
            )
        rules.append(
            {
                "rule": rule["rule"],
                "sufficient": rule.get("sufficient") is True,
                "applies_from": rule.get("appliesFrom"),
                "applies_to": rule.get("appliesTo"),
            }
        )
    return rules


def _parse_transport(
    item: Mapping[str, Any], base: str, url: str, found: FindingList
) -> tuple[str | None, dict[str, Any], str | None]:
    transport = item.get("transport")
    tbase = base + "/transport"
    heartbeat = None
    if not isinstance(transport, dict):
        what = (
            "is missing"
            if "transport" not in item
            else f"must be an object, got {type_name(transport)}"
        )
        found.error(tbase, "missing-transport", f"'transport' {what}")
        return None, {}, None
    for where, holder in ((tbase, transport), (base, item)):
        raw = holder.get("heartbeat_url")
        if isinstance(raw, str):
            heartbeat = check_url(raw, where + "/heartbeat_url", found, url, field="heartbeat_url")
    http = transport.get("http")
    if not isinstance(http, dict):
        what = (
            "is missing" if "http" not in transport else f"must be an object, got {type_name(http)}"
        )
        found.error(
            tbase + "/http", "missing-transport", f"'transport.http' (an OpenAPI block) {what}"
        )
        return None, {}, heartbeat
    if not isinstance(http.get("openapi"), str):
        found.error(
            tbase + "/http/openapi",
            "missing-field",
            "'transport.http' must be an OpenAPI document with an 'openapi' version string",
        )
    if not isinstance(http.get("paths"), dict):
        found.warning(
            tbase + "/http/paths", "missing-field", "the OpenAPI block defines no 'paths'"
        )
    transport_url = None
    servers = http.get("servers")
    if isinstance(servers, list) and servers and isinstance(servers[0], dict):
        raw = servers[0].get("url")
        if isinstance(raw, str):
            transport_url = check_url(raw, tbase + "/http/servers/0/url", found, url, field="url")
    else:
        found.warning(
            tbase + "/http/servers", "missing-field", "the OpenAPI block names no server URL"
        )
    return transport_url, http, heartbeat


def _parse_representation(raw: Any, base: str, found: FindingList, present: bool) -> str | None:
    rbase = base + "/representation"
    if not isinstance(raw, dict):
        what = "is missing" if not present else f"must be an object, got {type_name(raw)}"
        found.error(rbase, "missing-field", f"'representation' {what}")
        return None
    mime = raw.get("mime")
    if not isinstance(mime, str) or "/" not in mime:
        found.error(
            rbase + "/mime", "missing-field", "'representation.mime' must give a media type"
        )
        return None
    return mime


# --- DCAT spatial coverage -----------------------------------------------------------------------


def _literal(value: Any) -> Any:
    """JSON-LD value objects ({"@value": ..., "@type": ...}) -> the value."""
    if isinstance(value, dict) and "@value" in value:
        return value["@value"]
    return value


def _parse_spatial(
    content: Mapping[str, Any], cbase: str, found: FindingList
) -> tuple[str | None, Any]:
    """``dct:spatial`` -> (kind, value); several extents (DCAT allows many) -> ("multi",
    [[kind, value, position in dct:spatial], ...]), which covers their union."""
    spatial = content.get("dct:spatial")
    if spatial is None:
        return None, None
    sbase = cbase + "/dct:spatial"
    if not isinstance(spatial, list):
        return _one_spatial(spatial, sbase, found)
    parts = [_one_spatial(item, f"{sbase}/{i}", found) for i, item in enumerate(spatial)]
    usable = [[kind, value, i] for i, (kind, value) in enumerate(parts) if kind is not None]
    if not usable:
        return None, None
    if len(usable) == 1:
        return usable[0][0], usable[0][1]
    return "multi", usable


def _one_spatial(spatial: Any, sbase: str, found: FindingList) -> tuple[str | None, Any]:
    if not isinstance(spatial, dict):
        found.error(
            sbase, "wrong-type", f"'dct:spatial' must be an object, got {type_name(spatial)}"
        )
        return None, None
    for term in ("locn:geometry", "dcat:bbox", "dcat:centroid"):
        if term in spatial:
            result = _spatial_value(_literal(spatial[term]), sbase + pointer(term), term, found)
            if result[0] is not None:
                return result
    if not any(t in spatial for t in ("locn:geometry", "dcat:bbox", "dcat:centroid")):
        found.warning(
            sbase,
            "no-geometry",
            "'dct:spatial' has none of dcat:bbox, locn:geometry, dcat:centroid",
        )
    return None, None


def _spatial_value(value: Any, ptr: str, term: str, found: FindingList) -> tuple[str | None, Any]:
    from coverlookup.documents import parse_json
    from coverlookup.errors import DocumentSyntaxError

    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = parse_json(text.encode("utf-8"))
            except DocumentSyntaxError as exc:
                found.error(ptr, "bad-geometry", f"{term} is not valid GeoJSON: {exc}")
                return None, None
        elif _WKT.match(text):
            return _check_wkt(text, ptr, term, found)
        else:
            numbers = re.split(r"[\s,]+", text)
            try:
                value = [float(n) for n in numbers if n]
            except ValueError:
                found.error(
                    ptr,
                    "bad-geometry",
                    f"{term} is neither WKT, GeoJSON nor a list of coordinates: {text[:60]!r}",
                )
                return None, None
    if isinstance(value, list):
        return _check_numbers(value, ptr, term, found)
    if isinstance(value, dict):
        gtype = value.get("type")
        if gtype not in ("Polygon", "MultiPolygon", "Point", "Feature", "FeatureCollection"):
            found.error(ptr, "bad-geometry", f"{term} GeoJSON has unsupported type {gtype!r}")
            return None, None
        if gtype == "Point" or term == "dcat:centroid":
            coords = value.get("coordinates")
            if gtype != "Point":
                found.error(ptr, "bad-geometry", f"{term} must be a point")
                return None, None
            return _check_numbers(coords if isinstance(coords, list) else [], ptr, term, found)
        return "geojson", value
    found.error(ptr, "wrong-type", f"{term} has an unusable value ({type_name(value)})")
    return None, None


def _check_numbers(
    values: list[Any], ptr: str, term: str, found: FindingList
) -> tuple[str | None, Any]:
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        found.error(ptr, "bad-geometry", f"{term} coordinates must be numbers")
        return None, None
    nums = [float(v) for v in values]
    if not all(math.isfinite(v) for v in nums):
        found.error(ptr, "bad-geometry", f"{term} coordinates must be finite")
        return None, None
    if term == "dcat:centroid" or len(nums) == 2:
        if len(nums) != 2 or not (-180 <= nums[0] <= 180 and -90 <= nums[1] <= 90):
            found.error(ptr, "bad-geometry", f"{term} must be a lon, lat pair within range")
            return None, None
        return "centroid", nums
    if len(nums) != 4:
        found.error(ptr, "bad-geometry", f"{term} must have 4 numbers (west, south, east, north)")
        return None, None
    west, south, east, north = nums
    if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south <= north <= 90):
        found.error(
            ptr,
            "bad-geometry",
            f"{term} {nums} is out of range (west, south, east, north in degrees, south <= north)",
        )
        return None, None
    return "bbox", nums


_CRS84 = re.compile(r"\bCRS84$", re.IGNORECASE)
_EPSG_4326 = re.compile(r"(?:/EPSG/[\d.]+/4326|\bEPSG:(?:[\d.]*:)?4326)$", re.IGNORECASE)


def _check_wkt(text: str, ptr: str, term: str, found: FindingList) -> tuple[str | None, Any]:
    import shapely
    from shapely import wkt

    # A GeoSPARQL literal may start with a CRS IRI. CRS84 (the default) is longitude first;
    # EPSG:4326 is the same datum with latitude first, so its axes are swapped on reading.
    lat_first = False
    if text.startswith("<"):
        iri, _, rest = text.partition(">")
        iri = iri[1:].strip()
        if _EPSG_4326.search(iri):
            lat_first = True
        elif not _CRS84.search(iri):
            found.error(
                ptr,
                "unsupported-crs",
                f"{term} uses CRS {iri!r}; only CRS84 and EPSG:4326 are read",
            )
            return None, None
        text = rest.strip()
    if text.upper().startswith("ENVELOPE"):
        found.error(ptr, "bad-geometry", f"{term} ENVELOPE literals are not supported; use POLYGON")
        return None, None
    try:
        geom = wkt.loads(text)
    except (shapely.errors.ShapelyError, ValueError) as exc:
        found.error(ptr, "bad-geometry", f"{term} is not valid WKT: {exc}")
        return None, None
    if geom.is_empty:
        found.error(ptr, "bad-geometry", f"{term} is an empty geometry")
        return None, None
    if lat_first:
        geom = shapely.transform(geom, lambda xy: xy[:, ::-1])
        text = geom.wkt  # full precision, longitude first
    minx, miny, maxx, maxy = geom.bounds
    if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        found.error(ptr, "bad-geometry", f"{term} has coordinates outside lon/lat range")
        return None, None
    if geom.geom_type == "Point":
        return "centroid", [geom.x, geom.y]
    return "wkt", text
