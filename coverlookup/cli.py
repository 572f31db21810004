"""The ``coverlookup`` command line: parse arguments, call the library, print.

Each subcommand has an ``_add_<name>`` (its parser) and a ``_cmd_<name>`` (what it does).
Exit codes: 0 success, 1 the work found problems, 2 usage error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from coverlookup.errors import CoverlookupError, UsageError

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
    p.set_defaults(func=_cmd_validate)


def _cmd_validate(args: argparse.Namespace) -> int:
    from coverlookup import validate

    return validate.run_cli(args)


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
    _add_validate(sub)
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
