"""The embedded demo federation: fictional CDS servers published as files, plus a snapshot of them.

``coverlookup serve``, ``lookup`` and ``batch`` fall back to this snapshot when given neither
``--snapshot`` nor ``--seed``, so the tool works on a fresh machine with no network.

Layout (inside the package, so it ships in the wheel; ``data/demo`` in the repository links here)::

    _demo/federation/<host>/<path>   what https://<host>/<path> would serve (a host mirror)
    _demo/snapshot/                  a snapshot of that federation, made by our own crawler

Regenerate with ``python -m coverlookup.demo generate`` (territory GeoJSON, deterministic) and
``python -m coverlookup.demo build`` (crawl the mirror, write the snapshot).
"""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)

DEMO_ROOT = Path(__file__).resolve().parent / "_demo"
_REPO_MIRROR = "data/demo/federation"  # the same files, as seen from a clone of the repository

# Well-known documents the demo crawl starts from (the holding company leads to its subsidiaries).
SEED_URLS = (
    "https://meridian-holdings.example/.well-known/cds-server-metadata.json",
    "https://alderfalls.example/.well-known/carbon-data-spec.json",
    "https://valleycleanpower.example/.well-known/cds-server-metadata.json",
    "https://cedarbasinwater.example/.well-known/cds-server-metadata.json",
)

# Points documented in the README and asserted by the tests: (lat, lon) -> what answers.
POINT_IN_MUNICIPAL = (43.85, -120.5)  # Alder Falls (a hole in MP&L), the CCA, water, gas
POINT_IN_IOU = (43.62, -120.95)  # MP&L electric and Meridian gas only
POINT_OUTSIDE = (44.35, -120.7)  # nothing; MP&L electric lies about 5 km south

# One irregular, star-shaped territory: centre, mean radius and harmonics of its boundary.
_Harmonics = tuple[tuple[int, float, float], ...]  # (frequency, amplitude, phase)


def federation_path() -> Path:
    """The host mirror: ``federation/<host>/<path>`` is what ``https://<host>/<path>`` serves."""
    return DEMO_ROOT / "federation"


def snapshot_path() -> Path:
    """The directory of the prebuilt demo snapshot (loadable with ``CoverageIndex.load``)."""
    return DEMO_ROOT / "snapshot"


# --- territory geometry -------------------------------------------------------------------------


def _ring(
    lat0: float, lon0: float, radius_km: float, harmonics: _Harmonics, *, vertices: int
) -> list[list[float]]:
    """A closed, counter-clockwise ring whose radius wanders with the given harmonics."""
    km_per_deg_lat = 111.32
    km_per_deg_lon = 111.32 * math.cos(math.radians(lat0))
    ring: list[list[float]] = []
    for i in range(vertices):
        theta = 2 * math.pi * i / vertices
        r = radius_km * (1 + sum(a * math.sin(f * theta + p) for f, a, p in harmonics))
        lon = lon0 + r * math.cos(theta) / km_per_deg_lon
        lat = lat0 + r * math.sin(theta) / km_per_deg_lat
        ring.append([round(lon, 6), round(lat, 6)])
    ring.append(list(ring[0]))
    return ring


_MUNI = _ring(
    43.852, -120.515, 7.5, ((3, 0.18, 0.4), (5, 0.07, 1.9), (11, 0.03, 0.2)), vertices=180
)
_IOU = _ring(
    43.78,
    -120.66,
    58.0,
    ((2, 0.12, 0.3), (3, 0.09, 2.1), (7, 0.05, 0.9), (13, 0.02, 1.4), (29, 0.008, 0.0)),
    vertices=420,
)
_CCA = _ring(43.93, -120.38, 34.0, ((2, 0.15, 1.2), (4, 0.08, 0.5), (9, 0.03, 2.6)), vertices=300)
_GAS_MAIN = _ring(
    43.70, -120.78, 46.0, ((3, 0.14, 0.8), (5, 0.06, 2.2), (17, 0.015, 0.3)), vertices=360
)
_GAS_EAST = _ring(43.98, -119.95, 9.0, ((2, 0.2, 0.1), (6, 0.05, 1.0)), vertices=120)
_WATER = _ring(43.86, -120.53, 12.5, ((2, 0.1, 2.4), (3, 0.12, 0.7), (8, 0.04, 1.1)), vertices=200)


