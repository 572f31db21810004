"""Request metrics in Prometheus text format, summed over the processes of ``serve --workers N``.

Each process counts its own requests. With ``--workers N`` a scrape reaches whichever process the
kernel hands the connection to, so each process also publishes its counts to a file in a directory
the processes share (``publish``: written aside and renamed, every second and before answering a
scrape) and a scrape answers the sum of every process's file. A process publishes before it reads,
so each count a scrape reports was already on disk: a later scrape, through any process, reports at
least as much, and the counters never run backwards. A worker's last counts stay after it exits.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from coverlookup.service import snapshot_age_s

if TYPE_CHECKING:  # pragma: no cover
    from coverlookup.service import LookupBatcher, LookupService

log = logging.getLogger(__name__)

_HIST = "coverlookup_http_request_duration_seconds"
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
PUBLISH_INTERVAL_S = 1.0
_PREFIX = "worker-"


class Counts:
    """What one process has counted: requests by (route, status), latency buckets per route,
    and the lookup batcher's batches and lookups."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = {}
        self.latency: dict[str, list[int]] = {}  # per route: counts per bucket, then +Inf
        self.latency_sum: dict[str, float] = {}
        self.batches = 0
        self.batched = 0

    def add(self, other: Counts) -> None:
        for key, n in other.requests.items():
            self.requests[key] = self.requests.get(key, 0) + n
        for route, counts in other.latency.items():
            mine = self.latency.setdefault(route, [0] * (len(BUCKETS) + 1))
            for i, n in enumerate(counts):
                mine[i] += n
            self.latency_sum[route] = self.latency_sum.get(route, 0.0) + other.latency_sum[route]
        self.batches += other.batches
        self.batched += other.batched

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "requests": [[route, status, n] for (route, status), n in self.requests.items()],
                "latency": self.latency,
                "latency_sum": self.latency_sum,
                "batches": self.batches,
                "batched": self.batched,
            }
        )

    @classmethod
    def from_json(cls, data: bytes) -> Counts:
        """Counts from :meth:`to_json`; ValueError naming what is wrong if they do not parse."""
        raw = orjson.loads(data)
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        requests, latency = raw.get("requests", []), raw.get("latency", {})
        sums = raw.get("latency_sum", {})
        if not (
            isinstance(requests, list) and isinstance(latency, dict) and isinstance(sums, dict)
        ):
            raise ValueError("requests, latency or latency_sum of the wrong type")
        out = cls()
        for item in requests:
            if not (isinstance(item, list) and len(item) == 3):
                raise ValueError(f"bad request count {item!r}")
            route, status, n = item
            if not (isinstance(route, str) and type(status) is int and _count(n)):
                raise ValueError(f"bad request count {item!r}")
            out.requests[(route, status)] = n
        for route, counts in latency.items():
            if not (isinstance(counts, list) and len(counts) == len(BUCKETS) + 1) or not all(
                _count(n) for n in counts
            ):
                raise ValueError(f"bad latency buckets for {route!r}")
            total = sums.get(route)
            if type(total) not in (int, float) or not 0 <= total < math.inf:
                raise ValueError(f"bad latency sum for {route!r}")
            out.latency[route] = list(counts)
            out.latency_sum[route] = float(total)
        out.batches, out.batched = raw.get("batches", 0), raw.get("batched", 0)
        if not (_count(out.batches) and _count(out.batched)):
            raise ValueError("bad batch counts")
        return out


def _count(n: object) -> bool:
    return type(n) is int and n >= 0


