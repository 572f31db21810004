"""The ``coverlookup`` command line: parse arguments, call the library, print.

Each subcommand has an ``_add_<name>`` (its parser) and a ``_cmd_<name>`` (what it does).
Exit codes: 0 success, 1 the work found problems, 2 usage error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from coverlookup.errors import CoverlookupError, UsageError
from coverlookup.service import FILTERS

if TYPE_CHECKING:  # pragma: no cover
    from coverlookup.batch import BatchRunner
    from coverlookup.geocoding import Geocoder

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's default exits 2 with a usage dump
        self.print_usage(sys.stderr)
        print(f"coverlookup: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _err(message: str) -> None:
    print(f"coverlookup: error: {message}", file=sys.stderr)


# --- validate ---------------------------------------------------------------------------------


def _add_validate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="check a metadata, coverage or Open Energy document against the spec",
        description="Check a CDS metadata document, coverage listing or Open Energy data set "
        "metadata file (or, given a URL or domain, everything a crawl of it reaches).",
    )
    p.add_argument("target", metavar="SEED|FILE", help="a file, URL or domain")
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    p.add_argument(
        "--quiet", "-q", action="store_true", help="print only errors and the summary line"
    )
    from coverlookup.discovery.command import add_fetch_options

    add_fetch_options(p)
    p.set_defaults(func=_cmd_validate)


def _cmd_validate(args: argparse.Namespace) -> int:
    from coverlookup import validate

    return validate.run_cli(args)


# --- crawl ------------------------------------------------------------------------------------


def _add_crawl(sub: argparse._SubParsersAction) -> None:
    from coverlookup.discovery.command import add_crawl_parser

    add_crawl_parser(sub).set_defaults(func=_cmd_crawl)


def _cmd_crawl(args: argparse.Namespace) -> int:
    from coverlookup.discovery.command import run_crawl_cli

    return run_crawl_cli(args)


# --- serve ------------------------------------------------------------------------------------


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the HTTP API",
        description="Serve the HTTP API from a snapshot, from a crawl of seeds, or (with neither) "
        "from the embedded demo federation.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    p.add_argument(
        "--snapshot", metavar="DIR", help="snapshot to serve (with --seed: where to save)"
    )
    p.add_argument("--seed", nargs="+", default=[], metavar="SEED", help="crawl these seeds")
    p.add_argument(
        "--refresh",
        type=float,
        metavar="S",
        help="re-crawl the seeds every S seconds (with only --snapshot: reload it when it changes)",
    )
    p.add_argument("--workers", type=int, default=1, metavar="N", help="processes sharing the port")
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow browser requests from ORIGIN (repeatable; '*' for any); off by default",
    )
    p.add_argument("--max-body-bytes", type=int, default=8 * 1024 * 1024, metavar="N")
    p.add_argument("--allow-http", action="store_true", help="crawl plain http:// too")
    p.add_argument("--allow-private", action="store_true", help="crawl private addresses too")
    p.add_argument("--resolve", action="append", default=[], metavar="HOST:PORT:ADDR")
    _add_geocoder_options(p)
    p.add_argument(
        "--candidate-km",
        type=float,
        default=10.0,
        metavar="KM",
        help="for approximate addresses, also list territories within KM (default 10)",
    )
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    from coverlookup import web

    if args.refresh is not None and not (args.seed or args.snapshot):
        raise UsageError(
            "--refresh needs --seed (re-crawl) or --snapshot (reload when a crawl replaces it)"
        )
    if not 0 <= args.port < 65536:
        raise UsageError(f"--port {args.port}: not a port number")
    crawl = {"allow_http": args.allow_http, "allow_private": args.allow_private}
    if args.resolve:
        crawl["resolve"] = tuple(args.resolve)
    options = web.ServeOptions(
        host=args.host,
        port=args.port,
        snapshot=args.snapshot,
        seeds=tuple(args.seed),
        refresh_s=args.refresh,
        workers=args.workers,
        cors_origins=tuple(args.cors_origin),
        max_body_bytes=args.max_body_bytes,
        crawl_options=tuple(crawl.items()),
        geocoder=args.geocoder,
        geocoder_options=_geocoder_option_pairs(args.geocoder_option),
        candidate_km=args.candidate_km,
    )
    return web.run(options)


def _geocoder_option_pairs(items: list[str]) -> tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]:
    from coverlookup.geocoding import parse_options

    return tuple((name, tuple(opts.items())) for name, opts in parse_options(items).items())


# --- lookup -----------------------------------------------------------------------------------


def _add_lookup(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lookup",
        help="which entities serve a point (or an address)",
        description="Print the entries whose territory contains LAT LON, smallest first. "
        "Negative coordinates work as they are: coverlookup lookup 43.85 -120.5",
    )
    p.add_argument("lat", nargs="?", metavar="LAT", help="latitude, WGS 84 degrees")
    p.add_argument("lon", nargs="?", metavar="LON", help="longitude, WGS 84 degrees")
    p.add_argument("--address", metavar="TEXT", help="look up an address instead of LAT LON")
    p.add_argument("--snapshot", metavar="DIR", help="snapshot to use (default: the demo)")
    p.add_argument("--json", action="store_true", help="print the API's JSON answer")
    for name in ("commodity", "capability", "infrastructure", "type"):
        p.add_argument(f"--{name}", metavar="VALUE", help=f"only entries with this {name}")
    p.add_argument(
        "--nearest-km",
        type=float,
        metavar="KM",
        help="when nothing matches, list territories within KM",
    )
    _add_geocoder_options(p)
    p.add_argument(
        "--candidate-km",
        type=float,
        default=10.0,
        metavar="KM",
        help="for approximate addresses (ZIP or city), also list territories within KM "
        "(default 10)",
    )
    p.set_defaults(func=_cmd_lookup)


def _cmd_lookup(args: argparse.Namespace) -> int:
    from coverlookup.service import LookupService, Query, load_index, parse_number

    filters = {n: getattr(args, n) for n in ("commodity", "capability", "infrastructure", "type")}
    if args.address is not None:
        if args.lat is not None:
            raise UsageError("give either LAT LON or --address, not both")
        service = LookupService(
            load_index(args.snapshot),
            geocoder=_geocoder(args),
            candidate_km=args.candidate_km,
        )
        answer = service.lookup_address(args.address, nearest_km=args.nearest_km, **filters)
    else:
        if args.lat is None or args.lon is None:
            raise UsageError("give LAT and LON (or --address TEXT)")
        try:
            lat, lon = parse_number(args.lat, "LAT"), parse_number(args.lon, "LON")
            query = Query.make(lat, lon, nearest_km=args.nearest_km, **filters)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        answer = LookupService(load_index(args.snapshot)).lookup(query)
    if args.json:
        import orjson

        sys.stdout.write(orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(_lookup_table(answer))
    return EXIT_OK


def _lookup_table(answer: dict) -> str:
    q = answer["query"]
    where = f"{q['lat']:g}, {q['lon']:g}"
    lines = []
    geocode = answer.get("geocode")
    if geocode:
        note = "approximate: " if answer.get("approximate") else ""
        lines.append(
            f"{geocode['query']!r} -> {where} ({note}{geocode['precision']} "
            f"from {geocode['provider']}: {geocode.get('address') or '-'})"
        )
    sections = (
        ("matches", answer["matches"]),
        ("nearest", answer.get("nearest") or []),
        ("candidates", answer.get("candidates") or []),
    )
    for title, rows in sections:
        if not rows:
            continue
        if title == "nearest":
            lines.append(f"Nothing contains {where}; nearest within {q['nearest_km']:g} km:")
        if title == "candidates":
            lines.append(
                f"Other territories within {q['candidate_km']:g} km (the address may be in one):"
            )
        last = "DISTANCE" if title == "nearest" else "TO EDGE"
        table = [("ENTITY", "TERRITORY", "TYPE", "COMMODITIES", "CAPABILITIES", last)]
        for m in rows:
            metres = m.get("distance_m") if title != "matches" else m.get("boundary_distance_m")
            table.append(
                (
                    m["entity"]["name"] or "-",
                    m["name"] or m["id"],
                    m["type"],
                    ",".join(m["commodity_types"]) or "-",
                    ",".join(m["capabilities"]) or "-",
                    "-" if metres is None else f"{metres / 1000:.2f} km",
                )
            )
        widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
        lines.extend(
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table
        )
    if not answer["matches"] and not answer.get("nearest"):
        active = [f"{k}={q[k]}" for k in FILTERS if q.get(k) is not None]
        matching = f" with {', '.join(active)}" if active else ""
        searched = f" (none within {q['nearest_km']:g} km either)" if q.get("nearest_km") else ""
        lines.append(f"No territory{matching} in this snapshot contains {where}{searched}.")
    snap = answer["snapshot"]
    lines.append(f"(snapshot {snap['id']}, created {snap['created']})")
    return "\n".join(lines) + "\n"


# --- batch ------------------------------------------------------------------------------------


def _add_geocoder_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--geocoder",
        metavar="NAMES",
        help="geocoders to try in order, e.g. offline,nominatim (default: $COVERLOOKUP_GEOCODER "
        "or offline, which needs no network: US ZIP codes and 'City, ST')",
    )
    p.add_argument(
        "--geocoder-option",
        action="append",
        default=[],
        metavar="NAME.KEY=VALUE",
        help="an option for one geocoder, e.g. nominatim.domain=geo.internal:8080 (repeatable)",
    )


def _geocoder(args: argparse.Namespace) -> Geocoder | None:
    from coverlookup.geocoding import build_geocoder, parse_options

    if args.geocoder is None and not args.geocoder_option:
        return None  # the service builds the default on first use
    return build_geocoder(args.geocoder, parse_options(args.geocoder_option) or None)


def _add_batch(sub: argparse._SubParsersAction) -> None:
    from coverlookup.batch import DEFAULT_CHUNK_ROWS, DEFAULT_MAX_FIELD_CHARS, FORMATS

    p = sub.add_parser(
        "batch",
        help="look up every row of a CSV file",
        description="Read a CSV with lat/latitude and lon/lng/longitude columns (or address, or "
        "zip/postcode) and write one result row per input row, in order: the input columns, then "
        "match_count, entity_names, entry_keys, capabilities, commodity_types, status, error. "
        "Bad rows get status=error and never stop the run; the exit status is 1 if any row "
        "failed. Delimiter (, ; tab) and a UTF-8 BOM are detected.",
    )
    p.add_argument("input", metavar="INPUT", help="CSV file ('-' for standard input)")
    p.add_argument("-o", "--output", metavar="OUTPUT", help="write here (default: stdout)")
    p.add_argument("--snapshot", metavar="DIR", help="snapshot to use (default: the demo)")
    p.add_argument(
        "--geojson",
        metavar="FILE",
        help="use the territories of a GeoJSON file (a GIS export) instead of a snapshot",
    )
    p.add_argument(
        "--name-property", metavar="NAME", help="with --geojson: the property naming the entity"
    )
    p.add_argument("--format", choices=FORMATS, default="csv", help="output format (csv)")
    for name in ("commodity", "capability", "infrastructure", "type"):
        p.add_argument(f"--{name}", metavar="VALUE", help=f"only entries with this {name}")
    _add_geocoder_options(p)
    p.add_argument(
        "--chunk-rows",
        type=int,
        default=DEFAULT_CHUNK_ROWS,
        metavar="N",
        help=f"rows looked up at a time; bounds memory (default {DEFAULT_CHUNK_ROWS})",
    )
    p.add_argument(
        "--max-field-chars",
        type=int,
        default=DEFAULT_MAX_FIELD_CHARS,
        metavar="N",
        help=f"a longer field fails its row (default {DEFAULT_MAX_FIELD_CHARS})",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show progress (default: only when stderr is a terminal)",
    )
    p.set_defaults(func=_cmd_batch)


def _cmd_batch(args: argparse.Namespace) -> int:
    import gc

    from coverlookup.batch import BatchRunner
    from coverlookup.service import Query, load_index

    filters = {n: getattr(args, n) for n in ("commodity", "capability", "infrastructure", "type")}
    Query.make(0.0, 0.0, **filters)  # bad filters are a usage error before any work
    geocoder = _geocoder(args)
    if args.geojson is not None:
        if args.snapshot is not None:
            raise UsageError("give either --snapshot or --geojson, not both")
        from coverlookup.index import CoverageIndex

        index = CoverageIndex.from_geojson(args.geojson, name_property=args.name_property)
    elif args.name_property is not None:
        raise UsageError("--name-property goes with --geojson")
    else:
        index = load_index(args.snapshot)
    if geocoder is None:
        from coverlookup.geocoding import build_geocoder

        geocoder = build_geocoder()
    runner = BatchRunner(
        index,
        geocoder=geocoder,
        filters=filters,
        chunk_rows=args.chunk_rows,
        max_field_chars=args.max_field_chars,
    )
    # A batch allocates millions of short-lived, acyclic rows: fewer collector passes, and none
    # over the index, which lives for the whole run (about a quarter of the time otherwise).
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    try:
        return _run_batch(args, runner)
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def _run_batch(args: argparse.Namespace, runner: BatchRunner) -> int:
    import contextlib
    import os

    from coverlookup.batch import Progress

    with contextlib.ExitStack() as stack:
        if args.input == "-":
            source = sys.stdin.buffer
        else:
            try:
                source = stack.enter_context(open(args.input, "rb"))
            except OSError as exc:
                raise UsageError(f"cannot read {args.input}: {exc.strerror or exc}") from None
        if args.output and args.output != "-":
            if args.input != "-" and os.path.exists(args.output):
                if os.path.samefile(args.input, args.output):
                    raise UsageError(f"-o {args.output} is the input file; write elsewhere")
            try:
                sink = stack.enter_context(open(args.output, "w", encoding="utf-8", newline=""))
            except OSError as exc:
                raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        else:
            sink = sys.stdout
        if args.progress is False:
            progress = None
        elif args.progress:
            size = os.fstat(source.fileno()).st_size if args.input != "-" else None
            progress = Progress(total_bytes=size or None, position=source.tell)
        else:
            progress = Progress.for_terminal(args.input, source)
        summary = runner.run(source, sink, fmt=args.format, progress=progress)
        sink.flush()
    if summary.errors:
        first = summary.first_errors[0] if summary.first_errors else ""
        _err(f"{summary.errors:,} of {summary.rows:,} rows failed (first: {first})")
        return EXIT_PROBLEMS
    return EXIT_OK


# --- entry point --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from coverlookup import __version__

    parser = _Parser(
        prog="coverlookup",
        description="Which utilities and energy entities serve this location?",
    )
    parser.add_argument("--version", action="version", version=f"coverlookup {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _add_crawl(sub)
    _add_validate(sub)
    _add_serve(sub)
    _add_lookup(sub)
    _add_batch(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except CoverlookupError as exc:
        _err(str(exc))
        return EXIT_PROBLEMS
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
