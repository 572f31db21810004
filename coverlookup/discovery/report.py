"""The crawl report: one row per problem (URL, kind, message, what was kept) and a summary."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from coverlookup.snapshot import Snapshot

# Problem kinds that are news, not failures (a migration redirect, a server kept from last time).
NOTICE_KINDS = frozenset({"moved", "retried"})


@dataclass(slots=True)
class Problem:
    url: str
    kind: str
    message: str
    kept: str
    document_kind: str | None = None
    severity: str = "error"

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "kind": self.kind,
            "message": self.message,
            "kept": self.kept,
            "document_kind": self.document_kind,
            "severity": self.severity,
        }


@dataclass(slots=True)
class CrawlReport:
    problems: list[Problem] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    elapsed: float = 0.0
    requests: int = 0
    bytes: int = 0
    wire_bytes: int = 0
    reused_304: int = 0

    def add(
        self,
        url: str,
        kind: str,
        message: str,
        kept: str,
        *,
        document_kind: str | None = None,
        severity: str | None = None,
    ) -> Problem:
        problem = Problem(
            url,
            kind,
            message,
            kept,
            document_kind,
            severity or ("notice" if kind in NOTICE_KINDS else "error"),
        )
        self.problems.append(problem)
        return problem

    def by_kind(self) -> dict[str, int]:
        return dict(sorted(Counter(p.kind for p in self.problems).items()))

    def for_url(self, url: str) -> list[Problem]:
        return [p for p in self.problems if p.url == url]


def summary(snapshot: Snapshot, report: CrawlReport) -> dict[str, Any]:
    """Counts for the end-of-crawl summary and the JSON report."""
    docs = snapshot.documents
    geometries = sum(1 for d in docs if d.kind == "geojson" and d.sha256 and not d.error)
    return {
        "snapshot": snapshot.id,
        "servers": len(snapshot.servers),
        "entries": len(snapshot.entries),
        "documents": len(docs),
        "geometries": geometries,
        "requests": report.requests,
        "bytes": report.bytes,
        "wire_bytes": report.wire_bytes,
        "not_modified": report.reused_304,
        "stale": sum(1 for d in docs if d.stale),
        "problems": len([p for p in report.problems if p.severity != "notice"]),
        "problems_by_kind": report.by_kind(),
        "elapsed_s": round(report.elapsed, 3),
    }


def report_dict(snapshot: Snapshot, report: CrawlReport) -> dict[str, Any]:
    return {
        "summary": summary(snapshot, report),
        "seeds": snapshot.seeds,
        "problems": [p.to_dict() for p in report.problems],
        "documents": [d.to_dict() for d in snapshot.documents],
    }


def format_summary(data: dict[str, Any]) -> str:
    """A few human lines for the end of ``coverlookup crawl``."""
    lines = [
        f"{data['servers']} servers, {data['entries']} entries, {data['geometries']} geometries "
        f"fetched; {data['documents']} documents, {_size(data['bytes'])} "
        f"in {data['elapsed_s']:.1f}s",
    ]
    if data["not_modified"] or data["stale"]:
        lines.append(
            f"{data['not_modified']} unchanged (304), {data['stale']} kept from the previous "
            "snapshot (stale)"
        )
    kinds = data["problems_by_kind"]
    if kinds:
        lines.append("problems: " + ", ".join(f"{k} {n}" for k, n in kinds.items()))
    else:
        lines.append("no problems")
    return "\n".join(lines)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover
