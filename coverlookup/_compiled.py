"""The compiled form of a ``CoverageIndex``, kept in a snapshot's ``index/`` directory.

    index/meta.json         format, snapshot id, grid scale, territory keys, geometry findings
    index/geoms.wkb         every territory's WKB, concatenated (offsets in wkb_offsets.npy)
    index/*.npy             areas and the grid (keys, offsets, ids)

Written into a temporary sibling directory and renamed into place, so a reader sees either no
compiled index or a complete one; ``meta.json`` is written last. Anything unreadable or from
another format or snapshot makes ``read`` return None and the caller rebuilds.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import shapely

from coverlookup._grid import Grid
from coverlookup.findings import Finding

log = logging.getLogger(__name__)

FORMAT = 1
_ARRAYS = ("wkb_offsets", "areas", "grid_keys", "grid_offsets", "grid_ids")


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _write_array(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, array, allow_pickle=False)
        fh.flush()
        os.fsync(fh.fileno())


def write(
    directory: Path,
    snapshot_id: str,
    keys: Sequence[str],
    geoms: np.ndarray,
    areas: np.ndarray,
    grid: Grid,
    findings: Sequence[Finding],
) -> None:
    tmp = directory.with_name(f".{directory.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        blobs = shapely.to_wkb(geoms) if len(geoms) else np.empty(0, dtype=object)
        sizes = np.array([len(b) for b in blobs], dtype=np.int64)
        offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
        _write_file(tmp / "geoms.wkb", b"".join(blobs))
        arrays = {
            "wkb_offsets": offsets,
            "areas": np.asarray(areas, dtype=np.float64),
            "grid_keys": grid.keys,
            "grid_offsets": grid.offsets,
            "grid_ids": grid.ids,
            "grid_big": grid.big,
        }
        for name, array in arrays.items():
            _write_array(tmp / f"{name}.npy", array)
        meta = {
            "format": FORMAT,
            "snapshot_id": snapshot_id,
            "scale": grid.scale,
            "keys": list(keys),
            "findings": [f.to_dict() for f in findings],
        }
        _write_file(tmp / "meta.json", orjson.dumps(meta))
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old-{uuid.uuid4().hex[:8]}")
            os.rename(directory, old)
            os.rename(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read(
    directory: Path, snapshot_id: str
) -> tuple[list[str], np.ndarray, np.ndarray, Grid, list[Finding]] | None:
    meta_path = directory / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta: dict[str, Any] = orjson.loads(meta_path.read_bytes())
        if meta.get("format") != FORMAT or meta.get("snapshot_id") != snapshot_id:
            log.info("%s: compiled index is for another format or snapshot", directory)
            return None
        arrays = {name: np.load(directory / f"{name}.npy", allow_pickle=False) for name in _ARRAYS}
        # Absent from compiled forms written before large territories were set apart.
        big_path = directory / "grid_big.npy"
        big = np.load(big_path, allow_pickle=False) if big_path.is_file() else np.empty(0)
        data = (directory / "geoms.wkb").read_bytes()
        offsets = arrays["wkb_offsets"]
        keys = list(meta["keys"])
        if len(offsets) != len(keys) + 1 or int(offsets[-1]) != len(data):
            raise ValueError("geometry offsets do not match the WKB file")
        view = memoryview(data)
        blobs = np.array(
            [bytes(view[a:b]) for a, b in pairwise(offsets.tolist())],
            dtype=object,
        )
        geoms = shapely.from_wkb(blobs) if len(blobs) else np.empty(0, dtype=object)
        grid = Grid(
            int(meta["scale"]),
            arrays["grid_keys"].astype(np.int64, copy=False),
            arrays["grid_offsets"].astype(np.int64, copy=False),
            arrays["grid_ids"].astype(np.int32, copy=False),
            big.astype(np.int32, copy=False),
        )
        if (
            len(grid.offsets) != len(grid.keys) + 1
            or len(arrays["areas"]) != len(keys)
            or (len(grid.big) and int(grid.big.max()) >= len(keys))
        ):
            raise ValueError("array sizes disagree")
        findings = [Finding.from_dict(f) for f in meta.get("findings") or ()]
    except (OSError, ValueError, KeyError, TypeError, shapely.errors.ShapelyError) as exc:
        log.warning("%s: compiled index unreadable (%s); rebuilding", directory, exc)
        return None
    return keys, geoms, arrays["areas"], grid, findings
