"""GeoJSON -> valid WGS 84 polygons: coordinate checks, repairs, legacy crs, antimeridian."""

from __future__ import annotations

import math
from pathlib import Path

import orjson
import pytest
import shapely

from coverlookup.findings import Severity
from coverlookup.geometry import geometry_from_spatial, read_features, territory_from_geojson

FIXTURES = Path(__file__).parent / "fixtures" / "geometry"
SQUARE = [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]


def _load(name: str) -> object:
    return orjson.loads((FIXTURES / name).read_bytes())


def _fc(*geometries: object) -> dict:
    return {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "properties": {}, "geometry": g} for g in geometries],
    }


def _codes(findings) -> list[tuple[str, str, str]]:
    return [(f.severity.value, f.pointer, f.code) for f in findings]


def test_feature_collection_keeps_polygons_and_skips_other_types():
    doc = _fc(
        {"type": "Polygon", "coordinates": SQUARE},
        {"type": "MultiPolygon", "coordinates": [SQUARE]},
        {"type": "Point", "coordinates": [0.5, 0.5]},
        None,
    )
    features, findings = read_features(doc, "doc.geojson")
    assert [f.pointer for f in features] == ["/features/0", "/features/1"]
    # A one-part MultiPolygon is simplified to its Polygon.
    assert [f.geometry.geom_type for f in features] == ["Polygon", "Polygon"]
    assert [f.geometry.area for f in features] == [1.0, 1.0]
    assert _codes(findings) == [
        ("warning", "/features/2/geometry/type", "unsupported-geometry"),
        ("notice", "/features/3/geometry", "no-geometry"),
    ]
    assert findings[0].document == "doc.geojson"


def test_bare_geometry_feature_and_geometry_collection():
    bare, found = read_features({"type": "Polygon", "coordinates": SQUARE}, "d")
    assert len(bare) == 1 and bare[0].geometry.area == 1.0 and not found
    feature, found = read_features(
        {
            "type": "Feature",
            "id": 7,
            "properties": {"a": 1},
            "geometry": {"type": "Polygon", "coordinates": SQUARE},
        },
        "d",
    )
    assert feature[0].feature_id == 7 and feature[0].properties == {"a": 1} and not found
    collection = {
        "type": "GeometryCollection",
        "geometries": [
            {"type": "Polygon", "coordinates": SQUARE},
            {"type": "LineString", "coordinates": [[5, 5], [6, 6]]},
            {"type": "Polygon", "coordinates": [[[2, 0], [3, 0], [3, 1], [2, 1], [2, 0]]]},
        ],
    }
    features, found = read_features(collection, "d")
    assert features[0].geometry.geom_type == "MultiPolygon"
    assert features[0].geometry.area == 2.0
    assert _codes(found) == [("warning", "/geometries/1/type", "unsupported-geometry")]


@pytest.mark.parametrize(
    ("coordinates", "pointer", "code"),
    [
        (
            [[[0, 0], [1, 0], [1, "1"], [0, 1], [0, 0]]],
            "/features/0/geometry/coordinates/0/2/1",
            "bad-coordinate",
        ),
        (
            [[[0, 0], [True, 0], [1, 1], [0, 1], [0, 0]]],
            "/features/0/geometry/coordinates/0/1/0",
            "bad-coordinate",
        ),
        (
            [[[0, 0], [1, 0], [1, math.nan], [0, 1], [0, 0]]],
            "/features/0/geometry/coordinates/0/2",
            "bad-coordinate",
        ),
        (
            [[[0, 0], [math.inf, 0], [1, 1], [0, 1], [0, 0]]],
            "/features/0/geometry/coordinates/0/1",
            "bad-coordinate",
        ),
        (
            [[[0, 0], [1, 0], [1, 91], [0, 1], [0, 0]]],
            "/features/0/geometry/coordinates/0/2",
            "out-of-range",
        ),
        (
            [[[0, 0], [181, 0], [1, 1], [0, 1], [0, 0]]],
            "/features/0/geometry/coordinates/0/1",
            "out-of-range",
        ),
        ([[[0, 0], [1, 0], [0, 0]]], "/features/0/geometry/coordinates/0", "ring-too-short"),
        (
            [[[0, 0], [1, 0], [1, 1], [0, 1]]],
            "/features/0/geometry/coordinates/0",
            "ring-not-closed",
        ),
        (
            [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0.5]]],
            "/features/0/geometry/coordinates/0",
            "ring-not-closed",
        ),
        ([], "/features/0/geometry/coordinates", "empty-geometry"),
        ("abc", "/features/0/geometry/coordinates", "wrong-type"),
        (
            [[[0, 0], {"x": 1}, [1, 1], [0, 1], [0, 0]]],
            "/features/0/geometry/coordinates/0/1",
            "wrong-type",
        ),
        (
            [[[0, 0], [1], [1, 1], [0, 1], [0, 0]]],
            "/features/0/geometry/coordinates/0/1",
            "bad-position",
        ),
        (
            [[[0, 0], [10**400, 0], [1, 1], [0, 1], [0, 0]]],
            "/features/0/geometry/coordinates/0",
            "bad-coordinate",
        ),
    ],
)
def test_bad_coordinates_are_rejected_with_a_pointer(coordinates, pointer, code):
    good = {"type": "Polygon", "coordinates": [[[5, 5], [6, 5], [6, 6], [5, 6], [5, 5]]]}
    features, findings = read_features(
        _fc({"type": "Polygon", "coordinates": coordinates}, good), "bad.geojson"
    )
    assert [f.pointer for f in features] == ["/features/1"]  # the other feature survives
    assert _codes(findings) == [("error", pointer, code)]
    assert "bad.geojson" in str(findings[0])


