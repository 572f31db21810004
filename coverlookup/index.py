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
nearest-edge search that costs more than the lookup itself, and bulk callers rarely want it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import hashlib
import logging
import math
import os
from bisect import bisect_left
from collections.abc import Iterator, Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from coverlookup import _compiled
from coverlookup._grid import DEFAULT_SCALE, Grid, build_grid, cell_key, cell_keys, expand
from coverlookup.documents import parse_json
from coverlookup.errors import (
    CoordinateError,
    CoverlookupError,
    NotFoundError,
    UsageError,
)
from coverlookup.findings import Finding, FindingList
from coverlookup.geometry import geometry_from_spatial, read_features, territory_from_geojson
from coverlookup.model import DATASET, GEOGRAPHIC, Entry, Match, Server
from coverlookup.snapshot import Snapshot, load_snapshot, resolve_snapshot_dir

log = logging.getLogger(__name__)

_GEOD = None
_KM_PER_DEG_LAT = 110.574  # the shortest degree of latitude (at the equator): a safe bound


def _geod() -> Any:
    global _GEOD
    if _GEOD is None:
        import pyproj

        _GEOD = pyproj.Geod(ellps="WGS84")
    return _GEOD


# --- the lazy match ------------------------------------------------------------------------------

_PENDING: Any = object()
_SLOTS = {name: Match.__dict__[name] for name in Match.__dataclass_fields__}
_SET_ENTRY = _SLOTS["entry"].__set__
_SET_SERVER = _SLOTS["server"].__set__
_SET_BOUNDARY = _SLOTS["boundary_distance_m"].__set__
_GET_BOUNDARY = _SLOTS["boundary_distance_m"].__get__
_SET_DISTANCE = _SLOTS["distance_m"].__set__
_SET_AREA = _SLOTS["area_m2"].__set__


class _PointMatch(Match):
    """A :class:`Match` for a query point whose ``boundary_distance_m`` is measured on first use."""

    __slots__ = ("_index", "_lat", "_lon", "_territory")

    @property  # type: ignore[override]
    def boundary_distance_m(self) -> float | None:
        value = _GET_BOUNDARY(self)
        if value is _PENDING:
            value = self._index._boundary_distance(self._territory, self._lon, self._lat)
            _SET_BOUNDARY(self, value)
        return value

    @boundary_distance_m.setter
    def boundary_distance_m(self, value: float | None) -> None:
        _SET_BOUNDARY(self, value)


_SET_INDEX = _PointMatch.__dict__["_index"].__set__
_SET_TERRITORY = _PointMatch.__dict__["_territory"].__set__
_SET_LON = _PointMatch.__dict__["_lon"].__set__
_SET_LAT = _PointMatch.__dict__["_lat"].__set__


def _point_match(base: Match, index: CoverageIndex, t: int, lon: float, lat: float) -> Match:
    match = object.__new__(_PointMatch)
    _SET_ENTRY(match, base.entry)
    _SET_SERVER(match, base.server)
    _SET_BOUNDARY(match, _PENDING)
    _SET_DISTANCE(match, None)
    _SET_AREA(match, base.area_m2)
    _SET_INDEX(match, index)
    _SET_TERRITORY(match, t)
    _SET_LON(match, lon)
    _SET_LAT(match, lat)
    return match


# --- coordinates ---------------------------------------------------------------------------------


def check_coordinate(lat: Any, lon: Any) -> tuple[float, float]:
    """``(lat, lon)`` as floats, or CoordinateError naming what is wrong."""
    out = []
    for name, value, limit in (("lat", lat, 90.0), ("lon", lon, 180.0)):
        if type(value) is not float:
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise CoordinateError(f"{name} must be a number, got {value!r}")
            if isinstance(value, np.complexfloating):
                raise CoordinateError(f"{name} must be a real number, got {value!r}")
            value = float(value)
        if not (-limit <= value <= limit):  # also false for NaN
            raise CoordinateError(f"{name} {value!r} is outside [-{limit:g}, {limit:g}]")
        out.append(value)
    return out[0], out[1]


