"""Geodesy helpers of the index: WGS 84 areas and distances to territory edges (pyproj.Geod)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

_GEOD: Any = None
KM_PER_DEG_LAT = 110.574  # the shortest degree of latitude (at the equator): a safe bound


def geod() -> Any:
    global _GEOD
    if _GEOD is None:
        import pyproj

        _GEOD = pyproj.Geod(ellps="WGS84")
    return _GEOD


def _scalar_intersects_xy() -> Any:
    """``shapely.intersects_xy`` for one prepared geometry and one point, without the public
    wrapper's per-call work (argument checks, re-preparing): a third of the cost on the lookup
    path. The compiled function is checked once; if shapely ever changes it, the public one."""
    fast = getattr(getattr(shapely, "lib", None), "intersects_xy", None)
    square = shapely.box(0.0, 0.0, 1.0, 1.0)
    shapely.prepare(square)
    try:
        if fast is not None and [bool(fast(square, x, 0.5)) for x in (0.5, 1.0, 2.0)] == [
            True,
            True,
            False,
        ]:
            return fast
    except Exception:  # pragma: no cover - a shapely whose compiled module differs
        pass
    return shapely.intersects_xy  # pragma: no cover


# For prepared geometries only (the index prepares all of its geometries when it is built).
intersects_xy = _scalar_intersects_xy()


_MERIDIAN_EAST = shapely.LineString([(180.0, -90.0), (180.0, 90.0)])
_MERIDIAN_WEST = shapely.LineString([(-180.0, -90.0), (-180.0, 90.0)])


def _shift(geom: BaseGeometry, dx: float) -> BaseGeometry:
    return shapely.transform(geom, lambda xy: xy + np.array([dx, 0.0]))


def _join_at_antimeridian(edges: BaseGeometry) -> BaseGeometry:
    """Edges of a territory on both sides of the antimeridian, as one continuous set of lines.

    Copies shifted by ±360° let a nearest-edge search cross over: from lon -179.9 the nearest
    edge may be an island at lon 179.8. Where the territory is cut along ±180 into two
    halves, the cut is no edge and is removed first.
    """
    east = shapely.intersection(edges, _MERIDIAN_EAST)
    west = _shift(shapely.intersection(edges, _MERIDIAN_WEST), 360.0)
    cut = shapely.intersection(east, west)
    if not cut.is_empty and shapely.length(cut) > 0:
        edges = shapely.difference(edges, shapely.union(cut, _shift(cut, -360.0)))
    parts = [
        line
        for copy in (edges, _shift(edges, 360.0), _shift(edges, -360.0))
        for line in shapely.get_parts(copy)
        if line.geom_type == "LineString"
    ]
    return shapely.multilinestrings(parts)


def _crosses_antimeridian(minx: Any, maxx: Any) -> Any:
    """Bounds that reach ±180, or span more than half the globe (parts on both sides of the
    antimeridian that need not touch it: islands at 179.8 and -179.9)."""
    return (minx <= -180.0) | (maxx >= 180.0) | (maxx - minx > 180.0)


def east_north_ratio(lat: Any) -> Any:
    """Length of a degree of longitude over a degree of latitude on WGS 84 at ``lat`` (degrees;
    a number or an array), at least 0.001 (near the poles)."""
    phi = np.radians(lat)
    return np.maximum(np.cos(phi) * (1.0 - _E2 * np.sin(phi) ** 2) / (1.0 - _E2), 1e-3)


_A = 6378137.0  # WGS 84 semi-major axis, metres
_E2 = 0.00669437999014  # WGS 84 first eccentricity squared
_E = math.sqrt(_E2)


def _authalic_q(lat_deg: np.ndarray) -> np.ndarray:
    """Snyder's q(φ): on WGS 84, d(area) = a²/2 · dλ · dq, so (λ, q) is an equal-area plane."""
    s = np.sin(np.radians(lat_deg))
    return (1.0 - _E2) * (
        s / (1.0 - _E2 * s * s) - np.log((1.0 - _E * s) / (1.0 + _E * s)) / (2 * _E)
    )


