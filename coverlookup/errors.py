"""The coverlookup exception tree.

    CoverlookupError
    ├── SpecError(ValueError)          a document does not follow the spec / cannot be parsed
    │   └── DocumentSyntaxError        not JSON/YAML at all (line and column known)
    ├── GeometryError(ValueError)      a territory cannot be turned into a usable geometry
    ├── CoordinateError(ValueError)    a query coordinate is missing, non-finite or out of range
    ├── FetchError(OSError)            a document could not be fetched
    │   └── UnsafeURLError             a URL or address the crawler refuses to fetch
    ├── SnapshotError(OSError)         a snapshot is missing, incomplete or unreadable
    ├── NotFoundError(LookupError)     an unknown server id or entry key
    ├── GeocodingError(LookupError)    an address could not be turned into a location
    └── UsageError(ValueError)         bad options or arguments from a caller

Library errors know nothing of HTTP; the web layer maps them to statuses in one table.
"""

from __future__ import annotations


class CoverlookupError(Exception):
    """Root of every error coverlookup raises on purpose."""

    code = "error"


class SpecError(CoverlookupError, ValueError):
    code = "invalid_document"


class DocumentSyntaxError(SpecError):
    """A document that is not valid JSON/YAML; ``line``/``column`` are 1-based."""

    code = "syntax_error"

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None):
        super().__init__(message)
        self.line = line
        self.column = column


class GeometryError(CoverlookupError, ValueError):
    code = "invalid_geometry"


class CoordinateError(CoverlookupError, ValueError):
    code = "invalid_coordinate"


class FetchError(CoverlookupError, OSError):
    code = "fetch_failed"


class UnsafeURLError(FetchError):
    code = "unsafe_url"


class SnapshotError(CoverlookupError, OSError):
    code = "snapshot_error"


class NotFoundError(CoverlookupError, LookupError):
    code = "not_found"


class GeocodingError(CoverlookupError, LookupError):
    code = "geocoding_failed"


class UsageError(CoverlookupError, ValueError):
    code = "bad_request"
