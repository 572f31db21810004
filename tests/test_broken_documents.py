"""Hand-written broken documents, each asserting the exact findings (severity, pointer, code)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from coverlookup.validate import validate_bytes

URL = "https://cds.valley-power.example/.well-known/cds-server-metadata.json"

METADATA: dict[str, Any] = {
    "cds_metadata_version": "v1",
    "cds_metadata_url": URL,
    "created": "2023-01-01T00:00:00Z",
    "updated": "2025-03-01T12:30:00+02:00",
    "name": "Valley Power",
    "description": "Electric distribution utility for the valley",
    "website": "https://valley-power.example",
    "documentation": "https://valley-power.example/docs",
    "support": "https://valley-power.example/support",
    "capabilities": ["coverage", "oauth"],
    "coverage": "https://cds.valley-power.example/coverage",
    "related_metadata": ["https://cds.valley-gas.example/.well-known/cds-server-metadata.json"],
    "oauth_metadata": "https://valley-power.example/.well-known/oauth-authorization-server",
}

ENTRY: dict[str, Any] = {
    "id": "vp-electric",
    "created": "2023-01-01T00:00:00Z",
    "updated": "2025-01-01T00:00:00Z",
    "entity_name": "Valley Power",
    "entity_abbreviation": "VP",
    "country": "US",
    "name": "Valley Power electric territory",
    "type": "geographic",
    "role": "authoritative",
    "infrastructure_types": ["distribution_utility"],
    "commodity_types": ["electricity"],
    "capabilities": ["oauth"],
    "geojson_resource": "https://cds.valley-power.example/territory.geojson",
}
OLDER = dict(ENTRY, id="vp-logical", type="logical", updated="2024-01-01T00:00:00Z")
OLDER.pop("geojson_resource")
COVERAGE: dict[str, Any] = {"coverage_entries": [ENTRY, OLDER], "next": None, "previous": None}

E, W, N = "error", "warning", "notice"


def meta(change: Callable[[dict], Any]) -> dict:
    doc = copy.deepcopy(METADATA)
    change(doc)
    return doc


def cov(change: Callable[[dict], Any]) -> dict:
    doc = copy.deepcopy(COVERAGE)
    change(doc)
    return doc


def entry0(change: Callable[[dict], Any]) -> dict:
    return cov(lambda d: change(d["coverage_entries"][0]))


def drop(key):
    return lambda d: d.pop(key)


def put(key, value):
    return lambda d: d.__setitem__(key, value)


CASES: dict[str, tuple[dict | list | str, list[tuple[str, str, str]]]] = {
    # --- metadata: REQUIRED fields and types
    "missing name": (meta(drop("name")), [(E, "/name", "missing-field")]),
    "missing version": (
        meta(drop("cds_metadata_version")),
        [(E, "/cds_metadata_version", "missing-field")],
    ),
    "missing capabilities": (
        meta(drop("capabilities")),
        [(E, "/capabilities", "missing-field"), (W, "/coverage", "coverage-without-capability")],
    ),
    "name is a number": (meta(put("name", 42)), [(E, "/name", "wrong-type")]),
    "capabilities not an array": (
        meta(put("capabilities", "coverage")),
        [(E, "/capabilities", "wrong-type"), (W, "/coverage", "coverage-without-capability")],
    ),
    "capability not a string": (
        meta(put("capabilities", ["coverage", 7, "oauth"])),
        [(E, "/capabilities/1", "wrong-type")],
    ),
    "coverage capability without URL": (
        meta(drop("coverage")),
        [(E, "/coverage", "missing-coverage-url")],
    ),
    "website not a URL": (meta(put("website", "valley power")), [(E, "/website", "bad-url")]),
    "support is javascript:": (
        meta(put("support", "javascript:alert(1)")),
        [(E, "/support", "bad-url-scheme")],
    ),
    "documentation over http": (
        meta(put("documentation", "http://valley-power.example/docs")),
        [(W, "/documentation", "not-https")],
    ),
    "related_metadata not an array": (
        meta(put("related_metadata", URL)),
        [(E, "/related_metadata", "wrong-type")],
    ),
    "related_metadata item bad": (
        meta(put("related_metadata", ["https://ok.example/m.json", "ftp://x.example/m"])),
        [(E, "/related_metadata/1", "bad-url-scheme")],
    ),
    "created not a datetime": (
        meta(put("created", "January 1st 2023")),
        [(W, "/created", "bad-datetime")],
    ),
    "updated impossible date": (
        meta(put("updated", "2025-02-30T00:00:00Z")),
        [(W, "/updated", "bad-datetime")],
    ),
    "created with an impossible offset": (
        meta(put("created", "2023-01-01T00:00:00+24:00")),
        [(W, "/created", "bad-datetime")],
    ),
    "created with no offset": (
        meta(put("created", "2023-01-01T00:00:00")),
        [(N, "/created", "datetime-without-offset")],
    ),
    "updated before created": (
        meta(put("updated", "2022-01-01T00:00:00Z")),
        [(W, "/updated", "updated-before-created")],
    ),
    "unknown version": (
        meta(put("cds_metadata_version", "v2")),
        [(W, "/cds_metadata_version", "unknown-version")],
    ),
    "unknown capability": (
        meta(put("capabilities", ["coverage", "oauth", "teleport"])),
        [(N, "/capabilities/2", "unknown-enum")],
    ),
    "unknown field kept": (meta(put("x~odd/name", 1)), [(N, "/x~0odd~1name", "unknown-field")]),
    "metadata is an array": ([METADATA], [(E, "", "unknown-document")]),
    "2023 server missing commodity types": (
        meta(lambda d: d.__setitem__("infrastructure_types", ["supplier"])),
        [(E, "/commodity_types", "missing-field")],
    ),
    # --- coverage listing
    "listing without next": (cov(drop("next")), [(E, "/next", "missing-field")]),
    "listing without previous": (cov(drop("previous")), [(E, "/previous", "missing-field")]),
    "next is a number": (cov(put("next", 2)), [(E, "/next", "wrong-type")]),
    "next not a URL": (cov(put("next", "page two")), [(E, "/next", "bad-url")]),
    "entries not an array": (
        cov(put("coverage_entries", {"a": 1})),
        [(E, "/coverage_entries", "wrong-type")],
    ),
    "entry not an object": (
        cov(lambda d: d["coverage_entries"].append("x")),
        [(E, "/coverage_entries/2", "not-an-object")],
    ),
    "not newest first": (
        cov(lambda d: d["coverage_entries"].reverse()),
        [(W, "/coverage_entries/1/updated", "not-newest-first")],
    ),
    "duplicate entry id": (
        cov(lambda d: d["coverage_entries"][1].__setitem__("id", "vp-electric")),
        [(E, "/coverage_entries/1/id", "duplicate-id")],
    ),
    # --- coverage entries
    "entry without id": (
        entry0(drop("id")),
        [
            (E, "/coverage_entries/0/id", "missing-field"),
            (E, "/coverage_entries/0", "entry-skipped"),
        ],
    ),
    "entry missing role": (
        entry0(drop("role")),
        [(E, "/coverage_entries/0/role", "missing-field")],
    ),
    "entry missing abbreviation": (
        entry0(drop("entity_abbreviation")),
        [(E, "/coverage_entries/0/entity_abbreviation", "missing-field")],
    ),
    "entry null abbreviation is fine": (entry0(put("entity_abbreviation", None)), []),
    "entry lowercase country": (
        entry0(put("country", "us")),
        [(W, "/coverage_entries/0/country", "bad-country")],
    ),
    "entry capability coverage": (
        entry0(put("capabilities", ["oauth", "coverage"])),
        [(E, "/coverage_entries/0/capabilities/1", "coverage-in-entry")],
    ),
    "geographic without map or geojson": (
        entry0(drop("geojson_resource")),
        [(E, "/coverage_entries/0", "geographic-without-map")],
    ),
    "map_resource without content type": (
        entry0(put("map_resource", "https://cds.valley-power.example/map.png")),
        [(E, "/coverage_entries/0/map_content_type", "missing-map-content-type")],
    ),
    "map_content_type not a MIME type": (
        entry0(
            lambda e: e.update(
                map_resource="https://cds.valley-power.example/map.png", map_content_type="png"
            )
        ),
        [(W, "/coverage_entries/0/map_content_type", "bad-mime-type")],
    ),
    "geojson_resource relative": (
        entry0(put("geojson_resource", "/territory.geojson")),
        [(W, "/coverage_entries/0/geojson_resource", "relative-url")],
    ),
    "unknown entry type": (
        entry0(put("type", "virtual")),
        [(N, "/coverage_entries/0/type", "unknown-enum")],
    ),
    "unknown role": (
        entry0(put("role", "observer")),
        [(N, "/coverage_entries/0/role", "unknown-enum")],
    ),
    "unknown commodity": (
        entry0(put("commodity_types", ["electricity", "hydrogen"])),
        [(N, "/coverage_entries/0/commodity_types/1", "unknown-enum")],
    ),
    "infrastructure types not an array": (
        entry0(put("infrastructure_types", "supplier")),
        [(E, "/coverage_entries/0/infrastructure_types", "wrong-type")],
    ),
    "entry id is a number": (entry0(put("id", 17)), [(E, "/coverage_entries/0/id", "wrong-type")]),
    "2023 entry missing name": (
        entry0(
            lambda e: (
                e.clear(),
                e.update(
                    id="x",
                    type="water_service_territory",
                    updated="2025-01-01T00:00:00Z",
                    geojson_resource="https://a.example/g.json",
                ),
            )
        ),
        [(E, "/coverage_entries/0/name", "missing-field")],
    ),
    # --- syntax
    "trailing comma": ('{"coverage_entries": [], "next": null,}', [(E, "", "syntax-error")]),
    "NaN literal": ('{"name": NaN}', [(E, "", "syntax-error")]),
    "lone surrogate": ('{"name": "\\udfff"}', [(E, "", "syntax-error")]),
    "top-level number": ("42", [(E, "", "unknown-document")]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_broken_document(name):
    doc, expected = CASES[name]
    data = doc.encode() if isinstance(doc, str) else orjson.dumps(doc)
    result = validate_bytes(data, URL)
    got = [(f.severity.value, f.pointer, f.code) for f in result.findings]
    # The base documents carry one notice (the oauth_metadata link); it is not the point here.
    got = [g for g in got if g != (N, "/oauth_metadata", "extension-link")]
    assert got == expected
    for finding in result.findings:
        assert finding.document == URL
        assert finding.message


def test_base_documents_are_clean():
    for doc in (METADATA, COVERAGE):
        result = validate_bytes(orjson.dumps(doc), URL)
        assert [(f.severity.value, f.code) for f in result.findings] in (
            [],
            [(N, "extension-link")],
        )


def test_there_are_at_least_thirty_cases():
    assert len(CASES) >= 30
