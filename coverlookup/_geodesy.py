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


def _without_antimeridian_cut(edges: BaseGeometry) -> BaseGeometry:
    """Edges of a territory cut along ±180 into two halves, without the cut: it is no edge."""
    east = shapely.intersection(edges, _MERIDIAN_EAST)
    west = _shift(shapely.intersection(edges, _MERIDIAN_WEST), 360.0)
    cut = shapely.intersection(east, west)
    if cut.is_empty or shapely.length(cut) == 0:
        return edges
    return shapely.difference(edges, shapely.union(cut, _shift(cut, -360.0)))


def _join_at_antimeridian(edges: BaseGeometry) -> BaseGeometry:
    """Edges of a territory on both sides of the antimeridian, as one continuous set of lines
    in longitude: copies shifted by ±360° let a nearest-edge search cross over (from lon
    -179.9 the nearest edge may be an island at lon 179.8)."""
    edges = _without_antimeridian_cut(edges)
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


# --- frames for the nearest-edge search ---------------------------------------------------------
#
# The nearest boundary point is searched for by GEOS in a plane, then measured on the ellipsoid
# (pyproj.Geod). The plane decides which boundary point is nearest, so it has to keep distances
# in proportion. Each territory gets a Lambert conformal conic projection of WGS 84 with its
# standard parallels at 1/6 and 5/6 of the territory's latitudes: conformal, so true in every
# direction at each place, with a scale that varies only to second order in latitude across the
# territory (about 0.01% over 2 degrees, 1% over 18). An equirectangular frame scaled at the
# middle latitude, used before, varies to first order: it chose boundary points up to 10% too
# far in territories spanning many degrees.
#
# Edges are straight in longitude/latitude (as containment reads them), and such lines curve in
# the conic (a parallel is a circle of radius rho about the cone's apex; a meridian stays
# straight). They are cut first into pieces short enough that a chord strays at most
# ``CHORD_M`` from its arc: a piece spanning d radians of longitude has a sagitta of at most
# rho n^2 d^2 / 8, so the longest piece a territory needs is set by its largest rho (about
# 0.02° at 40°N for 5 cm, longer nearer a pole). Distances are good to about ``CHORD_M``.
#
# A cap round a pole takes the cone of n = ±1 (polar stereographic), whose longitudes close
# round the pole with no seam. A band round the globe away from the poles (more than 180° of
# longitude) keeps an equirectangular frame scaled at its middle latitude. Near the equator,
# where the cone would flatten (``_MIN_CONE``), its limit takes its place: Mercator, conformal
# with a scale that varies to second order there, and with parallels as straight as meridians.
#
# The frame serves distances from points near and inside the territory; from thousands of
# kilometres away the boundary point it picks can be a few percent farther than the nearest
# (measured on the US data: 0.1% at 3,000 km, 2.5% at 17,000 km), and the distance reported is
# always the exact one to the point it picked.

CHORD_M = 0.05
# The flattest cone used (n = sin of the latitude it touches: about 3°); flatter, Mercator.
_MIN_CONE = 0.05

# A frame's parameters, four floats: (lon0, n, a·F, rho0) for a conic frame, (lon0, 0, a, 0)
# for Mercator, or (nan, k, 0, 0) for an equirectangular one (longitude scaled by k).
FrameParams = tuple[float, float, float, float]
EdgeFrame = tuple[FrameParams, BaseGeometry]


def _conformal_t(lat_rad: Any) -> Any:
    s = np.sin(lat_rad)
    return np.tan(np.pi / 4 - lat_rad / 2) / ((1 - _E * s) / (1 + _E * s)) ** (_E / 2)


def _m(lat_rad: Any) -> Any:
    s = np.sin(lat_rad)
    return np.cos(lat_rad) / np.sqrt(1 - _E2 * s * s)


