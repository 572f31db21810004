"""``CoverageIndex``: exact, fast point-in-territory answers from a snapshot.

Build: every entry with a geometry (a geographic entry's GeoJSON document, a data set's DCAT
spatial coverage) becomes a *territory*; territories are numbered smallest geodesic area first,
so match lists come out most specific first without sorting. Three structures answer queries:

* a sparse cell grid (``_grid.py``): cells wholly inside a territory answer without a polygon
  test; only cells a boundary passes through need one;
* prepared shapely geometries for that exact test (``intersects`` = covers for a point, so a
  point on the boundary is inside);
* an rtree R-tree over territory bounds, for ``nearest``.

The index is immutable. Its compiled form (WKB + numpy arrays + the grid) is saved in the
snapshot's ``index/`` directory so a service starts in well under a second; a refresh builds a
new index and the caller swaps the reference.

``boundary_distance_m`` of a ``lookup`` match is computed on first access: it needs a
nearest-edge search that costs more than the lookup itself, and bulk callers rarely want it
(``lookup_many`` leaves it None unless asked, and shares one immutable match per territory).

Entries kept but never matched by point: logical entries, entries whose geometry is missing or
rejected (see ``findings``), and data sets that give only a ``dcat:centroid``: a point has no area,
so it is indexed as a point that only ``nearest`` finds (no invented buffer).

Modules: ``_build`` (entries -> geometries), ``_grid`` (the cell grid), ``_compiled`` (the saved
form), ``_geodesy`` (areas, edge distances), ``_matches`` (lazy matches, coordinate checks).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from itertools import islice, pairwise
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from coverlookup import _compiled
from coverlookup._build import entry_geometry, read_geojson_source
from coverlookup._geodesy import (
    KM_PER_DEG_LAT,
    EdgeFrame,
    distance_to_edges,
    distances_to_edges,
    edge_frames,
    geod,
    geodesic_area,
    intersects_xy,
)
from coverlookup._grid import DEFAULT_SCALE, Grid, build_grid, cell_key, cell_keys, expand
from coverlookup._matches import check_array, check_coordinate, point_match
from coverlookup.errors import (
    CoordinateError,
    NotFoundError,
    UsageError,
)
from coverlookup.findings import Finding
from coverlookup.model import Entry, Match, Server
from coverlookup.snapshot import Snapshot, load_snapshot, resolve_snapshot_dir

log = logging.getLogger(__name__)

_REAL = (int, float, np.integer, np.floating)


# --- the index -----------------------------------------------------------------------------------


class CoverageIndex:
    """Which entries' territories contain a point. Immutable once built."""

    def __init__(
        self,
        *,
        snapshot_id: str,
        created: str,
        servers: Sequence[Server],
        entries: Sequence[Entry],
        territory_keys: Sequence[str],
        geometries: Sequence[BaseGeometry],
        areas: np.ndarray,
        grid: Grid,
        findings: Sequence[Finding] = (),
        path: Path | None = None,
    ):
        self.snapshot_id = snapshot_id
        self.created = created
        self.path = path
        self.findings: list[Finding] = list(findings)
        self.servers: Mapping[str, Server] = MappingProxyType({s.id: s for s in servers})
        self.entries: Mapping[str, Entry] = MappingProxyType({e.key: e for e in entries})
        by_url = {s.metadata_url: s for s in servers}
        self._keys = list(territory_keys)
        self._geoms = (
            np.asarray(geometries, dtype=object) if len(geometries) else np.empty(0, object)
        )
        shapely.prepare(self._geoms)
        self._areas = np.asarray(areas, dtype=np.float64)
        self._territory_of = {key: t for t, key in enumerate(self._keys)}
        self._base: list[Match] = []
        for t, key in enumerate(self._keys):
            entry = self.entries[key]
            server = by_url.get(entry.server_url)
            self._base.append(Match(entry, server, None, None, float(self._areas[t])))
        self._grid = grid
        self._scale = grid.scale
        self._ncols = grid.ncols
        # The scalar path's copy of the grid, built on its first use (bulk callers never need it):
        # one hash probe per point, where a bisection of a list of Python ints chases a pointer
        # per step (and a numpy call costs more still).
        self._cells: dict[int, tuple[int, ...]] | None = None
        self._big: list[int] = grid.big.tolist()
        self._big_bounds = {t: tuple(self._geoms[t].bounds) for t in self._big}
        self._masks: dict[tuple[Any, ...], np.ndarray] = {}
        self._frames: list[EdgeFrame | None] | None = None  # built on first use, or by warm()
        self._frame_arrays: tuple[np.ndarray, np.ndarray] | None = None  # (params, edges)
        self._rtree: Any = None

    # construction --------------------------------------------------------------------------------

    @classmethod
    def from_snapshot(cls, snapshot: Snapshot, *, scale: int = DEFAULT_SCALE) -> CoverageIndex:
        """Build from a snapshot (in memory or loaded); nothing is written."""
        findings: list[Finding] = []
        by_document: dict[str, tuple[BaseGeometry | None, bool]] = {}
        pairs: list[tuple[str, BaseGeometry]] = []
        for entry in snapshot.entries:
            geom = entry_geometry(snapshot, entry, findings, by_document)
            if geom is not None:
                pairs.append((entry.key, geom))
        return cls._assemble(
            snapshot_id=snapshot.id,
            created=snapshot.created,
            servers=snapshot.servers,
            entries=snapshot.entries,
            pairs=pairs,
            findings=findings,
            scale=scale,
            path=snapshot.path,
        )

    @classmethod
    def _assemble(
        cls,
        *,
        snapshot_id: str,
        created: str,
        servers: Sequence[Server],
        entries: Sequence[Entry],
        pairs: list[tuple[str, BaseGeometry]],
        findings: list[Finding],
        scale: int,
        path: Path | None,
    ) -> CoverageIndex:
        areas = np.array([geodesic_area(g) for _, g in pairs], dtype=np.float64)
        order = sorted(range(len(pairs)), key=lambda i: (areas[i], pairs[i][0]))
        keys = [pairs[i][0] for i in order]
        geoms = [pairs[i][1] for i in order]
        areas = areas[order] if len(order) else areas
        grid = build_grid(geoms, scale)
        return cls(
            snapshot_id=snapshot_id,
            created=created,
            servers=servers,
            entries=entries,
            territory_keys=keys,
            geometries=geoms,
            areas=areas,
            grid=grid,
            findings=findings,
            path=path,
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, save: bool = True) -> CoverageIndex:
        """Load a snapshot (root or snapshot directory), from its compiled index when present.

        Without a compiled index one is built and, when ``save`` is true, written beside the
        snapshot (failure to write, e.g. a read-only directory, is logged, not raised).
        """
        directory = resolve_snapshot_dir(path)
        snapshot = load_snapshot(directory)
        compiled = _compiled.read(directory / "index", snapshot.id)
        if compiled is not None:
            keys, geoms, areas, grid, findings = compiled
            known = {e.key for e in snapshot.entries}
            if all(k in known for k in keys):
                return cls(
                    snapshot_id=snapshot.id,
                    created=snapshot.created,
                    servers=snapshot.servers,
                    entries=snapshot.entries,
                    territory_keys=keys,
                    geometries=geoms,
                    areas=areas,
                    grid=grid,
                    findings=findings,
                    path=directory,
                )
            log.warning("%s: compiled index does not match the snapshot; rebuilding", directory)
        index = cls.from_snapshot(snapshot)
        if save:
            index.save(directory / "index")
        return index

    def save(self, directory: str | os.PathLike[str]) -> bool:
        """Write the compiled form atomically; False (logged) if the directory is not writable."""
        try:
            _compiled.write(
                Path(directory),
                self.snapshot_id,
                self._keys,
                self._geoms,
                self._areas,
                self._grid,
                self.findings,
            )
        except OSError as exc:
            log.warning("could not save the compiled index to %s: %s", directory, exc)
            return False
        return True

    @classmethod
    def from_geojson(
        cls,
        path: str | os.PathLike[str],
        *,
        name_property: str | None = None,
        id_property: str | None = None,
        scale: int = DEFAULT_SCALE,
    ) -> CoverageIndex:
        """Index a GIS export directly: each polygonal feature becomes a geographic entry."""
        source = read_geojson_source(Path(path), name_property, id_property)
        return cls._assemble(
            snapshot_id=source.snapshot_id,
            created=source.created,
            servers=[source.server],
            entries=source.entries,
            pairs=source.pairs,
            findings=source.findings,
            scale=scale,
            path=None,
        )

    @classmethod
    def demo(cls) -> CoverageIndex:
        """The embedded demo federation shipped with the package."""
        from coverlookup.demo import snapshot_path

        return cls.load(snapshot_path())

    # access --------------------------------------------------------------------------------------

    def server(self, server_id: str) -> Server:
        try:
            return self.servers[server_id]
        except KeyError:
            raise NotFoundError(f"no server with id {server_id!r}") from None

    def entry(self, key: str) -> Entry:
        try:
            return self.entries[key]
        except KeyError:
            raise NotFoundError(f"no entry with key {key!r}") from None

    def geometry(self, key: str) -> BaseGeometry | None:
        """The indexed geometry of an entry (None for entries without one)."""
        self.entry(key)
        t = self._territory_of.get(key)
        return None if t is None else self._geoms[t]

    def entry_geojson(self, key: str) -> dict[str, Any]:
        """A GeoJSON Feature with the indexed (repaired, WGS 84) geometry of an entry."""
        entry = self.entry(key)
        geom = self.geometry(key)
        t = self._territory_of.get(key)
        return {
            "type": "Feature",
            "id": key,
            "properties": {
                "key": key,
                "id": entry.id,
                "name": entry.name,
                "type": entry.type,
                "metadata_url": entry.server_url,
                "area_m2": None if t is None else round(float(self._areas[t]), 1),
            },
            "geometry": None if geom is None else shapely.geometry.mapping(geom),
        }

    def stats(self) -> dict[str, Any]:
        polygonal = sum(1 for g in self._geoms if g.geom_type != "Point")
        return {
            "snapshot_id": self.snapshot_id,
            "created": self.created,
            "servers": len(self.servers),
            "entries": len(self.entries),
            "geometries": len(self._keys),
            "polygon_territories": polygonal,
            "point_only_entries": len(self._keys) - polygonal,
            "entries_without_geometry": len(self.entries) - len(self._keys),
            "vertices": int(shapely.get_num_coordinates(self._geoms).sum()),
            "grid_cell_deg": 1.0 / self._scale,
            "grid_cells": len(self._grid.keys),
            "grid_bytes": self._grid.nbytes(),
            "unrasterised_territories": len(self._big),
            "findings": len(self.findings),
        }

    # queries -------------------------------------------------------------------------------------

    def lookup(
        self,
        lat: float,
        lon: float,
        *,
        commodity: str | None = None,
        capability: str | None = None,
        infrastructure: str | None = None,
        type: str | None = None,
    ) -> list[Match]:
        """Entries whose territory covers the point (boundary included), smallest first."""
        lat, lon = check_coordinate(lat, lon)
        found = self._covering(lat, lon, self._mask(commodity, capability, infrastructure, type))
        base = self._base
        return [point_match(base[t], self, t, lon, lat) for t in found]

    def covering(
        self,
        lat: float,
        lon: float,
        *,
        commodity: str | None = None,
        capability: str | None = None,
        infrastructure: str | None = None,
        type: str | None = None,
    ) -> list[int]:
        """Numbers of the territories covering the point, smallest first: what :meth:`lookup`
        answers, before any match is built. For callers answering many points at once, with
        :meth:`territory_match` and :meth:`boundary_distances`."""
        lat, lon = check_coordinate(lat, lon)
        return self._covering(lat, lon, self._mask(commodity, capability, infrastructure, type))

    def _covering(self, lat: float, lon: float, mask: np.ndarray | None) -> list[int]:
        found = self._locate(lon, lat)
        if lon == 180.0 or lon == -180.0:
            # The same meridian: a territory split at the antimeridian touches it from both sides.
            found = sorted(set(found).union(self._locate(-lon, lat)))
        if mask is None:
            return found
        return [t for t in found if mask[t]]

    def covering_many(self, lats: Sequence[float], lons: Sequence[float]) -> list[list[int]]:
        """:meth:`covering` with no filters for each point, in one call: for a server answering
        a batch of requests, whose per-point cost is mostly the call itself."""
        if len(lats) != len(lons):
            raise UsageError("lats and lons differ in length")
        locate = self._locate
        out: list[list[int]] = []
        for lat, lon in zip(lats, lons, strict=True):
            if type(lat) is float and type(lon) is float and -90.0 <= lat <= 90.0:
                if -180.0 < lon < 180.0:  # a plain point: no checks, filters or antimeridian
                    out.append(locate(lon, lat))
                    continue
            out.append(self.covering(lat, lon))  # checks and converts; the antimeridian
        return out

    def territory_match(self, t: int) -> Match:
        """The match for territory number ``t`` with no point-specific distance."""
        return self._base[t]

    def _locate(self, lon: float, lat: float) -> list[int]:
        out = []
        cells = self._cells if self._cells is not None else self._cell_dict()
        for v in cells.get(cell_key(lon, lat, self._scale), ()):
            if v >= 0:
                out.append(v)
            elif intersects_xy(self._geoms[~v], lon, lat):
                out.append(~v)
        if self._big:
            for t in self._big:
                minx, miny, maxx, maxy = self._big_bounds[t]
                inside = minx <= lon <= maxx and miny <= lat <= maxy
                if inside and intersects_xy(self._geoms[t], lon, lat):
                    out.append(t)
            out.sort()
        return out

    def _cell_dict(self) -> dict[int, tuple[int, ...]]:
        grid = self._grid
        ids = iter(grid.ids.tolist())
        runs = [tuple(islice(ids, n)) for n in np.diff(grid.offsets).tolist()]
        self._cells = dict(zip(grid.keys.tolist(), runs, strict=True))
        return self._cells

    def lookup_many(
        self,
        lats: Any,
        lons: Any,
        *,
        commodity: str | None = None,
        capability: str | None = None,
        infrastructure: str | None = None,
        type: str | None = None,
        boundary_distance: bool = False,
    ) -> list[list[Match]]:
        """One match list per point, in input order (vectorised over numpy arrays).

        Matches are shared, immutable objects with ``boundary_distance_m=None`` unless
        ``boundary_distance`` is true, in which case each carries its own (measured lazily).
        """
        lat_arr = check_array("lats", lats, 90.0)
        lon_arr = check_array("lons", lons, 180.0)
        if len(lat_arr) != len(lon_arr):
            raise CoordinateError(
                f"lats and lons differ in length ({len(lat_arr)} and {len(lon_arr)})"
            )
        n = len(lat_arr)
        query, territory = self.locate_many(lat_arr, lon_arr)
        mask = self._mask(commodity, capability, infrastructure, type)
        if mask is not None and len(territory):
            keep = mask[territory]
            query, territory = query[keep], territory[keep]
        base = self._base
        bounds = np.searchsorted(query, np.arange(n + 1)).tolist()
        # A million small acyclic lists would otherwise trigger many full GC passes.
        with _gc_paused():
            if boundary_distance:
                lon_list, lat_list = lon_arr.tolist(), lat_arr.tolist()
                flat = [
                    point_match(base[t], self, t, lon_list[q], lat_list[q])
                    for q, t in zip(query.tolist(), territory.tolist(), strict=True)
                ]
            else:
                flat = [base[t] for t in territory.tolist()]
            return [flat[a:b] for a, b in pairwise(bounds)]

    def locate_many(self, lats: np.ndarray, lons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(point number, territory number) pairs covering the points, sorted; no validation."""
        lat_arr = np.asarray(lats, dtype=np.float64)
        lon_arr = np.asarray(lons, dtype=np.float64)
        edge = np.flatnonzero(np.abs(lon_arr) == 180.0)
        point = np.arange(len(lat_arr), dtype=np.int64)
        if len(edge):
            lat_arr = np.concatenate((lat_arr, lat_arr[edge]))
            lon_arr = np.concatenate((lon_arr, -lon_arr[edge]))
            point = np.concatenate((point, edge))
        query, ids = expand(self._grid, cell_keys(lon_arr, lat_arr, self._scale))
        boundary = ids < 0
        territory = np.where(boundary, ~ids, ids).astype(np.int64)
        if boundary.any():
            where = np.flatnonzero(boundary)
            order = np.argsort(territory[where], kind="stable")
            where = where[order]
            tested = territory[where]
            starts = np.flatnonzero(np.diff(tested, prepend=-1))
            ends = np.append(starts[1:], len(tested))
            inside = np.zeros(len(where), dtype=bool)
            for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
                q = query[where[a:b]]
                inside[a:b] = shapely.intersects_xy(self._geoms[tested[a]], lon_arr[q], lat_arr[q])
            keep = ~boundary
            keep[where[inside]] = True
            query, territory = query[keep], territory[keep]
        if self._big:
            query, territory = self._add_big(query, territory, lon_arr, lat_arr)
        query = point[query]
        if len(edge) or self._big:
            order = np.lexsort((territory, query))
            query, territory = query[order], territory[order]
            fresh = np.ones(len(query), dtype=bool)
            fresh[1:] = (query[1:] != query[:-1]) | (territory[1:] != territory[:-1])
            query, territory = query[fresh], territory[fresh]
        return query, territory

    def _add_big(
        self, query: np.ndarray, territory: np.ndarray, lons: np.ndarray, lats: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        queries, territories = [query], [territory]
        for t in self._big:
            minx, miny, maxx, maxy = self._big_bounds[t]
            near = np.flatnonzero((lons >= minx) & (lons <= maxx) & (lats >= miny) & (lats <= maxy))
            hit = near[shapely.intersects_xy(self._geoms[t], lons[near], lats[near])]
            queries.append(hit.astype(np.int64))
            territories.append(np.full(len(hit), t, dtype=np.int64))
        return np.concatenate(queries), np.concatenate(territories)

    def nearest(
        self,
        lat: float,
        lon: float,
        max_km: float,
        *,
        commodity: str | None = None,
        capability: str | None = None,
        infrastructure: str | None = None,
        type: str | None = None,
        limit: int = 10,
    ) -> list[Match]:
        """Territories within ``max_km`` of the point, closest first (``distance_m`` 0 inside)."""
        lat, lon = check_coordinate(lat, lon)
        if isinstance(max_km, bool) or not isinstance(max_km, _REAL):
            raise UsageError(f"max_km must be a number, got {max_km!r}")
        if not (0 <= max_km < 20_000):
            raise UsageError(f"max_km {max_km!r} must be between 0 and 20000")
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
            raise UsageError(f"limit must be a positive integer, got {limit!r}")
        mask = self._mask(commodity, capability, infrastructure, type)
        found = []
        max_m = max_km * 1000.0
        for t in self._candidates_near(lon, lat, max_km):
            if mask is not None and not mask[t]:
                continue
            distance = self._distance(t, lon, lat)
            if distance <= max_m:
                found.append((distance, t))
        found.sort(key=lambda item: (item[0], item[1]))
        out = []
        for distance, t in found[:limit]:
            base = self._base[t]
            if self._geoms[t].geom_type == "Point":
                boundary = None
            elif distance > 0:
                boundary = distance
            else:
                boundary = self._boundary_distance(t, lon, lat)
            out.append(Match(base.entry, base.server, boundary, distance, base.area_m2))
        return out

    def _candidates_near(self, lon: float, lat: float, max_km: float) -> set[int]:
        dlat = max_km / KM_PER_DEG_LAT
        south, north = max(-90.0, lat - dlat), min(90.0, lat + dlat)
        widest = math.cos(math.radians(min(90.0, max(abs(south), abs(north)))))
        dlon = 360.0 if widest < 1e-9 else max_km / (111.0 * widest)
        if dlon >= 180.0:
            boxes = [(-180.0, south, 180.0, north)]
        else:
            boxes = [(lon - dlon, south, lon + dlon, north)]
            if lon - dlon < -180.0:
                boxes = [
                    (-180.0, south, lon + dlon, north),
                    (lon - dlon + 360.0, south, 180.0, north),
                ]
            elif lon + dlon > 180.0:
                boxes = [
                    (lon - dlon, south, 180.0, north),
                    (-180.0, south, lon + dlon - 360.0, north),
                ]
        tree = self._tree()
        return {t for box in boxes for t in tree.intersection(box)}

    def _tree(self) -> Any:
        if self._rtree is None:
            import rtree

            bounds = shapely.bounds(self._geoms)
            stream = ((t, tuple(bounds[t]), None) for t in range(len(self._keys)))
            self._rtree = rtree.index.Index(stream) if len(self._keys) else rtree.index.Index()
        return self._rtree

    def _distance(self, t: int, lon: float, lat: float) -> float:
        """Geodesic metres from the point to territory ``t`` (0 when it covers the point)."""
        geom = self._geoms[t]
        if geom.geom_type == "Point":
            return float(geod().inv(lon, lat, geom.x, geom.y)[2])
        if shapely.intersects_xy(geom, lon, lat):
            return 0.0
        return self._boundary_distance(t, lon, lat)

    def _boundary_distance(self, t: int, lon: float, lat: float) -> float | None:
        """Geodesic metres to the nearest edge of territory ``t``.

        The nearest boundary point is found in the territory's conformal frame (see
        ``_geodesy``), then the distance to it is measured on the ellipsoid with pyproj.Geod.
        """
        frames = self._frames
        if frames is None:
            frames = self._edge_frames()
        frame = frames[t]
        if frame is None:  # a point-only entry has no edges
            return None
        return distance_to_edges(frame, lon, lat, self._geoms[t])

    def _edge_frames(self) -> list[EdgeFrame | None]:
        if self._frames is None:
            frames = edge_frames(self._geoms)
            params = np.full((len(frames), 4), np.nan)
            for t, frame in enumerate(frames):
                if frame is not None:
                    params[t] = frame[0]
            edges = np.empty(len(frames), dtype=object)
            edges[:] = [f[1] if f else None for f in frames]
            self._frame_arrays = (params, edges)
            self._frames = frames
        return self._frames

    def boundary_distances(
        self, territories: Sequence[int], lons: Sequence[float], lats: Sequence[float]
    ) -> list[float | None]:
        """``boundary_distance_m`` for many (territory number, point) pairs at once.

        The same numbers as each match's own ``boundary_distance_m``, from one vectorised
        nearest-edge search: a caller answering many points (a server answering concurrent
        requests) pays a fraction of one search per pair. None for point-only territories.
        """
        n = len(territories)
        if n != len(lons) or n != len(lats):
            raise UsageError("territories, lons and lats differ in length")
        if n == 1:  # nothing to share: the scalar search is cheaper
            return [self._boundary_distance(territories[0], lons[0], lats[0])]
        if n == 0:
            return []
        self._edge_frames()
        assert self._frame_arrays is not None
        params, edges = self._frame_arrays
        t = np.asarray(territories, dtype=np.int64)
        pt = params[t]
        areal = ~np.isnan(pt[:, 1])  # point-only territories have no edges
        if areal.all():
            lon_all = np.asarray(lons, dtype=np.float64)
            lat_all = np.asarray(lats, dtype=np.float64)
            out = distances_to_edges(pt, edges[t], lon_all, lat_all, self._geoms[t]).tolist()
            return out  # type: ignore[no-any-return]
        values: list[float | None] = [None] * n
        which = np.flatnonzero(areal)
        if len(which):
            lon_arr = np.asarray(lons, dtype=np.float64)[which]
            lat_arr = np.asarray(lats, dtype=np.float64)[which]
            tw = t[which]
            found = distances_to_edges(pt[which], edges[tw], lon_arr, lat_arr, self._geoms[tw])
            for i, value in zip(which.tolist(), found.tolist(), strict=True):
                values[i] = value
        return values

    def warm(self) -> CoverageIndex:
        """Build now what the first queries would otherwise build: the scalar grid, every
        territory's edge frame (for ``boundary_distance_m``) and the R-tree (for ``nearest``).
        Returns the index."""
        if self._cells is None:
            self._cell_dict()
        self._edge_frames()
        self._tree()
        return self

    def _mask(
        self,
        commodity: str | None,
        capability: str | None,
        infrastructure: str | None,
        type: str | None,
    ) -> np.ndarray | None:
        wanted = (commodity, capability, infrastructure, type)
        if wanted == (None, None, None, None):
            return None
        for name, value in zip(
            ("commodity", "capability", "infrastructure", "type"), wanted, strict=True
        ):
            if value is not None and not isinstance(value, str):
                raise UsageError(f"{name} filter must be a string, got {value!r}")
        mask = self._masks.get(wanted)
        if mask is None:
            mask = np.array(
                [
                    (commodity is None or commodity in m.entry.commodity_types)
                    and (capability is None or capability in m.entry.capabilities)
                    and (infrastructure is None or infrastructure in m.entry.infrastructure_types)
                    and (type is None or type == m.entry.type)
                    for m in self._base
                ],
                dtype=bool,
            )
            if len(self._masks) < 256:
                self._masks[wanted] = mask
        return mask

    def __repr__(self) -> str:
        return (
            f"<CoverageIndex {self.snapshot_id}: {len(self.entries)} entries, "
            f"{len(self._keys)} geometries>"
        )


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
