"""Validate one document (metadata, coverage listing, Open Energy list, GeoJSON) and report."""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import orjson

from coverlookup import cds, openenergy
from coverlookup.errors import DocumentSyntaxError, UsageError
from coverlookup.fields import type_name
from coverlookup.findings import Finding, FindingList, Severity, pointer
from coverlookup.model import CoveragePage, Entry, Server

KIND_LABELS = {
    "metadata": "CDS server metadata document",
    "coverage": "CDS coverage listing",
    "open-energy": "Open Energy data set metadata",
    "geojson": "GeoJSON territory",
    "unknown": "unrecognised document",
    "unreadable": "unreadable document",
}
SHAPE_LABELS = {
    "cds-2023": "2023 draft",
    "cds-overview": "overview (intermediate) shape",
    "cds-2025": "2025 draft",
}

# Files larger than this are refused outright by `validate`; crawls have their own byte limit.
MAX_FILE_BYTES = 256 * 1024 * 1024


@dataclass
class ValidationResult:
    document: str
    kind: str
    findings: list[Finding] = field(default_factory=list)
    server: Server | None = None
    page: CoveragePage | None = None
    entries: list[Entry] = field(default_factory=list)
    shape: str | None = None

    @property
    def ok(self) -> bool:
        return not any(f.severity is Severity.ERROR for f in self.findings)

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in Severity}
        for f in self.findings:
            out[f.severity.value] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "document": self.document,
            "kind": self.kind,
            "shape": self.shape,
            "valid": self.ok,
            "counts": self.counts(),
            "findings": [f.to_dict() for f in self.findings],
        }


def validate_value(value: Any, document: str, *, kind: str | None = None) -> ValidationResult:
    """Validate an already-parsed document."""
    kind = kind or cds.detect_kind(value)
    result = ValidationResult(document, kind)
    if kind == "metadata":
        server, found = cds.parse_server(value, document)
        result.server, result.shape = server, server.shape if server else None
        result.findings.extend(found)
    elif kind == "coverage":
        page, found = cds.parse_coverage_page(value, document, None)
        result.page = page
        result.entries = list(page.entries) if page else []
        result.findings.extend(found)
        shapes = {"cds-2023" if e.legacy_type else "cds-2025" for e in result.entries}
        result.shape = shapes.pop() if len(shapes) == 1 else None
    elif kind == "open-energy":
        server, entries, found = openenergy.parse_open_energy(value, document)
        result.server, result.entries, result.shape = server, entries, "open-energy"
        result.findings.extend(found)
    elif kind == "geojson":
        result.findings.extend(_validate_geojson(value, document))
    else:
        found = FindingList(document)
        what = "an array" if isinstance(value, list) else type_name(value)
        found.error(
            "",
            "unknown-document",
            f"not a CDS metadata document, coverage listing, Open Energy list or GeoJSON "
            f"(top level is {what}"
            + (
                f" with fields {', '.join(_field_label(k) for k in sorted(value)[:6])}"
                if isinstance(value, dict) and value
                else ""
            )
            + ")",
        )
        result.findings.extend(found)
    return result


def _field_label(name: str) -> str:
    """A field name for a message: quoted when blank, cut when absurdly long."""
    if not name.strip():
        return repr(name)
    return name if len(name) <= 40 else name[:40] + "..."


def _validate_geojson(value: Any, document: str) -> list[Finding]:
    from coverlookup import geometry  # shapely/pyproj load only when a GeoJSON file is checked

    features, findings = geometry.read_features(value, document)
    if not features and not any(f.severity is Severity.ERROR for f in findings):
        findings.error("", "empty-geometry", "the document has no polygonal geometry")
    return list(findings)


def validate_bytes(data: bytes, document: str, *, hint: str | None = None) -> ValidationResult:
    """Parse and validate raw bytes; syntax errors become one error finding with line/column."""
    from coverlookup.documents import parse_document

    try:
        value = parse_document(data, hint=hint or document)
    except DocumentSyntaxError as exc:
        result = ValidationResult(document, "unreadable")
        found = FindingList(document)
        found.error("", "syntax-error", str(exc))
        result.findings.extend(found)
        return result
    result = validate_value(value, document)
    result.findings[:0] = duplicate_key_findings(data, document)
    return result


# Duplicate names are looked for in documents up to this size (metadata and coverage listings
# are kilobytes; a big GeoJSON export is not worth a second, slower parse).
MAX_DUPLICATE_SCAN_BYTES = 8 * 1024 * 1024


class _Pairs(dict):  # type: ignore[type-arg]
    """A JSON object that remembers which of its names came more than once."""

    __slots__ = ("repeated",)

    def __init__(self, pairs: list[tuple[str, Any]]):
        super().__init__()
        self.repeated: list[str] = []
        for key, item in pairs:
            if key in self and key not in self.repeated:
                self.repeated.append(key)
            self[key] = item


