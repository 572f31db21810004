"""Crawl options: limits, safety switches, name pins and the previous snapshot for refresh."""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coverlookup.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from coverlookup.snapshot import Snapshot

PROJECT_URL = "https://github.com/coverlookup/coverlookup"


def default_user_agent() -> str:
    from coverlookup import __version__

    return f"coverlookup/{__version__} (+{PROJECT_URL})"


def ascii_host(host: str) -> str:
    """A host name as a connection uses it: lower case, no final dot, an international name in
    its IDNA (UTS 46) form as yarl encodes it for aiohttp (``Bücher.test`` ->
    ``xn--bcher-kva.test``); a name with no such form as it is."""
    host = host.lower().rstrip(".")
    if host.isascii():
        return host
    from yarl import URL

    try:
        encoded = URL.build(scheme="https", host=host).raw_host
    except (ValueError, UnicodeError):
        return host
    return (encoded or host).rstrip(".")


@dataclass(frozen=True, slots=True)
class Pin:
    """``--resolve HOST:PORT:ADDR[:PORT2]``: connect to ADDR (on PORT2, default PORT) for HOST:PORT.

    Like curl's ``--resolve``; the optional second port (as curl's ``--connect-to``) lets a test
    or an operator point ``https://example.com/`` at a server listening on another port.
    """

    host: str
    port: int
    address: str
    target_port: int

    @classmethod
    def parse(cls, text: str) -> Pin:
        parts = text.split(":", 2)
        if len(parts) != 3 or not parts[0] or not parts[2]:
            raise UsageError(f"--resolve {text!r}: expected HOST:PORT:ADDRESS")
        host, port_text, rest = parts
        port = _port(port_text, text)
        target_port = port
        if rest.startswith("["):
            addr, bracket, tail = rest[1:].partition("]")
            if not bracket:
                raise UsageError(f"--resolve {text!r}: '[' without its ']'")
            if tail:
                if not tail.startswith(":"):
                    raise UsageError(f"--resolve {text!r}: junk after ']'")
                target_port = _port(tail[1:], text)
        elif rest.count(":") == 1:
            addr, tail = rest.split(":")
            target_port = _port(tail, text)
        else:
            addr = rest
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            raise UsageError(f"--resolve {text!r}: {addr!r} is not an IP address") from None
        return cls(ascii_host(host), port, addr, target_port)


def _port(text: str, whole: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise UsageError(f"--resolve {whole!r}: bad port {text!r}")
    return port


@dataclass(slots=True)
class CrawlOptions:
    """Everything that shapes a crawl. Defaults are polite and safe for the public internet."""

    concurrency: int = 16
    per_host: int = 4
    # Total deadline per request attempt (connect + headers + whole body), seconds.
    timeout: float = 30.0
    connect_timeout: float = 10.0
    # Byte limit per body, counted after decompression.
    max_bytes: int = 64 * 1024 * 1024
    # Bodies of one crawl together (held in memory until the snapshot is written, and read into
    # documents and geometries taking several times their size), counted as they are read,
    # mirror and local files included: a body that would pass it is dropped and nothing more is
    # read (a source's last good copy stays).
    max_total_bytes: int = 512 * 1024 * 1024
    max_redirects: int = 5
    # Retries after the first attempt, for timeouts, connection errors, 5xx and 429.
    retries: int = 2
    backoff_base: float = 0.5
    backoff_max: float = 10.0
    # Retry-After is honoured up to this many seconds (a server cannot park us for an hour).
    retry_after_cap: float = 30.0
    allow_http: bool = False
    allow_private: bool = False
    resolve: tuple[Pin, ...] = ()
    cafile: str | None = None
    user_agent: str = field(default_factory=default_user_agent)
    # Walk bounds.
    max_depth: int = 5
    max_servers: int = 10_000
    max_pages: int = 1_000
    fetch_geojson: bool = True
    # Host mirrors: host name -> directory holding that host's files (filled from directory seeds).
    mirrors: dict[str, Path] = field(default_factory=dict)
    # A previous snapshot: conditional requests, and last good copies for documents that fail.
    previous: Snapshot | None = None
    # Called with (documents done, documents queued, bytes) as the crawl goes.
    progress: Callable[[int, int, int], None] | None = None

    def __post_init__(self) -> None:
        self.resolve = tuple(Pin.parse(p) if isinstance(p, str) else p for p in self.resolve)
        for name in ("concurrency", "per_host", "max_pages", "max_servers"):
            if getattr(self, name) < 1:
                raise UsageError(f"crawl option {name} must be positive, not {getattr(self, name)}")
        for name in ("max_redirects", "max_depth"):
            if getattr(self, name) < 0:
                raise UsageError(
                    f"crawl option {name} must be 0 or more, not {getattr(self, name)}"
                )
        if self.timeout <= 0 or self.max_bytes <= 0 or self.max_total_bytes <= 0:
            raise UsageError(
                "crawl options timeout, max_bytes and max_total_bytes must be positive"
            )
        for name in (
            "timeout",
            "connect_timeout",
            "backoff_base",
            "backoff_max",
            "retry_after_cap",
        ):
            value = getattr(self, name)
            # NaN passes "<= 0" and made every request time out; inf meant no deadline at all.
            if not math.isfinite(value) or value < 0:
                raise UsageError(
                    f"crawl option {name} must be a finite number of seconds, not {value}"
                )
        if self.retries < 0:
            raise UsageError("crawl option retries must be 0 or more")
        if self.cafile is not None and not os.path.isfile(self.cafile):
            raise UsageError(f"--cafile {self.cafile}: no such file")

    @classmethod
    def make(cls, options: CrawlOptions | Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        """Options from an instance, a mapping or keywords (keywords win)."""
        if options is None:
            return cls(**kwargs)
        if isinstance(options, CrawlOptions):
            if not kwargs:
                return options
            data = {name: getattr(options, name) for name in cls.__dataclass_fields__}
            data.update(kwargs)
            return cls(**data)
        return cls(**{**dict(options), **kwargs})

    def pins(self) -> dict[tuple[str, int], Pin]:
        return {(p.host, p.port): p for p in self.resolve}

    def describe(self) -> dict[str, Any]:
        """The options worth recording in a snapshot manifest."""
        return {
            "concurrency": self.concurrency,
            "per_host": self.per_host,
            "timeout": self.timeout,
            "max_bytes": self.max_bytes,
            "max_total_bytes": self.max_total_bytes,
            "max_redirects": self.max_redirects,
            "retries": self.retries,
            "allow_http": self.allow_http,
            "allow_private": self.allow_private,
            "resolve": [f"{p.host}:{p.port}:{p.address}:{p.target_port}" for p in self.resolve],
            "max_depth": self.max_depth,
            "max_servers": self.max_servers,
            "max_pages": self.max_pages,
            "user_agent": self.user_agent,
            "mirrors": {host: str(path) for host, path in sorted(self.mirrors.items())},
        }


def parse_pins(values: Iterable[str]) -> tuple[Pin, ...]:
    return tuple(Pin.parse(v) for v in values)
