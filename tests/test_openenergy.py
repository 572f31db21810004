"""Open Energy data set metadata: mandatory content, access, transport, representation, spatial."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import shapely

from coverlookup.documents import parse_document
from coverlookup.openenergy import parse_open_energy

FIXTURES = Path(__file__).parent / "fixtures"
URL = "https://data.northern-valley.example/oe-metadata.yaml"


def _load(name):
    path = FIXTURES / name
    return parse_document(path.read_bytes(), hint=path.name)


def test_spatial_fixture_becomes_dataset_entries():
    server, entries, found = parse_open_energy(_load("documents/open-energy-spatial.yaml"), URL)
    assert found == []
    assert server.shape == "open-energy" and server.metadata_url == URL
    first, second = entries
    assert first.type == "dataset" and first.key == URL + "#substation-headroom"
    assert first.name == "Substation headroom, Northern Valley"
    info = first.dataset
    assert (info.version, info.version_notes) == ("1.2.0", "Adds export headroom")
    assert info.sensitivity_class == "OE-O"  # read through the newer ib1oe: prefix
    assert info.spatial_kind == "wkt" and info.spatial_value.startswith("POLYGON")
    assert info.transport_url == "https://data.northern-valley.example/api"
    assert info.heartbeat_url == "https://data.northern-valley.example/heartbeat"
    assert info.mime == "text/csv"
    assert info.access[0]["rule"] == "grants oe:use_any" and info.access[0]["sufficient"] is True
    assert second.dataset.spatial_kind == "bbox"
    assert second.dataset.spatial_value == [-122.5, 37.2, -121.5, 38.1]


def _base():
    return copy.deepcopy(_load("documents/open-energy-spatial.yaml")[:1])


def _spatial(value):
    doc = _base()
    doc[0]["content"]["dct:spatial"] = value
    return doc


@pytest.mark.parametrize(
    ("spatial", "kind", "expected"),
    [
        ({"dcat:bbox": "-1.5 50.0 1.0 52.5"}, "bbox", [-1.5, 50.0, 1.0, 52.5]),
        ({"dcat:centroid": "POINT (-1.2 51.7)"}, "centroid", [-1.2, 51.7]),
        (
            {"dcat:centroid": {"type": "Point", "coordinates": [-1.2, 51.7]}},
            "centroid",
            [-1.2, 51.7],
        ),
        (
            {
                "locn:geometry": {
                    "@value": '{"type": "Polygon", "coordinates": [[[0,0],[1,0],[1,1],[0,0]]]}',
                    "@type": "gsp:geoJSONLiteral",
                }
            },
            "geojson",
            {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]},
        ),
        (
            {
                "dcat:bbox": "<http://www.opengis.net/def/crs/OGC/1.3/CRS84> "
                "POLYGON ((0 0, 1 0, 1 1, 0 0))"
            },
            "wkt",
            "POLYGON ((0 0, 1 0, 1 1, 0 0))",
        ),
        (
            {  # EPSG:4326 is latitude first (south England, read back longitude first)
                "locn:geometry": "<http://www.opengis.net/def/crs/EPSG/0/4326> "
                "POLYGON ((51 -1, 51 0.5, 52 0.5, 52 -1, 51 -1))"
            },
            "wkt",
            "POLYGON ((-1 51, 0.5 51, 0.5 52, -1 52, -1 51))",
        ),
        (
            {"dcat:centroid": "<urn:ogc:def:crs:EPSG::4326> POINT (51.7 -1.2)"},
            "centroid",
            [-1.2, 51.7],
        ),
        (
            {"dcat:centroid": "<urn:ogc:def:crs:EPSG:6.6:4326> POINT (51.7 -1.2)"},
            "centroid",
            [-1.2, 51.7],
        ),
    ],
)
def test_dcat_spatial_forms(spatial, kind, expected):
    _, [entry], found = parse_open_energy(_spatial(spatial), URL)
    assert found == []
    assert (entry.dataset.spatial_kind, entry.dataset.spatial_value) == (kind, expected)


def test_several_spatial_extents_cover_their_union():
    from coverlookup.geometry import geometry_from_spatial

    spatial = [
        {"dcat:bbox": [-2.0, 50.0, -1.0, 51.0]},
        {"dcat:bbox": [3.0, 50.0, 4.0, 51.0]},
        {"dcat:bbox": [0, 0, 1]},  # reported, and the other two still count
        {"dcat:centroid": "POINT (0 0)"},  # no area: only used when no extent has one
    ]
    _, [entry], found = parse_open_energy(_spatial(spatial), URL)
    assert [(f.pointer, f.code) for f in found] == [
        ("/0/content/dct:spatial/2/dcat:bbox", "bad-geometry")
    ]
    info = entry.dataset
    assert info.spatial_kind == "multi" and len(info.spatial_value) == 3  # 2 boxes, 1 point
    geom, found = geometry_from_spatial(info.spatial_kind, info.spatial_value, URL)
    assert found == [] and geom.geom_type == "MultiPolygon"
    assert geom.covers(shapely.Point(-1.5, 50.5)) and geom.covers(shapely.Point(3.5, 50.5))
    assert not geom.covers(shapely.Point(1.0, 50.5))
    # A finding made when the index is built names the extent's own position in dct:spatial.
    spatial = [spatial[0], {"dcat:bbox": [0, 0, 1]}, {"dcat:bbox": [3.0, 50.0, 4.0, 50.0]}]
    _, [entry], _ = parse_open_energy(_spatial(spatial), URL)
    _, found = geometry_from_spatial(entry.dataset.spatial_kind, entry.dataset.spatial_value, URL)
    assert [f.pointer for f in found] == ["/2"]
    _, [entry], _ = parse_open_energy(_spatial([{"dcat:centroid": "POINT (1 2)"}, {}]), URL)
    assert (entry.dataset.spatial_kind, entry.dataset.spatial_value) == ("centroid", [1.0, 2.0])


def test_wkt_in_a_crs_not_read_is_refused():
    iri = "http://www.opengis.net/def/crs/EPSG/0/27700"
    _, [entry], found = parse_open_energy(
        _spatial({"locn:geometry": f"<{iri}> POINT (450000 200000)"}), URL
    )
    assert [(f.code, f.message) for f in found] == [
        (
            "unsupported-crs",
            f"locn:geometry uses CRS {iri!r}; only CRS84 and EPSG:4326 are read",
        )
    ]
    assert entry.dataset.spatial_kind is None


@pytest.mark.parametrize(
    ("spatial", "pointer", "code"),
    [
        ({"dcat:bbox": [10, 50, 5, 40]}, "/0/content/dct:spatial/dcat:bbox", "bad-geometry"),
        ({"dcat:bbox": [0, 0, 1]}, "/0/content/dct:spatial/dcat:bbox", "bad-geometry"),
        (
            {"locn:geometry": "POLYGON ((0 0, 1 0"},
            "/0/content/dct:spatial/locn:geometry",
            "bad-geometry",
        ),
        (
            {"locn:geometry": "POLYGON ((0 0, 500 0, 1 1, 0 0))"},
            "/0/content/dct:spatial/locn:geometry",
            "bad-geometry",
        ),
        ({"dcat:centroid": "somewhere"}, "/0/content/dct:spatial/dcat:centroid", "bad-geometry"),
        ({"dct:title": "x"}, "/0/content/dct:spatial", "no-geometry"),
        ("Oxford", "/0/content/dct:spatial", "wrong-type"),
    ],
)
def test_bad_spatial_is_reported_and_entry_kept(spatial, pointer, code):
    _, [entry], found = parse_open_energy(_spatial(spatial), URL)
    assert [(f.pointer, f.code) for f in found] == [(pointer, code)]
    assert entry.dataset.spatial_kind is None


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d[0]["content"].pop("dct:title"),
            [("error", "/0/content/dct:title", "missing-field")],
        ),
        (
            lambda d: d[0]["access"][0].pop("sufficient"),
            [("warning", "/0/access/0/sufficient", "missing-field")],
        ),
        (
            lambda d: d[0]["content"].pop("ib1oe:dataSetStableIdentifier"),
            [
                ("error", "/0/content/oe:dataSetStableIdentifier", "missing-field"),
                ("error", "/0", "entry-skipped"),
            ],
        ),
        (
            lambda d: d[0]["content"].__setitem__("ib1oe:sensitivityClass", "SECRET"),
            [("error", "/0/content/ib1oe:sensitivityClass", "bad-sensitivity-class")],
        ),
        (lambda d: d[0].pop("transport"), [("error", "/0/transport", "missing-transport")]),
        (
            lambda d: d[0]["transport"].pop("http"),
            [("error", "/0/transport/http", "missing-transport")],
        ),
        (
            lambda d: d[0]["representation"].pop("mime"),
            [("error", "/0/representation/mime", "missing-field")],
        ),
        (lambda d: d[0].pop("access"), [("warning", "/0/access", "missing-field")]),
        (
            lambda d: d[0]["access"][0].__setitem__("sufficient", "yes"),
            [("error", "/0/access/0/sufficient", "wrong-type")],
        ),
        (
            lambda d: d.append(copy.deepcopy(d[0])),
            [("error", "/1/content/oe:dataSetStableIdentifier", "duplicate-id")],
        ),
        (lambda d: d.append(7), [("error", "/1", "not-an-object")]),
    ],
)
def test_broken_data_sets(change, expected):
    doc = _base()
    change(doc)
    _, _, found = parse_open_energy(doc, URL)
    assert [(f.severity.value, f.pointer, f.code) for f in found] == expected


def test_a_json_ld_value_object_is_read_as_its_value():
    doc = _base()
    doc[0]["content"]["dct:title"] = {"@value": "Headroom", "@language": "en"}
    _, [entry], found = parse_open_energy(doc, URL)
    assert found == [] and entry.name == "Headroom"


def test_top_level_must_be_a_list():
    server, entries, found = parse_open_energy({"a": 1}, URL)
    assert server is None and entries == []
    assert [(f.pointer, f.code) for f in found] == [("", "not-a-list")]
