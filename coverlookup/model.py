"""The normalised model: servers, their coverage entries and Open Energy data sets.

Every spec shape (2023 draft, the overview's intermediate shape, the 2025 draft, Open Energy data
set metadata) becomes these frozen dataclasses. Parsing lives in ``cds.py`` and ``openenergy.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

# Spec shapes a document can be detected as.
SHAPE_2023 = "cds-2023"
SHAPE_OVERVIEW = "cds-overview"
SHAPE_2025 = "cds-2025"
SHAPE_OPEN_ENERGY = "open-energy"

# Entry types after normalisation.
GEOGRAPHIC = "geographic"
LOGICAL = "logical"
DATASET = "dataset"

# 2023 entry types and the commodity each one implies.
LEGACY_ENTRY_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "electric_service_territory": "electricity",
        "natural_gas_service_territory": "natural_gas",
        "fuel_oil_service_territory": "fuel_oil",
        "water_service_territory": "water",
    }
)

ENTRY_TYPES = frozenset({GEOGRAPHIC, LOGICAL})
ROLES = frozenset({"authoritative", "official", "aggregator"})
INFRASTRUCTURE_TYPES = frozenset(
    {
        "distribution_utility",
        "metering_provider",
        "supplier",
        "generator",
        "market_operator",
        "distribution_service_operator",
        "transmission_service_operator",
        "service_provider",
        # 2023 draft only
        "central_repository",
    }
)
COMMODITY_TYPES = frozenset(
    {
        "electricity",
        "natural_gas",
        "fuel_oil",
        "water",
        "wastewater",
        "trash",
        "distributed_energy",
    }
)
KNOWN_CAPABILITIES = frozenset({"coverage", "oauth", "ieee1547"})

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _frozen_map(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value)) if value else _EMPTY


def server_id_for(metadata_url: str) -> str:
    """A short, stable, URL-safe id for a server, derived from its metadata URL."""
    return hashlib.sha256(metadata_url.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Server:
    """One CDS metadata document, identified by the URL it was fetched from (after redirects)."""

    metadata_url: str
    shape: str
    name: str | None = None
    description: str | None = None
    cds_metadata_version: str | None = None
    cds_metadata_url: str | None = None
    created: str | None = None
    updated: str | None = None
    website: str | None = None
    documentation: str | None = None
    support: str | None = None
    capabilities: tuple[str, ...] = ()
    coverage_url: str | None = None
    related_metadata: tuple[str, ...] = ()
    # Server-level types (2023 draft); entries without their own inherit them.
    infrastructure_types: tuple[str, ...] = ()
    commodity_types: tuple[str, ...] = ()
    # Capability-specific URL fields (``oauth_metadata``, ``ieee1547_setup``, ...).
    links: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    # Fields the spec does not define, kept verbatim (clients MUST ignore, we keep them).
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    @property
    def id(self) -> str:
        return server_id_for(self.metadata_url)

    def to_dict(self) -> dict[str, Any]:
        data = {name: _thaw(getattr(self, name)) for name in _SERVER_FIELDS}
        data["id"] = self.id
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Server:
        kwargs = {k: v for k, v in data.items() if k in _SERVER_FIELDS}
        for key in ("capabilities", "related_metadata", "infrastructure_types", "commodity_types"):
            kwargs[key] = tuple(kwargs.get(key) or ())
        kwargs["links"] = _frozen_map(kwargs.get("links"))
        kwargs["extra"] = _frozen_map(kwargs.get("extra"))
        return cls(**kwargs)


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    """What an Open Energy data set adds to an entry of type ``dataset``."""

    identifier: str
    title: str | None = None
    version: str | None = None
    version_notes: str | None = None
    sensitivity_class: str | None = None
    access: tuple[Mapping[str, Any], ...] = ()
    transport_url: str | None = None
    openapi: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    mime: str | None = None
    heartbeat_url: str | None = None
    # Spatial coverage from DCAT: kind is "bbox", "wkt", "geojson" or "centroid", or "multi"
    # for several extents (a list of [kind, value, position], covering their union).
    spatial_kind: str | None = None
    spatial_value: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "identifier": self.identifier,
            "title": self.title,
            "version": self.version,
            "version_notes": self.version_notes,
            "sensitivity_class": self.sensitivity_class,
            "access": [dict(a) for a in self.access],
            "transport_url": self.transport_url,
            "openapi": _thaw(self.openapi),
            "mime": self.mime,
            "heartbeat_url": self.heartbeat_url,
            "spatial_kind": self.spatial_kind,
            "spatial_value": _thaw(self.spatial_value),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetInfo:
        return cls(
            identifier=data["identifier"],
            title=data.get("title"),
            version=data.get("version"),
            version_notes=data.get("version_notes"),
            sensitivity_class=data.get("sensitivity_class"),
            access=tuple(_frozen_map(a) for a in data.get("access") or ()),
            transport_url=data.get("transport_url"),
            openapi=_frozen_map(data.get("openapi")),
            mime=data.get("mime"),
            heartbeat_url=data.get("heartbeat_url"),
            spatial_kind=data.get("spatial_kind"),
            spatial_value=data.get("spatial_value"),
        )


@dataclass(frozen=True, slots=True)
class Entry:
    """One coverage entry of a server (or one Open Energy data set), normalised."""

    server_url: str
    id: str
    type: str
    name: str | None = None
    description: str | None = None
    created: str | None = None
    updated: str | None = None
    entity_name: str | None = None
    entity_abbreviation: str | None = None
    country: str | None = None
    role: str | None = None
    infrastructure_types: tuple[str, ...] = ()
    commodity_types: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    map_resource: str | None = None
    map_content_type: str | None = None
    geojson_resource: str | None = None
    # The entry type as published when it was a 2023 ``*_service_territory`` type.
    legacy_type: str | None = None
    dataset: DatasetInfo | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    # URL-valued extension fields of the entry itself (2025 section 6 lets other specs extend
    # coverage entries), such as an entry's own oauth_metadata: shown beside its server's links.
    links: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    @property
    def key(self) -> str:
        """Globally unique: entry ids are only unique inside their server."""
        return f"{self.server_url}#{self.id}"

    def to_dict(self) -> dict[str, Any]:
        data = {name: _thaw(getattr(self, name)) for name in _ENTRY_FIELDS}
        data["dataset"] = self.dataset.to_dict() if self.dataset else None
        data["key"] = self.key
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Entry:
        kwargs = {k: v for k, v in data.items() if k in _ENTRY_FIELDS}
        for key in ("infrastructure_types", "commodity_types", "capabilities"):
            kwargs[key] = tuple(kwargs.get(key) or ())
        kwargs["extra"] = _frozen_map(kwargs.get("extra"))
        kwargs["links"] = _frozen_map(kwargs.get("links"))
        if kwargs.get("dataset"):
            kwargs["dataset"] = DatasetInfo.from_dict(kwargs["dataset"])
        return cls(**kwargs)


@dataclass(frozen=True, slots=True)
class CoveragePage:
    """One page of a coverage listing."""

    url: str
    entries: tuple[Entry, ...]
    next: str | None = None
    previous: str | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_thaw(v) for v in value]
    return value


_SERVER_FIELDS = tuple(Server.__dataclass_fields__)
_ENTRY_FIELDS = tuple(Entry.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class Match:
    """An entry whose territory contains (or, for ``nearest``, lies near) a query point."""

    entry: Entry
    server: Server | None
    # Geodesic distance from the point to the territory's nearest edge, in metres.
    boundary_distance_m: float | None = None
    # For ``nearest`` answers: geodesic distance from the point to the territory (0 inside).
    distance_m: float | None = None
    # Geodesic area of the territory in square metres (the ordering key: smallest first).
    area_m2: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The match shape of the HTTP API (see CONTRACT.md)."""
        entry, server = self.entry, self.server
        data: dict[str, Any] = {
            "key": entry.key,
            "id": entry.id,
            "name": entry.name,
            "type": entry.type,
            "entity": {
                "name": entry.entity_name or (server.name if server else None),
                "abbreviation": entry.entity_abbreviation,
                "metadata_url": entry.server_url,
                "website": server.website if server else None,
                "documentation": server.documentation if server else None,
                "support": server.support if server else None,
            },
            "role": entry.role,
            "country": entry.country,
            "commodity_types": list(entry.commodity_types),
            "infrastructure_types": list(entry.infrastructure_types),
            "capabilities": list(entry.capabilities),
            "links": {**server.links, **entry.links} if server else dict(entry.links),
            "boundary_distance_m": _round(self.boundary_distance_m),
            "updated": entry.updated,
        }
        if self.distance_m is not None:
            data["distance_m"] = _round(self.distance_m)
        if entry.dataset is not None:
            data["dataset"] = entry.dataset.to_dict()
        return data


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
