"""Batch throughput and memory: ``coverlookup batch`` vs pandas + geopandas, same run, same data.

    python benchmarks/bench_batch.py [--rows 1000000] [--big-rows 4000000] [--keep DIR]

Writes a CSV of random US sites (ZIP centroids from the ``zipcodes`` package jittered by ~5 km,
plus 10% uniform over the lower-48 box, so some fall outside every territory), then runs, each in
its own child process so peak RSS is that pipeline's alone:

* ours: ``CoverageIndex.from_geojson`` on the territories, then the batch runner over the file in
  bounded chunks (the code ``coverlookup batch --geojson`` runs, GC settings included);
* geopandas: ``read_file`` on the same territories, then ``pandas.read_csv`` +
  ``geopandas.sjoin(predicate="intersects")`` + ``to_csv``.

Territories: ``../shared/data/us-retail-territories/utilities-territories.geojson``. Prints rows/s
of the lookup work (territory loading timed apart), peak RSS, and ours on ``--big-rows`` to show
memory does not grow with the file. Targets: >= 2x geopandas' rows/s; peak RSS < 1 GiB, flat.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("COVERLOOKUP_SHARED", REPO.parent / "shared"))
US_FILE = SHARED / "data" / "us-retail-territories" / "utilities-territories.geojson"
sys.path.insert(0, str(REPO))  # run from a clone without installing

US_BOX = (24.5, 49.4, -124.8, -66.9)  # south, north, west, east
NAME_PROPERTY = "name"


def write_sites(path: Path, rows: int, seed: int = 7) -> None:
    """``id,lat,lon`` rows: jittered ZIP centroids, and 10% uniform over the lower-48 box."""
    import numpy as np
    import zipcodes

    rng = np.random.default_rng(seed)
    centroids = np.array(
        [
            (float(z["lat"]), float(z["long"]))
            for z in zipcodes.list_all()
            if z.get("zip_code_type") == "STANDARD" and z.get("lat") and z.get("long")
        ]
    )
    south, north, west, east = US_BOX
    block = 500_000
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write("id,lat,lon\n")
        for start in range(0, rows, block):
            n = min(block, rows - start)
            pick = centroids[rng.integers(0, len(centroids), n)]
            lat = np.clip(pick[:, 0] + rng.normal(0, 0.045, n), -90, 90)
            lon = np.clip(pick[:, 1] + rng.normal(0, 0.055, n), -180, 180)
            uniform = rng.random(n) < 0.1
            lat[uniform] = rng.uniform(south, north, uniform.sum())
            lon[uniform] = rng.uniform(west, east, uniform.sum())
            ids = np.arange(start, start + n)
            out.write(
                "".join(
                    f"{i},{a:.6f},{b:.6f}\n"
                    for i, a, b in zip(ids.tolist(), lat.tolist(), lon.tolist(), strict=True)
                )
            )


# --- the two pipelines, each run in a child process ----------------------------------------------


def child_ours(input_path: str, output_path: str, territories: str) -> dict:
    import gc

    from coverlookup.batch import BatchRunner
    from coverlookup.index import CoverageIndex

    t0 = time.perf_counter()
    index = CoverageIndex.from_geojson(territories, name_property=NAME_PROPERTY)
    t1 = time.perf_counter()
    gc.freeze()  # as `coverlookup batch` does
    gc.set_threshold(50_000, 20, 100)
    with open(input_path, "rb") as source, open(output_path, "w", newline="") as sink:
        summary = BatchRunner(index).run(source, sink)
    t2 = time.perf_counter()
    return {"load_s": t1 - t0, "work_s": t2 - t1, "rows": summary.rows, "errors": summary.errors}


def child_geopandas(input_path: str, output_path: str, territories: str) -> dict:
    import geopandas
    import pandas

    t0 = time.perf_counter()
    zones = geopandas.read_file(territories)[[NAME_PROPERTY, "geometry"]]
    t1 = time.perf_counter()
    sites = pandas.read_csv(input_path)
    points = geopandas.GeoDataFrame(
        sites, geometry=geopandas.points_from_xy(sites["lon"], sites["lat"]), crs="EPSG:4326"
    )
    joined = geopandas.sjoin(points, zones.to_crs("EPSG:4326"), how="left", predicate="intersects")
    matches = int(joined["index_right"].notna().sum())
    joined.drop(columns="geometry").to_csv(output_path, index=False)
    t2 = time.perf_counter()
    return {"load_s": t1 - t0, "work_s": t2 - t1, "rows": len(sites), "matches": matches}


def peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM: unlike ru_maxrss, not inherited across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(which: str, input_path: Path, output_path: Path, territories: Path) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        which,
        str(input_path),
        str(output_path),
        str(territories),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{which} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def count_our_matches(output_path: Path) -> int:
    import pandas

    total = 0
    for part in pandas.read_csv(output_path, usecols=["match_count"], chunksize=1_000_000):
        total += int(part["match_count"].fillna(0).sum())
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--big-rows", type=int, default=4_000_000, help="0 to skip")
    parser.add_argument("--territories", type=Path, default=US_FILE)
    parser.add_argument("--keep", type=Path, help="keep the generated files in this directory")
    parser.add_argument("--child", nargs=4, metavar=("WHICH", "IN", "OUT", "TERRITORIES"))
    args = parser.parse_args()
    if args.child:
        which, input_path, output_path, territories = args.child
        result = (child_ours if which == "ours" else child_geopandas)(
            input_path, output_path, territories
        )
        result["peak_rss_mib"] = peak_rss_mib()
        print(json.dumps(result))
        return
    if not args.territories.is_file():
        sys.exit(f"territories not found: {args.territories}")
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        sizes = [args.rows] + ([args.big_rows] if args.big_rows else [])
        inputs = {}
        for rows in sizes:
            inputs[rows] = work / f"sites-{rows}.csv"
            t = time.perf_counter()
            write_sites(inputs[rows], rows)
            size_mib = inputs[rows].stat().st_size / 2**20
            print(
                f"wrote {rows:,} sites ({size_mib:.0f} MiB) in {time.perf_counter() - t:.1f}s",
                flush=True,
            )
        results = {}
        for name, rows in (("ours", args.rows), ("geopandas", args.rows)):
            out = work / f"out-{name}-{rows}.csv"
            results[(name, rows)] = run_child(name, inputs[rows], out, args.territories)
            if name == "ours":
                results[(name, rows)]["matches"] = count_our_matches(out)
            print(f"{name} {rows:,}: {results[(name, rows)]}", flush=True)
        if args.big_rows and args.big_rows != args.rows:
            rows = args.big_rows
            out = work / f"out-ours-{rows}.csv"
            results[("ours", rows)] = run_child("ours", inputs[rows], out, args.territories)
            print(f"ours {rows:,}: {results[('ours', rows)]}", flush=True)

    print()
    print(
        f"{'pipeline':<11} {'rows':>10} {'load s':>7} {'work s':>7} {'rows/s':>10} {'peak RSS':>10}"
    )
    for (name, rows), r in results.items():
        print(
            f"{name:<11} {rows:>10,} {r['load_s']:>7.1f} {r['work_s']:>7.1f} "
            f"{rows / r['work_s']:>10,.0f} {r['peak_rss_mib']:>7.0f} MiB"
        )
    ours, theirs = results[("ours", args.rows)], results[("geopandas", args.rows)]
    speedup = theirs["work_s"] / ours["work_s"]
    print(f"\nours / geopandas rows/s: {speedup:.2f}x (target >= 2x)")
    end_to_end = (theirs["load_s"] + theirs["work_s"]) / (ours["load_s"] + ours["work_s"])
    print(f"including territory loading: {end_to_end:.2f}x")
    print(f"matches found: ours {ours['matches']:,}, geopandas {theirs['matches']:,}")
    if args.big_rows and args.big_rows != args.rows:
        big = results[("ours", args.big_rows)]
        print(
            f"peak RSS ours {args.rows:,} rows: {ours['peak_rss_mib']:.0f} MiB, "
            f"{args.big_rows:,} rows: {big['peak_rss_mib']:.0f} MiB (target < 1024 MiB, flat)"
        )


if __name__ == "__main__":
    main()
