"""CoverageIndex: exact answers (checked against a brute-force oracle), edges, filters, storage."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import orjson
import pyproj
import pytest
import shapely
from shapely.geometry import shape

from coverlookup._geodesy import CHORD_M as CHORD
from coverlookup.errors import CoordinateError, NotFoundError, UsageError
from coverlookup.findings import Severity
from coverlookup.index import CoverageIndex
from coverlookup.model import DatasetInfo, Entry, Server
from coverlookup.snapshot import DocumentRecord, Snapshot, snapshot_from_features, write_snapshot

FIXTURES = Path(__file__).parent / "fixtures" / "geometry"
GEOD = pyproj.Geod(ellps="WGS84")
US_URL = "https://us.example/.well-known/cds-server-metadata.json"


def _keys(matches) -> list[str]:
    return [m.entry.id for m in matches]


def _geodesic(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    return GEOD.inv(lon1, lat1, lon2, lat2)[2]


def _to_meridian(lat: float, lon: float, meridian: float) -> float:
    """Geodesic metres to the nearest point of a meridian near ``lat`` (the foot of the
    shortest geodesic lies a little poleward of ``lat``), by a fine search."""
    lats = np.linspace(lat - 0.5, lat + 0.5, 100_001)
    n = len(lats)
    return float(min(GEOD.inv([lon] * n, [lat] * n, [meridian] * n, lats)[2]))


# --- the US territories against a brute-force oracle -------------------------------------------


def _us_snapshot(features: list[dict]) -> Snapshot:
    """One server with an entry per territory, each territory its own GeoJSON document."""
    return snapshot_from_features(
        features, server_url=US_URL, server_name="US utilities", commodity_types=("electricity",)
    )


@pytest.fixture(scope="session")
def us_features(shared_data: Path) -> list[dict]:
    path = shared_data / "us-retail-territories" / "utilities-territories.geojson"
    return orjson.loads(path.read_bytes())["features"]


@pytest.fixture(scope="session")
def us_root(us_features, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("us-snapshot")
    write_snapshot(root, _us_snapshot(us_features))
    return root


@pytest.fixture(scope="session")
def us_index(us_root) -> CoverageIndex:
    return CoverageIndex.load(us_root)  # builds, then saves the compiled form


@pytest.fixture(scope="session")
def us_oracle(us_features):
    """Every territory repaired independently (make_valid, buffer(0) where it raises)."""
    ids, geoms = [], []
    for feature in us_features:
        geom = shape(feature["geometry"])
        if not geom.is_valid:
            try:
                geom = shapely.make_valid(geom)
            except shapely.errors.GEOSException:
                geom = geom.buffer(0)
        ids.append(feature["properties"]["id"])
        geoms.append(geom)
    geoms_arr = np.array(geoms, dtype=object)
    shapely.prepare(geoms_arr)
    return ids, geoms_arr


@pytest.fixture(scope="session")
def sample_points(shared_data) -> tuple[np.ndarray, np.ndarray]:
    """1,000 random points in the US box plus 1,000 real points (county interior points)."""
    rng = np.random.default_rng(20240601)
    lats = rng.uniform(18.0, 72.0, 1000)
    lons = rng.uniform(-170.0, -65.0, 1000)
    counties = orjson.loads((shared_data / "us-counties.geojson").read_bytes())["features"]
    picked = rng.choice(len(counties), size=1000, replace=False)
    real = [shape(counties[i]["geometry"]).representative_point() for i in picked]
    lats = np.concatenate((lats, [p.y for p in real]))
    lons = np.concatenate((lons, [p.x for p in real]))
    return lats, lons


def _oracle_answers(oracle, lats, lons) -> list[set[str]]:
    ids, geoms = oracle
    points = shapely.points(lons, lats)
    answers: list[set[str]] = [set() for _ in range(len(lats))]
    bounds = shapely.bounds(geoms)
    for t, (minx, miny, maxx, maxy) in enumerate(bounds):
        near = np.flatnonzero((lons >= minx) & (lons <= maxx) & (lats >= miny) & (lats <= maxy))
        if len(near):
            for i in near[shapely.covers(geoms[t], points[near])]:
                answers[i].add(ids[t])
    return answers


def test_us_lookup_and_lookup_many_equal_brute_force_oracle(us_index, us_oracle, sample_points):
    lats, lons = sample_points
    expected = _oracle_answers(us_oracle, lats, lons)
    many = us_index.lookup_many(lats, lons)
    assert len(many) == len(lats)
    for i, (lat, lon) in enumerate(zip(lats.tolist(), lons.tolist(), strict=True)):
        single = us_index.lookup(lat, lon)
        assert set(_keys(single)) == expected[i], (i, lat, lon)
        assert _keys(many[i]) == _keys(single)
        areas = [m.area_m2 for m in single]
        assert areas == sorted(areas)
    # The sample exercises overlaps, not just single answers.
    assert sum(len(e) > 1 for e in expected) > 300
    assert sum(len(e) == 0 for e in expected) > 100


def test_us_real_places(us_index):
    # Downtown Sacramento: SMUD is carved out of PG&E (published as an overlapping part).
    names = [m.entry.name for m in us_index.lookup(38.5816, -121.4944)]
    assert "SACRAMENTO MUNICIPAL UTIL DIST" in names
    assert "PACIFIC GAS & ELECTRIC CO." not in names
    assert names[0] == "SACRAMENTO MUNICIPAL UTIL DIST"  # most specific first
    assert us_index.lookup(30.0, -40.0) == []  # mid-Atlantic


def test_us_findings_report_every_repair(us_index):
    repaired = [f for f in us_index.findings if f.code == "repaired-geometry"]
    assert len(repaired) == 567
    assert all(f.severity is Severity.WARNING and f.pointer for f in repaired)
    assert sum("buffer(0)" in f.message for f in repaired) == 1
    assert us_index.stats()["geometries"] == 2919


def test_us_compiled_form_is_saved_and_reloaded(us_index, us_root, sample_points):
    directory = Path(us_index.path)
    assert sorted(p.name for p in (directory / "index").iterdir()) == [
        "areas.npy",
        "geoms.wkb",
        "grid_big.npy",
        "grid_ids.npy",
        "grid_keys.npy",
        "grid_offsets.npy",
        "meta.json",
        "wkb_offsets.npy",
    ]
    reloaded = CoverageIndex.load(us_root)
    lats, lons = sample_points
    assert [_keys(m) for m in reloaded.lookup_many(lats, lons)] == [
        _keys(m) for m in us_index.lookup_many(lats, lons)
    ]
    assert reloaded.findings == us_index.findings
    assert reloaded.stats() == us_index.stats()


# --- edges, from hand-made GeoJSON -------------------------------------------------------------


@pytest.fixture(scope="module")
def squares() -> CoverageIndex:
    return CoverageIndex.from_geojson(FIXTURES / "two_squares.geojson", name_property="NAME")


@pytest.fixture(scope="module")
def world_edges() -> CoverageIndex:
    return CoverageIndex.from_geojson(FIXTURES / "antimeridian.geojson", name_property="NAME")


@pytest.mark.parametrize(
    ("lat", "lon", "expected"),
    [
        (0.5, 0.5, ["west"]),
        (0.5, 1.0, ["west", "east"]),  # on the shared edge: both, smaller first
        (0.0, 1.0, ["west", "east"]),  # on the shared vertex
        (1.0, 1.0, ["west", "east"]),  # a corner of west on an edge of east
        (1.25, 1.5, ["east"]),
        (0.0, 0.0, ["west"]),  # outer vertex
        (12.0, 12.0, []),  # inside the hole
        (11.0, 12.0, ["donut"]),  # on the hole's edge
        (10.5, 10.5, ["donut"]),
        (5.0, 5.0, []),
        (-0.000001, 0.5, []),
    ],
)
def test_edges_shared_boundary_vertex_hole(squares, lat, lon, expected):
    assert _keys(squares.lookup(lat, lon)) == expected
    assert _keys(squares.lookup_many([lat], [lon])[0]) == expected


@pytest.mark.parametrize(
    ("lat", "lon", "expected"),
    [
        (55.0, 175.0, ["aleutia"]),
        (55.0, -175.0, ["aleutia"]),
        (55.0, 180.0, ["aleutia"]),
        (55.0, -180.0, ["aleutia"]),
        (55.0, 0.0, []),
        (90.0, 0.0, ["arctic"]),
        (90.0, 180.0, ["arctic"]),
        (90.0, -180.0, ["arctic"]),
        (85.0, -179.99, ["arctic"]),
        (-90.0, 0.0, []),
        (-90.0, -180.0, []),
        (-17.0, 180.0, ["cut-west"]),
        (-17.0, -180.0, ["cut-west"]),
        (-17.0, 176.0, ["cut-west"]),
        (-17.0, -176.0, ["cut-west"]),
    ],
)
def test_edges_antimeridian_and_poles(world_edges, lat, lon, expected):
    assert _keys(world_edges.lookup(lat, lon)) == expected
    assert _keys(world_edges.lookup_many([lat], [lon])[0]) == expected


def test_boundary_distance_ignores_the_antimeridian_cut(world_edges):
    # The split at 180° is not an edge: the nearest real edge is the parallel at 50°N (a
    # curve in the territory's conic frame, searched as chords within CHORD_M of it).
    for lon in (179.0, -179.0, 180.0):
        (match,) = world_edges.lookup(54.0, lon)
        assert match.boundary_distance_m == pytest.approx(_geodesic(54, lon, 50, lon), abs=CHORD)
    (near,) = world_edges.lookup(52.0, 179.9)
    assert near.boundary_distance_m == pytest.approx(_geodesic(52, 179.9, 50, 179.9), abs=CHORD)
    # Nearest across the antimeridian, from outside: 1° east of the territory's east edge.
    # The foot of the shortest geodesic to a meridian lies a little poleward (55.0041°N).
    (outside,) = world_edges.nearest(55.0, -169.0, 100)
    assert outside.distance_m == pytest.approx(_to_meridian(55.0, -169.0, -170.0), abs=0.01)
    assert outside.distance_m < _geodesic(55, -169, 55, -170) - 1.0


def test_nearest_crosses_the_antimeridian_to_parts_that_do_not_touch_it(tmp_path):
    """Islands at 179.5..179.8 and a mainland from -178 east, neither reaching ±180 (like the
    Aleutians in real county and utility data): from -179.95 the islands are 17 km away."""
    islands = [[[179.5, 51.8], [179.8, 51.8], [179.8, 52.2], [179.5, 52.2], [179.5, 51.8]]]
    mainland = [[[-178.0, 51.0], [-170.0, 51.0], [-170.0, 53.0], [-178.0, 53.0], [-178.0, 51.0]]]
    feature = {
        "type": "Feature",
        "properties": {"NAME": "aleutians"},
        "geometry": {"type": "MultiPolygon", "coordinates": [islands, mainland]},
    }
    path = tmp_path / "islands.geojson"
    path.write_bytes(orjson.dumps({"type": "FeatureCollection", "features": [feature]}))
    index = CoverageIndex.from_geojson(path, name_property="NAME")
    (match,) = index.nearest(52.0, -179.95, 30)
    assert match.distance_m == pytest.approx(_to_meridian(52.0, -179.95, 179.8), abs=0.01)
    for lon in (180.0, -180.0):  # one place, two spellings: one answer
        (match,) = index.nearest(52.0, lon, 30)
        assert match.distance_m == pytest.approx(_to_meridian(52.0, 180.0, 179.8), abs=0.01)
    (inside,) = index.lookup(52.0, -177.99)  # and inside the mainland, its own west edge
    assert inside.boundary_distance_m == pytest.approx(
        _to_meridian(52.0, -177.99, -178.0), abs=0.01
    )


def _nearest_boundary_sample(geom, lat: float, lon: float) -> float:
    """Geodesic metres to the nearest of the boundary's points every 0.0005° (a brute-force
    reference, at most a few centimetres long for distances of tens of kilometres)."""
    coords = shapely.get_coordinates(shapely.segmentize(shapely.boundary(geom), 0.0005))
    n = len(coords)
    return float(min(GEOD.inv([lon] * n, [lat] * n, coords[:, 0], coords[:, 1])[2]))


@pytest.mark.parametrize(
    ("lat", "lon"),
    [
        (48.5, -102.03),  # east edge 150 km away, north edge 167 km: scaled at 40°N, it was 167
        (31.0, -108.5),  # near the bottom, where a degree of longitude is longest
        (40.0, -105.0),
        (49.9, -109.9),  # a corner
        (47.0, -101.0),
    ],
)
def test_boundary_distance_of_a_tall_territory_is_geodesic(tmp_path, lat, lon):
    """A territory spanning 20 degrees of latitude: the nearest edge point is found in a
    conformal frame, so the east edge at the top is not taken for farther than it is."""
    ring = [[-110.0, 30.0], [-100.0, 30.0], [-100.0, 50.0], [-110.0, 50.0], [-110.0, 30.0]]
    feature = {
        "type": "Feature",
        "properties": {"NAME": "tall"},
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }
    path = tmp_path / "tall.geojson"
    path.write_bytes(orjson.dumps({"type": "FeatureCollection", "features": [feature]}))
    index = CoverageIndex.from_geojson(path, name_property="NAME")
    (match,) = index.lookup(lat, lon)
    expected = _nearest_boundary_sample(shapely.Polygon(ring), lat, lon)
    assert match.boundary_distance_m == pytest.approx(expected, abs=0.5)
    (outside,) = index.nearest(lat, -98.5, 500)  # and from outside, east of it
    expected = _nearest_boundary_sample(shapely.Polygon(ring), lat, -98.5)
    assert outside.distance_m == pytest.approx(expected, abs=0.5)


@pytest.mark.parametrize(
    ("box", "lat", "lon", "rel"),
    [
        ((-100.0, 30.0, 100.0, 50.0), 40.0, 0.0, 2e-3),  # 200° wide: edges through 0, not 180
        ((-100.0, 30.0, 100.0, 50.0), 31.0, 0.0, 1e-6),
        ((-10.0, -40.0, 10.0, 40.0), 37.0, 7.0, 3e-4),  # straddles the equator
        ((-60.0, 75.0, 0.0, 86.0), 85.5, -55.0, 1e-5),  # near a pole
        ((-60.0, -89.8, 0.0, -75.0), -89.0, -30.0, 1e-5),
        ((18.67, 59.34, 57.31, 90.0), 75.0, 40.0, 1e-5),  # a wedge with the pole for a corner
        ((98.8, -90.0, 180.0, -8.6), -50.0, 170.0, 1e-5),
    ],
)
def test_boundary_distance_in_wide_equatorial_and_polar_territories(box, lat, lon, rel):
    from coverlookup._geodesy import distance_to_edges, edge_frame

    geom = shapely.box(*box)
    expected = _nearest_boundary_sample(geom, lat, lon)
    assert distance_to_edges(edge_frame(geom), lon, lat) == pytest.approx(expected, rel=rel)


def test_a_polar_cap_has_no_edge_along_the_pole():
    from coverlookup._geodesy import distance_to_edges, edge_frame

    cap = shapely.box(-180.0, 60.0, 180.0, 90.0)  # the pole side and the ±180 cut are no edges
    for lon in (0.0, 179.9, -180.0, 90.0):
        assert distance_to_edges(edge_frame(cap), lon, 85.0) == pytest.approx(
            _geodesic(85.0, lon, 60.0, lon), abs=CHORD
        )
    south = shapely.box(-180.0, -90.0, 180.0, -70.0)
    assert distance_to_edges(edge_frame(south), 45.0, -89.0) == pytest.approx(
        _geodesic(-89.0, 45.0, -70.0, 45.0), abs=CHORD
    )


def test_from_geojson_entries_and_match_shape(squares):
    uri = (FIXTURES / "two_squares.geojson").resolve().as_uri()
    (match,) = squares.lookup(0.25, 0.5)
    data = match.to_dict()
    assert data["key"] == f"{uri}#west"
    assert data["name"] == "West Utility" and data["type"] == "geographic"
    assert data["entity"]["metadata_url"] == uri and data["entity"]["name"] == "West Utility"
    # Nearest edge is the south one, 0.25° of latitude away.
    assert data["boundary_distance_m"] == round(_geodesic(0.25, 0.5, 0.0, 0.5), 1)
    server = squares.server(match.server.id)
    assert server.name == "two_squares" and server.metadata_url == uri
    assert set(squares.entries) == {f"{uri}#west", f"{uri}#east", f"{uri}#donut"}
    feature = squares.entry_geojson(f"{uri}#donut")
    assert feature["geometry"]["type"] == "Polygon" and len(feature["geometry"]["coordinates"]) == 2
    assert feature["properties"]["name"] == "Donut Cooperative"


def test_boundary_distance_is_geodesic_to_the_nearest_edge(squares):
    (match,) = squares.lookup(0.5, 0.5)
    # The edges at lat 0 and 1 are nearer than those at lon 0 and 1 (a degree of latitude is
    # shorter than a degree of longitude near the equator).
    assert match.boundary_distance_m == pytest.approx(_geodesic(0.5, 0.5, 0.0, 0.5), abs=0.01)
    (on_edge, _) = squares.lookup(0.5, 1.0)
    assert on_edge.boundary_distance_m == 0.0
    lazy = squares.lookup_many([0.5], [0.5], boundary_distance=True)[0][0]
    assert lazy.boundary_distance_m == match.boundary_distance_m
    assert squares.lookup_many([0.5], [0.5])[0][0].boundary_distance_m is None


def test_nearest_outside_and_inside(squares):
    assert squares.lookup(0.5, 2.1) == []
    near = squares.nearest(0.5, 2.1, 150)
    assert _keys(near) == ["east", "west"]
    assert near[0].distance_m == pytest.approx(_geodesic(0.5, 2.1, 0.5, 2.0), abs=0.01)
    assert near[1].distance_m == pytest.approx(_geodesic(0.5, 2.1, 0.5, 1.0), abs=0.01)
    assert squares.nearest(0.5, 2.1, 5) == []
    assert _keys(squares.nearest(0.5, 2.1, 150, limit=1)) == ["east"]
    (inside,) = squares.nearest(0.5, 0.5, 1)
    assert inside.distance_m == 0.0 and inside.boundary_distance_m > 55_000
    with pytest.raises(UsageError):
        squares.nearest(0.5, 0.5, -1)


@pytest.mark.parametrize(
    ("lat", "lon"),
    [
        (math.nan, 0.0),
        (0.0, math.inf),
        (91.0, 0.0),
        (-90.0001, 0.0),
        (0.0, -180.0001),
        ("1", 2.0),
        (None, 0.0),
        (True, 0.0),
        (0.0, 1 + 2j),
    ],
)
def test_bad_coordinates_raise(squares, lat, lon):
    with pytest.raises(CoordinateError):
        squares.lookup(lat, lon)
    with pytest.raises(CoordinateError):
        squares.nearest(lat, lon, 10)
    with pytest.raises(CoordinateError):
        squares.lookup_many([0.0, lat], [0.0, lon])


def test_lookup_many_input_checks(squares):
    with pytest.raises(CoordinateError, match=r"lats\[1\]"):
        squares.lookup_many([0.0, 91.0], [0.0, 0.0])
    with pytest.raises(CoordinateError, match="differ in length"):
        squares.lookup_many([0.0, 1.0], [0.0])
    with pytest.raises(CoordinateError):
        squares.lookup_many(np.zeros((2, 2)), np.zeros((2, 2)))
    assert squares.lookup_many([], []) == []
    lats = np.array([0.5, 12.0, 0.5, 5.0], dtype=np.float32)
    lons = np.array([0.5, 12.0, 1.0, 5.0], dtype=np.float32)
    assert [_keys(m) for m in squares.lookup_many(lats, lons)] == [
        ["west"],
        [],
        ["west", "east"],
        [],
    ]


def test_legacy_crs_file_is_indexed_in_wgs84():
    index = CoverageIndex.from_geojson(FIXTURES / "epsg3857.geojson")
    assert _keys(index.lookup(0.5, 0.5)) == ["mercator"]
    assert index.lookup(0.5, 1.01) == []
    assert [f.code for f in index.findings] == ["legacy-crs"]


# --- a snapshot with every kind of entry -------------------------------------------------------

SERVER = "https://grid.example/.well-known/cds-server-metadata.json"


def _mixed_snapshot() -> Snapshot:
    snap = Snapshot.new()
    snap.servers.append(
        Server(
            metadata_url=SERVER,
            shape="cds-2025",
            name="Grid Example",
            website="https://grid.example",
            capabilities=("coverage", "oauth"),
            links={"oauth_metadata": "https://grid.example/.well-known/oauth"},
        )
    )

    def doc(url: str, body: bytes) -> None:
        snap.documents.append(DocumentRecord(url, "geojson", sha256=snap.add_blob(body)))

    square = {"type": "Polygon", "coordinates": [[[0, 0], [2, 0], [2, 2], [0, 2], [0, 0]]]}
    small = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}
    doc("https://grid.example/square.geojson", orjson.dumps(square))
    doc("https://grid.example/small.geojson", orjson.dumps(small))
    doc("https://grid.example/broken.geojson", b'{"type": "Polygon", "coordinates": [[[0, 0]')
    doc("https://grid.example/point.geojson", b'{"type": "Point", "coordinates": [0, 0]}')

    def entry(eid: str, **kw) -> Entry:
        return Entry(server_url=SERVER, id=eid, **kw)

    snap.entries += [
        entry(
            "power",
            type="geographic",
            commodity_types=("electricity",),
            infrastructure_types=("distribution_utility",),
            capabilities=("coverage", "oauth"),
            geojson_resource="https://grid.example/square.geojson",
        ),
        entry(
            "gas",
            type="geographic",
            commodity_types=("natural_gas",),
            infrastructure_types=("distribution_utility",),
            geojson_resource="https://grid.example/small.geojson",
        ),
        entry("supplier", type="logical", commodity_types=("electricity",)),
        entry("broken", type="geographic", geojson_resource="https://grid.example/broken.geojson"),
        entry("point", type="geographic", geojson_resource="https://grid.example/point.geojson"),
        entry("missing", type="geographic", geojson_resource="https://grid.example/gone.geojson"),
        entry(
            "ds-bbox",
            type="dataset",
            dataset=DatasetInfo("ds-bbox", spatial_kind="bbox", spatial_value=[-1, -1, 3, 3]),
        ),
        entry(
            "ds-wkt",
            type="dataset",
            dataset=DatasetInfo(
                "ds-wkt", spatial_kind="wkt", spatial_value="POLYGON ((1 1, 3 1, 3 3, 1 3, 1 1))"
            ),
        ),
        entry(
            "ds-centroid",
            type="dataset",
            dataset=DatasetInfo("ds-centroid", spatial_kind="centroid", spatial_value=[0.5, 0.5]),
        ),
        entry("ds-none", type="dataset", dataset=DatasetInfo("ds-none")),
    ]
    return snap


@pytest.fixture(scope="module")
def mixed_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mixed")
    write_snapshot(root, _mixed_snapshot())
    return root


@pytest.fixture(scope="module")
def mixed(mixed_root) -> CoverageIndex:
    return CoverageIndex.load(mixed_root)


def test_every_entry_is_kept_and_listable(mixed):
    assert len(mixed.entries) == 10 and len(mixed.servers) == 1
    assert mixed.entry(f"{SERVER}#supplier").type == "logical"
    assert mixed.entry_geojson(f"{SERVER}#supplier")["geometry"] is None
    with pytest.raises(NotFoundError):
        mixed.entry(f"{SERVER}#nope")
    with pytest.raises(NotFoundError):
        mixed.entry_geojson("nope")
    with pytest.raises(NotFoundError):
        mixed.server("0000")
    stats = mixed.stats()
    assert (stats["entries"], stats["geometries"], stats["point_only_entries"]) == (10, 5, 1)
    assert stats["entries_without_geometry"] == 5


def test_point_lookup_orders_and_filters(mixed):
    assert _keys(mixed.lookup(0.5, 0.5)) == ["gas", "power", "ds-bbox"]
    # Same size in degrees, but farther from the equator: fewer square metres, so first.
    assert _keys(mixed.lookup(1.5, 1.5)) == ["ds-wkt", "power", "ds-bbox"]
    assert _keys(mixed.lookup(0.5, 0.5, commodity="electricity")) == ["power"]
    assert _keys(mixed.lookup(0.5, 0.5, commodity="natural_gas")) == ["gas"]
    assert _keys(mixed.lookup(0.5, 0.5, capability="oauth")) == ["power"]
    assert _keys(mixed.lookup(0.5, 0.5, infrastructure="distribution_utility")) == [
        "gas",
        "power",
    ]
    assert _keys(mixed.lookup(0.5, 0.5, type="dataset")) == ["ds-bbox"]
    assert mixed.lookup(0.5, 0.5, commodity="water") == []
    many = mixed.lookup_many([0.5, 1.5], [0.5, 1.5], type="dataset")
    assert [_keys(m) for m in many] == [["ds-bbox"], ["ds-wkt", "ds-bbox"]]
    with pytest.raises(UsageError):
        mixed.lookup(0.5, 0.5, commodity=3)


def test_match_carries_server_facts_and_links(mixed):
    power = mixed.lookup(1.5, 1.5, commodity="electricity")[0].to_dict()
    assert power["links"] == {"oauth_metadata": "https://grid.example/.well-known/oauth"}
    assert power["entity"]["website"] == "https://grid.example"
    assert power["capabilities"] == ["coverage", "oauth"]
    assert power["boundary_distance_m"] == round(_geodesic(1.5, 1.5, 2.0, 1.5), 1)


def test_centroid_data_set_only_found_by_nearest(mixed):
    near = mixed.nearest(0.6, 0.5, 20, type="dataset")
    assert _keys(near) == ["ds-bbox", "ds-centroid"]
    assert near[1].distance_m == pytest.approx(_geodesic(0.6, 0.5, 0.5, 0.5), abs=0.01)
    assert near[1].boundary_distance_m is None


def test_bad_territories_are_findings_not_failures(mixed):
    by_document = {(f.document, f.code, f.severity) for f in mixed.findings}
    assert ("https://grid.example/broken.geojson", "syntax_error", Severity.ERROR) in by_document
    assert ("https://grid.example/gone.geojson", "not-fetched", Severity.WARNING) in by_document
    assert (
        "https://grid.example/point.geojson",
        "unsupported-geometry",
        Severity.WARNING,
    ) in by_document


def test_corrupt_compiled_form_is_rebuilt(mixed_root, mixed, caplog):
    meta = Path(mixed.path) / "index" / "meta.json"
    meta.write_bytes(b"{not json")
    again = CoverageIndex.load(mixed_root)
    assert _keys(again.lookup(0.5, 0.5)) == ["gas", "power", "ds-bbox"]
    assert "unreadable" in caplog.text
    assert orjson.loads(meta.read_bytes())["snapshot_id"] == mixed.snapshot_id


def test_load_uses_the_compiled_form_without_rebuilding(tmp_path):
    directory = write_snapshot(tmp_path, _mixed_snapshot())
    first = CoverageIndex.load(tmp_path)
    assert (directory / "index" / "meta.json").is_file()
    # With the raw GeoJSON gone, only the compiled form can answer.
    for raw in (directory / "raw").iterdir():
        raw.unlink()
    again = CoverageIndex.load(directory)
    assert _keys(again.lookup(0.5, 0.5)) == ["gas", "power", "ds-bbox"]
    assert again.findings == first.findings
    assert again.geometry(f"{SERVER}#gas").equals(first.geometry(f"{SERVER}#gas"))


def test_an_index_without_territories_answers_empty(tmp_path):
    snap = Snapshot.new()
    snap.servers.append(Server(metadata_url=SERVER, shape="cds-2025"))
    snap.entries.append(Entry(server_url=SERVER, id="only", type="logical"))
    write_snapshot(tmp_path, snap)
    for index in (CoverageIndex.load(tmp_path), CoverageIndex.load(tmp_path)):
        assert index.lookup(1.0, 2.0) == []
        assert index.lookup_many([1.0, 2.0], [3.0, 4.0]) == [[], []]
        assert index.nearest(1.0, 2.0, 100) == []
        assert list(index.entries) == [f"{SERVER}#only"]


def test_territories_too_large_for_the_grid_are_tested_exactly(tmp_path):
    snap = Snapshot.new()
    snap.servers.append(Server(metadata_url=SERVER, shape="cds-2025"))
    world = DatasetInfo("world", spatial_kind="bbox", spatial_value=[-180, -90, 180, 90])
    europe = DatasetInfo("europe", spatial_kind="bbox", spatial_value=[-10, 35, 30, 70])
    snap.entries += [
        Entry(server_url=SERVER, id="world", type="dataset", dataset=world),
        Entry(server_url=SERVER, id="europe", type="dataset", dataset=europe),
    ]
    write_snapshot(tmp_path, snap)
    built = CoverageIndex.load(tmp_path)
    stats = built.stats()
    assert stats["unrasterised_territories"] == 1  # the world box
    assert stats["grid_cells"] < 400_000  # Europe's box only
    for index in (built, CoverageIndex.load(tmp_path)):
        assert _keys(index.lookup(50.0, 5.0)) == ["europe", "world"]
        assert _keys(index.lookup(-90.0, 180.0)) == ["world"]
        assert _keys(index.lookup(0.0, 100.0)) == ["world"]
        assert [_keys(m) for m in index.lookup_many([50.0, 0.0, 70.0], [5.0, 100.0, 30.0])] == [
            ["europe", "world"],
            ["world"],
            ["europe", "world"],
        ]


def test_coordinate_errors_name_the_problem(squares):
    with pytest.raises(CoordinateError) as info:
        squares.lookup(10**400, 0.0)  # float() overflows: still a coordinate error
    assert str(info.value) == f"lat {10**400} is outside [-90, 90]"
    with pytest.raises(CoordinateError) as info:
        squares.lookup(math.nan, 0.0)
    assert str(info.value) == "lat must be finite, got nan"
    with pytest.raises(CoordinateError) as info:
        squares.lookup_many([0.0, math.nan], [0.0, 0.0])
    assert str(info.value) == "lats[1] must be finite, got nan"
    with pytest.raises(CoordinateError) as info:
        squares.lookup_many([0.0], [0.0, 200.0][1:])
    assert str(info.value) == "lons[0] = 200.0 is outside [-180, 180]"
    with pytest.raises(CoordinateError) as info:
        squares.lookup_many(1.0, 2.0)
    assert str(info.value) == "lats must be a one-dimensional sequence of numbers, got float"


def test_filter_of_the_wrong_type_is_a_usage_error(squares):
    for call in (
        lambda: squares.lookup(0.5, 0.5, commodity=["electricity"]),
        lambda: squares.lookup_many([0.5], [0.5], commodity=["electricity"]),
    ):
        with pytest.raises(UsageError) as info:
            call()
        assert str(info.value) == "commodity filter must be a string, got ['electricity']"


def test_from_geojson_warns_about_a_property_no_feature_has():
    index = CoverageIndex.from_geojson(FIXTURES / "two_squares.geojson", name_property="name")
    assert [(f.severity.value, f.code, f.message) for f in index.findings] == [
        (
            "warning",
            "missing-property",
            "name_property 'name': no feature has that property (properties found: NAME)",
        )
    ]
    assert {m.entry.name for m in index.lookup(0.5, 0.5)} == {None}


def test_from_geojson_errors_name_the_file(tmp_path):
    from coverlookup.errors import DocumentSyntaxError

    bad = tmp_path / "bad.geojson"
    bad.write_text('{"type": "FeatureCollection",, }')
    with pytest.raises(DocumentSyntaxError) as info:
        CoverageIndex.from_geojson(bad)
    assert str(info.value) == (
        f"{bad}: invalid JSON at line 1 column 30: unexpected character, expected a string key"
    )
    assert (info.value.line, info.value.column) == (1, 30)
    with pytest.raises(UsageError) as info:
        CoverageIndex.from_geojson("/dev/zero")
    assert str(info.value) == "/dev/zero: not a regular file"


def test_boundary_distances_equal_each_matches_own(world_edges, squares, mixed, us_index):
    rng = np.random.default_rng(11)
    us_points = list(zip(rng.uniform(25, 49, 400), rng.uniform(-124, -67, 400), strict=True))
    cases = [
        (world_edges, [(54, 179), (54, -179), (54, 180), (52, 179.9), (90, 0), (-17, 180)]),
        (squares, [(0.5, 0.5), (0.5, 1.0), (11.0, 12.0), (10.5, 10.5), (1.25, 1.5)]),
        (mixed, [(0.5, 0.5), (1.5, 1.5), (2.5, 2.5)]),
        (us_index, us_points),
    ]
    for index, points in cases:
        territories, lons, lats, expected = [], [], [], []
        for lat, lon in points:
            found = index.covering(lat, lon)
            matches = index.lookup(lat, lon)
            assert [index.territory_match(t).entry for t in found] == [m.entry for m in matches]
            for t, match in zip(found, matches, strict=True):
                territories.append(t)
                lons.append(float(lon))
                lats.append(float(lat))
                expected.append(match.boundary_distance_m)
        assert len(expected) > 2
        # The vectorised search gives the numbers each match measures on its own, to a
        # micrometre (one projects with numpy, the other with math: the last bits may differ).
        assert index.boundary_distances(territories, lons, lats) == pytest.approx(
            expected, abs=1e-6
        )
        assert index.boundary_distances(territories[:1], lons[:1], lats[:1]) == expected[:1]
    assert mixed.boundary_distances([], [], []) == []


def test_boundary_distances_of_points_and_bad_arguments(mixed):
    centroid = mixed._territory_of[f"{SERVER}#ds-centroid"]  # a point: no edges
    square = mixed.covering(1.5, 1.5)[0]
    assert mixed.boundary_distances([centroid, square], [0.5, 1.5], [0.5, 1.5])[0] is None
    assert mixed.boundary_distances([centroid], [0.5], [0.5]) == [None]
    with pytest.raises(UsageError, match="differ in length"):
        mixed.boundary_distances([square], [1.5, 1.6], [1.5])


def test_covering_applies_filters_like_lookup(mixed):
    cases = [
        ({}, ["gas", "power", "ds-bbox"]),
        ({"commodity": "natural_gas"}, ["gas"]),
        ({"capability": "oauth"}, ["power"]),
        ({"type": "dataset"}, ["ds-bbox"]),
    ]
    for kwargs, expected in cases:
        found = mixed.covering(0.5, 0.5, **kwargs)
        assert [mixed.territory_match(t).entry.id for t in found] == expected
        assert _keys(mixed.lookup(0.5, 0.5, **kwargs)) == expected
    with pytest.raises(CoordinateError):
        mixed.covering(91.0, 0.0)


def test_covering_many_is_covering_point_by_point(squares, world_edges, us_index):
    rng = np.random.default_rng(7)
    for index, lats, lons in (
        (squares, [0.5, 0.5, 0.0, 12.0, 11.0, -0.000001], [0.5, 1.0, 1.0, 12.0, 12.0, 0.5]),
        (world_edges, [55.0, 55.0, 90.0, -17.0, -90.0], [180.0, -180.0, 0.0, 176.0, -180.0]),
        (us_index, rng.uniform(24.5, 49.4, 500).tolist(), rng.uniform(-124.8, -66.9, 500).tolist()),
    ):
        assert index.covering_many(lats, lons) == [
            index.covering(lat, lon) for lat, lon in zip(lats, lons, strict=True)
        ]
    assert squares.covering_many([], []) == []
    lat32, lon32 = np.float32(48.999996), np.float32(-99.15676)  # not floats: covering() converts
    assert us_index.covering_many([lat32], [lon32]) == [us_index.covering(lat32, lon32)]
    with pytest.raises(CoordinateError):
        squares.covering_many([0.5, math.nan], [0.5, 0.5])
    with pytest.raises(CoordinateError):
        squares.covering_many([0.5], [180.5])
