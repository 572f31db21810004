"""Turning snapshot entries and GIS exports into (entry key, geometry) pairs for the index."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from shapely.geometry.base import BaseGeometry

from coverlookup.documents import parse_json
from coverlookup.errors import CoverlookupError, DocumentSyntaxError, UsageError
from coverlookup.findings import Finding, FindingList
from coverlookup.geometry import geometry_from_spatial, read_features, territory_from_geojson
from coverlookup.model import DATASET, GEOGRAPHIC, Entry, Server
from coverlookup.snapshot import Snapshot


@dataclass(slots=True)
class GeoJSONSource:
    """A GeoJSON file as a one-server federation: one geographic entry per polygonal feature."""

    snapshot_id: str
    created: str
    server: Server
    entries: list[Entry]
    pairs: list[tuple[str, BaseGeometry]]
    findings: list[Finding]


def read_geojson_source(
    path: Path, name_property: str | None, id_property: str | None
) -> GeoJSONSource:
    try:
        if path.exists() and not path.is_file() and not path.is_dir():
            # /dev/zero reports size 0 and never ends; a FIFO blocks.
            raise UsageError(f"{path}: not a regular file")
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        value = parse_json(data)
    except DocumentSyntaxError as exc:
        raise DocumentSyntaxError(f"{path}: {exc}", line=exc.line, column=exc.column) from None
    uri = path.resolve().as_uri()
    features, found = read_features(value, uri)
    server = Server(metadata_url=uri, shape="geojson", name=path.stem)
    entries: list[Entry] = []
    pairs: list[tuple[str, BaseGeometry]] = []
    seen: set[str] = set()
    for number, feature in enumerate(features):
        props = feature.properties
        raw_id = props.get(id_property) if id_property else feature.feature_id
        if raw_id is None and not id_property:
            raw_id = props.get("id")
        entry_id = str(raw_id) if raw_id is not None else str(number)
        if entry_id in seen:
            found.warning(
                feature.pointer, "duplicate-id", f"id {entry_id!r} repeats; using '#{number}'"
            )
            entry_id = f"{entry_id}#{number}"
        seen.add(entry_id)
        name = props.get(name_property) if name_property else _guess_name(props)
        entry = Entry(
            server_url=uri,
            id=entry_id,
            type=GEOGRAPHIC,
            name=None if name is None else str(name),
            entity_name=None if name is None else str(name),
            extra=MappingProxyType(dict(props)),
        )
        entries.append(entry)
        pairs.append((entry.key, feature.geometry))
    for option, prop in (("name_property", name_property), ("id_property", id_property)):
        if prop and features and not any(prop in f.properties for f in features):
            seen_props = sorted({k for f in features[:100] for k in f.properties})
            found.warning(
                "",
                "missing-property",
                f"{option} {prop!r}: no feature has that property (properties found: "
                f"{', '.join(seen_props[:12]) or 'none'})",
            )
    digest = hashlib.sha256(data).hexdigest()[:12]
    mtime = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc)
    return GeoJSONSource(
        snapshot_id=f"geojson-{digest}",
        created=mtime.isoformat().replace("+00:00", "Z"),
        server=server,
        entries=entries,
        pairs=pairs,
        findings=list(found),
    )


def _guess_name(props: Mapping[str, Any]) -> Any:
    for key in ("name", "NAME", "Name", "title", "entity_name"):
        if props.get(key) is not None:
            return props[key]
    return None


def entry_geometry(
    snapshot: Snapshot,
    entry: Entry,
    findings: list[Finding],
    by_document: dict[str, tuple[BaseGeometry | None, bool]],
) -> BaseGeometry | None:
    if entry.type == DATASET and entry.dataset is not None and entry.dataset.spatial_kind:
        info = entry.dataset
        geom, found = geometry_from_spatial(info.spatial_kind, info.spatial_value, entry.key)
        findings.extend(found)
        return geom
    if entry.type != GEOGRAPHIC or not entry.geojson_resource:
        return None
    document = entry.geojson_resource
    if document in by_document:
        return by_document[document][0]
    found = FindingList(document)
    geom = None
    try:
        data = snapshot.geometry_bytes(entry)
        if data is None:
            found.warning("", "not-fetched", f"GeoJSON of entry {entry.key} is not in the snapshot")
        else:
            geom, parsed = territory_from_geojson(parse_json(data), document)
            found.extend(parsed)
    except CoverlookupError as exc:
        found.error("", exc.code, str(exc))
    findings.extend(found)
    by_document[document] = (geom, True)
    return geom
