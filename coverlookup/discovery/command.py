"""``coverlookup crawl``: arguments, progress on a terminal, the summary and ``--report``."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import TextIO

import orjson

from coverlookup.discovery import crawl_with_report, options_from_args
from coverlookup.discovery.report import format_summary, report_dict, summary
from coverlookup.errors import SnapshotError, UsageError

# Problems listed on the terminal; the rest are in --report.
SHOWN_PROBLEMS = 30


def add_fetch_options(p: argparse.ArgumentParser) -> None:
    """The fetch options shared by ``crawl`` and ``validate``."""
    g = p.add_argument_group("fetching")
    g.add_argument("--concurrency", type=int, metavar="N", help="requests at once (default 16)")
    g.add_argument("--timeout", type=float, metavar="S", help="total deadline per request (30)")
    g.add_argument("--max-bytes", type=int, metavar="N", help="body limit after decompression")
    g.add_argument(
        "--max-total-bytes",
        type=int,
        metavar="N",
        help="all bodies of one crawl together (default 512 MiB); past it nothing more is read",
    )
    g.add_argument(
        "--max-servers", type=int, metavar="N", help="metadata documents to read (10000)"
    )
    g.add_argument("--retries", type=int, metavar="N", help="retries on timeouts, 5xx, 429 (2)")
    g.add_argument("--allow-http", action="store_true", help="also fetch plain http:// URLs")
    g.add_argument(
        "--allow-private",
        action="store_true",
        help="also connect to loopback, private and link-local addresses",
    )
    g.add_argument(
        "--resolve",
        action="append",
        default=[],
        metavar="HOST:PORT:ADDR",
        help="connect to ADDR for HOST:PORT (repeatable, like curl; ADDR may end in :PORT2)",
    )
    g.add_argument("--cafile", metavar="FILE", help="trust these CA certificates instead")


def add_crawl_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "crawl",
        help="crawl CDS servers into a snapshot",
        description="Crawl seeds (domains, metadata URLs, Open Energy URLs, files, or host-mirror "
        "directories) into a snapshot. An existing snapshot in --snapshot is refreshed: "
        "unchanged documents are reused (304) and sources that fail keep their last good copy.",
    )
    p.add_argument("seeds", nargs="+", metavar="SEED")
    p.add_argument(
        "--snapshot",
        metavar="DIR",
        default="snapshot",
        help="snapshot root to write (default ./snapshot)",
    )
    p.add_argument("--report", metavar="FILE", help="write the crawl report as JSON")
    p.add_argument(
        "--fresh", action="store_true", help="ignore the previous snapshot (no 304s, no fallback)"
    )
    p.add_argument("--keep", type=int, default=3, metavar="N", help="snapshots to keep (3)")
    add_fetch_options(p)
    return p


class _Progress:
    """One self-rewriting status line on a terminal; nothing otherwise."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.last = 0.0
        self.shown = False

    def __call__(self, done: int, queued: int, nbytes: int) -> None:
        now = time.monotonic()
        if now - self.last < 0.1:
            return
        self.last = now
        self.shown = True
        text = f"\r{done} documents, {queued} in progress, {nbytes / 1048576:.1f} MiB"
        self.stream.write(text.ljust(60))
        self.stream.flush()

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r" + " " * 60 + "\r")
            self.stream.flush()


def run_crawl_cli(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from coverlookup.snapshot import load_snapshot, write_snapshot

    out = out or sys.stdout
    root = Path(args.snapshot)
    if root.exists() and not root.is_dir():
        raise UsageError(f"--snapshot {root}: not a directory")
    try:  # fail before the crawl, not after it
        (root / "snapshots").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--snapshot {root}: cannot create it: {exc.strerror or exc}") from None
    previous = None
    if not args.fresh and (root / "current").exists():
        try:
            previous = load_snapshot(root)
        except SnapshotError as exc:
            print(f"coverlookup: warning: not refreshing: {exc}", file=sys.stderr)
    progress = _Progress(sys.stderr) if sys.stderr.isatty() else None
    options = options_from_args(args, previous=previous, progress=progress)
    try:
        snapshot, report = asyncio.run(crawl_with_report(args.seeds, options=options))
    finally:
        if progress is not None:
            progress.close()
    try:
        # Compiled before it becomes current: a server watching the directory loads it at once.
        written = write_snapshot(root, snapshot, keep=args.keep, before_publish=_compile_index)
    except OSError as exc:
        raise SnapshotError(f"{root}: cannot write the snapshot: {exc.strerror or exc}") from None
    data = summary(snapshot, report)
    if args.report:
        payload = report_dict(snapshot, report)
        payload["snapshot_path"] = str(written)
        try:
            Path(args.report).write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2) + b"\n")
        except OSError as exc:
            raise UsageError(
                f"--report {args.report}: cannot write it: {exc.strerror or exc} "
                f"(the snapshot was written to {written})"
            ) from None
    out.write(f"snapshot {snapshot.id} written to {written}\n")
    out.write(format_summary(data) + "\n")
    errors = [p for p in report.problems if p.severity != "notice"]
    for problem in errors[:SHOWN_PROBLEMS]:
        message = problem.message
        # Fetch errors already start with their URL; do not say it twice.
        if problem.url and message.startswith(problem.url):
            message = message[len(problem.url) :].lstrip(": ")
        out.write(f"  {problem.kind}: {problem.url}: {message} (kept: {problem.kept})\n")
    if len(errors) > SHOWN_PROBLEMS:
        more = len(errors) - SHOWN_PROBLEMS
        out.write(f"  ... and {more} more" + (" (see the report)\n" if args.report else "\n"))
    return 1 if errors or not snapshot.servers else 0


def _compile_index(directory: Path) -> None:
    from coverlookup.index import CoverageIndex

    CoverageIndex.load(directory)  # builds the index and saves its compiled form beside it