def test_empty_documents_are_errors():
    assert _codes(read_features(_fc(), "d")[1]) == [("error", "/features", "empty-geometry")]
    empty_multi = {"type": "MultiPolygon", "coordinates": []}
    assert _codes(read_features(empty_multi, "d")[1]) == [("error", "", "empty-geometry")]
    geom, found = territory_from_geojson({"type": "Point", "coordinates": [1, 2]}, "d")
    assert geom is None
    assert ("error", "", "empty-geometry") in _codes(found)


def test_hostile_input_never_crashes():
    deep: dict = {"type": "Polygon", "coordinates": SQUARE}
    for _ in range(100):
        deep = {"type": "GeometryCollection", "geometries": [deep]}
    features, found = read_features(deep, "d")
    assert features == [] and found[0].code == "too-deep"
    nested: list = [0, 0]
    for _ in range(200):
        nested = [nested]
    features, found = read_features({"type": "Polygon", "coordinates": nested}, "d")
    assert features == [] and found[0].severity is Severity.ERROR
    for value in (None, 3, "x", [], {"type": "Nope"}, {"type": "Feature", "geometry": 5}):
        features, found = read_features(value, "d")
        assert features == [] and found and found[0].severity is Severity.ERROR
    # A big but honest ring is fine.
    n = 200_000
    ring = [[math.cos(2 * math.pi * i / n), math.sin(2 * math.pi * i / n)] for i in range(n)]
    ring.append(ring[0])
    features, found = read_features({"type": "Polygon", "coordinates": [ring]}, "d")
    assert not found and abs(features[0].geometry.area - math.pi) < 1e-6


def test_carve_out_parts_become_holes_and_make_valid_failure_falls_back_to_buffer0():
    features, found = read_features(_load("repairs.geojson"), "repairs.geojson")
    by_id = {f.feature_id: f.geometry for f in features}
    carve = by_id["carve-out"]
    assert shapely.is_valid(carve)
    assert not carve.covers(shapely.Point(1.5, 1.5))  # the overlapping part is a hole
    assert carve.covers(shapely.Point(3, 3)) and carve.covers(shapely.Point(1, 1.5))
    assert carve.area == 15.0
    assert by_id["collapsed"].equals(shapely.box(20, 20, 24, 24))
    assert by_id["bowtie"].area == 2.0 and shapely.is_valid(by_id["bowtie"])
    repairs = [(f.pointer, f.message.rsplit(" ", 1)[-1]) for f in found]
    assert repairs == [
        ("/features/0/geometry", "make_valid"),
        ("/features/1/geometry", "buffer(0)"),
        ("/features/2/geometry", "make_valid"),
    ]
    assert all(f.code == "repaired-geometry" and f.severity is Severity.WARNING for f in found)


def test_legacy_crs_is_transformed_and_warned_about():
    features, found = read_features(_load("epsg3857.geojson"), "m.geojson")
    minx, miny, maxx, maxy = features[0].geometry.bounds
    assert (round(minx, 6), round(miny, 6), round(maxx, 6), round(maxy, 6)) == (0, 0, 1, 1)
    assert _codes(found) == [("warning", "/crs", "legacy-crs")]
    assert "EPSG::3857" in found[0].message


def test_crs84_is_plain_lon_lat_without_a_warning():
    features, found = read_features(_load("crs84.geojson"), "c.geojson")
    assert features[0].geometry.bounds == (0.0, 0.0, 1.0, 1.0)
    assert list(found) == []


def test_unknown_crs_rejects_the_document():
    doc = _fc({"type": "Polygon", "coordinates": SQUARE})
    doc["crs"] = {"type": "name", "properties": {"name": "EPSG:99999999"}}
    features, found = read_features(doc, "d")
    assert features == [] and _codes(found) == [("error", "/crs", "unsupported-crs")]
    doc["crs"] = {"type": "link", "properties": {"href": "http://example.com/crs"}}
    assert _codes(read_features(doc, "d")[1]) == [("error", "/crs", "unsupported-crs")]


