"""Benchmark CoverageIndex against the usual alternatives on the US retail territories.

    python benchmarks/bench_lookup.py [--geojson PATH] [--single 20000] [--bulk 1000000] [--check]

(a) per point: rtree bbox query + prepared shapely ``contains`` (the textbook approach) vs
    ``CoverageIndex.lookup`` (and ``lookup`` + ``to_dict``, which measures boundary distances);
(b) bulk: ``geopandas.sjoin(points, territories, predicate="within")`` vs ``lookup_many``;
(c) ``CoverageIndex.load`` from the compiled snapshot in a fresh process, and its RSS.
``--check`` also compares ``lookup`` and ``lookup_many`` with a brute-force shapely ``covers``
oracle on 20,000 random points in the US box plus every ZIP centroid of the ``zipcodes`` package.

The snapshot (one server, one entry and GeoJSON document per territory) is built in a temporary
directory and removed afterwards. Needs the ``bench`` extra (geopandas, psutil, zipcodes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import shapely

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from coverlookup.index import CoverageIndex  # noqa: E402
from coverlookup.snapshot import snapshot_from_features, write_snapshot  # noqa: E402

DEFAULT_GEOJSON = REPO.parent / "shared/data/us-retail-territories/utilities-territories.geojson"
SERVER_URL = "https://us.example/.well-known/cds-server-metadata.json"
US_BOX = (-125.0, 24.0, -66.0, 50.0)  # lower 48: west, south, east, north


def build_snapshot(geojson: Path, root: Path) -> Path:
    features = orjson.loads(geojson.read_bytes())["features"]
    snap = snapshot_from_features(
        features,
        server_url=SERVER_URL,
        server_name="US utilities",
        commodity_types=("electricity",),
        seeds=[str(geojson)],
    )
    return write_snapshot(root, snap)


def random_points(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    west, south, east, north = US_BOX
    return rng.uniform(south, north, n), rng.uniform(west, east, n)


def load_in_fresh_process(directory: Path) -> dict[str, float]:
    code = (
        "import json, time, psutil\n"
        "t0 = time.perf_counter()\n"
        "from coverlookup.index import CoverageIndex\n"
        "t1 = time.perf_counter()\n"
        f"index = CoverageIndex.load({str(directory)!r}, save=False)\n"
        "t2 = time.perf_counter()\n"
        "index.lookup(38.58, -121.49)\n"
        "rss = psutil.Process().memory_info().rss\n"
        "print(json.dumps({'import_s': t1 - t0, 'load_s': t2 - t1, 'rss_mb': rss / 2**20}))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_single(index: CoverageIndex, lats: np.ndarray, lons: np.ndarray) -> dict[str, float]:
    import rtree
    from shapely.geometry import Point
    from shapely.prepared import prep

    keys = list(index._keys)
    geoms = [index.geometry(k) for k in keys]
    tree = rtree.index.Index((i, g.bounds, None) for i, g in enumerate(geoms))
    prepared = [prep(g) for g in geoms]
    points = list(zip(lats.tolist(), lons.tolist(), strict=True))

    def textbook(points: list[tuple[float, float]]) -> int:
        total = 0
        for lat, lon in points:
            p = Point(lon, lat)
            candidates = tree.intersection((lon, lat, lon, lat))
            total += sum(1 for i in candidates if prepared[i].contains(p))
        return total

    def ours(points: list[tuple[float, float]]) -> int:
        return sum(len(index.lookup(lat, lon)) for lat, lon in points)

    def ours_dict(points: list[tuple[float, float]]) -> int:
        return sum(len([m.to_dict() for m in index.lookup(lat, lon)]) for lat, lon in points)

    results = {}
    for name, fn in (("textbook", textbook), ("lookup", ours), ("lookup+to_dict", ours_dict)):
        fn(points[:500])  # warm up (GEOS builds prepared-geometry indexes on first use)
        start = time.perf_counter()
        fn(points)
        results[name] = (time.perf_counter() - start) / len(points) * 1e6
    return results


def bench_bulk(index: CoverageIndex, lats: np.ndarray, lons: np.ndarray) -> dict[str, float]:
    import geopandas as gpd

    keys = list(index._keys)
    territories = gpd.GeoDataFrame(
        {"key": keys}, geometry=[index.geometry(k) for k in keys], crs="EPSG:4326"
    )
    start = time.perf_counter()
    points = gpd.GeoDataFrame(geometry=gpd.points_from_xy(lons, lats), crs="EPSG:4326")
    joined = gpd.sjoin(points, territories, predicate="within")
    t_gpd = time.perf_counter() - start
    start = time.perf_counter()
    results = index.lookup_many(lats, lons)
    t_ours = time.perf_counter() - start
    pairs = sum(len(r) for r in results)
    return {"geopandas_s": t_gpd, "lookup_many_s": t_ours, "gpd_pairs": len(joined), "pairs": pairs}


def check_oracle(index: CoverageIndex, geojson: Path, n_random: int) -> dict[str, int]:
    """Brute force: every territory repaired on its own, shapely covers; compare both APIs."""
    import zipcodes
    from shapely.geometry import shape

    features = orjson.loads(geojson.read_bytes())["features"]
    geoms = []
    for feature in features:
        geom = shape(feature["geometry"])
        if not geom.is_valid:
            try:
                geom = shapely.make_valid(geom)
            except shapely.errors.GEOSException:
                geom = geom.buffer(0)
        geoms.append(geom)
    ids = [str(f["properties"]["id"]) for f in features]
    lats, lons = random_points(n_random, seed=11)
    zips = [(float(z["lat"]), float(z["long"])) for z in zipcodes.list_all() if z["lat"]]
    lats = np.concatenate((lats, [z[0] for z in zips]))
    lons = np.concatenate((lons, [z[1] for z in zips]))
    points = shapely.points(lons, lats)
    expected: list[set[str]] = [set() for _ in range(len(lats))]
    for t, geom in enumerate(geoms):
        shapely.prepare(geom)
        minx, miny, maxx, maxy = geom.bounds
        near = np.flatnonzero((lons >= minx) & (lons <= maxx) & (lats >= miny) & (lats <= maxy))
        for i in near[shapely.covers(geom, points[near])]:
            expected[i].add(ids[t])
    many = index.lookup_many(lats, lons)
    bad_single = bad_many = 0
    for i, (lat, lon) in enumerate(zip(lats.tolist(), lons.tolist(), strict=True)):
        if {m.entry.id for m in index.lookup(lat, lon)} != expected[i]:
            bad_single += 1
        if {m.entry.id for m in many[i]} != expected[i]:
            bad_many += 1
    return {
        "points": len(lats),
        "random": n_random,
        "zip_centroids": len(zips),
        "in_two_or_more": sum(len(e) > 1 for e in expected),
        "mismatches_lookup": bad_single,
        "mismatches_lookup_many": bad_many,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--geojson", type=Path, default=DEFAULT_GEOJSON)
    parser.add_argument("--single", type=int, default=20_000, help="points for (a)")
    parser.add_argument("--bulk", type=int, default=1_000_000, help="points for (b)")
    parser.add_argument("--check", action="store_true", help="run the full oracle check")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="coverlookup-bench-") as tmp:
        start = time.perf_counter()
        directory = build_snapshot(args.geojson, Path(tmp))
        t_snapshot = time.perf_counter() - start
        start = time.perf_counter()
        index = CoverageIndex.load(directory)  # no compiled form yet: builds and saves it
        t_build = time.perf_counter() - start
        stats = index.stats()
        print(
            f"snapshot: {stats['entries']} entries, {stats['vertices']} vertices, "
            f"written in {t_snapshot:.1f} s; index built and saved in {t_build:.1f} s; "
            f"grid {stats['grid_cells']} cells of {stats['grid_cell_deg']}°, "
            f"{stats['grid_bytes'] / 2**20:.1f} MiB"
        )
        loaded = load_in_fresh_process(directory)
        lats, lons = random_points(args.single, seed=1)
        single = bench_single(index, lats, lons)
        lats, lons = random_points(args.bulk, seed=2)
        bulk = bench_bulk(index, lats, lons)
        check = check_oracle(index, args.geojson, 20_000) if args.check else None

    ratio_a = single["lookup"] / single["textbook"]
    ratio_b = bulk["geopandas_s"] / bulk["lookup_many_s"]
    rows = [
        ("(a) textbook rtree + prepared contains", f"{single['textbook']:.2f} µs/pt", ""),
        (
            "(a) CoverageIndex.lookup",
            f"{single['lookup']:.2f} µs/pt",
            f"{ratio_a:.2f}x of textbook time (target <= 0.5) "
            f"{'PASS' if ratio_a <= 0.5 else 'FAIL'}",
        ),
        (
            "(a) lookup + to_dict (boundary distances)",
            f"{single['lookup+to_dict']:.2f} µs/pt",
            f"{single['lookup+to_dict'] / single['textbook']:.2f}x of textbook time",
        ),
        (
            f"(b) geopandas.sjoin within, {args.bulk:,} pts",
            f"{bulk['geopandas_s']:.2f} s",
            f"{args.bulk / bulk['geopandas_s'] / 1e6:.2f} M pts/s",
        ),
        (
            f"(b) CoverageIndex.lookup_many, {args.bulk:,} pts",
            f"{bulk['lookup_many_s']:.2f} s",
            f"{args.bulk / bulk['lookup_many_s'] / 1e6:.2f} M pts/s = {ratio_b:.1f}x geopandas "
            f"(target >= 3) {'PASS' if ratio_b >= 3 else 'FAIL'}",
        ),
        (
            "(c) load from compiled snapshot",
            f"{loaded['load_s']:.3f} s",
            f"+ import {loaded['import_s']:.2f} s; RSS {loaded['rss_mb']:.0f} MiB "
            f"(target < 1 s) {'PASS' if loaded['load_s'] < 1 else 'FAIL'}",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print()
    print(f"{'measure':<{width}}  {'time':>14}  notes")
    print("-" * (width + 60))
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>14}  {note}")
    print(
        f"\nmatch pairs in (b): geopandas {bulk['gpd_pairs']:,} (within: boundary excluded), "
        f"ours {bulk['pairs']:,} (boundary included)"
    )
    if check is not None:
        print("\noracle check:", json.dumps(check))
        if check["mismatches_lookup"] or check["mismatches_lookup_many"]:
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
