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


def east_north_ratio(lat: float) -> float:
    """Length of a degree of longitude over a degree of latitude on WGS 84 at ``lat``."""
    e2 = 0.00669437999014
    phi = math.radians(lat)
    ratio = math.cos(phi) * (1.0 - e2 * math.sin(phi) ** 2) / (1.0 - e2)
    return max(ratio, 1e-3)


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
    k = east_north_ratio((miny + maxy) / 2.0)
    edges = shapely.boundary(geom)
    if minx <= -180.0 or maxx >= 180.0:
        edges = _join_at_antimeridian(edges)
    edges = shapely.transform(edges, lambda xy: xy * np.array([k, 1.0]))
    shapely.prepare(edges)
    return k, edges


def distance_to_edges(frame: EdgeFrame, lon: float, lat: float) -> float:
    """Geodesic metres from the point to the edge point nearest to it in the frame."""
    k, edges = frame
    line = shapely.shortest_line(edges, shapely.Point(lon * k, lat))
    (x, y), _ = shapely.get_coordinates(line)
    return float(geod().inv(lon, lat, x / k, y)[2])