def _feature(geometry: dict[str, Any], **properties: Any) -> dict[str, Any]:
    return {"type": "Feature", "properties": properties, "geometry": geometry}


def territory_documents() -> dict[str, Any]:
    """Mirror-relative path -> GeoJSON document, for every territory of the federation."""
    hole = list(reversed(_MUNI))  # interior rings run clockwise (RFC 7946 §3.1.6)
    return {
        # 2025 IOU: a Feature whose polygon has the municipal utility cut out as a hole.
        "static.meridianpower.example/territories/electric.geojson": _feature(
            {"type": "Polygon", "coordinates": [_IOU, hole]},
            name="Meridian Power & Light electric service territory",
        ),
        # 2023 municipal utility: a bare geometry, as older servers often publish.
        "alderfalls.example/cds/electric-territory.json": {
            "type": "Polygon",
            "coordinates": [_MUNI],
        },
        "static.valleycleanpower.example/geo/service-area.geojson": {
            "type": "FeatureCollection",
            "features": [
                _feature(
                    {"type": "Polygon", "coordinates": [_CCA]},
                    name="Valley Clean Power service area",
                )
            ],
        },
        "meridiangas.example/cds/gas-territory.geojson": {
            "type": "FeatureCollection",
            "features": [
                _feature(
                    {"type": "MultiPolygon", "coordinates": [[_GAS_MAIN], [_GAS_EAST]]},
                    name="Meridian Natural Gas service territory",
                )
            ],
        },
        "cedarbasinwater.example/cds/district.geojson": _feature(
            {"type": "Polygon", "coordinates": [_WATER]}, name="Cedar Basin Water District"
        ),
    }


def generate(root: Path | None = None) -> list[Path]:
    """Write the territory GeoJSON files into the mirror; returns the paths written."""
    root = root or federation_path()
    written = []
    for rel, doc in territory_documents().items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(orjson.dumps(doc) + b"\n")
        written.append(path)
    return written


# --- snapshot -----------------------------------------------------------------------------------


def build(target: Path | None = None) -> Path:
    """Crawl the mirror with our own crawler and write its snapshot (plain directory) to target."""
    from coverlookup.discovery import crawl_sync
    from coverlookup.snapshot import load_snapshot, write_snapshot

    target = target or snapshot_path()
    snapshot = crawl_sync([str(federation_path())])
    # The shipped manifest should not carry the build machine's paths.
    snapshot.seeds = [_REPO_MIRROR]
    mirrors = snapshot.options.get("mirrors")
    if isinstance(mirrors, dict):
        snapshot.options["mirrors"] = {host: f"{_REPO_MIRROR}/{host}" for host in mirrors}
    with tempfile.TemporaryDirectory(prefix="coverlookup-demo-") as tmp:
        written = write_snapshot(Path(tmp), snapshot, keep=1)
        _compile_index(load_snapshot(written), written)
        if target.exists():
            shutil.rmtree(target)
        # A plain directory, not a root with a 'current' symlink: wheels do not keep symlinks.
        shutil.copytree(written, target)
    return target


def _compile_index(snapshot: Any, directory: Path) -> None:
    """Save the compiled index beside the snapshot, so the demo loads without building."""
    from coverlookup.index import CoverageIndex

    CoverageIndex.from_snapshot(snapshot).save(directory / "index")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coverlookup.demo", description=__doc__)
    parser.add_argument("action", choices=("generate", "build", "path"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.action == "generate":
        for path in generate():
            print(path)
    elif args.action == "build":
        print(build())
    else:
        print(snapshot_path())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
