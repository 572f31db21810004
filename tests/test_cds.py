"""Every example in the four spec documents: originals fail on syntax, repaired copies load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coverlookup import cds
from coverlookup.findings import Severity
from coverlookup.model import SHAPE_2023, SHAPE_2025, SHAPE_OVERVIEW, Entry
from coverlookup.validate import validate_bytes, validate_file

SPEC = Path(__file__).parent / "fixtures" / "spec"

# (file, line, column) of the syntax error in each spec example as published.
BROKEN_ORIGINALS = {
    "2025-metadata.json": (14, 19),
    "2025-coverage.json": (18, 39),
    "2023-metadata.json": (15, 28),
    "overview-coverage.json": (19, 39),
}


@pytest.mark.parametrize("name", sorted(BROKEN_ORIGINALS))
def test_original_spec_examples_are_syntax_errors(name):
    result = validate_file(SPEC / "original" / name)
    assert result.kind == "unreadable"
    [finding] = result.findings
    line, column = BROKEN_ORIGINALS[name]
    assert (finding.severity, finding.pointer, finding.code) == (Severity.ERROR, "", "syntax-error")
    assert f"line {line} column {column}" in finding.message


@pytest.mark.parametrize("name", ["2023-coverage.json", "overview-metadata.json"])
def test_original_examples_that_are_valid_json_load(name):
    assert validate_file(SPEC / "original" / name).ok


@pytest.mark.parametrize(
    "name", sorted(p.name for p in (SPEC / "repaired").iterdir() if p.is_file())
)
def test_repaired_examples_have_no_errors_or_warnings(name):
    result = validate_file(SPEC / "repaired" / name)
    severities = {f.severity for f in result.findings}
    if name == "open-energy-full.yaml" or name == "open-energy-full.json":
        # The spec's example server URL is plain http.
        assert [(f.pointer, f.code) for f in result.findings] == [
            ("/0/transport/http/servers/0/url", "not-https")
        ]
    else:
        assert Severity.ERROR not in severities and Severity.WARNING not in severities
    assert result.ok


def test_spec_2025_coverage_example_omits_required_country():
    value = json.loads((SPEC / "repaired" / "2025-coverage.json").read_text())
    del value["coverage_entries"][0]["country"]
    result = validate_bytes(json.dumps(value).encode(), "example")
    assert [(f.severity, f.pointer, f.code) for f in result.findings] == [
        (Severity.ERROR, "/coverage_entries/0/country", "missing-field")
    ]


def _server(name):
    value = json.loads((SPEC / "repaired" / name).read_text())
    return cds.parse_server(value, value["cds_metadata_url"])


def test_shapes_are_detected_from_fields():
    assert _server("2023-metadata.json")[0].shape == SHAPE_2023
    assert _server("overview-metadata.json")[0].shape == SHAPE_OVERVIEW
    assert _server("2025-metadata.json")[0].shape == SHAPE_2025


def test_2023_server_and_entry_normalise():
    server, found = _server("2023-metadata.json")
    assert not found
    assert server.infrastructure_types == ("distribution_utility", "metering_provider", "supplier")
    assert server.commodity_types == ("electricity", "natural_gas")
    value = json.loads((SPEC / "repaired" / "2023-coverage.json").read_text())
    page, found = cds.parse_coverage_page(value, server.coverage_url, server)
    assert not found
    [entry] = page.entries
    assert entry.type == "geographic"
    assert entry.legacy_type == "electric_service_territory"
    # The entry type implies its commodity; server-level infrastructure types fill in.
    assert entry.commodity_types == ("electricity",)
    assert entry.infrastructure_types == server.infrastructure_types
    assert entry.server_url == server.metadata_url
    assert entry.key == "https://example.com/.well-known/carbon-data-spec.json#norcal"
    assert entry.geojson_resource == "https://static.example.com/cds-coverage-map-geo.json"
    assert entry.entity_name == "Demo Gas & Electric"


def test_2023_entries_take_their_servers_capabilities():
    """2023 section 3.2: entries have no capabilities of their own; the server's (less
    'coverage') are what its coverage is about, so a client filtering on them finds it."""
    value = json.loads((SPEC / "repaired" / "2023-metadata.json").read_text())
    value["capabilities"] = ["coverage", "oauth"]
    server, _ = cds.parse_server(value, value["cds_metadata_url"])
    coverage = json.loads((SPEC / "repaired" / "2023-coverage.json").read_text())
    page, found = cds.parse_coverage_page(coverage, server.coverage_url, server)
    assert not found
    assert page.entries[0].capabilities == ("oauth",)


def test_2023_entry_of_an_extension_type_needs_only_the_2023_fields():
    """2023 section 6 lets other specs add entry types; on a 2023 server such an entry is read
    with the 2023 rules (kept, never matched by location), not the 2025 required fields."""
    server, _ = _server("2023-metadata.json")
    coverage = json.loads((SPEC / "repaired" / "2023-coverage.json").read_text())
    coverage["coverage_entries"][0]["type"] = "district_heat_service_territory"
    page, found = cds.parse_coverage_page(coverage, server.coverage_url, server)
    assert [(f.severity, f.code) for f in found] == [(Severity.NOTICE, "unknown-enum")]
    assert page.entries[0].type == "district_heat_service_territory"
    # A type that is no string at all is an error under either draft (and no crash).
    coverage["coverage_entries"][0]["type"] = ["not", "a", "string"]
    page, found = cds.parse_coverage_page(coverage, server.coverage_url, server)
    assert "wrong-type" in {f.code for f in found}


def test_newest_first_is_a_2025_rule_only():
    server, _ = _server("2023-metadata.json")
    coverage = json.loads((SPEC / "repaired" / "2023-coverage.json").read_text())
    older = dict(coverage["coverage_entries"][0], id="older", updated="2020-01-01T00:00:00Z")
    coverage["coverage_entries"].insert(0, older)  # oldest first: fine in a 2023 listing
    _, found = cds.parse_coverage_page(coverage, server.coverage_url, server)
    assert not found
    _, found = cds.parse_coverage_page(coverage, server.coverage_url, None)  # 2023 entry types
    assert "not-newest-first" not in {f.code for f in found}


def test_overview_links_and_capabilities():
    server, found = _server("overview-metadata.json")
    assert server.capabilities == ("coverage", "oauth", "ieee1547")
    assert dict(server.links) == {
        "oauth_metadata": "https://demoutility.com/.well-known/oauth-authorization-server",
        "ieee1547_setup": "https://demoutility.com/smart-inverters/setup",
    }
    assert server.related_metadata == ("https://static.demoutility.com/sister-company-cds.json",)
    assert [(f.severity, f.pointer) for f in found] == [
        (Severity.NOTICE, "/oauth_metadata"),
        (Severity.NOTICE, "/ieee1547_setup"),
    ]
    value = json.loads((SPEC / "repaired" / "overview-coverage.json").read_text())
    page, found = cds.parse_coverage_page(value, server.coverage_url, server)
    assert not found
    [entry] = page.entries
    assert (entry.type, entry.role, entry.country) == ("geographic", "official", "US")
    assert entry.capabilities == ("oauth", "ieee1547")
    assert cds.check_capability_union(server, page.entries) == []


def test_2025_entry_fields():
    value = json.loads((SPEC / "repaired" / "2025-coverage.json").read_text())
    page, found = cds.parse_coverage_page(
        value, "https://static.example.com/cds-coverage.json", None
    )
    assert found == []
    [entry] = page.entries
    assert entry.entity_abbreviation == "DG&E"
    assert entry.infrastructure_types == ("distribution_utility",)
    assert entry.commodity_types == ("electricity",)
    assert entry.capabilities == ()
    assert entry.map_content_type == "image/png"
    assert page.next is None and page.previous is None


def test_unknown_fields_are_kept_in_extra():
    value = json.loads((SPEC / "repaired" / "2025-metadata.json").read_text())
    value["x_vendor"] = {"tier": 3}
    server, found = cds.parse_server(value, value["cds_metadata_url"])
    assert dict(server.extra) == {"x_vendor": {"tier": 3}}
    assert [(f.severity, f.pointer, f.code) for f in found] == [
        (Severity.NOTICE, "/x_vendor", "unknown-field")
    ]


def test_an_entrys_own_extension_links_are_shown_beside_its_servers():
    from coverlookup.model import Match

    server, _ = _server("overview-metadata.json")
    value = json.loads((SPEC / "repaired" / "overview-coverage.json").read_text())
    value["coverage_entries"][0]["oauth_metadata"] = "https://region.example/oauth"
    value["coverage_entries"][0]["x_tariffs"] = "javascript:alert(1)"  # not a URL to show
    page, found = cds.parse_coverage_page(value, server.coverage_url, server)
    [entry] = page.entries
    assert dict(entry.links) == {"oauth_metadata": "https://region.example/oauth"}
    assert dict(entry.extra) == {"x_tariffs": "javascript:alert(1)"}
    assert ("/coverage_entries/0/oauth_metadata", "extension-link") in {
        (f.pointer, f.code) for f in found
    }
    links = Match(entry, server, None).to_dict()["links"]
    assert links == {  # the entry's own oauth_metadata wins over its server's
        "oauth_metadata": "https://region.example/oauth",
        "ieee1547_setup": "https://demoutility.com/smart-inverters/setup",
    }
    assert Entry.from_dict(entry.to_dict()).links == entry.links


def test_detect_kind():
    assert cds.detect_kind({"coverage_entries": []}) == "coverage"
    assert cds.detect_kind({"cds_metadata_version": "v1"}) == "metadata"
    assert cds.detect_kind([{"content": {}}]) == "open-energy"
    assert cds.detect_kind({"type": "FeatureCollection", "features": []}) == "geojson"
    assert cds.detect_kind([1, 2]) == "unknown"
    assert cds.detect_kind("text") == "unknown"


def test_coverage_ids_filter_url():
    url = cds.coverage_url_with_ids("https://a.example/cov?page=2&ids=old", ["b&1", "a", "b&1"])
    assert url == "https://a.example/cov?page=2&ids=b%261%20a"
    with pytest.raises(ValueError, match="spaces"):
        cds.coverage_url_with_ids("https://a.example/cov", ["has space"])


def test_non_string_types_are_findings_not_crashes():
    # A list or object where a type string belongs used to raise "unhashable type".
    assert cds.detect_kind({"type": ["Polygon"]}) == "unknown"
    page, found = cds.parse_coverage_page(
        {"coverage_entries": [{"id": "a", "type": ["geographic"]}], "next": None},
        "https://x.example/cov.json",
        None,
    )
    assert page is not None and [e.id for e in page.entries] == ["a"]
    assert [
        (f.severity.value, f.pointer, f.code) for f in found if f.pointer.endswith("/type")
    ] == [("error", "/coverage_entries/0/type", "wrong-type")]


def test_url_with_credentials_is_a_warning():
    doc = json.loads((SPEC / "repaired" / "2025-metadata.json").read_text())
    doc["support"] = "https://user:secret@example.com/developers/contact"
    _, found = cds.parse_server(doc, "https://example.com/.well-known/cds-server-metadata.json")
    assert [(f.severity.value, f.pointer, f.code) for f in found] == [
        ("warning", "/support", "credentials-in-url")
    ]


def test_urls_the_crawler_fetches_lose_credentials_and_fragments():
    """A linked document is fetched without the credentials a link carries (never sent or
    stored) and without its fragment (one document, one URL; entry keys get one '#')."""
    doc = json.loads((SPEC / "repaired" / "2025-metadata.json").read_text())
    doc["coverage"] = "https://user:secret@example.com/cds/coverage.json#part"
    doc["related_metadata"] = ["sister.json#x", "https://example.com/other.json#"]
    server, found = cds.parse_server(
        doc, "https://example.com/.well-known/cds-server-metadata.json"
    )
    assert server.coverage_url == "https://example.com/cds/coverage.json"
    assert server.related_metadata == (
        "https://example.com/.well-known/sister.json",
        "https://example.com/other.json",
    )
    credentials = [f for f in found if f.code == "credentials-in-url"]
    assert [f.pointer for f in credentials] == ["/coverage"]
    assert credentials[0].message.endswith("they are dropped, never sent or stored")
