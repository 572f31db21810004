"""The OpenAPI 3.1 description of the HTTP API served at ``/openapi.json``.

Kept beside ``web.py`` (which routes the same paths); ``tests/test_web.py`` checks the two agree.
"""

from __future__ import annotations

from typing import Any

from coverlookup import __version__
from coverlookup.service import MAX_FILTER_CHARS

MAX_PAGE = 10_000
MAX_OFFSET = 10**12  # far past any list; orjson writes integers up to 2**64


def _param(
    name: str, where: str, schema: dict[str, Any], description: str, *, required: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": required,
        "schema": schema,
        "description": description,
    }


_ERROR_REF = {"$ref": "#/components/responses/Error"}


def openapi(max_body_bytes: int | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 description of every endpoint (``max_body_bytes``: the server's limit on
    a batch body, published in the batch operation's description)."""
    num = {"type": "number"}
    text = {"type": "string"}
    name = {"type": "string", "minLength": 1, "maxLength": MAX_FILTER_CHARS}
    filters = [
        _param(
            "commodity", "query", name, "only entries with this commodity type (e.g. electricity)"
        ),
        _param("capability", "query", name, "only entries offering this capability (e.g. oauth)"),
        _param("infrastructure", "query", name, "only entries with this infrastructure type"),
        _param("type", "query", name, "only entries of this type (geographic, dataset)"),
    ]
    limit = f" A body over {max_body_bytes} bytes is a 413." if max_body_bytes is not None else ""
    json_ok = lambda ref, desc: {  # noqa: E731
        "description": desc,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }
    errors = {"400": _ERROR_REF, "404": _ERROR_REF, "503": _ERROR_REF}
    key_param = _param(
        "entry_key",
        "path",
        text,
        "the entry key '<metadata_url>#<id>', percent-encoded",
        required=True,
    )
    paging = [
        _param(
            "limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}, "page size"
        ),
        _param(
            "offset",
            "query",
            {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
            "first item (past the end: an empty page)",
        ),
    ]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "coverlookup",
            "version": __version__,
            "description": "Which utilities and energy entities serve a location, from CDS "
            "server metadata and Open Energy data set metadata.",
        },
        "paths": {
            "/v1/lookup": {
                "get": {
                    "summary": "Entries whose territory contains a point (or an address)",
                    "parameters": [
                        _param(
                            "lat",
                            "query",
                            {**num, "minimum": -90, "maximum": 90},
                            "latitude, WGS 84",
                        ),
                        _param(
                            "lon",
                            "query",
                            {**num, "minimum": -180, "maximum": 180},
                            "longitude, WGS 84",
                        ),
                        _param(
                            "address",
                            "query",
                            text,
                            "an address instead of lat/lon; the answer adds geocode, "
                            "approximate and candidates",
                        ),
                        _param(
                            "nearest_km",
                            "query",
                            {**num, "exclusiveMinimum": 0, "maximum": 500},
                            "if nothing matches, list territories this close in 'nearest'",
                        ),
                        *filters,
                    ],
                    "responses": {
                        "200": json_ok("LookupAnswer", "matches, smallest territory first"),
                        "422": {**_ERROR_REF, "description": "the address could not be geocoded"},
                        "501": _ERROR_REF,
                        **errors,
                    },
                }
            },
            "/v1/lookup/batch": {
                "post": {
                    "summary": "Many lookups at once: CSV in, CSV (or ?format=jsonl) out; "
                    "a JSON list of {lat, lon} / {address} / {zip} objects in, JSON out",
                    "description": "Each row or item is answered in order; a bad one gets "
                    "status=error and a message naming its line." + limit,
                    "requestBody": {"content": {"text/csv": {}, "application/json": {}}},
                    "responses": {
                        "200": {
                            "description": "one result per input row, in order, streamed",
                            "content": {
                                "text/csv": {},
                                "application/x-ndjson": {},
                                "application/json": {},
                            },
                        },
                        "413": _ERROR_REF,
                        "415": _ERROR_REF,
                        "400": _ERROR_REF,
                    },
                }
            },
            "/v1/servers": {
                "get": {
                    "summary": "Servers (CDS metadata documents) in the snapshot",
                    "parameters": paging,
                    "responses": {"200": json_ok("ServerList", "one page of servers"), **errors},
                }
            },
            "/v1/servers/{server_id}": {
                "get": {
                    "summary": "One server and its entries",
                    "parameters": [_param("server_id", "path", text, "Server id", required=True)],
                    "responses": {"200": json_ok("ServerDetail", "the server"), **errors},
                }
            },
            "/v1/entries/{entry_key}": {
                "get": {
                    "summary": "One coverage entry",
                    "parameters": [key_param],
                    "responses": {"200": json_ok("Entry", "the entry"), **errors},
                }
            },
            "/v1/entries/{entry_key}/geojson": {
                "get": {
                    "summary": "The indexed territory of an entry as a GeoJSON Feature",
                    "parameters": [key_param],
                    "responses": {
                        "200": {
                            "description": "GeoJSON Feature",
                            "content": {"application/geo+json": {}},
                        },
                        **errors,
                    },
                }
            },
            "/v1/status": {
                "get": {
                    "summary": "Snapshot id and age, counts, refresh state, sources with problems",
                    "responses": {"200": json_ok("Status", "status")},
                }
            },
            "/healthz": {
                "get": {"summary": "Liveness", "responses": {"200": {"description": "alive"}}}
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: 200 once an index is loaded",
                    "responses": {"200": {"description": "ready"}, "503": _ERROR_REF},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "text exposition format",
                            "content": {"text/plain": {}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3.1"}},
                }
            },
        },
        "components": {
            "responses": {
                "Error": {
                    "description": "an error",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                }
            },
            "schemas": _SCHEMAS,
        },
    }


_STR_LIST = {"type": "array", "items": {"type": "string"}}
_NULLABLE_STR = {"type": ["string", "null"]}
_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    },
    "Match": {
        "type": "object",
        "required": ["key", "id", "type", "entity", "commodity_types", "capabilities"],
        "properties": {
            "key": {"type": "string"},
            "id": {"type": "string"},
            "name": _NULLABLE_STR,
            "type": {"type": "string"},
            "entity": {
                "type": "object",
                "properties": {
                    k: _NULLABLE_STR
                    for k in (
                        "name",
                        "abbreviation",
                        "metadata_url",
                        "website",
                        "documentation",
                        "support",
                    )
                },
            },
            "role": _NULLABLE_STR,
            "country": _NULLABLE_STR,
            "commodity_types": _STR_LIST,
            "infrastructure_types": _STR_LIST,
            "capabilities": _STR_LIST,
            "links": {"type": "object", "additionalProperties": {"type": "string"}},
            "boundary_distance_m": {"type": ["number", "null"]},
            "distance_m": {"type": "number"},
            "updated": _NULLABLE_STR,
        },
    },
    "LookupAnswer": {
        "type": "object",
        "required": ["query", "matches", "snapshot"],
        "properties": {
            "query": {"type": "object"},
            "matches": {"type": "array", "items": {"$ref": "#/components/schemas/Match"}},
            "nearest": {"type": "array", "items": {"$ref": "#/components/schemas/Match"}},
            "snapshot": {
                "type": "object",
                "properties": {"id": {"type": "string"}, "created": {"type": "string"}},
            },
        },
    },
    "Server": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "metadata_url": {"type": "string"},
            "name": _NULLABLE_STR,
            "shape": {"type": "string"},
        },
    },
    "ServerList": {
        "type": "object",
        "properties": {
            "servers": {"type": "array", "items": {"$ref": "#/components/schemas/Server"}},
            "total": {"type": "integer"},
            "offset": {"type": "integer"},
            "limit": {"type": "integer"},
            "next_offset": {"type": ["integer", "null"]},
        },
    },
    "ServerDetail": {
        "allOf": [
            {"$ref": "#/components/schemas/Server"},
            {
                "type": "object",
                "properties": {"entries": {"type": "array", "items": {"type": "object"}}},
            },
        ]
    },
    "Entry": {
        "type": "object",
        "properties": {
            "key": {"type": "string"},
            "id": {"type": "string"},
            "type": {"type": "string"},
            "server_id": {"type": "string"},
        },
    },
    "Status": {
        "type": "object",
        "properties": {
            "ready": {"type": "boolean"},
            "snapshot": {"type": "object"},
            "counts": {"type": "object"},
            "refresh": {
                "type": "object",
                "description": "Refreshes of the index. With serve --workers and seeds the "
                "parent process crawls: the counts are its crawls', the same in every worker, "
                "and this_process tells how this worker's loads of them went.",
                "properties": {
                    "enabled": {"type": "boolean"},
                    "refreshes": {"type": "integer"},
                    "failures": {"type": "integer"},
                    "consecutive_failures": {"type": "integer"},
                    "last_attempt": {"type": ["string", "null"], "format": "date-time"},
                    "last_success": {"type": ["string", "null"], "format": "date-time"},
                    "last_error": {"type": ["string", "null"]},
                    "this_process": {
                        "type": "object",
                        "description": "Workers only: this process's loads of the crawled "
                        "snapshots (failures while the first crawl runs are only waiting).",
                    },
                },
            },
            "sources_with_problems": {"type": "array"},
        },
    },
}