def _conic_params(lon0: float, south: float, north: float) -> FrameParams:
    """Lambert conformal conic parameters for latitudes ``south..north``."""
    span = north - south
    mid = math.radians((south + north) / 2.0)
    if span < 1e-3:  # one standard parallel (the tangent cone)
        phi1 = phi2 = mid
        n = math.sin(mid)
    else:
        phi1, phi2 = math.radians(south + span / 6.0), math.radians(north - span / 6.0)
        n = float(
            (np.log(_m(phi1)) - np.log(_m(phi2)))
            / (np.log(_conformal_t(phi1)) - np.log(_conformal_t(phi2)))
        )
    if abs(n) < _MIN_CONE:
        return (lon0, 0.0, _A, 0.0)  # Mercator
    a_f = _A * float(_m(phi1)) / (n * float(_conformal_t(phi1)) ** n)
    rho0 = a_f * float(_conformal_t(mid)) ** n
    return (lon0, n, a_f, rho0)


def _polar_params(south: float, north: float) -> FrameParams:
    """Polar stereographic (the cone of n = ±1) for a cap around a pole: all longitudes wrap
    round the pole with no seam, so the cap needs no central longitude."""
    pole = 1.0 if north >= 90.0 else -1.0
    phi1 = math.radians((south + north) / 2.0)  # true scale half way down the cap
    a_f = _A * float(_m(phi1)) / (pole * float(_conformal_t(phi1)) ** pole)
    return (0.0, pole, a_f, 0.0)


# Conformal latitude back to geodetic latitude: the series of Snyder (1987), eq. 3-5, to e^8
# (well under a micrometre on WGS 84), phi = chi + A sin 2chi + B sin 4chi + C sin 6chi
# + D sin 8chi, written with s = sin 2chi, c = cos 2chi as chi + s (K0 + c (K1 + c (K2 + c K3))).
_A4 = _E2 / 2 + 5 * _E2**2 / 24 + _E2**3 / 12 + 13 * _E2**4 / 360
_B4 = 7 * _E2**2 / 48 + 29 * _E2**3 / 240 + 811 * _E2**4 / 11520
_C4 = 7 * _E2**3 / 120 + 81 * _E2**4 / 1120
_D4 = 4279 * _E2**4 / 161280
_CHI_TO_PHI = (_A4 - _C4, 2 * _B4 - 4 * _D4, 4 * _C4, 8 * _D4)


def _conic_forward(p: np.ndarray, lons: np.ndarray, lats: np.ndarray) -> tuple[Any, Any]:
    lon0, n, a_f, rho0 = p[:, 0], p[:, 1], p[:, 2], p[:, 3]
    dlon = np.radians((lons - lon0 + 180.0) % 360.0 - 180.0)
    # A pole is the apex (np.minimum/np.maximum: np.clip costs a batch of lookups twice as much)
    t = _conformal_t(np.radians(np.minimum(np.maximum(lats, -89.9999), 89.9999)))
    mercator = n == 0.0
    if mercator.any():
        x, y = _conic_forward(p[~mercator], lons[~mercator], lats[~mercator])
        out_x, out_y = np.empty(len(n)), np.empty(len(n))
        out_x[~mercator], out_y[~mercator] = x, y
        out_x[mercator] = a_f[mercator] * dlon[mercator]
        out_y[mercator] = -a_f[mercator] * np.log(t[mercator])
        return out_x, out_y
    theta = n * dlon
    rho = a_f * t**n
    return rho * np.sin(theta), rho0 - rho * np.cos(theta)


