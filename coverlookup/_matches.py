"""Matches for a query point, with a lazily measured boundary distance; coordinate checks."""

from __future__ import annotations

from typing import Any

import numpy as np

from coverlookup.errors import CoordinateError
from coverlookup.model import Match

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


def point_match(base: Match, index: Any, t: int, lon: float, lat: float) -> Match:
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


def check_coordinate(lat: Any, lon: Any) -> tuple[float, float]:
    """``(lat, lon)`` as floats, or CoordinateError naming what is wrong."""
    out = []
    for name, value, limit in (("lat", lat, 90.0), ("lon", lon, 180.0)):
        if type(value) is not float:
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise CoordinateError(f"{name} must be a number, got {value!r}")
            if isinstance(value, np.complexfloating):
                raise CoordinateError(f"{name} must be a real number, got {value!r}")
            try:
                value = float(value)
            except OverflowError:
                raise CoordinateError(
                    f"{name} {value} is outside [-{limit:g}, {limit:g}]"
                ) from None
        if not (-limit <= value <= limit):  # also false for NaN
            if value != value:
                raise CoordinateError(f"{name} must be finite, got nan")
            raise CoordinateError(f"{name} {value!r} is outside [-{limit:g}, {limit:g}]")
        out.append(value)
    return out[0], out[1]


def check_array(name: str, values: Any, limit: float) -> np.ndarray:
    if not isinstance(values, np.ndarray):
        try:
            has_bool = any(type(v) is bool for v in values)
        except TypeError:  # a scalar, or something else that cannot be iterated
            raise CoordinateError(
                f"{name} must be a one-dimensional sequence of numbers, got {type(values).__name__}"
            ) from None
        if has_bool:
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
        value = float(arr[i])
        if value != value:
            raise CoordinateError(f"{name}[{i}] must be finite, got nan")
        raise CoordinateError(f"{name}[{i}] = {value!r} is outside [-{limit:g}, {limit:g}]")
    return arr