def duplicate_key_findings(data: bytes, document: str) -> FindingList:
    """Warnings for JSON object names that appear twice (RFC 8259: names SHOULD be unique).

    The parsers keep the last value silently; a document that says two things for one field
    is worth a warning. Only JSON text of modest size is scanned (stdlib json, pairs hook).
    """
    import json

    found = FindingList(document)
    text = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    if len(text) > MAX_DUPLICATE_SCAN_BYTES or text.lstrip()[:1] not in (b"{", b"["):
        return found
    try:
        value = json.loads(text, object_pairs_hook=_Pairs)
    except (ValueError, RecursionError):
        return found
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, _Pairs):
            for key in item.repeated:
                found.warning(
                    pointer(*path, key),
                    "duplicate-key",
                    f"the name {key!r} appears more than once in this object; "
                    "names should be unique (RFC 8259) and the last value is the one used",
                )
            stack.extend((v, (*path, k)) for k, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((v, (*path, i)) for i, v in reversed(list(enumerate(item))))
    found.sort(key=lambda f: f.pointer)
    return found


def _read_bounded(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """Read at most ``limit`` bytes from a file, pipe or device; refuse anything longer.

    A character device such as /dev/zero reports size 0 and never ends, and opening a FIFO
    with no writer blocks forever: open without blocking, then read with a byte bound.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(str(path))
        if stat.S_ISREG(info.st_mode) and info.st_size > limit:
            raise UsageError(f"{path} is {info.st_size} bytes; larger than the {limit} byte limit")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)  # a pipe with a writer: wait for its data
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise UsageError(f"{path} is larger than the {limit} byte limit")
            if b"\x00" in chunk:
                break  # no document has a NUL byte; the parser reports where it is
        return b"".join(chunks)
    finally:
        os.close(fd)


def validate_file(path: str | Path) -> ValidationResult:
    path = Path(path)
    try:
        if path.is_dir():
            raise UsageError(f"{path} is a directory; give a file, URL or domain")
        data = _read_bounded(path)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except PermissionError:
        raise UsageError(f"{path}: permission denied") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory; give a file, URL or domain") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    return validate_bytes(data, str(path), hint=path.name)


# --- command line ---------------------------------------------------------------------------


_FILE_SUFFIXES = frozenset({"json", "geojson", "yaml", "yml", "txt", "csv"})


def _is_remote(target: str) -> bool:
    if target.startswith(("http://", "https://")):
        return True
    if "/" in target or "\\" in target or Path(target).exists():
        return False
    # A bare domain: letters, digits, dots, hyphens, an optional port, and at least one dot.
    host = target.rsplit(":", 1)[0] if target.count(":") == 1 else target
    host = host[:-1] if host.endswith(".") else host  # a fully qualified "example.com."
    if host.rsplit(".", 1)[-1].lower() in _FILE_SUFFIXES:
        return False  # "metadata.json" is a missing file, not a domain to crawl
    return "." in host and all(part and part.replace("-", "").isalnum() for part in host.split("."))


def format_results(results: Sequence[ValidationResult], *, quiet: bool = False) -> str:
    lines: list[str] = []
    for result in results:
        label = KIND_LABELS.get(result.kind, result.kind)
        if result.shape in SHAPE_LABELS:
            label += f" ({SHAPE_LABELS[result.shape]})"
        lines.append(f"{result.document}: {label}")
        for severity in Severity:
            group = [f for f in result.findings if f.severity is severity]
            if not group or (quiet and severity is not Severity.ERROR):
                continue
            lines.append(f"  {severity.value}s ({len(group)}):")
            for f in group:
                lines.append(f"    {f.pointer or '/'}: {f.message} [{f.code}]")
        lines.append("")
    lines.append(summary_line(results))
    return "\n".join(lines)


def summary_line(results: Iterable[ValidationResult]) -> str:
    results = list(results)
    totals = {s.value: 0 for s in Severity}
    for result in results:
        for key, count in result.counts().items():
            totals[key] += count
    docs = len(results)
    verdict = "valid" if totals["error"] == 0 else "INVALID"
    return (
        f"{verdict}: {docs} document{'s' if docs != 1 else ''}, "
        f"{totals['error']} error{'s' if totals['error'] != 1 else ''}, "
        f"{totals['warning']} warning{'s' if totals['warning'] != 1 else ''}, "
        f"{totals['notice']} notice{'s' if totals['notice'] != 1 else ''}"
    )


def run_cli(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    target: str = args.target
    if _is_remote(target):
        results = _validate_remote(target, args)
    else:
        results = [validate_file(target)]
    if getattr(args, "json", False):
        payload = {
            "valid": all(r.ok for r in results),
            "summary": summary_line(results),
            "documents": [r.to_dict() for r in results],
        }
        out.write(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        out.write(format_results(results, quiet=getattr(args, "quiet", False)) + "\n")
    return 0 if all(r.ok for r in results) else 1


def _validate_remote(target: str, args: argparse.Namespace) -> list[ValidationResult]:
    try:
        from coverlookup.discovery import validate_remote
    except ImportError:
        raise UsageError(
            f"{target!r} is not a file here, and checking a live server needs the crawler"
        ) from None
    return list(validate_remote(target, args))
