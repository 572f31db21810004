"""The cell grid behind ``CoverageIndex``: answers most points without any polygon test.

The world is cut into square cells of ``1 / scale`` degrees (``scale`` a power of two, so cell
edges are exact binary fractions). For every territory each cell it touches is recorded as either

* **interior** (``id = t``): the cell holds no point of the territory's boundary, and its centre
  is inside, so every point of the cell is inside (a cell that the boundary does not meet lies
  wholly on one side of it); or
* **boundary** (``id = ~t``, negative): the boundary may pass through, an exact test decides.

A cell is marked *boundary* for every cell that the bounding box (grown by ``EPS``) of any
boundary segment reaches, with segments first cut shorter than half a cell. Queries and marking
use the same monotonic ``floor((x + 180) * scale)``, so a point lying on the boundary always falls
in a cell marked *boundary*: boundary points (which count as inside) are never decided by a cell.

Storage is sparse CSR: sorted cell ``keys``, ``offsets`` into ``ids``; ids inside a cell are
sorted by territory number (territories are numbered smallest area first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

# Slack around boundary segments, in degrees (about 0.1 mm): absorbs rounding in segmentize.
EPS = 1e-9
DEFAULT_SCALE = 16  # cells per degree: 1/16° ≈ 7 km at the equator
# A territory whose parts' bounding boxes span more cells than this (about 3,900 square degrees
# at 1/16°: a continent-sized data set bbox) is not rasterised; it is tested exactly instead.
MAX_CELLS_PER_TERRITORY = 1_000_000
_BLOCK_COLS, _BLOCK_ROWS = 361, 181  # 1° blocks, including the lon = 180 / lat = 90 edge


@dataclass(frozen=True, slots=True)
class Grid:
    scale: int
    keys: np.ndarray  # int64, sorted, unique
    offsets: np.ndarray  # int64, len(keys) + 1
    ids: np.ndarray  # int32: t (interior) or ~t (boundary)
    # Territories too large to rasterise (sorted): always tested exactly within their bounds.
    big: np.ndarray = field(default_factory=lambda: np.empty(0, np.int32))
    # Derived, not stored: a two-level table (1° blocks of scale x scale cells) mapping a cell
    # key to its row in ``keys`` (or -1) with two gathers instead of a binary search.
    blocks: np.ndarray = field(init=False, repr=False, compare=False)
    table: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        s = self.scale
        ncols = 360 * s + 1
        bx, by = (self.keys % ncols) // s, (self.keys // ncols) // s
        block_keys = by * _BLOCK_COLS + bx
        occupied, block_of_row = np.unique(block_keys, return_inverse=True)
        blocks = np.full(_BLOCK_COLS * _BLOCK_ROWS, len(occupied), dtype=np.int32)
        blocks[occupied] = np.arange(len(occupied), dtype=np.int32)
        # One spare all-empty block at the end answers every unoccupied block.
        table = np.full((len(occupied) + 1) * s * s, -1, dtype=np.int32)
        local = ((self.keys // ncols) % s) * s + (self.keys % ncols) % s
        table[block_of_row.astype(np.int64) * s * s + local] = np.arange(len(self.keys))
        object.__setattr__(self, "blocks", blocks)
        object.__setattr__(self, "table", table)

    @property
    def ncols(self) -> int:
        return 360 * self.scale + 1

    def rows(self, keys: np.ndarray) -> np.ndarray:
        """Row of each cell key in ``keys`` (-1 where the grid has no such cell)."""
        s = self.scale
        ncols = 360 * s + 1
        ix, iy = keys % ncols, keys // ncols
        block = self.blocks[(iy // s) * _BLOCK_COLS + ix // s].astype(np.int64)
        return self.table[block * (s * s) + (iy % s) * s + ix % s]

    def cell_keys(self, lons: np.ndarray, lats: np.ndarray) -> np.ndarray:
        return cell_keys(lons, lats, self.scale)

    def nbytes(self) -> int:
        return int(self.keys.nbytes + self.offsets.nbytes + self.ids.nbytes + self.big.nbytes)


def cell_keys(lons: np.ndarray, lats: np.ndarray, scale: int) -> np.ndarray:
    ncols = 360 * scale + 1
    ix = np.floor((np.asarray(lons, dtype=np.float64) + 180.0) * scale).astype(np.int64)
    iy = np.floor((np.asarray(lats, dtype=np.float64) + 90.0) * scale).astype(np.int64)
    np.clip(ix, 0, ncols - 1, out=ix)
    np.clip(iy, 0, 180 * scale, out=iy)
    return iy * ncols + ix


def cell_key(lon: float, lat: float, scale: int) -> int:
    """The scalar twin of :func:`cell_keys` (same arithmetic, so the same cell)."""
    # Both operands are >= 0 for valid coordinates, so int() truncation is floor().
    return int((lat + 90.0) * scale) * (360 * scale + 1) + int((lon + 180.0) * scale)


def _boundary_cells(geom: BaseGeometry, scale: int) -> np.ndarray:
    step = 1.0 / scale
    lines = shapely.get_parts(shapely.boundary(geom))
    dense = shapely.segmentize(lines, step / 2.0)
    coords, which = shapely.get_coordinates(dense, return_index=True)
    same = which[1:] == which[:-1]
    a = coords[:-1][same]
    b = coords[1:][same]
    lo = np.minimum(a, b) - EPS
    hi = np.maximum(a, b) + EPS
    lo_keys = cell_keys(lo[:, 0], lo[:, 1], scale)
    hi_keys = cell_keys(hi[:, 0], hi[:, 1], scale)
    ncols = 360 * scale + 1
    x0, y0 = lo_keys % ncols, lo_keys // ncols
    x1, y1 = hi_keys % ncols, hi_keys // ncols
    # Segments are shorter than a cell, so each bbox spans at most 2 x 2 cells.
    out = [
        np.minimum(y0 + dy, y1) * ncols + np.minimum(x0 + dx, x1) for dx in (0, 1) for dy in (0, 1)
    ]
    return np.unique(np.concatenate(out))


def _interior_cells(geom: BaseGeometry, scale: int, boundary: np.ndarray) -> np.ndarray:
    ncols = 360 * scale + 1
    step = 1.0 / scale
    found = []
    for part in shapely.get_parts(geom):
        minx, miny, maxx, maxy = part.bounds
        if (maxx - minx) * scale < 1.0 or (maxy - miny) * scale < 1.0:
            continue  # thinner than a cell: every cell it reaches is a boundary cell
        (k0,) = cell_keys(np.array([minx]), np.array([miny]), scale)
        (k1,) = cell_keys(np.array([maxx]), np.array([maxy]), scale)
        xs = np.arange(k0 % ncols, k1 % ncols + 1)
        ys = np.arange(k0 // ncols, k1 // ncols + 1)
        gx, gy = np.meshgrid(xs, ys)
        keys = (gy * ncols + gx).ravel()
        keys = keys[~np.isin(keys, boundary, assume_unique=True)]
        if not len(keys):
            continue
        cx = (keys % ncols + 0.5) * step - 180.0
        cy = (keys // ncols + 0.5) * step - 90.0
        found.append(keys[shapely.contains_xy(geom, cx, cy)])
    if not found:
        return np.empty(0, dtype=np.int64)
    return np.unique(np.concatenate(found))


def _bbox_cells(geom: BaseGeometry, scale: int) -> int:
    total = 0
    for minx, miny, maxx, maxy in shapely.bounds(shapely.get_parts(geom)).tolist():
        total += (int((maxx - minx) * scale) + 2) * (int((maxy - miny) * scale) + 2)
    return total


def build_grid(
    geoms: Sequence[BaseGeometry | None],
    scale: int = DEFAULT_SCALE,
    *,
    max_cells: int = MAX_CELLS_PER_TERRITORY,
) -> Grid:
    """Rasterise polygonal geometries (territory ``t`` = position in ``geoms``)."""
    key_parts: list[np.ndarray] = []
    id_parts: list[np.ndarray] = []
    big: list[int] = []
    for t, geom in enumerate(geoms):
        if geom is None or geom.geom_type not in ("Polygon", "MultiPolygon"):
            continue
        shapely.prepare(geom)
        if _bbox_cells(geom, scale) > max_cells:
            big.append(t)
            continue
        bkeys = _boundary_cells(geom, scale)
        ikeys = _interior_cells(geom, scale, bkeys)
        key_parts += [bkeys, ikeys]
        id_parts += [np.full(len(bkeys), ~t, np.int32), np.full(len(ikeys), t, np.int32)]
    big_ids = np.array(big, dtype=np.int32)
    if not key_parts:
        empty = np.empty(0, dtype=np.int64)
        return Grid(scale, empty, np.zeros(1, np.int64), np.empty(0, np.int32), big_ids)
    keys = np.concatenate(key_parts)
    ids = np.concatenate(id_parts)
    territory = np.where(ids < 0, ~ids, ids)
    order = np.lexsort((territory, keys))
    keys, ids = keys[order], ids[order]
    unique, first = np.unique(keys, return_index=True)
    offsets = np.append(first, len(keys)).astype(np.int64)
    return Grid(scale, unique.astype(np.int64), offsets, ids, big_ids)


def expand(grid: Grid, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For query cell keys: (query number, grid id) pairs, grouped by query, in id order."""
    n = len(keys)
    if not len(grid.keys) or not n:
        return np.empty(0, np.int64), np.empty(0, np.int32)
    rows = grid.rows(keys)
    found = rows >= 0
    pos = np.where(found, rows, 0)
    start = np.where(found, grid.offsets[pos], 0)
    counts = np.where(found, grid.offsets[pos + 1] - start, 0)
    total = int(counts.sum())
    query = np.repeat(np.arange(n, dtype=np.int64), counts)
    shift = start - (np.cumsum(counts) - counts)
    idx = np.arange(total, dtype=np.int64) + np.repeat(shift, counts)
    return query, grid.ids[idx]