class Metrics:
    """Request counts by route and status and a latency histogram, in Prometheus text format.

    ``shared_dir``: the directory the processes of one server publish their counts to (see the
    module's docstring); None for a server of one process. ``name`` tells this process's file
    apart from the others' (its process id unless given).
    """

    def __init__(
        self, shared_dir: str | os.PathLike[str] | None = None, *, name: str | None = None
    ) -> None:
        self.own = Counts()
        self.shared_dir = None if shared_dir is None else Path(shared_dir)
        self._file = None
        if self.shared_dir is not None:
            self._file = self.shared_dir / f"{_PREFIX}{name or os.getpid()}.json"

    def observe(self, route: str, status: int, seconds: float) -> None:
        own = self.own
        key = (route, status)
        own.requests[key] = own.requests.get(key, 0) + 1
        counts = own.latency.get(route)
        if counts is None:
            counts = own.latency[route] = [0] * (len(BUCKETS) + 1)
            own.latency_sum[route] = 0.0
        counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        own.latency_sum[route] += seconds

    def _take_batches(self, batcher: LookupBatcher | None) -> None:
        if batcher is not None:
            self.own.batches, self.own.batched = batcher.batches, batcher.answered

    def publish(self, batcher: LookupBatcher | None = None) -> None:
        """Write this process's counts to the shared directory (nothing without one; a failure
        is logged)."""
        if self._file is None:
            return
        self._take_batches(batcher)
        tmp = self._file.with_name(f".{self._file.name}.tmp")
        try:
            self._file.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(self.own.to_json())
            os.replace(tmp, self._file)
        except OSError as exc:
            log.warning("could not publish metrics to %s: %s", self._file, exc)
            with contextlib.suppress(OSError):
                tmp.unlink()

    def totals(self, batcher: LookupBatcher | None = None) -> tuple[Counts, int]:
        """The counts of every process of this server, and how many processes that is.

        With a shared directory, only what is on disk counts, this process's file included: if
        this process cannot publish, a scrape through it must not report more than a scrape
        through another process could see (the sum would then run backwards).
        """
        if self.shared_dir is None:
            self._take_batches(batcher)
            return self.own, 1
        self.publish(batcher)
        total, processes = Counts(), 0
        for path in sorted(self.shared_dir.glob(f"{_PREFIX}*.json")):  # the same sum everywhere
            try:
                total.add(Counts.from_json(path.read_bytes()))
            except (OSError, ValueError) as exc:
                log.warning("skipping unreadable metrics file %s: %s", path, exc)
                continue
            processes += 1
        return total, processes

    def render(self, service: LookupService, batcher: LookupBatcher | None = None) -> str:
        counts, processes = self.totals(batcher)
        out: list[str] = []
        add = out.append
        add("# HELP coverlookup_http_requests_total HTTP requests by route and status.")
        add("# TYPE coverlookup_http_requests_total counter")
        for (route, status), n in sorted(counts.requests.items()):
            add(f'coverlookup_http_requests_total{{route="{_esc(route)}",status="{status}"}} {n}')
        add(f"# HELP {_HIST} Time to answer, by route.")
        add(f"# TYPE {_HIST} histogram")
        for route, buckets in sorted(counts.latency.items()):
            label = f'route="{_esc(route)}"'
            running = 0
            for bound, n in zip((*BUCKETS, math.inf), buckets, strict=True):
                running += n
                le = "+Inf" if bound == math.inf else repr(bound)
                add(f'{_HIST}_bucket{{{label},le="{le}"}} {running}')
            add(f"{_HIST}_sum{{{label}}} {counts.latency_sum[route]:.6f}")
            add(f"{_HIST}_count{{{label}}} {running}")
        state = service.refresh_summary()
        gauges: list[tuple[str, str, str, float]] = [
            ("coverlookup_ready", "gauge", "1 once an index is loaded.", int(service.ready)),
            ("coverlookup_refreshes_total", "counter", "Successful refreshes.", state.refreshes),
            ("coverlookup_refresh_failures_total", "counter", "Failed refreshes.", state.failures),
            (
                "coverlookup_processes",
                "gauge",
                "Serving processes whose requests these counts include.",
                processes,
            ),
        ]
        if batcher is not None:  # batched / batches is the mean batch size
            gauges += [
                (
                    "coverlookup_lookup_batches_total",
                    "counter",
                    "Batches of point lookups answered together.",
                    counts.batches,
                ),
                (
                    "coverlookup_lookup_batched_total",
                    "counter",
                    "Point lookups answered in those batches.",
                    counts.batched,
                ),
            ]
        if service.ready:
            gauges += list(_index_gauges(service))
        for name, kind, help_text, value in gauges:
            add(f"# HELP {name} {help_text}")
            add(f"# TYPE {name} {kind}")
            add(f"{name} {value}")
        return "\n".join(out) + "\n"


def _index_gauges(service: LookupService) -> Iterable[tuple[str, str, str, float]]:
    index = service.index
    stats = index.stats()
    for name in ("servers", "entries", "geometries"):
        if isinstance(stats.get(name), (int, float)):
            yield (f"coverlookup_index_{name}", "gauge", f"Indexed {name}.", stats[name])
    age = snapshot_age_s(index)
    if age is not None:
        yield ("coverlookup_snapshot_age_seconds", "gauge", "Age of the snapshot.", age)


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
