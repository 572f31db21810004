"""GeoJSON (and Open Energy spatial coverage) -> valid shapely polygons in WGS 84, repairs reported.

Every problem becomes a :class:`~coverlookup.findings.Finding` with the JSON pointer of the value
at fault; nothing here raises for bad input. Polygon and MultiPolygon are kept, other geometry
types are reported and skipped. Coordinates are checked before shapely sees them (numbers,
finite, in range, rings closed with at least four positions), invalid polygons are repaired with
``shapely.make_valid`` (default method: overlapping parts published as carve-outs become holes)
falling back to ``buffer(0)`` where GEOS refuses, and a polygon whose ring jumps across the
antimeridian is unwrapped and split at ±180° so it does not wrap the whole globe.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from coverlookup.fields import type_name
from coverlookup.findings import FindingList, has_errors, pointer

log = logging.getLogger(__name__)

# GeometryCollections nest; real data never goes deeper than a couple of levels.
MAX_COLLECTION_DEPTH = 16
# CRS names that are plain GeoJSON lon/lat and need no transformation nor a warning.
_CRS84 = frozenset(
    {
        "urn:ogc:def:crs:ogc:1.3:crs84",
        "urn:ogc:def:crs:ogc::crs84",
        "http://www.opengis.net/def/crs/ogc/1.3/crs84",
        "crs84",
        "ogc:crs84",
    }
)
# EPSG:4326 in a legacy GeoJSON crs member is, by universal practice, still lon/lat order.
_EPSG4326 = frozenset({"epsg:4326", "urn:ogc:def:crs:epsg::4326", "urn:ogc:def:crs:epsg:6.6:4326"})
_NUMBER = (int, float)
_POLYGONAL = ("Polygon", "MultiPolygon")
_OTHER_TYPES = frozenset({"Point", "MultiPoint", "LineString", "MultiLineString"})

Polygonal = BaseGeometry  # a valid, non-empty Polygon or MultiPolygon


@dataclass(frozen=True, slots=True)
class ParsedFeature:
    """One polygonal feature of a GeoJSON document, as a valid WGS 84 geometry."""

    pointer: str
    properties: Mapping[str, Any]
    feature_id: Any
    geometry: Polygonal


class _Reject(Exception):
    """Internal: the current geometry is unusable; the finding is already recorded."""


class _Context:
    """Where we are in a document: findings sink and the coordinate transformer in force."""

    __slots__ = ("findings", "transformer")

    def __init__(self, findings: FindingList, transformer: Any = None):
        self.findings = findings
        self.transformer = transformer


def read_features(value: Any, document: str) -> tuple[list[ParsedFeature], FindingList]:
    """Every polygonal feature of a GeoJSON value (FeatureCollection, Feature or geometry)."""
    findings = FindingList(document)
    out: list[ParsedFeature] = []
    if not isinstance(value, dict):
        findings.error("", "not-geojson", f"expected a GeoJSON object, got {type_name(value)}")
        return out, findings
    ctx = _Context(findings)
    kind = value.get("type")
    if kind == "FeatureCollection":
        # A Feature or a bare geometry reads its own crs member (once) below.
        if not _apply_crs(value, "", ctx):
            return out, findings
        features = value.get("features")
        if not isinstance(features, list):
            findings.error(
                "/features", "wrong-type", "a FeatureCollection needs a 'features' array"
            )
            return out, findings
        for i, feature in enumerate(features):
            parsed = _feature(feature, pointer("features", i), ctx)
            if parsed is not None:
                out.append(parsed)
        if not features:
            findings.error("/features", "empty-geometry", "the FeatureCollection has no features")
    elif kind == "Feature":
        parsed = _feature(value, "", ctx)
        if parsed is not None:
            out.append(parsed)
    else:
        geom = _geometry_or_none(value, "", ctx)
        if geom is not None:
            out.append(ParsedFeature("", {}, None, geom))
    return out, findings


def territory_from_geojson(value: Any, document: str) -> tuple[Polygonal | None, FindingList]:
    """One territory from a whole GeoJSON document: the union of its polygonal features."""
    features, findings = read_features(value, document)
    if not features:
        if not has_errors(findings):
            findings.error("", "empty-geometry", "the document has no polygonal geometry")
        return None, findings
    if len(features) == 1:
        return features[0].geometry, findings
    merged = _polygonal(shapely.union_all([f.geometry for f in features]))
    if merged is None:
        findings.error("", "empty-geometry", "the union of the document's features is empty")
    return merged, findings


def geometry_from_spatial(
    kind: str | None, value: Any, document: str, ptr: str = ""
) -> tuple[BaseGeometry | None, FindingList]:
    """An Open Energy data set's spatial coverage -> geometry.

    ``bbox`` (west, south, east, north; west > east crosses the antimeridian), ``wkt`` and
    ``geojson`` give polygons; ``centroid`` gives a Point, which has no area: the index never
    matches it by containment, only through ``nearest``.
    """
    findings = FindingList(document)
    ctx = _Context(findings)
    try:
        if kind == "bbox":
            return _bbox(value, ptr, findings), findings
        if kind == "centroid":
            lon, lat = _position(value, ptr, ctx)
            return shapely.Point(lon, lat), findings
        if kind == "wkt":
            return _from_wkt(value, ptr, ctx), findings
        if kind == "geojson":
            features, sub = read_features(value, document)
            findings.extend(dataclasses.replace(f, pointer=ptr + f.pointer) for f in sub)
            if not features:
                return None, findings
            geoms = [f.geometry for f in features]
            geom = geoms[0] if len(geoms) == 1 else _polygonal(shapely.union_all(geoms))
            return geom, findings
        if kind == "multi":
            return _spatial_union(value, document, ptr, findings), findings
        findings.error(ptr, "unsupported-spatial", f"unknown spatial coverage kind {kind!r}")
    except _Reject:
        pass
    return None, findings


def _spatial_union(
    parts: Any, document: str, ptr: str, findings: FindingList
) -> BaseGeometry | None:
    """The union of several spatial extents' areas; centroids count only when no part has an
    area (then the first one stands for the data set, as a lone centroid would)."""
    if not isinstance(parts, list):
        findings.error(ptr, "unsupported-spatial", "several spatial extents must be a list")
        raise _Reject
    areas: list[BaseGeometry] = []
    points: list[BaseGeometry] = []
    for i, part in enumerate(parts):
        if not (isinstance(part, (list, tuple)) and len(part) in (2, 3) and part[0] != "multi"):
            findings.error(f"{ptr}/{i}", "unsupported-spatial", "not a (kind, value) pair")
            continue
        where = part[2] if len(part) == 3 and isinstance(part[2], int) else i
        geom, sub = geometry_from_spatial(part[0], part[1], document, f"{ptr}/{where}")
        findings.extend(sub)
        if geom is not None:
            (points if geom.geom_type == "Point" else areas).append(geom)
    if areas:
        return areas[0] if len(areas) == 1 else _polygonal(shapely.union_all(areas))
    return points[0] if points else None


# --- documents -----------------------------------------------------------------------------


def _feature(feature: Any, ptr: str, ctx: _Context) -> ParsedFeature | None:
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        ctx.findings.error(ptr, "not-a-feature", "expected a GeoJSON Feature object")
        return None
    properties = feature.get("properties")
    if properties is not None and not isinstance(properties, dict):
        ctx.findings.warning(ptr + "/properties", "wrong-type", "properties must be an object")
        properties = None
    inner = _Context(ctx.findings, ctx.transformer)
    if not _apply_crs(feature, ptr, inner):
        return None
    raw = feature.get("geometry")
    if raw is None:
        ctx.findings.notice(ptr + "/geometry", "no-geometry", "feature has no geometry; skipped")
        return None
    geom = _geometry_or_none(raw, ptr + "/geometry", inner)
    if geom is None:
        return None
    return ParsedFeature(ptr, properties or {}, feature.get("id"), geom)


def _geometry_or_none(raw: Any, ptr: str, ctx: _Context) -> Polygonal | None:
    try:
        polys = _geometry(raw, ptr, ctx, 0)
    except _Reject:
        return None
    if polys is None:
        return None
    if not polys:
        ctx.findings.error(ptr, "empty-geometry", "the geometry is empty")
        return None
    try:
        return _finish(polys, ptr, ctx)
    except _Reject:
        return None


def _geometry(raw: Any, ptr: str, ctx: _Context, depth: int) -> list[Any] | None:
    """-> list of polygon coordinate arrays ([exterior, *holes] as numpy), None if skipped."""
    if not isinstance(raw, dict):
        ctx.findings.error(ptr, "wrong-type", f"expected a geometry object, got {type_name(raw)}")
        raise _Reject
    if "crs" in raw:
        inner = _Context(ctx.findings, ctx.transformer)
        if not _apply_crs(raw, ptr, inner):
            raise _Reject
        ctx = inner
    kind = raw.get("type")
    if kind == "Polygon":
        return [_polygon(raw.get("coordinates"), ptr + "/coordinates", ctx)]
    if kind == "MultiPolygon":
        coords = raw.get("coordinates")
        base = ptr + "/coordinates"
        if not isinstance(coords, list):
            ctx.findings.error(base, "wrong-type", "MultiPolygon coordinates must be an array")
            raise _Reject
        return [_polygon(poly, f"{base}/{i}", ctx) for i, poly in enumerate(coords)]
    if kind == "GeometryCollection":
        if depth >= MAX_COLLECTION_DEPTH:
            ctx.findings.error(
                ptr, "too-deep", f"GeometryCollections nested deeper than {MAX_COLLECTION_DEPTH}"
            )
            raise _Reject
        members = raw.get("geometries")
        if not isinstance(members, list):
            ctx.findings.error(
                ptr + "/geometries", "wrong-type", "GeometryCollection needs 'geometries'"
            )
            raise _Reject
        out: list[Any] = []
        for i, member in enumerate(members):
            got = _geometry(member, f"{ptr}/geometries/{i}", ctx, depth + 1)
            if got:
                out.extend(got)
        return out
    if isinstance(kind, str) and kind in _OTHER_TYPES:
        ctx.findings.warning(ptr + "/type", "unsupported-geometry", f"{kind} has no area; skipped")
        return None
    ctx.findings.error(ptr + "/type", "unknown-geometry", f"unknown geometry type {kind!r}")
    raise _Reject


def _polygon(coords: Any, ptr: str, ctx: _Context) -> list[np.ndarray]:
    if not isinstance(coords, list):
        ctx.findings.error(ptr, "wrong-type", "polygon coordinates must be an array of rings")
        raise _Reject
    if not coords:
        ctx.findings.error(ptr, "empty-geometry", "polygon has no rings")
        raise _Reject
    return [_ring(ring, f"{ptr}/{i}", ctx) for i, ring in enumerate(coords)]


def _ring(raw: Any, ptr: str, ctx: _Context) -> np.ndarray:
    fl = ctx.findings
    if not isinstance(raw, list):
        fl.error(ptr, "wrong-type", f"a ring must be an array of positions, got {type_name(raw)}")
        raise _Reject
    if len(raw) < 4:
        fl.error(ptr, "ring-too-short", f"a ring needs at least 4 positions, has {len(raw)}")
        raise _Reject
    xs: list[float] = []
    ys: list[float] = []
    for i, pos in enumerate(raw):
        if (
            type(pos) is not list
            or len(pos) < 2
            or type(pos[0]) not in _NUMBER
            or type(pos[1]) not in _NUMBER
        ):
            _bad_position(pos, f"{ptr}/{i}", fl)
        xs.append(pos[0])
        ys.append(pos[1])
    try:
        arr = np.array((xs, ys), dtype=np.float64).T
    except OverflowError:
        fl.error(ptr, "bad-coordinate", "a coordinate is too large to be a number of degrees")
        raise _Reject from None
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        i = int(np.argmin(finite))
        fl.error(f"{ptr}/{i}", "bad-coordinate", "coordinates must be finite numbers")
        raise _Reject
    if ctx.transformer is not None:
        arr = _transform(arr, ptr, ctx)
    bad = (np.abs(arr[:, 0]) > 180.0) | (np.abs(arr[:, 1]) > 90.0)
    if bad.any():
        i = int(np.argmax(bad))
        lon, lat = arr[i].tolist()  # Python floats: numpy's repr is np.float64(61.0)
        fl.error(
            f"{ptr}/{i}",
            "out-of-range",
            f"position [{lon!r}, {lat!r}] is outside lon [-180, 180] / lat [-90, 90]",
        )
        raise _Reject
    if raw[0][0] != raw[-1][0] or raw[0][1] != raw[-1][1]:
        fl.error(
            ptr,
            "ring-not-closed",
            f"ring is not closed: first position {raw[0][:2]} differs from last {raw[-1][:2]}",
        )
        raise _Reject
    return arr


def _bad_position(pos: Any, ptr: str, fl: FindingList) -> None:
    if type(pos) is not list:
        fl.error(ptr, "wrong-type", f"a position must be an array of numbers, got {type_name(pos)}")
    elif len(pos) < 2:
        fl.error(ptr, "bad-position", f"a position needs longitude and latitude, has {len(pos)}")
    else:
        which = 0 if type(pos[0]) not in _NUMBER else 1
        fl.error(
            f"{ptr}/{which}",
            "bad-coordinate",
            f"{'longitude' if which == 0 else 'latitude'} must be a number, "
            f"got {type_name(pos[which])}",
        )
    raise _Reject


def _position(value: Any, ptr: str, ctx: _Context) -> tuple[float, float]:
    if (
        type(value) not in (list, tuple)
        or len(value) < 2
        or type(value[0]) not in _NUMBER
        or type(value[1]) not in _NUMBER
    ):
        _bad_position(list(value) if isinstance(value, tuple) else value, ptr, ctx.findings)
    lon, lat = float(value[0]), float(value[1])
    if not (np.isfinite(lon) and np.isfinite(lat) and abs(lon) <= 180 and abs(lat) <= 90):
        ctx.findings.error(ptr, "out-of-range", f"position [{lon}, {lat}] is out of range")
        raise _Reject
    return lon, lat


# --- coordinate reference systems ------------------------------------------------------------


def _apply_crs(obj: dict[str, Any], ptr: str, ctx: _Context) -> bool:
    """Honour a legacy GeoJSON 2008 ``crs`` member; False if it cannot be understood."""
    if "crs" not in obj or obj["crs"] is None:
        return True
    crs = obj["crs"]
    where = ptr + "/crs"
    name = None
    if isinstance(crs, dict) and crs.get("type") == "name":
        props = crs.get("properties")
        if isinstance(props, dict) and isinstance(props.get("name"), str):
            name = props["name"].strip()
    if name is None or len(name) > 200:
        ctx.findings.error(
            where, "unsupported-crs", "only a named 'crs' member (type 'name') is understood"
        )
        return False
    lowered = name.lower()
    if lowered in _CRS84:
        ctx.transformer = None
        return True
    if lowered in _EPSG4326:
        ctx.transformer = None
        ctx.findings.notice(
            where, "legacy-crs", f"legacy crs member {name!r} read as longitude, latitude"
        )
        return True
    try:
        import pyproj

        source = pyproj.CRS.from_user_input(name)
        transformer = pyproj.Transformer.from_crs(source, "EPSG:4326", always_xy=True)
    except Exception as exc:  # pyproj raises several unrelated types for bad input
        ctx.findings.error(where, "unsupported-crs", f"unknown coordinate system {name!r}: {exc}")
        return False
    ctx.transformer = transformer
    ctx.findings.warning(
        where,
        "legacy-crs",
        f"legacy crs member {name!r}: coordinates transformed to WGS 84 "
        "(the 2025 spec requires WGS 84 longitude/latitude)",
    )
    return True


def _transform(arr: np.ndarray, ptr: str, ctx: _Context) -> np.ndarray:
    try:
        lon, lat = ctx.transformer.transform(arr[:, 0], arr[:, 1], errcheck=False)
    except Exception as exc:
        ctx.findings.error(ptr, "bad-coordinate", f"coordinates cannot be transformed: {exc}")
        raise _Reject from exc
    out = np.column_stack((np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)))
    finite = np.isfinite(out).all(axis=1)
    if finite.all():
        # Far outside a projection's range, pyproj clamps instead of failing (EPSG:3857
        # y = 1e10 m comes out as latitude 90): the northing must come back where it started.
        # Eastings may wrap around the globe (x past the antimeridian in EPSG:3857 is how
        # such data crosses it), so only their finiteness is checked.
        try:
            x, y = ctx.transformer.transform(out[:, 0], out[:, 1], direction="INVERSE")
            x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
            tolerance = 1e-3 + 1e-7 * np.abs(arr[:, 1])
            finite = np.isfinite(x) & (np.abs(y - arr[:, 1]) <= tolerance)
        except Exception:  # a CRS without an inverse: trust the forward answer
            pass
    if not finite.all():
        i = int(np.argmin(finite))
        ctx.findings.error(
            f"{ptr}/{i}", "bad-coordinate", "position lies outside the declared coordinate system"
        )
        raise _Reject
    return out


# --- assembling, antimeridian, repair ----------------------------------------------------------


def _finish(polys: list[list[np.ndarray]], ptr: str, ctx: _Context) -> Polygonal:
    crossing = False
    shapes = []
    for rings in polys:
        rings, crossed = _unwrap(rings, ptr, ctx)
        crossing = crossing or crossed
        shapes.append(shapely.Polygon(rings[0], rings[1:]))
    geom = shapes[0] if len(shapes) == 1 else shapely.multipolygons(shapes)
    geom = repair(geom, ptr, ctx.findings)
    if crossing:
        geom = split_antimeridian(geom)
        ctx.findings.warning(
            ptr,
            "antimeridian-split",
            "polygon crosses the antimeridian; split at ±180° longitude",
        )
    if geom is None or geom.is_empty:
        ctx.findings.error(ptr, "empty-geometry", "the geometry has no area")
        raise _Reject
    return geom


def _unwrap(rings: list[np.ndarray], ptr: str, ctx: _Context) -> tuple[list[np.ndarray], bool]:
    """Rings that jump more than 180° in longitude are made continuous (may leave ±180)."""
    steps = [_crossing_steps(r[:, 0]) for r in rings]
    if not any(s.any() for s in steps):
        return rings, False
    out = []
    for ring, crossing in zip(rings, steps, strict=True):
        lon = ring[:, 0].copy()
        step = np.diff(lon)
        step[crossing] -= 360.0 * np.sign(step[crossing])
        lon[1:] = lon[0] + np.cumsum(step)
        if abs(lon[-1] - lon[0]) > 1e-9:
            ctx.findings.warning(
                ptr,
                "ring-encircles-pole",
                "a ring winds around a pole; kept as published, not split at the antimeridian",
            )
            return rings, False
        lon[-1] = lon[0]
        out.append(np.column_stack((lon, ring[:, 1])))
    # Holes go on the same side of the world as their exterior.
    centre = out[0][:, 0].mean()
    for i in range(1, len(out)):
        shift = 360.0 * np.round((centre - out[i][:, 0].mean()) / 360.0)
        if shift:
            out[i] = out[i] + np.array([shift, 0.0])
    return out, True


def _crossing_steps(lon: np.ndarray) -> np.ndarray:
    """Edges that jump more than 180° without touching ±180 (RFC 7946 cut edges do)."""
    on_cut = np.abs(lon) == 180.0
    return (np.abs(np.diff(lon)) > 180.0) & ~on_cut[:-1] & ~on_cut[1:]


def split_antimeridian(geom: Polygonal) -> Polygonal | None:
    """Cut a geometry whose longitudes run past ±180 into parts inside [-180, 180]."""
    parts = []
    for offset in (-360.0, 0.0, 360.0):
        window = shapely.box(-180.0 + offset, -90.0, 180.0 + offset, 90.0)
        piece = _polygonal(shapely.intersection(geom, window))
        if piece is not None:
            if offset:
                piece = shapely.transform(piece, lambda xy, o=offset: xy - np.array([o, 0.0]))
            parts.append(piece)
    if not parts:
        return None
    polys = [p for part in parts for p in shapely.get_parts(part)]
    return polys[0] if len(polys) == 1 else shapely.multipolygons(polys)


def repair(geom: BaseGeometry, ptr: str, findings: FindingList) -> Polygonal | None:
    """Make a polygon valid (``make_valid``, ``buffer(0)`` if that raises); reports the repair."""
    if shapely.is_valid(geom):
        return _polygonal(geom)
    reason = shapely.is_valid_reason(geom)
    method = "make_valid"
    try:
        fixed = shapely.make_valid(geom)
    except shapely.errors.GEOSException as exc:
        log.debug("make_valid failed at %s (%s); using buffer(0)", ptr, exc)
        method = "buffer(0)"
        fixed = shapely.buffer(geom, 0)
    result = _polygonal(fixed)
    findings.warning(ptr, "repaired-geometry", f"invalid polygon ({reason}) repaired with {method}")
    return result


def _polygonal(geom: BaseGeometry | None) -> Polygonal | None:
    """The polygonal part of any geometry, or None when it has none."""
    if geom is None or geom.is_empty:
        return None
    kind = geom.geom_type
    if kind in _POLYGONAL:
        return geom
    polys = []
    stack = [geom]
    while stack:
        item = stack.pop()
        if item.geom_type == "Polygon":
            if not item.is_empty:
                polys.append(item)
        elif item.geom_type in ("MultiPolygon", "GeometryCollection"):
            stack.extend(shapely.get_parts(item))
    if not polys:
        return None
    if len(polys) == 1:
        return polys[0]
    merged = shapely.multipolygons(polys)
    return merged if shapely.is_valid(merged) else _polygonal(shapely.union_all(polys))


def _bbox(value: Any, ptr: str, findings: FindingList) -> Polygonal:
    if (
        type(value) not in (list, tuple)
        or len(value) != 4
        or not all(type(v) in _NUMBER for v in value)
    ):
        findings.error(ptr, "bad-bbox", "a bbox is [west, south, east, north] in degrees")
        raise _Reject
    west, south, east, north = (float(v) for v in value)
    ok = all(np.isfinite(v) for v in (west, south, east, north))
    if not ok or not (abs(west) <= 180 and abs(east) <= 180 and -90 <= south < north <= 90):
        findings.error(ptr, "bad-bbox", f"bbox {list(value)} is out of range or has no area")
        raise _Reject
    if west < east:
        return shapely.box(west, south, east, north)
    if west == east:
        findings.error(ptr, "bad-bbox", f"bbox {list(value)} has no width")
        raise _Reject
    # west > east: the box crosses the antimeridian.
    return shapely.multipolygons(
        [shapely.box(west, south, 180.0, north), shapely.box(-180.0, south, east, north)]
    )


def _from_wkt(text: Any, ptr: str, ctx: _Context) -> Polygonal:
    from shapely import wkt

    if not isinstance(text, str):
        ctx.findings.error(ptr, "bad-wkt", "WKT must be a string")
        raise _Reject
    try:
        geom = wkt.loads(text)
    except (shapely.errors.ShapelyError, ValueError) as exc:
        ctx.findings.error(ptr, "bad-wkt", f"not valid WKT: {exc}")
        raise _Reject from None
    if geom.is_empty:
        ctx.findings.error(ptr, "empty-geometry", "the WKT geometry is empty")
        raise _Reject
    coords = shapely.get_coordinates(geom)
    if not np.isfinite(coords).all() or (np.abs(coords) > [180.0, 90.0]).any():
        ctx.findings.error(ptr, "out-of-range", "WKT coordinates are outside lon/lat range")
        raise _Reject
    if geom.geom_type == "Point":
        return geom
    fixed = repair(geom, ptr, ctx.findings)
    if fixed is None:
        ctx.findings.error(ptr, "unsupported-geometry", f"WKT {geom.geom_type} has no area")
        raise _Reject
    return fixed