def test_antimeridian_crossing_polygon_is_split():
    features, found = read_features(_load("antimeridian.geojson"), "a")
    by_id = {f.feature_id: f.geometry for f in features}
    aleutia = by_id["aleutia"]
    assert aleutia.geom_type == "MultiPolygon"
    assert sorted(p.bounds for p in aleutia.geoms) == [(-180, 50, -170, 60), (170, 50, 180, 60)]
    assert aleutia.covers(shapely.Point(175, 55)) and aleutia.covers(shapely.Point(-175, 55))
    assert not aleutia.covers(shapely.Point(0, 55))
    # Edges lying on ±180 (a polar cap, an RFC 7946 pre-split polygon) are not crossings.
    assert by_id["arctic"].bounds == (-180, 80, 180, 90)
    assert by_id["cut-west"].area == 50.0
    assert _codes(found) == [("warning", "/features/0/geometry", "antimeridian-split")]


def test_spatial_coverage_of_data_sets():
    box, found = geometry_from_spatial("bbox", [-10, 40, 5, 50], "ds")
    assert box.bounds == (-10, 40, 5, 50) and not found
    wrapped, _ = geometry_from_spatial("bbox", [170, -20, -170, -10], "ds")
    assert wrapped.area == 200.0 and wrapped.covers(shapely.Point(-175, -15))
    wkt, found = geometry_from_spatial("wkt", "POLYGON ((0 0, 2 0, 2 2, 0 2, 0 0))", "ds")
    assert wkt.area == 4.0 and not found
    point, _ = geometry_from_spatial("centroid", [4.9, 52.4], "ds")
    assert (point.x, point.y) == (4.9, 52.4)
    gj, _ = geometry_from_spatial("geojson", {"type": "Polygon", "coordinates": SQUARE}, "ds")
    assert gj.area == 1.0
    for kind, value, code in (
        ("bbox", [10, 50, 20, 40], "bad-bbox"),
        ("bbox", [10, "a", 20, 40], "bad-bbox"),
        ("wkt", "POLYGON ((0 0, 1", "bad-wkt"),
        ("wkt", "LINESTRING (0 0, 1 1)", "unsupported-geometry"),
        ("centroid", [200, 0], "out-of-range"),
        ("shapefile", None, "unsupported-spatial"),
    ):
        geom, found = geometry_from_spatial(kind, value, "ds", "/0/content")
        assert geom is None
        assert [(f.severity, f.code) for f in found][-1] == (Severity.ERROR, code)
        assert found[-1].pointer.startswith("/0/content")


def test_geometry_type_that_is_not_a_string_is_an_error():
    features, found = read_features(
        {"type": "GeometryCollection", "geometries": [{"type": []}]}, "d"
    )
    assert features == []
    assert _codes(found) == [("error", "/geometries/0/type", "unknown-geometry")]


def _with_crs(coordinates: list, name: str = "EPSG:3857") -> dict:
    return {
        "type": "Feature",
        "properties": {},
        "crs": {"type": "name", "properties": {"name": name}},
        "geometry": {"type": "Polygon", "coordinates": [coordinates]},
    }


def test_crs_on_a_lone_feature_or_geometry_is_reported_once():
    feature = _with_crs(SQUARE[0], "EPSG:4326")
    geometry = {**feature["geometry"], "crs": feature["crs"]}
    for doc in (feature, geometry):
        features, found = read_features(doc, "d")
        assert features[0].geometry.bounds == (0.0, 0.0, 1.0, 1.0)
        assert _codes(found) == [("notice", "/crs", "legacy-crs")]


def test_projected_positions_the_crs_cannot_hold_are_rejected():
    # EPSG:3857 has no y = 1e10 m; pyproj clamps it to latitude 90 instead of failing.
    ring = [[0, 0], [1e5, 0], [1e5, 1e10], [0, 1e10], [0, 0]]
    features, found = read_features(_with_crs(ring), "d")
    assert features == []
    assert _codes(found) == [
        ("warning", "/crs", "legacy-crs"),
        ("error", "/geometry/coordinates/0/2", "bad-coordinate"),
    ]
    assert found[1].message == "position lies outside the declared coordinate system"


def test_projected_eastings_past_the_antimeridian_wrap_and_split():
    # Web Mercator data crosses the antimeridian by running x past 20,037,508 m.
    ring = [[19.9e6, 6.7e6], [20.2e6, 6.7e6], [20.2e6, 6.8e6], [19.9e6, 6.8e6], [19.9e6, 6.7e6]]
    features, found = read_features(_with_crs(ring), "d")
    parts = [tuple(round(b, 3) for b in p.bounds) for p in features[0].geometry.geoms]
    assert parts == [(178.765, 51.443, 180.0, 51.999), (-180.0, 51.443, -178.54, 51.999)]
    assert _codes(found) == [
        ("warning", "/crs", "legacy-crs"),
        ("warning", "/geometry", "antimeridian-split"),
    ]