def _check_array(name: str, values: Any, limit: float) -> np.ndarray:
    if not isinstance(values, np.ndarray) and any(type(v) is bool for v in values):
        raise CoordinateError(f"{name} must hold only numbers, not booleans")
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise CoordinateError(f"{name} must be a one-dimensional sequence of numbers")
    if arr.dtype.kind not in "fiu":
        raise CoordinateError(f"{name} must hold only numbers (got {arr.dtype} values)")
    arr = arr.astype(np.float64, copy=False)
    bad = ~(np.abs(arr) <= limit)
    if bad.any():
        i = int(np.argmax(bad))
        raise CoordinateError(f"{name}[{i}] = {arr[i]!r} is outside [-{limit:g}, {limit:g}]")
    return arr


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
        # Plain Python copies for the scalar path: bisect on a list beats a numpy call.
        self._cell_list: list[int] = grid.keys.tolist()
        self._offset_list: list[int] = grid.offsets.tolist()
        self._id_list: list[int] = grid.ids.tolist()
        self._masks: dict[tuple[Any, ...], np.ndarray] = {}
        self._frames: dict[int, tuple[float, BaseGeometry]] = {}
        self._rtree: Any = None

    # construction --------------------------------------------------------------------------------

    @classmethod
    def from_snapshot(cls, snapshot: Snapshot, *, scale: int = DEFAULT_SCALE) -> CoverageIndex:
        """Build from a snapshot (in memory or loaded); nothing is written."""
        findings: list[Finding] = []
        by_document: dict[str, tuple[BaseGeometry | None, bool]] = {}
        pairs: list[tuple[str, BaseGeometry]] = []
        for entry in snapshot.entries:
            geom = _entry_geometry(snapshot, entry, findings, by_document)
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
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        value = parse_json(data)
        uri = path.resolve().as_uri()
        features, found = read_features(value, uri)
        server = Server(metadata_url=uri, shape="geojson", name=path.stem)
        entries: list[Entry] = []
        pairs: list[tuple[str, BaseGeometry]] = []
        seen: set[str] = set()
        for number, feature in enumerate(features):
            props = feature.properties
            raw_id = props.get(id_property) if id_property else feature.feature_id
            if raw_id is None and not id_property:
                raw_id = props.get("id")
            entry_id = str(raw_id) if raw_id is not None else str(number)
            if entry_id in seen:
                found.warning(
                    feature.pointer, "duplicate-id", f"id {entry_id!r} repeats; using '#{number}'"
                )
                entry_id = f"{entry_id}#{number}"
            seen.add(entry_id)
            name = props.get(name_property) if name_property else _guess_name(props)
            entry = Entry(
                server_url=uri,
                id=entry_id,
                type=GEOGRAPHIC,
                name=None if name is None else str(name),
                entity_name=None if name is None else str(name),
                extra=MappingProxyType(dict(props)),
            )
            entries.append(entry)
            pairs.append((entry.key, feature.geometry))
        digest = hashlib.sha256(data).hexdigest()[:12]
        mtime = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc)
        return cls._assemble(
            snapshot_id=f"geojson-{digest}",
            created=mtime.isoformat().replace("+00:00", "Z"),
            servers=[server],
            entries=entries,
            pairs=pairs,
            findings=list(found),
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
        mask = self._mask(commodity, capability, infrastructure, type)
        found = self._locate(lon, lat)
        if lon == 180.0 or lon == -180.0:
            # The same meridian: a territory split at the antimeridian touches it from both sides.
            found = sorted(set(found).union(self._locate(-lon, lat)))
        base = self._base
        return [_point_match(base[t], self, t, lon, lat) for t in found if mask is None or mask[t]]

    def _locate(self, lon: float, lat: float) -> list[int]:
        key = cell_key(lon, lat, self._scale)
        cells = self._cell_list
        i = bisect_left(cells, key)
        if i == len(cells) or cells[i] != key:
            return []
        out = []
        for v in self._id_list[self._offset_list[i] : self._offset_list[i + 1]]:
            if v >= 0:
                out.append(v)
            elif shapely.intersects_xy(self._geoms[~v], lon, lat):
                out.append(~v)
        return out

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
        lat_arr = _check_array("lats", lats, 90.0)
        lon_arr = _check_array("lons", lons, 180.0)
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
                    _point_match(base[t], self, t, lon_list[q], lat_list[q])
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
        query = point[query]
        if len(edge):
            order = np.lexsort((territory, query))
            query, territory = query[order], territory[order]
            fresh = np.ones(len(query), dtype=bool)
            fresh[1:] = (query[1:] != query[:-1]) | (territory[1:] != territory[:-1])
            query, territory = query[fresh], territory[fresh]
        return query, territory

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
        if isinstance(max_km, bool) or not isinstance(max_km, (int, float)):
            raise UsageError(f"max_km must be a number, got {max_km!r}")
        if not (0 <= max_km < 20_000):
            raise UsageError(f"max_km {max_km!r} must be between 0 and 20000")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
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
        dlat = max_km / _KM_PER_DEG_LAT
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
            return float(_geod().inv(lon, lat, geom.x, geom.y)[2])
        if shapely.intersects_xy(geom, lon, lat):
            return 0.0
        return self._boundary_distance(t, lon, lat)

    def _boundary_distance(self, t: int, lon: float, lat: float) -> float | None:
        """Geodesic metres to the nearest edge of territory ``t``.

        The nearest boundary point is found in a territory-local equirectangular frame (degrees
        of longitude scaled to the length of degrees of latitude on the WGS 84 ellipsoid at the
        territory's middle latitude), then the distance to it is measured on the ellipsoid with
        pyproj.Geod. The chosen point is exact for territories of a few degrees; for very tall
        ones it can be a slightly farther boundary point (never a point off the boundary).
        """
        geom = self._geoms[t]
        if geom.geom_type == "Point":
            return None
        frame = self._frames.get(t)
        if frame is None:
            minx, miny, maxx, maxy = geom.bounds
            k = _east_north_ratio((miny + maxy) / 2.0)
            edges = shapely.boundary(geom)
            if minx <= -180.0 or maxx >= 180.0:
                edges = _join_at_antimeridian(edges)
            edges = shapely.transform(edges, lambda xy: xy * np.array([k, 1.0]))
            shapely.prepare(edges)
            frame = self._frames[t] = (k, edges)
        k, edges = frame
        line = shapely.shortest_line(edges, shapely.Point(lon * k, lat))
        (x, y), _ = shapely.get_coordinates(line)
        return float(_geod().inv(lon, lat, x / k, y)[2])

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
        mask = self._masks.get(wanted)
        if mask is None:
            for name, value in zip(
                ("commodity", "capability", "infrastructure", "type"), wanted, strict=True
            ):
                if value is not None and not isinstance(value, str):
                    raise UsageError(f"{name} filter must be a string, got {value!r}")
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


_MERIDIAN_EAST = shapely.LineString([(180.0, -90.0), (180.0, 90.0)])
_MERIDIAN_WEST = shapely.LineString([(-180.0, -90.0), (-180.0, 90.0)])


def _shift(geom: BaseGeometry, dx: float) -> BaseGeometry:
    return shapely.transform(geom, lambda xy: xy + np.array([dx, 0.0]))


def _join_at_antimeridian(edges: BaseGeometry) -> BaseGeometry:
    """Edges of a territory split at ±180, as one continuous set of lines.

    Where the territory lies on both sides of the antimeridian, the cut along it is no edge:
    it is removed, and copies shifted by ±360° let a nearest-edge search cross over.
    """
    east = shapely.intersection(edges, _MERIDIAN_EAST)
    west = _shift(shapely.intersection(edges, _MERIDIAN_WEST), 360.0)
    cut = shapely.intersection(east, west)
    if cut.is_empty or shapely.length(cut) == 0:
        return edges
    edges = shapely.difference(edges, shapely.union(cut, _shift(cut, -360.0)))
    parts = [
        line
        for copy in (edges, _shift(edges, 360.0), _shift(edges, -360.0))
        for line in shapely.get_parts(copy)
        if line.geom_type == "LineString"
    ]
    return shapely.multilinestrings(parts)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _east_north_ratio(lat: float) -> float:
    """Length of a degree of longitude over a degree of latitude on WGS 84 at ``lat``."""
    e2 = 0.00669437999014
    phi = math.radians(lat)
    ratio = math.cos(phi) * (1.0 - e2 * math.sin(phi) ** 2) / (1.0 - e2)
    return max(ratio, 1e-3)


def geodesic_area(geom: BaseGeometry) -> float:
    """Area on the WGS 84 ellipsoid in square metres (0 for points)."""
    if geom.geom_type == "Point":
        return 0.0
    area, _ = _geod().geometry_area_perimeter(shapely.orient_polygons(geom))
    return abs(float(area))


def _guess_name(props: Mapping[str, Any]) -> Any:
    for key in ("name", "NAME", "Name", "title", "entity_name"):
        if props.get(key) is not None:
            return props[key]
    return None


def _entry_geometry(
    snapshot: Snapshot,
    entry: Entry,
    findings: list[Finding],
    by_document: dict[str, tuple[BaseGeometry | None, bool]],
) -> BaseGeometry | None:
    if entry.type == DATASET and entry.dataset is not None and entry.dataset.spatial_kind:
        info = entry.dataset
        geom, found = geometry_from_spatial(info.spatial_kind, info.spatial_value, entry.key)
        findings.extend(found)
        return geom
    if entry.type != GEOGRAPHIC or not entry.geojson_resource:
        return None
    document = entry.geojson_resource
    if document in by_document:
        return by_document[document][0]
    found = FindingList(document)
    geom = None
    try:
        data = snapshot.geometry_bytes(entry)
        if data is None:
            found.warning("", "not-fetched", f"GeoJSON of entry {entry.key} is not in the snapshot")
        else:
            geom, parsed = territory_from_geojson(parse_json(data), document)
            found.extend(parsed)
    except CoverlookupError as exc:
        found.error("", exc.code, str(exc))
    findings.extend(found)
    by_document[document] = (geom, True)
    return geom
