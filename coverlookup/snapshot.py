"""The on-disk snapshot: everything one crawl produced, loadable with no network.

Layout of a snapshot root directory::

    ROOT/current                  symlink -> snapshots/<id>   (swapped atomically)
    ROOT/snapshots/<id>/manifest.json   crawl time, seeds, options, documents, problems
    ROOT/snapshots/<id>/servers.json    normalised servers
    ROOT/snapshots/<id>/entries.json    normalised entries
    ROOT/snapshots/<id>/raw/<sha256>    raw bytes of every fetched document
    ROOT/snapshots/<id>/index/          compiled index (written by ``coverlookup.index``)

A snapshot is written into ``ROOT/snapshots/.tmp-<id>``, fsynced, renamed to its final name and
only then published by replacing the ``current`` symlink with ``os.replace``; a crash at any
moment leaves ``current`` pointing at a complete snapshot. The previous snapshots are kept
(``keep`` of them).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from coverlookup.errors import SnapshotError
from coverlookup.findings import Finding
from coverlookup.model import Entry, Server

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass(slots=True)
class DocumentRecord:
    """One fetched (or read) document and what became of it."""

    url: str
    kind: str  # "metadata" | "coverage" | "geojson" | "open-energy"
    final_url: str | None = None
    status: int | None = None
    sha256: str | None = None
    size: int | None = None
    content_type: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    fetched_at: str | None = None
    redirects: list[dict[str, Any]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    error: str | None = None
    stale: bool = False
    stale_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "kind": self.kind,
            "final_url": self.final_url,
            "status": self.status,
            "sha256": self.sha256,
            "size": self.size,
            "content_type": self.content_type,
            "etag": self.etag,
            "last_modified": self.last_modified,
            "fetched_at": self.fetched_at,
            "redirects": self.redirects,
            "findings": [f.to_dict() for f in self.findings],
            "error": self.error,
            "stale": self.stale,
            "stale_reason": self.stale_reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DocumentRecord:
        kwargs = dict(data)
        kwargs["findings"] = [Finding.from_dict(f) for f in data.get("findings") or ()]
        kwargs["redirects"] = list(data.get("redirects") or ())
        return cls(**{k: v for k, v in kwargs.items() if k in cls.__dataclass_fields__})


@dataclass(slots=True)
class Snapshot:
    """Everything one crawl produced. ``path`` is set once it is on disk."""

    id: str
    created: str
    servers: list[Server] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    documents: list[DocumentRecord] = field(default_factory=list)
    seeds: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    problems: list[dict[str, Any]] = field(default_factory=list)
    # Kept from an earlier snapshot because the source failed now: server URL / entry key -> why.
    stale: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    # Raw bytes not yet written (sha256 -> bytes); emptied once the snapshot is written.
    blobs: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def new(cls, **kwargs: Any) -> Snapshot:
        now = dt.datetime.now(dt.timezone.utc)
        snap_id = now.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
        return cls(id=snap_id, created=now.isoformat().replace("+00:00", "Z"), **kwargs)

    def add_blob(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self.blobs.setdefault(digest, data)
        return digest

    def raw(self, sha256: str) -> bytes:
        """The raw bytes of a document, from memory or from disk."""
        if sha256 in self.blobs:
            return self.blobs[sha256]
        if self.path is None:
            raise SnapshotError(f"document {sha256} is not in this snapshot")
        try:
            return (self.path / "raw" / sha256).read_bytes()
        except OSError as exc:
            raise SnapshotError(f"{self.path}: raw document {sha256} unreadable: {exc}") from exc

    def document(self, url: str) -> DocumentRecord | None:
        """The record of a document by the URL it was asked for or ended at."""
        for record in self.documents:
            if record.url == url or record.final_url == url:
                return record
        return None

    def geometry_bytes(self, entry: Entry) -> bytes | None:
        """The GeoJSON document of a geographic entry, or None if it was not fetched."""
        if not entry.geojson_resource:
            return None
        record = self.document(entry.geojson_resource)
        if record is None or record.sha256 is None:
            return None
        return self.raw(record.sha256)

    def manifest(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "id": self.id,
            "created": self.created,
            "seeds": self.seeds,
            "options": self.options,
            "counts": {
                "servers": len(self.servers),
                "entries": len(self.entries),
                "documents": len(self.documents),
            },
            "documents": [d.to_dict() for d in self.documents],
            "problems": self.problems,
            "stale": self.stale,
        }


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_snapshot(
    root: str | os.PathLike[str],
    snapshot: Snapshot,
    *,
    keep: int = 3,
    before_publish: Callable[[Path], object] | None = None,
) -> Path:
    """Write ``snapshot`` under ``root`` and publish it atomically; returns its directory.

    ``before_publish`` is called with the complete snapshot directory before ``current`` moves to
    it: the place to compile its index, so that a process watching ``current`` (a worker, a
    ``serve --snapshot DIR --refresh``) loads the compiled index instead of building its own while
    it serves. What it raises is logged, and the snapshot is published all the same.
    """
    root = Path(root)
    snapshots = root / "snapshots"
    snapshots.mkdir(parents=True, exist_ok=True)
    tmp = snapshots / f".tmp-{snapshot.id}"
    final = snapshots / snapshot.id
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "raw").mkdir(parents=True)
    for digest, data in snapshot.blobs.items():
        _write(tmp / "raw" / digest, data)
    # Carry over raw documents of a previous snapshot that this one still refers to.
    wanted = {d.sha256 for d in snapshot.documents if d.sha256} - set(snapshot.blobs)
    for digest in wanted:
        data = snapshot.raw(digest)
        _write(tmp / "raw" / digest, data)
    opt = orjson.OPT_INDENT_2
    _write(tmp / "servers.json", orjson.dumps([s.to_dict() for s in snapshot.servers], option=opt))
    _write(tmp / "entries.json", orjson.dumps([e.to_dict() for e in snapshot.entries], option=opt))
    # The manifest goes last: a directory without one is never a snapshot.
    _write(tmp / "manifest.json", orjson.dumps(snapshot.manifest(), option=opt))
    _fsync_dir(tmp / "raw")
    _fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(snapshots)
    snapshot.path = final  # its documents are on disk now: the bodies in memory can go
    snapshot.blobs.clear()
    if before_publish is not None:
        try:
            before_publish(final)
        except Exception:  # the snapshot is good without what the hook adds
            log.exception("%s: preparing the snapshot before publishing it failed", final)
    link_tmp = root / f".current-{snapshot.id}"
    if link_tmp.is_symlink() or link_tmp.exists():
        link_tmp.unlink()
    os.symlink(Path("snapshots") / snapshot.id, link_tmp)
    os.replace(link_tmp, root / "current")
    _fsync_dir(root)
    _prune(snapshots, keep=keep, current=snapshot.id)
    return final


def _prune(snapshots: Path, *, keep: int, current: str) -> None:
    done = sorted(
        (p for p in snapshots.iterdir() if not p.name.startswith(".") and p.is_dir()),
        key=lambda p: p.name,
    )
    for old in done[:-keep] if keep > 0 else []:
        if old.name != current:
            shutil.rmtree(old, ignore_errors=True)
    for leftover in snapshots.glob(".tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def resolve_snapshot_dir(path: str | os.PathLike[str]) -> Path:
    """A snapshot root (with ``current``) or a snapshot directory itself -> the directory."""
    path = Path(path)
    if (path / "manifest.json").is_file():
        return path
    current = path / "current"
    if current.exists() and (current / "manifest.json").is_file():
        return current.resolve()
    if not path.exists():
        raise SnapshotError(f"{path}: no such snapshot directory")
    raise SnapshotError(f"{path}: not a snapshot (no manifest.json and no 'current' link)")


def _read_json(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise SnapshotError(f"{path}: unreadable: {exc}") from exc


def load_snapshot(path: str | os.PathLike[str]) -> Snapshot:
    """Load a snapshot (root or snapshot directory) without touching the network."""
    directory = resolve_snapshot_dir(path)
    manifest = _read_json(directory / "manifest.json")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        raise SnapshotError(f"{directory}: unknown snapshot format")
    try:
        servers = [Server.from_dict(s) for s in _read_json(directory / "servers.json")]
        entries = [Entry.from_dict(e) for e in _read_json(directory / "entries.json")]
        documents = [DocumentRecord.from_dict(d) for d in manifest.get("documents") or ()]
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotError(f"{directory}: malformed snapshot: {exc}") from exc
    return Snapshot(
        id=manifest["id"],
        created=manifest["created"],
        servers=servers,
        entries=entries,
        documents=documents,
        seeds=list(manifest.get("seeds") or ()),
        options=dict(manifest.get("options") or {}),
        problems=list(manifest.get("problems") or ()),
        stale=dict(manifest.get("stale") or {}),
        path=directory,
    )


def snapshot_from_features(
    features: Iterable[Mapping[str, Any]],
    *,
    server_url: str,
    server_name: str,
    id_property: str = "id",
    name_property: str = "name",
    commodity_types: tuple[str, ...] = (),
    infrastructure_types: tuple[str, ...] = (),
    country: str | None = None,
    seeds: Iterable[str] = (),
) -> Snapshot:
    """A snapshot of one server with a geographic entry per GeoJSON feature, each feature stored
    as its own GeoJSON document, as a crawl of such a server would store it (a GIS export turned
    into a federation, for benchmarks and tests)."""
    from urllib.parse import quote, urlsplit

    parts = urlsplit(server_url)
    base = f"{parts.scheme}://{parts.netloc}/territories/"
    snap = Snapshot.new(seeds=list(seeds))
    snap.servers.append(Server(metadata_url=server_url, shape="cds-2025", name=server_name))
    for number, feature in enumerate(features):
        props = feature.get("properties") or {}
        entry_id = str(props.get(id_property) or number)
        name = props.get(name_property)
        url = base + quote(entry_id, safe="") + ".geojson"
        body = orjson.dumps({"type": "FeatureCollection", "features": [feature]})
        digest = snap.add_blob(body)
        snap.documents.append(
            DocumentRecord(url, "geojson", final_url=url, status=200, sha256=digest)
        )
        snap.entries.append(
            Entry(
                server_url=server_url,
                id=entry_id,
                type="geographic",
                name=name,
                entity_name=name,
                country=country,
                commodity_types=commodity_types,
                infrastructure_types=infrastructure_types,
                geojson_resource=url,
            )
        )
    return snap