def geodesic_area(geom: BaseGeometry) -> float:
    """Area on the WGS 84 ellipsoid in square metres (0 for points).

    The region is the one shapely tests points against: edges straight in longitude/latitude.
    Edges are cut to at most half a degree and mapped to the cylindrical equal-area plane
    (λ, q(φ)), where the planar area times a²/2 is the area on the ellipsoid. Unlike a
    geodesic-polygon area this needs no care for rings around a pole or spanning the globe.
    """
    if geom.geom_type == "Point":
        return 0.0
    dense = shapely.segmentize(geom, 0.5)
    plane = shapely.transform(
        dense, lambda xy: np.column_stack((np.radians(xy[:, 0]), _authalic_q(xy[:, 1])))
    )
    return float(shapely.area(plane)) * _A * _A / 2.0


EdgeFrame = tuple[float, BaseGeometry]


def edge_frame(geom: BaseGeometry) -> EdgeFrame:
    """A territory's edges in a local frame where a nearest-edge search is nearly geodesic.

    Longitudes are scaled to the length of a degree of latitude on the WGS 84 ellipsoid at the
    territory's middle latitude (prepared, so GEOS indexes the edges for repeated searches).
    """
    minx, miny, maxx, maxy = geom.bounds
    k = float(east_north_ratio((miny + maxy) / 2.0))
    edges = shapely.boundary(geom)
    if _crosses_antimeridian(minx, maxx):
        edges = _join_at_antimeridian(edges)
    edges = shapely.transform(edges, lambda xy: xy * np.array([k, 1.0]))
    shapely.prepare(edges)
    return k, edges


def edge_frames(geoms: np.ndarray) -> list[EdgeFrame | None]:
    """:func:`edge_frame` of every geometry (None for points), built in a few array operations.

    GEOS indexes a prepared geometry's edges on its first nearest-point search; one search per
    frame here does that up front, so no request pays for it.
    """
    n = len(geoms)
    frames: list[EdgeFrame | None] = [None] * n
    if n == 0:
        return frames
    bounds = shapely.bounds(geoms)
    areal = shapely.get_type_id(geoms) != shapely.GeometryType.POINT
    across = _crosses_antimeridian(bounds[:, 0], bounds[:, 2])
    for t in np.flatnonzero(areal & across).tolist():
        frames[t] = edge_frame(geoms[t])
    simple = np.flatnonzero(areal & ~across)
    if len(simple):
        ks = east_north_ratio((bounds[simple, 1] + bounds[simple, 3]) / 2.0)
        edges = shapely.boundary(geoms[simple])
        coords, which = shapely.get_coordinates(edges, return_index=True)
        coords[:, 0] *= ks[which]
        edges = shapely.set_coordinates(edges, coords)
        shapely.prepare(edges)
        for t, k, e in zip(simple.tolist(), ks.tolist(), edges.tolist(), strict=True):
            frames[t] = (k, e)
    built = [f[1] for f in frames if f is not None]
    if built:
        edges_arr = np.asarray(built, dtype=object)
        shapely.shortest_line(edges_arr, shapely.points(shapely.bounds(edges_arr)[:, :2]))
    return frames


def distance_to_edges(frame: EdgeFrame, lon: float, lat: float) -> float:
    """Geodesic metres from the point to the edge point nearest to it in the frame."""
    k, edges = frame
    line = shapely.shortest_line(edges, shapely.points((lon * k, lat)))
    x, y = shapely.get_coordinates(line)[0].tolist()
    return float((_GEOD or geod()).inv(lon, lat, x / k, y)[2])


def distances_to_edges(
    ks: np.ndarray, edges: np.ndarray, lons: np.ndarray, lats: np.ndarray
) -> np.ndarray:
    """:func:`distance_to_edges` for many (frame, point) pairs in four array operations."""
    lines = shapely.shortest_line(edges, shapely.points(lons * ks, lats))
    nearest = shapely.get_coordinates(lines)[::2]  # each line runs from the edge to the point
    return np.asarray((_GEOD or geod()).inv(lons, lats, nearest[:, 0] / ks, nearest[:, 1])[2])
