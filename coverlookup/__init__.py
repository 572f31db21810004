"""coverlookup: which utilities and energy entities serve this location?"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from coverlookup.errors import (
    CoordinateError,
    CoverlookupError,
    DocumentSyntaxError,
    FetchError,
    GeocodingError,
    GeometryError,
    NotFoundError,
    SnapshotError,
    SpecError,
    UnsafeURLError,
    UsageError,
)
from coverlookup.findings import Finding, Severity
from coverlookup.model import DatasetInfo, Entry, Match, Server

__version__ = "0.1.0"

# Heavier parts (shapely/rtree, aiohttp) load on first use so `import coverlookup` stays cheap.
_LAZY = {
    "CoverageIndex": ("coverlookup.index", "CoverageIndex"),
    "crawl": ("coverlookup.discovery", "crawl"),
    "crawl_sync": ("coverlookup.discovery", "crawl_sync"),
    "Snapshot": ("coverlookup.snapshot", "Snapshot"),
    "load_snapshot": ("coverlookup.snapshot", "load_snapshot"),
    "validate_bytes": ("coverlookup.validate", "validate_bytes"),
}

__all__ = [
    "CoordinateError",
    "CoverageIndex",
    "CoverlookupError",
    "DatasetInfo",
    "DocumentSyntaxError",
    "Entry",
    "FetchError",
    "Finding",
    "GeocodingError",
    "GeometryError",
    "Match",
    "NotFoundError",
    "Server",
    "Severity",
    "Snapshot",
    "SnapshotError",
    "SpecError",
    "UnsafeURLError",
    "UsageError",
    "__version__",
    "crawl",
    "crawl_sync",
    "load_snapshot",
    "validate_bytes",
]

if TYPE_CHECKING:  # pragma: no cover
    from coverlookup.discovery import crawl, crawl_sync
    from coverlookup.index import CoverageIndex
    from coverlookup.snapshot import Snapshot, load_snapshot
    from coverlookup.validate import validate_bytes


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'coverlookup' has no attribute {name!r}")