def _conic_inverse(p: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[Any, Any]:
    lon0, n, a_f, rho0 = p[:, 0], p[:, 1], p[:, 2], p[:, 3]
    mercator = n == 0.0
    if mercator.any():
        dlon = x / a_f  # radians east of lon0 (for Mercator rows; the rest is overwritten)
        chi = np.pi / 2 - 2 * np.arctan(np.exp(-y / a_f))
        if not mercator.all():
            lon_c, lat_c = _conic_inverse(p[~mercator], x[~mercator], y[~mercator])
    else:
        sign = np.sign(n)
        dy = sign * (rho0 - y)
        x = sign * x
        dlon = np.arctan2(x, dy) / n
        chi = np.pi / 2 - 2 * np.arctan((sign * np.hypot(x, dy) / a_f) ** (1.0 / n))
    k0, k1, k2, k3 = _CHI_TO_PHI
    c = np.cos(2 * chi)
    phi = chi + np.sin(2 * chi) * (k0 + c * (k1 + c * (k2 + c * k3)))
    lon, lat = lon0 + np.degrees(dlon), np.degrees(phi)
    if mercator.any() and not mercator.all():
        lon[~mercator], lat[~mercator] = lon_c, lat_c
    return lon, lat


def to_frame(params: np.ndarray, lons: Any, lats: Any) -> tuple[Any, Any]:
    """Points into frames: row ``i`` of ``params`` (see ``FrameParams``) for point ``i``."""
    lons = np.asarray(lons, dtype=np.float64)
    lats = np.asarray(lats, dtype=np.float64)
    conic = ~np.isnan(params[:, 0])
    if conic.all():
        return _conic_forward(params, lons, lats)
    x, y = lons * params[:, 1], lats.copy()  # equirectangular: longitude scaled by k
    if conic.any():
        x[conic], y[conic] = _conic_forward(params[conic], lons[conic], lats[conic])
    return x, y


def from_frame(params: np.ndarray, xs: Any, ys: Any) -> tuple[Any, Any]:
    """Frame coordinates back to longitude/latitude (the inverse of :func:`to_frame`)."""
    xs = np.asarray(xs, dtype=np.float64)
    ys = np.asarray(ys, dtype=np.float64)
    conic = ~np.isnan(params[:, 0])
    if conic.all():
        return _conic_inverse(params, xs, ys)
    lon, lat = xs.copy(), ys.copy()
    plate = ~conic
    lon[plate] /= params[plate, 1]  # equirectangular: longitude was scaled by k
    if conic.any():
        lon[conic], lat[conic] = _conic_inverse(params[conic], xs[conic], ys[conic])
    return lon, lat


_POLE_LINES = shapely.multilinestrings(
    [[(-180.0, 90.0), (180.0, 90.0)], [(-180.0, -90.0), (180.0, -90.0)]]
)


def _piece_degrees(params: np.ndarray, south_north: list[tuple[float, float]]) -> np.ndarray:
    """The longest piece (degrees) each conic territory's edges may keep (see ``CHORD_M``)."""
    lat = np.asarray(south_north, dtype=np.float64)
    n, a_f = params[:, 1], params[:, 2]
    equatorward = np.radians(np.where(n > 0, lat[:, 0], lat[:, 1]))  # where rho is largest
    rho = np.abs(a_f * _conformal_t(equatorward) ** n)
    # Mercator: parallels and meridians are straight; a slanting edge bends as the isometric
    # latitude does, psi'' = sec(phi) tan(phi), largest at the latitude farthest from 0.
    far = np.radians(np.minimum(np.abs(lat).max(axis=1), 89.0))
    bend = np.where(n == 0.0, _A * np.tan(far) / np.cos(far), rho * n * n)
    return np.clip(np.degrees(np.sqrt(8.0 * CHORD_M / np.maximum(bend, 1e-9))), 0.005, 1.0)


def _plate_frame(geom: BaseGeometry) -> EdgeFrame:
    minx, miny, maxx, maxy = geom.bounds
    k = float(east_north_ratio((miny + maxy) / 2.0))
    edges = shapely.boundary(geom)
    if miny <= -90.0 or maxy >= 90.0:  # a cap's side along a pole is one point, no edge
        edges = shapely.difference(edges, _POLE_LINES)
    if _crosses_antimeridian(minx, maxx):
        edges = _join_at_antimeridian(edges)
    edges = shapely.transform(edges, lambda xy: xy * np.array([k, 1.0]))
    return (math.nan, k, 0.0, 0.0), edges


def _central_lon(geom: BaseGeometry, minx: float, maxx: float) -> float | None:
    """The middle of the territory's longitudes, read across the antimeridian where it lies
    on both sides; None if they span more than 180°."""
    if not _crosses_antimeridian(minx, maxx):
        return (minx + maxx) / 2.0
    # Vertices at most 90° apart: an edge from -100 to 100 passes through 0, not 180, and a
    # box that wide must not be read as lying on both sides of the antimeridian.
    lons = shapely.get_coordinates(shapely.segmentize(geom, 90.0))[:, 0]
    east = np.where(lons < 0.0, lons + 360.0, lons)
    if east.max() - east.min() > 180.0:
        return None
    middle = (east.max() + east.min()) / 2.0
    return middle - 360.0 if middle >= 180.0 else middle


def edge_frame(geom: BaseGeometry) -> EdgeFrame:
    """A territory's edges in its frame (see above), prepared for repeated searches."""
    [frame] = edge_frames(np.asarray([geom], dtype=object))
    assert frame is not None
    return frame


def edge_frames(geoms: np.ndarray) -> list[EdgeFrame | None]:
    """The frame of every geometry (None for points), built in a few array operations.

    GEOS indexes a prepared geometry's edges on its first nearest-point search; one search per
    frame here does that up front, so no request pays for it.
    """
    n = len(geoms)
    frames: list[EdgeFrame | None] = [None] * n
    if n == 0:
        return frames
    bounds = shapely.bounds(geoms)
    areal = np.flatnonzero(shapely.get_type_id(geoms) != shapely.GeometryType.POINT)
    conic: list[int] = []
    params: list[FrameParams] = []
    south_north: list[tuple[float, float]] = []
    edges: list[BaseGeometry] = []
    for t in areal.tolist():
        minx, miny, maxx, maxy = bounds[t].tolist()
        lon0 = _central_lon(geoms[t], minx, maxx)
        boundary = shapely.boundary(geoms[t])
        if lon0 is not None:
            found = _conic_params(lon0, miny, maxy)
        elif maxy >= 90.0 or miny <= -90.0:  # a cap around a pole, on every longitude
            found = _polar_params(miny, maxy)
            boundary = shapely.difference(boundary, _POLE_LINES)  # the pole is inside
        else:  # a band round the globe, away from the poles
            frames[t] = _plate_frame(geoms[t])
            continue
        if minx <= -180.0 or maxx >= 180.0:
            boundary = _without_antimeridian_cut(boundary)
        conic.append(t)
        params.append(found)
        south_north.append((miny, maxy))
        edges.append(boundary)
    if conic:
        table = np.asarray(params, dtype=np.float64)
        dense = shapely.segmentize(
            np.asarray(edges, dtype=object), _piece_degrees(table, south_north)
        )
        coords, which = shapely.get_coordinates(dense, return_index=True)
        x, y = to_frame(table[which], coords[:, 0], coords[:, 1])
        dense = shapely.set_coordinates(dense, np.column_stack((x, y)))
        for t, p, e in zip(conic, params, dense.tolist(), strict=True):
            frames[t] = (p, e)
    built = [f[1] for f in frames if f is not None]
    if built:
        edges_arr = np.asarray(built, dtype=object)
        shapely.prepare(edges_arr)
        shapely.shortest_line(edges_arr, shapely.points(shapely.bounds(edges_arr)[:, :2]))
    return frames


def _conformal_t1(lat_rad: float) -> float:
    s = math.sin(lat_rad)
    return math.tan(math.pi / 4 - lat_rad / 2) / ((1 - _E * s) / (1 + _E * s)) ** (_E / 2)


def _to_frame1(params: FrameParams, lon: float, lat: float) -> tuple[float, float]:
    """:func:`to_frame` for one point, in plain floats (a tenth of the numpy call's cost)."""
    lon0, n, a_f, rho0 = params
    if lon0 != lon0:  # NaN: equirectangular
        return lon * n, lat
    dlon = math.radians((lon - lon0 + 180.0) % 360.0 - 180.0)
    t = _conformal_t1(math.radians(min(max(lat, -89.9999), 89.9999)))
    if n == 0.0:  # Mercator
        return a_f * dlon, -a_f * math.log(t)
    rho = a_f * t**n
    return rho * math.sin(n * dlon), rho0 - rho * math.cos(n * dlon)


def _from_frame1(params: FrameParams, x: float, y: float) -> tuple[float, float]:
    """:func:`from_frame` for one point, in plain floats."""
    lon0, n, a_f, rho0 = params
    if lon0 != lon0:
        return x / n, y
    if n == 0.0:
        dlon = x / a_f
        chi = math.pi / 2 - 2 * math.atan(math.exp(-y / a_f))
    else:
        sign = 1.0 if n > 0 else -1.0
        x, dy = sign * x, sign * (rho0 - y)
        dlon = math.atan2(x, dy) / n
        chi = math.pi / 2 - 2 * math.atan((sign * math.hypot(x, dy) / a_f) ** (1.0 / n))
    k0, k1, k2, k3 = _CHI_TO_PHI
    c = math.cos(2 * chi)
    phi = chi + math.sin(2 * chi) * (k0 + c * (k1 + c * (k2 + c * k3)))
    return lon0 + math.degrees(dlon), math.degrees(phi)


def distance_to_edges(
    frame: EdgeFrame, lon: float, lat: float, territory: BaseGeometry | None = None
) -> float:
    """Geodesic metres from the point to the edge point nearest to it in the frame (the scalar
    form of :func:`distances_to_edges`, for one lookup at a time)."""
    params, edges = frame
    x, y = _to_frame1(params, lon, lat)
    line = shapely.shortest_line(edges, shapely.Point(x, y))
    if line.length <= (1e-11 if params[0] != params[0] else 1e-6):
        return 0.0  # on an edge (see distances_to_edges)
    (qx, qy), _ = line.coords
    qlon, qlat = _from_frame1(params, qx, qy)
    distance = float((_GEOD or geod()).inv(lon, lat, qlon, qlat)[2])
    if (
        territory is not None
        and distance <= 2 * CHORD_M
        and shapely.touches(territory, shapely.Point(lon, lat))
    ):
        return 0.0
    return distance


def distances_to_edges(
    params: np.ndarray,
    edges: np.ndarray,
    lons: np.ndarray,
    lats: np.ndarray,
    territories: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`distance_to_edges` for many (frame, point) pairs in a few array operations.

    Given the territories themselves, a point lying on a territory's boundary gets exactly 0
    (its edge's chord in the frame may pass up to ``CHORD_M`` beside it)."""
    x, y = to_frame(params, lons, lats)
    # points() of one (n, 2) array costs half of points(x, y), which stacks them itself
    lines = shapely.shortest_line(edges, shapely.points(np.column_stack((x, y))))
    nearest = shapely.get_coordinates(lines)[::2]  # each line runs from the edge to the point
    qlon, qlat = from_frame(params, nearest[:, 0], nearest[:, 1])
    out = np.asarray((_GEOD or geod()).inv(lons, lats, qlon, qlat)[2])
    # A point on the boundary is 0 away, not the micrometres of rounding in and out of the
    # frame (frame units: metres in a conic, degrees in the equirectangular fallback).
    out[shapely.length(lines) <= np.where(np.isnan(params[:, 0]), 1e-11, 1e-6)] = 0.0
    if territories is not None:
        close = np.flatnonzero((out > 0.0) & (out <= 2 * CHORD_M))
        if len(close):
            on_edge = shapely.touches(territories[close], shapely.points(lons[close], lats[close]))
            out[close[on_edge]] = 0.0
    return out
