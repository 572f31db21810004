"""The embedded demo federation: its files, its snapshot, and that the two agree."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from coverlookup import demo
from coverlookup.index import CoverageIndex
from coverlookup.snapshot import load_snapshot

REPO = Path(__file__).resolve().parent.parent


def test_repository_data_dir_is_the_packaged_demo() -> None:
    assert (REPO / "data" / "demo").resolve() == demo.DEMO_ROOT
    assert demo.snapshot_path().is_dir() and demo.federation_path().is_dir()


def test_every_host_is_a_reserved_example_name() -> None:
    hosts = [p.name for p in demo.federation_path().iterdir() if p.is_dir()]
    assert len(hosts) == 8
    assert all(host.endswith(".example") for host in hosts), hosts


def test_territory_files_match_their_generator() -> None:
    for rel, document in demo.territory_documents().items():
        on_disk = (demo.federation_path() / rel).read_bytes()
        assert on_disk == orjson.dumps(document) + b"\n", rel


def test_territories_are_irregular_not_rectangles() -> None:
    from shapely.geometry import shape

    for rel, document in demo.territory_documents().items():
        geometry = document.get("geometry") or document
        if "features" in document:
            geometry = document["features"][0]["geometry"]
        geom = shape(geometry)
        assert geom.is_valid, rel
        for part in getattr(geom, "geoms", [geom]):
            assert len(part.exterior.coords) > 100, rel
            assert part.area < 0.9 * part.envelope.area, rel


def test_demo_shapes_cover_both_spec_versions() -> None:
    snapshot = load_snapshot(demo.snapshot_path())
    shapes = sorted(s.shape for s in snapshot.servers)
    assert shapes == ["cds-2023"] + ["cds-2025"] * 5
    by_name = {s.name: s for s in snapshot.servers}
    holding = by_name["Meridian Energy Holdings"]
    assert holding.related_metadata == (
        "https://meridianpower.example/.well-known/cds-server-metadata.json",
        "https://meridiangas.example/.well-known/cds-server-metadata.json",
    )
    mpl = by_name["Meridian Power & Light"]
    assert dict(mpl.links) == {
        "oauth_metadata": "https://meridianpower.example/.well-known/oauth-authorization-server",
        "ieee1547_setup": "https://meridianpower.example/smart-inverters/setup",
    }
    legacy = by_name["Alder Falls Municipal Utilities"]
    assert legacy.metadata_url.endswith("/.well-known/carbon-data-spec.json")
    # The IOU's coverage listing has two pages; both were followed.
    mpl_entries = sorted(e.id for e in snapshot.entries if e.server_url == mpl.metadata_url)
    assert mpl_entries == ["mpl-commercial", "mpl-electric"]
    kinds = sorted((d.kind, d.url.rsplit("/", 1)[-1]) for d in snapshot.documents)
    assert ("coverage", "coverage-2.json") in kinds
    assert all(d.error is None for d in snapshot.documents)


def test_snapshot_is_what_our_crawler_makes_of_the_mirror() -> None:
    """Fails when data/demo changed without ``python -m coverlookup.demo build``."""
    from coverlookup.discovery import crawl_sync

    fresh = crawl_sync([str(demo.federation_path())])
    stored = load_snapshot(demo.snapshot_path())
    assert sorted(s.to_dict()["metadata_url"] for s in fresh.servers) == sorted(
        s.metadata_url for s in stored.servers
    )
    assert sorted((s.to_dict() for s in fresh.servers), key=lambda d: d["id"]) == sorted(
        (s.to_dict() for s in stored.servers), key=lambda d: d["id"]
    )
    assert sorted((e.to_dict() for e in fresh.entries), key=lambda d: d["key"]) == sorted(
        (e.to_dict() for e in stored.entries), key=lambda d: d["key"]
    )
    fresh_raw = {d.url: d.sha256 for d in fresh.documents}
    stored_raw = {d.url: d.sha256 for d in stored.documents}
    assert fresh_raw == stored_raw
    manifest = (demo.snapshot_path() / "manifest.json").read_text()
    assert "/work/" not in manifest and str(REPO) not in manifest


def test_demo_index_loads_compiled_and_answers_the_documented_points() -> None:
    index = CoverageIndex.demo()
    stats = index.stats()
    assert (stats["servers"], stats["entries"], stats["geometries"]) == (6, 6, 5)
    assert index.findings == [] or all(f.severity.value != "error" for f in index.findings)

    def ids(lat: float, lon: float) -> list[str]:
        return [m.entry.id for m in index.lookup(lat, lon)]

    assert ids(*demo.POINT_IN_MUNICIPAL) == [
        "afmu-electric",
        "cbwd-district",
        "vcp-service-area",
        "mng-gas",
    ]
    assert ids(*demo.POINT_IN_IOU) == ["mng-gas", "mpl-electric"]
    assert ids(*demo.POINT_OUTSIDE) == []
    near = index.nearest(*demo.POINT_OUTSIDE, 10)
    assert [m.entry.id for m in near] == ["mpl-electric"]


@pytest.mark.parametrize("rel", ["snapshot/manifest.json", "snapshot/index"])
def test_snapshot_parts_ship(rel: str) -> None:
    assert (demo.DEMO_ROOT / rel).exists()


def test_shipped_compiled_index_is_current() -> None:
    """Fails when the compiled index format changed: run ``python -m coverlookup.demo build``."""
    from coverlookup import _compiled

    snapshot = load_snapshot(demo.snapshot_path())
    assert _compiled.read(demo.snapshot_path() / "index", snapshot.id) is not None
