"""The async crawler: seeds -> metadata -> related metadata -> coverage pages -> GeoJSON.

    snapshot = await crawl(["example.com"])            # or crawl_sync([...])
    snapshot = crawl_sync(["data/demo/federation"])    # a host mirror directory, no network
    write_snapshot("snapshots/", snapshot)

``fetch`` holds the HTTP discipline and the SSRF guard, ``walk`` the traversal, ``report`` the
crawl report; ``options`` the knobs (``CrawlOptions``).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from coverlookup.discovery.options import CrawlOptions, Pin, default_user_agent
from coverlookup.discovery.report import CrawlReport, Problem, format_summary, report_dict, summary
from coverlookup.errors import UsageError
from coverlookup.findings import Finding, Severity
from coverlookup.snapshot import Snapshot

__all__ = [
    "CrawlOptions",
    "CrawlReport",
    "Pin",
    "Problem",
    "classify_seed",
    "crawl",
    "crawl_sync",
    "crawl_with_report",
    "default_user_agent",
    "format_summary",
    "report_dict",
    "summary",
    "validate_remote",
]

OptionsLike = CrawlOptions | Mapping[str, Any] | None


async def crawl_with_report(
    seeds: Iterable[str] | str, *, options: OptionsLike = None, **kwargs: Any
) -> tuple[Snapshot, CrawlReport]:
    """Crawl and return the snapshot (not yet written to disk) and the crawl report."""
    if isinstance(seeds, str):
        seeds = [seeds]
    seeds = list(seeds)
    if not seeds:
        raise UsageError("nothing to crawl: give at least one seed")
    # aiohttp loads here, not on import: the CLI builds its parsers from this package.
    from coverlookup.discovery.walk import Crawler

    crawler = Crawler(seeds, CrawlOptions.make(options, **kwargs))
    snapshot = await crawler.run()
    return snapshot, crawler.report


async def crawl(
    seeds: Iterable[str] | str, *, options: OptionsLike = None, **kwargs: Any
) -> Snapshot:
    """Crawl ``seeds`` (domains, URLs, files, host-mirror directories) into a Snapshot.

    Keyword arguments are ``CrawlOptions`` fields (``allow_http=True``, ``previous=snap``, ...).
    The problems found are in ``snapshot.problems``; write it with ``snapshot.write_snapshot``.
    """
    snapshot, _ = await crawl_with_report(seeds, options=options, **kwargs)
    return snapshot


def crawl_sync(
    seeds: Iterable[str] | str, *, options: OptionsLike = None, **kwargs: Any
) -> Snapshot:
    """``crawl`` for code without an event loop."""
    return asyncio.run(crawl(seeds, options=options, **kwargs))


def options_from_args(args: argparse.Namespace, **extra: Any) -> CrawlOptions:
    """CrawlOptions from the command line's fetch options (absent ones keep their defaults)."""
    names = {
        "concurrency": "concurrency",
        "timeout": "timeout",
        "max_bytes": "max_bytes",
        "max_total_bytes": "max_total_bytes",
        "max_servers": "max_servers",
        "allow_http": "allow_http",
        "allow_private": "allow_private",
        "resolve": "resolve",
        "cafile": "cafile",
        "retries": "retries",
    }
    kwargs: dict[str, Any] = {}
    for attr, field_name in names.items():
        value = getattr(args, attr, None)
        if value is not None and value != []:
            kwargs[field_name] = tuple(value) if attr == "resolve" else value
    kwargs.update(extra)
    return CrawlOptions(**kwargs)


def validate_remote(target: str, args: argparse.Namespace | OptionsLike = None) -> list[Any]:
    """Crawl one seed and return a ``validate.ValidationResult`` for every document reached.

    A document that could not be fetched gets one error finding saying why (its code is the
    crawl problem kind, e.g. ``http_status``, ``timeout``, ``unsafe_url``).
    """
    from coverlookup.validate import ValidationResult

    if isinstance(args, argparse.Namespace):
        options = options_from_args(args)
    else:
        options = CrawlOptions.make(args)
    snapshot, report = asyncio.run(crawl_with_report([target], options=options))
    servers = {s.metadata_url: s for s in snapshot.servers}
    results: list[ValidationResult] = []
    reported: set[str] = set()
    for record in snapshot.documents:
        findings = list(record.findings)
        for problem in report.for_url(record.url):
            reported.add(record.url)
            severity = Severity.NOTICE if problem.severity == "notice" else Severity.ERROR
            findings.insert(
                0,
                Finding(severity, record.url, "", problem.kind.replace("_", "-"), problem.message),
            )
        if record.error and not findings:
            # A well-known path probed quietly: the domain's own problem below says why.
            continue
        kind = record.kind if record.sha256 and not record.error else "unreadable"
        if record.kind == "metadata" and kind == "unreadable" and record.sha256:
            kind = "metadata"
        server = servers.get(record.final_url or record.url)
        result = ValidationResult(record.final_url or record.url, kind, findings, server=server)
        result.shape = server.shape if server else None
        results.append(result)
    for problem in report.problems:
        if problem.url not in reported and problem.url not in {d.url for d in snapshot.documents}:
            severity = Severity.NOTICE if problem.severity == "notice" else Severity.ERROR
            finding = Finding(
                severity, problem.url, "", problem.kind.replace("_", "-"), problem.message
            )
            results.append(ValidationResult(problem.url or target, "unreadable", [finding]))
    return results


def __getattr__(name: str) -> Any:
    if name == "classify_seed":
        from coverlookup.discovery.walk import classify_seed

        return classify_seed
    raise AttributeError(f"module 'coverlookup.discovery' has no attribute {name!r}")
